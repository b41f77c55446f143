import { ERROR_STATUS, type ErrorCode } from '../core/errors.js';
import type { Permission } from '../core/permissions.js';

/**
 * The refusals an operation can answer, by problem `code`, each with when it
 * happens ("every short line in `shortages`"). The status of a code is fixed
 * (ERROR_STATUS), so a code is all a route names. A route declares only what
 * is its own (`config.refusals`); what follows from the kind of route — a
 * token, a permission, a path id, a body, an Idempotency-Key, an If-Match —
 * is derived here (commonRefusals). The OpenAPI document lists the union per
 * operation, one response per status (documentedRefusals), and in test runs
 * every problem the app answers is checked against it (buildApp's
 * `onUndeclaredRefusal`): a refusal a route sends but does not declare fails
 * the test that provoked it.
 */
export type Refusals = Partial<Record<ErrorCode, string>>;

/**
 * Codes answered before any route is chosen (an unknown path or method, a
 * request Node cannot parse or that arrives too slowly): no operation's own,
 * named in every operation's `4XX` catch-all.
 */
export const BEFORE_ROUTING: readonly ErrorCode[] = ['method_not_allowed', 'request_timeout', 'headers_too_large'];

/** What the refusals of a route are derived from: its method, path, config and declared headers. */
export interface RouteFacts {
  method: string;
  url: string;
  auth?: 'none' | 'operator' | 'tenant';
  permission?: Permission;
  rateLimited: boolean;
  headers: readonly string[];
  /** The query parameters it takes. */
  query: readonly string[];
  declared?: Refusals;
}

const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** The refusals every route of its kind can answer, from what the route is. */
export function commonRefusals(route: RouteFacts): Refusals {
  const refusals: Refusals = {
    validation_failed: 'a field, path parameter, query parameter or header is not valid (`errors` names each, by path), or holds text the database cannot store',
  };
  if (BODY_METHODS.has(route.method)) {
    refusals.malformed_json = 'the body is not JSON, not UTF-8, nested deeper than 32 levels, or names a member twice';
    refusals.payload_too_large = 'the body is larger than the server accepts (BODY_LIMIT_BYTES)';
    refusals.unsupported_media_type = 'the body is not `application/json` in UTF-8';
  }
  const auth = route.auth ?? 'tenant';
  if (auth !== 'none') {
    refusals.unauthorized = 'no token, or one that is not valid or revoked (with `WWW-Authenticate`)';
    refusals.forbidden =
      auth === 'operator'
        ? 'a tenant token: this endpoint needs the operator token'
        : route.permission !== undefined
          ? `the token's role lacks \`${route.permission}\` (checked before anything is read), or it is the operator token`
          : 'the operator token: this endpoint needs a tenant token';
  }
  if (route.rateLimited || auth !== 'none') {
    refusals.rate_limited = route.rateLimited
      ? 'over RATE_LIMIT_PER_MINUTE, or too many failed authentications from this address (with `Retry-After`)'
      : 'too many failed authentications from this address (with `Retry-After`)';
  }
  if (route.url.includes(':')) refusals.not_found = 'the record named in the path does not exist, or is outside the token\'s tenant or stores';
  if (route.query.includes('store_id')) {
    const store = 'the store in `store_id` does not exist or is outside the token\'s stores';
    refusals.not_found = refusals.not_found === undefined ? store : `${refusals.not_found}; or ${store}`;
  }
  if (route.headers.includes('idempotency-key')) {
    refusals.idempotency_key_reused = 'the Idempotency-Key was used with a different request';
    refusals.idempotency_key_in_flight = 'a request with this Idempotency-Key is still running';
    refusals.not_found ??= 'a replay of this Idempotency-Key by a token that may not see its record';
  }
  if (route.headers.includes('if-match')) refusals.version_conflict = 'the If-Match names no current version of the record (`current_version` says which is)';
  refusals.internal_error = 'an unexpected error (logged)';
  refusals.service_unavailable =
    'the database is unreachable or stopped answering (no answer to a statement within 45 s), the process is shutting down or shedding load, or a transaction still conflicted after its retries (with `Retry-After`: retry with the same Idempotency-Key)';
  return refusals;
}

/**
 * Every refusal a route can answer: what its kind gives, and what it
 * declares; a code in both is described by both ("…; or …").
 */
export function refusalsOf(route: RouteFacts): Refusals {
  const refusals = commonRefusals(route);
  for (const [code, when] of Object.entries(route.declared ?? {}) as Array<[ErrorCode, string]>) {
    const common = refusals[code];
    refusals[code] = common === undefined ? when : `${common}; or ${when}`;
  }
  return refusals;
}

/** Whether `code` at `status` is a refusal the route declares (directly or by its kind). */
export function isDeclared(refusals: Refusals, status: number, code: string): boolean {
  return code in refusals && ERROR_STATUS[code as ErrorCode] === status;
}

/**
 * The refusals as OpenAPI responses' descriptions, one per status:
 * `409: insufficient_stock — every short line in \`shortages\`; idempotency_key_in_flight — …`.
 */
export function documentedRefusals(refusals: Refusals): Map<string, string> {
  const byStatus = new Map<string, string[]>();
  for (const [code, when] of Object.entries(refusals) as Array<[ErrorCode, string]>) {
    const status = String(ERROR_STATUS[code]);
    byStatus.set(status, [...(byStatus.get(status) ?? []), `\`${code}\` — ${when}`]);
  }
  return new Map([...byStatus.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([status, lines]) => [status, lines.join('; ')]));
}

/** `/v1/sales/:id/void` as OpenAPI writes it: `/v1/sales/{id}/void`. */
export function openApiPath(url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
}
