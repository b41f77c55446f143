import type { Principal } from '../core/auth.js';

/**
 * The rate-limit bucket of a request. The auth hook runs first, so a request
 * on a route that takes a token is counted by WHO it authenticated as: its
 * token's id (or the operator) — never by any part of the secret, since the
 * keys are held in memory and, with REDIS_URL, in Redis, where tokens must not
 * be (PostgreSQL keeps only their hashes). A request without an authenticated
 * token (routes that take none: the provider's webhooks, the docs) is counted
 * by its address: an Authorization header there proves nothing, and one made
 * up per request must not buy a fresh bucket.
 */
export function rateLimitKeyOf(request: { principal: Principal | null; ip: string; headers: Record<string, unknown> }): string {
  const principal = request.principal;
  if (principal?.kind === 'token') return `token:${principal.tokenId}`;
  if (principal?.kind === 'operator') return 'operator';
  return `ip:${request.ip}`;
}
