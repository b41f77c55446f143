import { sql } from 'kysely';
import { generateToken, hashToken } from '../core/auth.js';
import type { Command } from '../core/command.js';
import { all } from '../core/db.js';
import { AppError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import type { Role } from '../core/permissions.js';

export interface CreateTokenInput {
  name: string;
  role: Role;
  store_ids?: string[] | undefined;
}

export interface CreatedToken {
  id: string;
  token: string;
  name: string;
  role: Role;
  store_ids: string[] | null;
}

/** Issues an API token. Only its SHA-256 is stored; the token is returned once. */
export async function createToken(cmd: Command, input: CreateTokenInput): Promise<CreatedToken> {
  const principal = cmd.principal;
  if (principal.kind === 'token' && input.role === 'owner' && principal.role !== 'owner') {
    throw new AppError('forbidden', 'only an owner can issue owner tokens');
  }
  const storeIds = input.store_ids === undefined ? null : [...new Set(input.store_ids)];
  if (principal.kind === 'token' && principal.storeIds !== null) {
    // A store-scoped admin cannot mint a token that reaches further than itself.
    const outside = (storeIds ?? ['*']).filter((id) => !principal.storeIds?.includes(id));
    if (outside.length > 0) throw new AppError('forbidden', 'a token cannot reach stores outside the issuer\'s own');
  }
  if (storeIds !== null && storeIds.length > 0) {
    const found = await all(cmd.tx, sql<{ id: string }>`SELECT id FROM stores WHERE tenant_id = ${cmd.tenantId} AND id = ANY(${storeIds}::uuid[])`);
    const known = new Set(found.map((row) => row.id));
    const missing = storeIds.filter((id) => !known.has(id));
    if (missing.length > 0) {
      throw new AppError('validation_failed', `unknown store ids: ${missing.join(', ')}`, {
        errors: missing.map((id) => ({ path: '/body/store_ids', message: `store ${id} does not exist` })),
      });
    }
  }
  const id = newId();
  const token = generateToken();
  await sql`
    INSERT INTO api_tokens (tenant_id, id, name, role, store_ids, token_hash, op_id)
    VALUES (${cmd.tenantId}, ${id}, ${input.name}, ${input.role}, ${storeIds}, ${hashToken(token)}, ${cmd.opId})`.execute(cmd.tx);
  cmd.touch('api_tokens', id);
  cmd.audit({ subjectType: 'api_token', subjectId: id, after: { id, name: input.name, role: input.role, store_ids: storeIds } });
  return { id, token, name: input.name, role: input.role, store_ids: storeIds };
}
