import type { FastifyReply, FastifyRequest } from 'fastify';
import type { TenantPrincipal } from '../core/auth.js';
import { equivalentFingerprints, fingerprintRequest, reservedKeyError, runCommand, type CommandFn, type CommandInput, type CommandOutcome, type CommandSpec } from '../core/command.js';
import type { Db } from '../core/db.js';
import { AppError, assert } from '../core/errors.js';
import { headerLineValues, headerText, utf8ReadAsLatin1 } from './headerText.js';

/** The tenant token of a request on a `tenant` route (the auth hook guarantees it). */
export function tenantOf(request: FastifyRequest): TenantPrincipal {
  const principal = request.principal;
  assert(principal?.kind === 'token', 'route requires a tenant principal');
  return principal;
}

/**
 * The forms an earlier release may have stored a key under, when they differ
 * from it: the key in UTF-8 read as Latin-1, as every Idempotency-Key header
 * was read before headerText (`ключ` kept as `ÐºÐ»Ñ\x8eÑ\x87`). Sales keep
 * their key for good, so a till's retry after an upgrade — in the header or
 * in a synced sale's body — still finds its sale under that form.
 */
export function formerKeyForms(key: string): string[] {
  // An ASCII key (nearly every one, on the sale hot path) reads the same either way: no copy made.
  if (!/[^\x00-\x7f]/.test(key)) return [];
  const asReadBefore = utf8ReadAsLatin1(key);
  // Over 255 characters, that form was refused (400): nothing is stored under it.
  return asReadBefore === key || asReadBefore.length > 255 ? [] : [asReadBefore];
}

/**
 * The Idempotency-Key header as the text its client meant (headerText: its
 * bytes as UTF-8 when they are UTF-8, else Latin-1), so that a key sent in
 * the header and the same key in a JSON body (a synced sale's) are one key.
 * 1 to 255 characters of that text (Unicode code points, as a body's
 * maxLength and the database count them), not of its bytes, in one header
 * line.
 */
export function idempotencyKeyOf(request: FastifyRequest): string | undefined {
  const header = request.headers['idempotency-key'];
  if (header === undefined) return undefined;
  // Node joins repeated header lines into one value (`k, k`): a key no
  // client meant, which the same key sent once — or as a synced sale's
  // `idempotency_key` — never equals. Which of several keys is meant cannot
  // be known, so several are refused.
  // (Only a joined value holds ', ': the raw lines are counted only then, off the common path.)
  if (typeof header === 'string' && header.includes(', ') && headerLineValues(request.raw.rawHeaders, 'idempotency-key').length > 1) {
    throw new AppError('validation_failed', 'send one Idempotency-Key header, not several', {
      errors: [{ path: '/headers/idempotency-key', message: 'must be sent once' }],
    });
  }
  const key = typeof header === 'string' ? headerText(header) : undefined;
  const characters = key === undefined ? 0 : [...key].length;
  if (key === undefined || characters < 1 || characters > 255) {
    throw new AppError('validation_failed', 'Idempotency-Key must be 1 to 255 characters', {
      errors: [{ path: '/headers/idempotency-key', message: 'must be 1 to 255 characters' }],
    });
  }
  const reserved = reservedKeyError(key, '/headers/idempotency-key');
  if (reserved) throw reserved;
  return key;
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
  const idempotencyKey = idempotencyKeyOf(request);
  return {
    tenantId: resolvedTenant,
    principal,
    correlationId: request.id,
    idempotencyKey,
    formerIdempotencyKeys: idempotencyKey === undefined ? undefined : formerKeyForms(idempotencyKey),
    fingerprint: fingerprintRequest(request.method, canonicalPath(request), fingerprinted),
    equivalentFingerprints: equivalentFingerprints(request.method, canonicalPath(request), fingerprinted),
    payload: request.body,
  };
}

/**
 * A response schema as a replay is written through it: the same schema with
 * every `required` list lifted, at every depth. A stored answer — an
 * idempotency record, or an action's answer read back from its audit event
 * (AlreadyDone) — was written by the code of its day, which may not have had
 * a field added to the answer since; through the schema itself, that missing
 * field made the serializer throw: a 500 on every retry of a key kept for
 * good. Lifted, the field is simply absent, as it was in the first answer.
 * What the schema does not declare is still left out: a stored answer may
 * hold internal fields the first answer never showed (an order's
 * `provider_key`). Kept per schema object, so Fastify compiles each once.
 */
const replaySchemas = new WeakMap<object, object>();

export function withoutRequired(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(withoutRequired);
  if (schema === null || typeof schema !== 'object') return schema;
  // `required` as a keyword is a list of names; a property that happens to be called "required" is a schema (an object) and stays.
  return Object.fromEntries(
    Object.entries(schema)
      .filter(([name, member]) => !(name === 'required' && Array.isArray(member)))
      .map(([name, member]) => [name, withoutRequired(member)]),
  );
}

function replaySchemaOf(schema: object): object {
  let relaxed = replaySchemas.get(schema);
  if (relaxed === undefined) {
    relaxed = withoutRequired(schema) as object;
    replaySchemas.set(schema, relaxed);
  }
  return relaxed;
}

/**
 * A stored answer (`replayed`) as JSON, written through its schema's replay
 * form (replaySchemaOf): it never fails for a field the answer gained since,
 * and shows nothing the schema does not. A first answer as JSON, through the
 * schema itself, which checks it as before.
 */
export function serializeAnswer(reply: FastifyReply, schema: object, body: unknown, replayed: boolean): string {
  return reply.compileSerializationSchema((replayed ? replaySchemaOf(schema) : schema) as Record<string, unknown>)(body as Record<string, unknown>);
}

/** The route's response schema of a status (routes declare their successes by status code). */
function responseSchemaOf(reply: FastifyReply, status: number): object | undefined {
  const responses = (reply.request.routeOptions.schema as { response?: Record<string, unknown> } | undefined)?.response;
  const schema = responses?.[String(status)];
  return typeof schema === 'object' && schema !== null ? schema : undefined;
}

/**
 * Sends a command's outcome. A first answer goes through the route's
 * response schema as every answer does; a replay through its replay form
 * (serializeAnswer), sent as the JSON it gives. Both carry the outcome's
 * `etag` when the command gave one.
 */
export function sendOutcome(reply: FastifyReply, outcome: CommandOutcome): FastifyReply {
  reply.status(outcome.status);
  // An ETag the command gave outside its body (CommandResult.etag): the first answer's, and the same one stored for its replays.
  if (outcome.etag !== undefined) reply.header('etag', outcome.etag);
  if (!outcome.replayed) return reply.send(outcome.body);
  reply.header('idempotent-replayed', 'true');
  const schema = responseSchemaOf(reply, outcome.status);
  if (schema === undefined) return reply.send(outcome.body);
  return reply.type('application/json; charset=utf-8').send(serializeAnswer(reply, schema, outcome.body, true));
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
