import { normalizeIP } from '@fastify/rate-limit';
import type { Principal } from '../core/auth.js';

/**
 * The prefix an IPv6 client is counted by. A client (a home, a shop, a
 * cloud VM) is given at least a /64 — 2^64 addresses it can send from at
 * will — so counting each address would let it take a fresh one for every
 * request or token guess and never be limited. A /64 is what one client
 * holds (RFC 6177), and what @fastify/rate-limit's own default key uses.
 */
export const IPV6_CLIENT_PREFIX = 64;

/**
 * The client an address belongs to, as the limiters count it: an IPv4
 * address as it is (also when it arrives IPv4-mapped, `::ffff:10.0.0.7`, on a
 * dual-stack socket), an IPv6 address by its /64.
 */
export function clientOf(ip: string): string {
  try {
    return normalizeIP(ip, IPV6_CLIENT_PREFIX);
  } catch {
    // Not an address the parser knows (never from a socket): as given.
    return ip;
  }
}

/**
 * The rate-limit bucket of a request. The auth hook runs first, so a request
 * on a route that takes a token is counted by WHO it authenticated as: its
 * token's id (or the operator) — never by any part of the secret, since the
 * keys are held in memory and, with REDIS_URL, in Redis, where tokens must not
 * be (PostgreSQL keeps only their hashes). A request without an authenticated
 * token (routes that take none: the provider's webhooks, the docs) is counted
 * by its client (clientOf: an IPv6 address by its /64): an Authorization
 * header there proves nothing, and one made up per request — or a new
 * address of the same /64 — must not buy a fresh bucket.
 */
export function rateLimitKeyOf(request: { principal: Principal | null; ip: string; headers: Record<string, unknown> }): string {
  const principal = request.principal;
  if (principal?.kind === 'token') return `token:${principal.tokenId}`;
  if (principal?.kind === 'operator') return 'operator';
  return `ip:${clientOf(request.ip)}`;
}
