import { sql } from 'kysely';
import { generateToken, hashToken, type TenantPrincipal } from '../core/auth.js';
import { AlreadyDone, type Command } from '../core/command.js';
import { all, andIf, lockNamed, maybeOne, one, type Tx } from '../core/db.js';
import { AppError, notFound } from '../core/errors.js';
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

/**
 * Whether a caller may issue or revoke a token of this role and these stores
 * (the issuer's rules, below): only an owner acts on owner tokens, and a token
 * limited to some stores only on tokens within them. A replay of a token's
 * creation or revocation goes, besides its maker, to such callers only — to
 * whoever could send the same request without the key —, read from the
 * stored answer (`role`, `store_ids`): the operation has no store of its own.
 */
export function mayActOnToken(principal: TenantPrincipal, token: { role?: unknown; store_ids?: unknown }): boolean {
  if (token.role === 'owner' && principal.role !== 'owner') return false;
  return tokenWithinStores(principal, token.store_ids);
}

/**
 * Whether a token's stores (`store_ids`: null for every store) lie within a
 * caller's: a caller limited to some stores acts only on tokens limited to
 * some of them, never on an unlimited one.
 */
function tokenWithinStores(principal: { storeIds: readonly string[] | null }, storeIds: unknown): boolean {
  const scope = principal.storeIds;
  if (scope === null) return true;
  return Array.isArray(storeIds) && storeIds.every((id) => typeof id === 'string' && scope.includes(id));
}

export const tokenReplayVisibleTo = (principal: TenantPrincipal, storedBody: unknown): boolean =>
  storedBody !== null && typeof storedBody === 'object' && mayActOnToken(principal, storedBody as { role?: unknown; store_ids?: unknown });

/**
 * Locks the rows of the token sending a token command (its issuer: FOR
 * SHARE) and of the token it revokes (FOR UPDATE), in id order, and refuses
 * the command when the issuer has been revoked: 401, as its next request
 * gets. The token was authenticated before the command — from another API
 * process's cache up to 10 s after its revoke, or by a lookup that read it
 * just before the revoke committed — and a token it issued then would
 * outlive its revoke for good. Under the lock, a revoke of the issuer
 * committed first is seen; one sent meanwhile waits for this command.
 */
async function lockIssuer(cmd: Command, revoking?: string): Promise<void> {
  const principal = cmd.principal;
  if (principal.kind !== 'token') return;
  const ids = [...new Set([principal.tokenId, ...(revoking === undefined ? [] : [revoking])])].sort();
  let issuer: { revoked_at: Date | null } | undefined;
  for (const id of ids) {
    const mode = id === revoking ? sql`FOR UPDATE` : sql`FOR SHARE`;
    const row = await maybeOne(cmd.tx, sql<{ revoked_at: Date | null }>`SELECT revoked_at FROM api_tokens WHERE tenant_id = ${cmd.tenantId} AND id = ${id} ${mode}`);
    if (id === principal.tokenId) issuer = row;
  }
  if (issuer === undefined || issuer.revoked_at !== null) throw new AppError('unauthorized', 'the token is not valid');
}

/** Issues an API token. Only its SHA-256 is stored; the token is returned once. */
export async function createToken(cmd: Command, input: CreateTokenInput): Promise<CreatedToken> {
  const principal = cmd.principal;
  await lockIssuer(cmd);
  if (principal.kind === 'token' && input.role === 'owner' && principal.role !== 'owner') {
    throw new AppError('forbidden', 'only an owner can issue owner tokens');
  }
  const storeIds = input.store_ids === undefined ? null : [...new Set(input.store_ids)];
  // A store-scoped admin cannot mint a token that reaches further than itself.
  if (principal.kind === 'token' && !tokenWithinStores(principal, storeIds)) {
    throw new AppError('forbidden', 'a token cannot reach stores outside the issuer\'s own');
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

export interface RevokedToken {
  id: string;
  name: string;
  role: Role;
  store_ids: string[] | null;
  revoked_at: Date;
}

/**
 * Revokes an API token: it stops authenticating (in this process at once;
 * in other processes within the authentication cache's 10 s). The issuer's
 * rules apply: only an owner revokes an owner token, and a store-scoped
 * issuer only tokens within its own stores. The tenant's last owner token of
 * every store is not revoked (409 conflict). Revoking a revoked token answers
 * it again (AlreadyDone: nothing written). The caller evicts it from its
 * process's cache (Authenticator.forgetToken).
 */
export async function revokeToken(cmd: Command, tokenId: string): Promise<RevokedToken> {
  const principal = cmd.principal;
  await lockIssuer(cmd, tokenId);
  const row = await maybeOne(
    cmd.tx,
    sql<Omit<RevokedToken, 'revoked_at'> & { revoked_at: Date | null }>`
      SELECT id, name, role, store_ids, revoked_at FROM api_tokens WHERE tenant_id = ${cmd.tenantId} AND id = ${tokenId} FOR UPDATE`,
  );
  if (!row) throw notFound('token');
  if (principal.kind === 'token') {
    if (!tokenWithinStores(principal, row.store_ids)) throw notFound('token');
    if (row.role === 'owner' && principal.role !== 'owner') throw new AppError('forbidden', 'only an owner can revoke owner tokens');
  }
  // Already revoked: answered with the token as it is, nothing written (a replay).
  if (row.revoked_at !== null) {
    const revokedBy = await maybeOne(
      cmd.tx,
      sql<{ op_id: string }>`
        SELECT op_id FROM events WHERE tenant_id = ${cmd.tenantId} AND subject_type = 'api_token' AND subject_id = ${tokenId} AND type = 'token.revoked'
        ORDER BY id LIMIT 1`,
    );
    throw new AlreadyDone(row, revokedBy?.op_id ?? null);
  }
  if (row.role === 'owner' && row.store_ids === null) {
    // The tenant keeps an owner token of every store: without one, nobody can
    // issue an owner token again, nor a token of every store once the admins
    // are gone — and the operator only creates tenants. Revokes of such
    // tokens take turns (two owners revoking each other at once: the second
    // then sees the first's revoke, and is refused).
    await lockNamed(cmd.tx, `owner-tokens:${cmd.tenantId}`);
    const others = await one(
      cmd.tx,
      sql<{ n: number }>`
        SELECT count(*)::int AS n FROM api_tokens
        WHERE tenant_id = ${cmd.tenantId} AND role = 'owner' AND store_ids IS NULL AND revoked_at IS NULL AND id <> ${tokenId}`,
    );
    if (others.n === 0) {
      throw new AppError(
        'conflict',
        "this is the tenant's last owner token of every store: issue another owner token (POST /v1/tokens, role owner, no store_ids) before revoking it",
      );
    }
  }
  const revoked = await one(cmd.tx, sql<{ revoked_at: Date }>`UPDATE api_tokens SET revoked_at = now() WHERE tenant_id = ${cmd.tenantId} AND id = ${tokenId} RETURNING revoked_at`);
  cmd.touch('api_tokens', tokenId, 'updated');
  cmd.audit({ type: 'token.revoked', subjectType: 'api_token', subjectId: tokenId, before: { revoked_at: null }, after: { revoked_at: revoked.revoked_at } });
  return { ...row, revoked_at: revoked.revoked_at };
}

/** A token as listed: never its hash. */
export interface ListedToken {
  id: string;
  name: string;
  role: string;
  store_ids: string[] | null;
  created_at: Date;
  revoked_at: Date | null;
}

/**
 * The tenant's tokens in id (issue) order, revoked ones included, after the
 * id `after`: for a caller limited to some stores, only the tokens within
 * them — the tokens it could revoke, owner tokens aside (only an owner
 * revokes those); the others are 404 to it there too.
 */
export async function listTokens(tx: Tx, principal: TenantPrincipal, after: string | undefined, limit: number): Promise<ListedToken[]> {
  return all(
    tx,
    sql<ListedToken>`
      SELECT id, name, role, store_ids, created_at, revoked_at FROM api_tokens
      WHERE tenant_id = ${principal.tenantId}
        ${andIf(principal.storeIds, (scope) => sql`store_ids <@ ${scope}::uuid[]`)}
        ${andIf(after, (id) => sql`id > ${id}`)}
      ORDER BY id LIMIT ${limit}`,
  );
}
