import type { FastifyReply, FastifyRequest } from 'fastify';
import type { TenantPrincipal } from '../core/auth.js';
import { equivalentFingerprints, fingerprintRequest, reservedKeyError, runCommand, type CommandFn, type CommandInput, type CommandOutcome, type CommandSpec } from '../core/command.js';
import type { Db } from '../core/db.js';
import { AppError, assert } from '../core/errors.js';

/** The tenant token of a request on a `tenant` route (the auth hook guarantees it). */
export function tenantOf(request: FastifyRequest): TenantPrincipal {
  const principal = request.principal;
  assert(principal?.kind === 'token', 'route requires a tenant principal');
  return principal;
}

export function idempotencyKeyOf(request: FastifyRequest): string | undefined {
  const header = request.headers['idempotency-key'];
  if (header === undefined) return undefined;
  if (typeof header !== 'string' || header.length < 1 || header.length > 255) {
    throw new AppError('validation_failed', 'Idempotency-Key must be 1 to 255 characters', {
      errors: [{ path: '/headers/idempotency-key', message: 'must be 1 to 255 characters' }],
    });
  }
  const reserved = reservedKeyError(header, '/headers/idempotency-key');
  if (reserved) throw reserved;
  return header;
}

/**
 * The path a request is fingerprinted by: its route with the path parameters
 * as validated (UUIDs lowercased), so `/v1/sales/` and `/v1/sales`, or an id
 * in capitals and in lowercase, are the same request for its Idempotency-Key.
 * For the usual spelling it is exactly the path as sent.
 */
function canonicalPath(request: FastifyRequest): string {
  const route = request.routeOptions.url;
  if (route === undefined) return request.url.split('?')[0] ?? request.url;
  const params = (request.params ?? {}) as Record<string, unknown>;
  return route.replace(/:([A-Za-z0-9_]+)/g, (_, name: string) => encodeURIComponent(String(params[name])));
}

/**
 * What the command helper needs from an HTTP request: a command's input.
 * `fingerprinted`, when given, is the part of the body that makes it the same
 * request (see the visit completion: a retry may re-read its GPS); otherwise
 * the whole body.
 */
export function commandInputOf(request: FastifyRequest, tenantId?: string, fingerprinted: unknown = request.body): CommandInput {
  const principal = request.principal;
  assert(principal !== null, 'commands need an authenticated principal');
  const resolvedTenant = tenantId ?? (principal.kind === 'token' ? principal.tenantId : undefined);
  assert(resolvedTenant !== undefined, 'commands need a tenant');
  return {
    tenantId: resolvedTenant,
    principal,
    correlationId: request.id,
    idempotencyKey: idempotencyKeyOf(request),
    fingerprint: fingerprintRequest(request.method, canonicalPath(request), fingerprinted),
    equivalentFingerprints: equivalentFingerprints(request.method, canonicalPath(request), fingerprinted),
    payload: request.body,
  };
}

export function sendOutcome(reply: FastifyReply, outcome: CommandOutcome): FastifyReply {
  if (outcome.replayed) reply.header('idempotent-replayed', 'true');
  return reply.status(outcome.status).send(outcome.body);
}

/**
 * Runs a route's command in one transaction and sends its result — replayed
 * for a stored key, or for a command already done (AlreadyDone).
 */
export async function command(
  db: Db,
  request: FastifyRequest,
  reply: FastifyReply,
  spec: CommandSpec,
  fn: CommandFn,
  input: CommandInput = commandInputOf(request),
): Promise<FastifyReply> {
  return sendOutcome(reply, await runCommand(db, input, spec, fn));
}
