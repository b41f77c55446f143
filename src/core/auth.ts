import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { sql } from 'kysely';
import { maybeOne, type Db } from './db.js';
import { AppError, notFound } from './errors.js';
import { isRole, roleHas, type Permission, type Role } from './permissions.js';

/** Who is calling. The token decides tenant, role and store scope. */
export type Principal =
  /** The operator token, or the service itself (`worker`, `provider:fulfilment` for signed webhooks). */
  | { kind: 'operator'; name: string }
  | {
      kind: 'token';
      tokenId: string;
      tenantId: string;
      name: string;
      role: Role;
      /** null: every store of the tenant. */
      storeIds: readonly string[] | null;
    };

export type TenantPrincipal = Extract<Principal, { kind: 'token' }>;

export const SYSTEM_TENANT_ID = '00000000-0000-0000-0000-000000000000';

/**
 * The credential of an `Authorization: Bearer <credential>` header, or
 * undefined. The one reading of the header for the API's tokens and for
 * METRICS_TOKEN: the scheme in any letter case (RFC 9110 §11.1), then one or
 * more spaces or tabs, then the credential, one run of non-space characters
 * (a token68, RFC 9110 §11.2, so `Bearer a b` carries none); Node has
 * already dropped the spaces and tabs around the whole value.
 */
export function bearerCredential(authorization: string | undefined): string | undefined {
  const match = typeof authorization === 'string' ? /^bearer[ \t]+([^\s]+)$/i.exec(authorization) : null;
  return match?.[1];
}

export function generateToken(): string {
  return `sk_${randomBytes(32).toString('base64url')}`;
}

export function hashToken(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

export function actorLabel(principal: Principal): string {
  return principal.kind === 'operator' ? principal.name : `${principal.role}:${principal.name}`;
}

/** A record outside the caller's stores is reported exactly like a missing one. */
export function assertStoreInScope(principal: TenantPrincipal, storeId: string, what = 'store'): void {
  if (principal.storeIds !== null && !principal.storeIds.includes(storeId)) throw notFound(what);
}

export function inStoreScope(principal: TenantPrincipal, storeId: string): boolean {
  return principal.storeIds === null || principal.storeIds.includes(storeId);
}

/**
 * Whether a record that may have no store is visible: one of a store needs
 * that store in scope; one without (tenant-wide: catalogue changes, sweeps,
 * tenant review items) only a token not limited to some stores.
 */
export function recordInScope(principal: TenantPrincipal, storeId: string | null): boolean {
  return storeId === null ? principal.storeIds === null : inStoreScope(principal, storeId);
}

/** For what spans every store of the tenant: 403 for a token limited to some stores. */
export function assertAllStores(principal: TenantPrincipal, what: string): void {
  if (principal.storeIds !== null) throw new AppError('forbidden', `${what} span every store; a token limited to some stores cannot use them`);
}

export function assertPermission(principal: TenantPrincipal, permission: Permission): void {
  if (!roleHas(principal.role, permission)) {
    throw new AppError('forbidden', `role ${principal.role} may not ${permission.replace('.', ' ')}`);
  }
}

interface TokenRow {
  tenant_id: string;
  id: string;
  name: string;
  role: string;
  store_ids: string[] | null;
}

/**
 * Resolves bearer tokens. Tenant tokens are looked up by hash through a
 * SECURITY DEFINER function (the tenant is not known yet, so RLS cannot be
 * satisfied); results are cached briefly because every request needs one.
 */
export class Authenticator {
  private readonly cache = new Map<string, { principal: Principal | null; expiresAt: number }>();
  private operatorHashes: Buffer[] = [];

  constructor(
    private readonly db: Db,
    private readonly cacheTtlMs = 10_000,
  ) {}

  setOperatorTokens(tokens: string[]): void {
    this.operatorHashes = tokens.map(hashToken);
  }

  addOperatorHash(hash: Buffer): void {
    this.operatorHashes.push(hash);
  }

  /** Test seam: awaited between a token's database lookup and the write of its cache entry. */
  afterLookup: ((hash: Buffer) => Promise<void>) | undefined;

  /** Tokens that authenticated in the last hour (hash → until when, and which token): they skip the failed-authentication limiter. */
  private readonly recentlyValid = new Map<string, { until: number; tokenId: string | null }>();

  /**
   * Counts forgetToken() calls. A lookup whose database read may predate a revoke
   * that was forgotten meanwhile (the count moved during the read) must not
   * cache what it read: that would bring the revoked token back.
   */
  private generation = 0;

  /**
   * Forgets a token's cached lookup, by its id: after this process answered a
   * revoke of it — the revoke itself, its replay, or revoking it again (the
   * revoke may have been committed by another process, which cannot reach
   * this one's cache).
   */
  forgetToken(tokenId: string): void {
    this.generation += 1;
    const id = tokenId.toLowerCase();
    for (const [key, entry] of this.cache) {
      if (entry.principal?.kind === 'token' && entry.principal.tokenId === id) this.cache.delete(key);
    }
    for (const [key, entry] of this.recentlyValid) {
      if (entry.tokenId === id) this.recentlyValid.delete(key);
    }
  }

  /**
   * Whether this token authenticated in this process within the last hour
   * (or is the operator's). A client guessing tokens cannot produce one, so
   * such requests are never held back by failures of others at the same address.
   */
  wasRecentlyValid(token: string): boolean {
    const hash = hashToken(token);
    if (this.operatorHashes.some((known) => timingSafeEqual(known, hash))) return true;
    return (this.recentlyValid.get(hash.toString('base64'))?.until ?? 0) > Date.now();
  }

  async authenticate(token: string): Promise<Principal | null> {
    const hash = hashToken(token);
    if (this.operatorHashes.some((known) => timingSafeEqual(known, hash))) {
      return { kind: 'operator', name: 'operator' };
    }
    const key = hash.toString('base64');
    const cached = this.cache.get(key);
    if (cached && cached.expiresAt > Date.now()) return cached.principal;
    const generation = this.generation;
    // The entry's lifetime counts from before the read: a revoke committed
    // after the read's snapshot is then honoured within cacheTtlMs of its
    // commit, however long the result took to come back and be cached.
    const readAt = Date.now();
    const row = await maybeOne(this.db, sql<TokenRow>`SELECT * FROM find_api_token(${hash})`);
    await this.afterLookup?.(hash);
    const principal: Principal | null =
      row && isRole(row.role)
        ? { kind: 'token', tokenId: row.id, tenantId: row.tenant_id, name: row.name, role: row.role, storeIds: row.store_ids }
        : null;
    // A revoke forgotten during the read: this request, concurrent with it,
    // goes on with what it read, but later ones look the token up again.
    if (generation !== this.generation) return principal;
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(key, { principal, expiresAt: readAt + this.cacheTtlMs });
    if (principal) {
      if (this.recentlyValid.size > 100_000) this.recentlyValid.clear();
      this.recentlyValid.set(key, { until: Date.now() + 3_600_000, tokenId: principal.kind === 'token' ? principal.tokenId : null });
    }
    return principal;
  }
}
