import type { FastifyCorsOptions } from '@fastify/cors';
import type { FastifyRequest, RouteOptions } from 'fastify';

/** What browser clients send beyond the CORS-safelisted request headers (API.md's conventions). */
export const CORS_ALLOWED_HEADERS = ['Authorization', 'Content-Type', 'Idempotency-Key', 'If-Match', 'X-Correlation-ID'];
/** What clients read beyond the CORS-safelisted response headers (Content-Type…). */
export const CORS_EXPOSED_HEADERS = ['ETag', 'Idempotent-Replayed', 'Retry-After', 'X-Correlation-ID'];
/**
 * How long a browser may reuse a preflight's answer. A browser caches it per
 * URL, and most of the API's URLs carry ids, so a short cache would double
 * many requests; a longer one is harmless: an origin removed from
 * CORS_ORIGINS gets answers without Access-Control-Allow-Origin, which the
 * browser refuses whatever its cached preflight said.
 */
export const CORS_MAX_AGE_SECONDS = 3600;

/**
 * @fastify/cors for the exact origins of CORS_ORIGINS. Decided per request:
 * a request from any other origin (or with none: same-origin pages, tills,
 * curl) is not handled at all — no Access-Control-* header, and its OPTIONS
 * answered as with CORS off (405 with Allow). A preflight is an OPTIONS from
 * an allowed origin naming Access-Control-Request-Method (answered 204 before
 * authentication); an OPTIONS from such an origin without it is no preflight
 * and also gets the 405 (as a problem, where the plugin's strict mode would
 * answer a bare text/plain 400). No credentials: tokens travel in
 * Authorization, which needs no cookies — and never `*`.
 */
export function corsOptions(origins: readonly string[], methods: readonly string[]): FastifyCorsOptions {
  const allowed = new Set(origins);
  const handled = {
    origin: true, // reflect the request's Origin: it is one of `allowed`
    methods: [...methods],
    allowedHeaders: CORS_ALLOWED_HEADERS,
    exposedHeaders: CORS_EXPOSED_HEADERS,
    maxAge: CORS_MAX_AGE_SECONDS,
    credentials: false,
    strictPreflight: false,
  };
  return {
    hook: 'onRequest',
    delegator: (request: FastifyRequest, callback: (error: Error | null, options: FastifyCorsOptions) => void) => {
      const origin = request.headers.origin;
      if (typeof origin !== 'string' || !allowed.has(origin)) return callback(null, { origin: false });
      callback(null, { ...handled, preflight: request.headers['access-control-request-method'] !== undefined });
    },
  };
}

/** The OPTIONS `*` route @fastify/cors registers so that preflights reach its hook; it serves no path of ours. */
export function isCorsCatchAllRoute(route: Pick<RouteOptions, 'method' | 'url'>): boolean {
  const methods = Array.isArray(route.method) ? route.method : [route.method];
  return route.url === '*' && methods.includes('OPTIONS');
}

/** Whether a match of `findRoute({ method: 'OPTIONS' })` is that catch-all (its only parameter is the wildcard). */
export function isCorsCatchAll(params: unknown): boolean {
  return typeof params === 'object' && params !== null && '*' in params;
}
