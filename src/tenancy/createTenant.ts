import { sql } from 'kysely';
import { generateToken, hashToken } from '../core/auth.js';
import { setTenant, type Command } from '../core/command.js';
import { newId } from '../core/ids.js';

export interface CreatedTenant {
  tenant: { id: string; name: string };
  token: string;
}

/**
 * Creates a tenant and its first owner token. Runs as an operator command in
 * the system tenant; the tenant's own rows are written under the new tenant's
 * RLS context, with a copy of the operation so the tenant's history starts
 * with its own creation.
 */
export async function createTenant(cmd: Command, name: string): Promise<CreatedTenant> {
  const tenantId = newId();
  const token = generateToken();
  await setTenant(cmd.tx, tenantId);
  await sql`INSERT INTO tenants (id, name) VALUES (${tenantId}, ${name})`.execute(cmd.tx);
  await sql`
    INSERT INTO operations (tenant_id, id, type, actor, correlation_id)
    VALUES (${tenantId}, ${cmd.opId}, ${cmd.type}, ${cmd.actor}, ${cmd.input.correlationId})`.execute(cmd.tx);
  await sql`
    INSERT INTO api_tokens (tenant_id, id, name, role, store_ids, token_hash, op_id)
    VALUES (${tenantId}, ${newId()}, 'owner', 'owner', NULL, ${hashToken(token)}, ${cmd.opId})`.execute(cmd.tx);
  await setTenant(cmd.tx, cmd.tenantId);
  cmd.touch('tenants', tenantId);
  cmd.audit({ subjectType: 'tenant', subjectId: tenantId, after: { id: tenantId, name } });
  return { tenant: { id: tenantId, name }, token };
}
