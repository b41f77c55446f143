import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import { actorLabel, recordInScope, type Principal, type TenantPrincipal } from './auth.js';
import { all, maybeOne, one, type Db, type Tx } from './db.js';
import { AppError, assert } from './errors.js';
import { newId } from './ids.js';
import { commandRetries } from './metrics.js';
import { isRetryableTransactionError } from './pgErrors.js';

/**
 * The one way to change the database. A command runs in ONE transaction that
 * also holds its idempotency check and record, its operation row and its audit
 * events, so either all of it commits or none of it does:
 *
 *   BEGIN
 *     SET LOCAL app.tenant_id                 -- row-level security
 *     pg_try_advisory_xact_lock(key)          -- busy: 409 idempotency_key_in_flight
 *     SELECT idempotency record               -- found: replay, or 422 if the body differs
 *     INSERT operation
 *     …the business effect…                   -- the caller's function
 *     INSERT events (command + subjects)
 *     INSERT idempotency record (2xx only)
 *   COMMIT
 *
 * The whole transaction is run again on serialization failure or deadlock.
 *
 * Only successful (2xx) results are stored for replay. A refused request
 * (insufficient stock, validation…) wrote nothing, so retrying it with the
 * same key is safe and is evaluated afresh — a till that retries after a
 * restock gets its sale.
 */

export interface CommandInput {
  tenantId: string;
  principal: Principal;
  correlationId: string;
  /** Idempotency-Key header, if the client sent one. */
  idempotencyKey?: string | undefined;
  /**
   * The same key as an earlier release stored it, where that differs (a
   * header in UTF-8, once kept as its bytes read as Latin-1): a live record
   * under one of these, with none under `idempotencyKey`, is this key's
   * record — replayed, or 422 for another request. Their locks are taken
   * with the key's. New records go under `idempotencyKey` only. It belongs
   * to `idempotencyKey`: an input given another key gets its own (or none).
   */
  formerIdempotencyKeys?: readonly string[] | undefined;
  /** Hash of method, path and body; see fingerprintRequest. */
  fingerprint: string;
  /**
   * Fingerprints of other spellings of the same request (a body that says
   * nothing: none, `null` or `{}`), which a stored record may carry: a replay,
   * not a reused key. The request's own fingerprint is what is stored.
   */
  equivalentFingerprints?: readonly string[];
  /** The request body, kept in the command's audit event. */
  payload?: unknown;
}

export interface CommandSpec {
  /** Past-tense-free command name, e.g. `sale.create`. */
  type: string;
  /** Store the operation belongs to, when known up front (also settable by `cmd.storeId`). */
  storeId?: string | undefined;
  /**
   * Hours the idempotency record is kept (default: config, at least 24
   * hours), or `forever`: as long as what the command recorded. A command
   * that records a new fact with nothing else in the request to recognise it
   * by (a sale, a payment, a receipt of goods or pieces, a stock correction,
   * an order, a transfer request, a piece reservation, a cut or combine…) is kept for ever: an offline till or a
   * client that lost the answer may send it again days later, and only its
   * key tells that it already happened. Commands whose record is found by
   * what the request names (void a sale, approve or receive a transfer,
   * complete a visit…) answer a late repeat from that record instead.
   */
  ttlHours?: number | 'forever';
  /** Applied to the response before it is stored for replay (e.g. to drop a secret shown once). */
  redactForReplay?: (body: unknown) => unknown;
  /**
   * The operation's store is the store of the record it answers (a piece, a
   * review item, a visit…), and the route cannot check the caller's scope
   * before the command: a replay then goes only to the token that made the
   * request or to a caller with that store in scope (404 otherwise). Keys are
   * per tenant, so without this a key alone would open another store's record.
   */
  replayInStoreScopeOnly?: boolean;
  /**
   * Who, besides the token that made the request, may have its stored answer
   * (replacing replayInStoreScopeOnly's store rule): for a record whose reach
   * is not one store — a token, which may name many stores or none — the
   * route says, from the stored answer, whether the caller could make the
   * same request without the key. Others get 404, as for a store's record.
   */
  replayVisibleTo?: (principal: TenantPrincipal, storedBody: unknown) => boolean;
}

export interface CommandResult {
  status: number;
  body: unknown;
  /**
   * The answer's ETag when the record's version is not in its body (the
   * tenant settings): stored with the answer, so a replay carries it too.
   * A body with a `version` needs none (sendVersioned reads it from there).
   */
  etag?: string | undefined;
}

export interface CommandOutcome extends CommandResult {
  replayed: boolean;
  opId: string | null;
}

export interface AuditEvent {
  /** Defaults to the command type. */
  type?: string;
  subjectType: string;
  subjectId: string;
  before?: unknown;
  after?: unknown;
  payload?: unknown;
  storeId?: string;
}

export interface Effect {
  table: string;
  id: string;
  action: 'created' | 'updated' | 'consumed' | 'reversed' | 'deleted';
}

/**
 * Rows a command is about to lock that a tenant's sale lane may know held by
 * another transaction (src/sales/groupCommit.ts), keyed as the lane keys
 * them, lowercase: stock balances `store/sku`, receipt counters by store id,
 * journal accounts by their key.
 */
export interface RowsToLock {
  balances?: readonly string[];
  counters?: readonly string[];
  accounts?: readonly string[];
}

/** What the caller's function gets: the transaction and the operation it belongs to. */
export class Command {
  readonly events: AuditEvent[] = [];
  readonly effects: Effect[] = [];
  storeId: string | undefined;
  /**
   * Set by group commit for a command run in a tenant's sale lane (a void, a
   * partial return, a sale naming pieces): see beforeLocking. Unset elsewhere.
   */
  heldRowCheck: ((rows: RowsToLock) => Promise<void>) | undefined;

  constructor(
    readonly tx: Tx,
    readonly opId: string,
    readonly input: CommandInput,
    readonly type: string,
  ) {}

  get tenantId(): string {
    return this.input.tenantId;
  }

  get principal(): Principal {
    return this.input.principal;
  }

  get actor(): string {
    return actorLabel(this.input.principal);
  }

  /** Records a before/after audit event for one subject (a sale, a piece …). */
  audit(event: AuditEvent): void {
    this.events.push(event);
  }

  /**
   * Called before the command locks `rows`: in a tenant's sale lane, a row
   * of them the lane found held by another transaction and still held (found
   * so without waiting) refuses the command at once (503, lock_not_available:
   * the caller rolls back, nothing written) instead of its waiting the lane's
   * lock wait again; the rows named are also what a lock wait of the command
   * that times out is remembered as (group commit). Elsewhere: nothing.
   */
  async beforeLocking(rows: RowsToLock): Promise<void> {
    await this.heldRowCheck?.(rows);
  }

  /** Records a row this operation created or changed (listed by GET /v1/operations/{id}). */
  touch(table: string, id: string, action: Effect['action'] = 'created'): void {
    this.effects.push({ table, id, action });
  }
}

export type CommandFn = (cmd: Command) => Promise<CommandResult>;

export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, item]) => item !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonicalJson(item)}`).join(',')}}`;
}

/**
 * Idempotency keys storekeep makes for itself share each tenant's key space
 * with its clients' keys: they are `<kind>:<id>` with one of these kinds (a
 * provider event, a failed job, a sync batch's own key), and
 * a client may not send a key that starts like one (400) — otherwise a client
 * could take a provider event's or a job's key first and have it refused.
 */
const INTERNAL_KEY_KINDS = ['fulfilment-webhook', 'job-failed', 'sync-batch'] as const;

export function internalIdempotencyKey(kind: (typeof INTERNAL_KEY_KINDS)[number], id: string): string {
  const key = `${kind}:${id}`;
  // Keys are at most 255 characters; a longer id is named by its hash.
  return key.length <= 255 ? key : `${kind}:sha256:${createHash('sha256').update(id).digest('base64url')}`;
}

/** A client's key that would fall in storekeep's own key space: refused (see INTERNAL_KEY_KINDS). */
export function reservedKeyError(key: string, path: string): AppError | null {
  const kind = INTERNAL_KEY_KINDS.find((candidate) => key.startsWith(`${candidate}:`));
  if (kind === undefined) return null;
  return new AppError('validation_failed', `idempotency keys starting with "${kind}:" are reserved for storekeep's own use`, {
    errors: [{ path, message: `must not start with "${kind}:"` }],
  });
}

/** Same method, path and (semantically) same JSON body → same fingerprint. */
export function fingerprintRequest(method: string, path: string, body: unknown): string {
  return createHash('sha256')
    .update(`${method.toUpperCase()} ${path}\n${canonicalJson(body ?? null)}`)
    .digest('base64url');
}

/** A body that says nothing: none, `null`, or an object without fields. */
const saysNothing = (body: unknown) =>
  body === undefined || body === null || (typeof body === 'object' && !Array.isArray(body) && Object.values(body as object).every((value) => value === undefined));

/**
 * The fingerprints of the other spellings of a request whose body says
 * nothing: none and `null` (one fingerprint) and `{}`. Every route that takes
 * them reads them alike (transfer approve/receive/cancel, settlement
 * decisions, revoke, revert, release…), so a retry that spells the empty body
 * otherwise than the first try is the same request. Kept beside the request's
 * own fingerprint (rather than one fingerprint for all) so that records
 * stored under either spelling still replay.
 */
export function equivalentFingerprints(method: string, path: string, body: unknown): string[] {
  if (!saysNothing(body)) return [];
  const own = fingerprintRequest(method, path, body);
  return [fingerprintRequest(method, path, null), fingerprintRequest(method, path, {})].filter((fingerprint) => fingerprint !== own);
}

const DEFAULT_TTL_HOURS = 24;
let defaultTtlHours = DEFAULT_TTL_HOURS;
export function setIdempotencyTtlHours(hours: number): void {
  assert(hours >= 24, 'idempotency keys are kept at least 24 hours');
  defaultTtlHours = hours;
}

export async function setTenant(tx: Tx, tenantId: string): Promise<void> {
  await sql`SELECT set_config('app.tenant_id', ${tenantId}, true)`.execute(tx);
}

/** Everything a command leaves besides its business effect: operation row, audit events, idempotency record. */
export interface CommandRecord {
  input: CommandInput;
  spec: CommandSpec;
  opId: string;
  storeId: string | null;
  events: readonly AuditEvent[];
  effects: readonly Effect[];
  result: CommandResult;
}

const operationRow = (input: CommandInput, spec: CommandSpec, opId: string, storeId: string | null) => ({
  id: opId,
  type: spec.type,
  actor_token_id: input.principal.kind === 'token' ? input.principal.tokenId : null,
  actor: actorLabel(input.principal),
  correlation_id: input.correlationId,
  idempotency_key: input.idempotencyKey ?? null,
  request_fingerprint: input.fingerprint,
  store_id: storeId,
});

/** INSERT … SELECT of operation rows (no WHERE yet: a caller may add one). */
const insertOperationsSql = (tenantId: string, rows: Array<ReturnType<typeof operationRow>>) => sql`
  INSERT INTO operations (tenant_id, id, type, actor_token_id, actor, correlation_id, idempotency_key, request_fingerprint, store_id)
  SELECT ${tenantId}::uuid, o.id, o.type, o.actor_token_id, o.actor, o.correlation_id, o.idempotency_key, o.request_fingerprint, o.store_id
  FROM jsonb_to_recordset(${JSON.stringify(rows)}::jsonb)
    AS o(id uuid, type text, actor_token_id uuid, actor text, correlation_id text, idempotency_key text, request_fingerprint text, store_id uuid)`;

/**
 * The operation rows of many commands in one statement (group commit writes
 * a whole batch of sales this way; executeCommand writes its one row with the
 * same SQL).
 */
export async function insertOperations(tx: Tx, tenantId: string, commands: ReadonlyArray<Pick<CommandRecord, 'input' | 'spec' | 'opId' | 'storeId'>>): Promise<void> {
  if (commands.length === 0) return;
  await insertOperationsSql(tenantId, commands.map((c) => operationRow(c.input, c.spec, c.opId, c.storeId))).execute(tx);
}

/** The audit rows of a command: one for the command itself (payload, effects), one per subject it changed. */
function eventRows(record: CommandRecord) {
  const { input, spec, opId, storeId } = record;
  const common = { op_id: opId, actor: actorLabel(input.principal), correlation_id: input.correlationId };
  return [
    { ...common, type: spec.type, subject_type: null, subject_id: null, store_id: storeId, payload: input.payload ?? null, before: null, after: null, effects: record.effects },
    ...record.events.map((event) => ({
      ...common,
      type: event.type ?? spec.type,
      subject_type: event.subjectType,
      subject_id: event.subjectId,
      store_id: event.storeId ?? storeId,
      payload: event.payload ?? null,
      before: event.before ?? null,
      after: event.after ?? null,
      effects: null,
    })),
  ];
}

/** One idempotency record: the response a keyed command's retries replay. */
interface KeyRecord {
  key: string;
  fingerprint: string;
  op_id: string;
  status: number;
  body: unknown;
  etag: string | null;
  /** null: kept for ever */
  ttl_hours: number | null;
  /** Who sent the request, when not the operation's actor (an "already done" answer names an earlier operation). */
  actor_token_id?: string | null;
}

function keyRecord(input: CommandInput, spec: CommandSpec, opId: string, result: CommandResult): KeyRecord {
  return {
    key: input.idempotencyKey!,
    fingerprint: input.fingerprint,
    op_id: opId,
    status: result.status,
    body: (spec.redactForReplay ? spec.redactForReplay(result.body) : result.body) ?? null,
    etag: result.etag ?? null,
    ttl_hours: spec.ttlHours === 'forever' ? null : (spec.ttlHours ?? defaultTtlHours),
  };
}

/**
 * The one INSERT of idempotency records (recordCommands, recordAlreadyDone).
 * A live record under a key is never overwritten (the caller holds the key's
 * advisory lock, so there is none); an expired one is replaced. RETURNING 1
 * per record saved.
 */
function insertKeyRecords(tenantId: string, keyed: readonly KeyRecord[]) {
  return sql`
    INSERT INTO idempotency_keys (tenant_id, key, fingerprint, op_id, response_status, response_body, response_etag, expires_at, actor_token_id, key_as_text)
    SELECT ${tenantId}::uuid, k.key, k.fingerprint, k.op_id, k.status, coalesce(k.body, 'null'::jsonb), k.etag,
      coalesce(now() + make_interval(hours => k.ttl_hours), 'infinity'), k.actor_token_id, true
    FROM jsonb_to_recordset(${JSON.stringify(keyed)}::jsonb)
      AS k(key text, fingerprint text, op_id uuid, status integer, body jsonb, etag text, ttl_hours integer, actor_token_id uuid)
    ON CONFLICT (tenant_id, key) DO UPDATE
      SET fingerprint = EXCLUDED.fingerprint, op_id = EXCLUDED.op_id, response_status = EXCLUDED.response_status,
          response_body = EXCLUDED.response_body, response_etag = EXCLUDED.response_etag, created_at = now(), expires_at = EXCLUDED.expires_at,
          actor_token_id = EXCLUDED.actor_token_id, key_as_text = EXCLUDED.key_as_text
      WHERE idempotency_keys.expires_at <= now()
    RETURNING 1`;
}

/**
 * Audit events and idempotency records (2xx results of keyed commands) of
 * many commands, in ONE statement. The operation rows must exist already.
 * Events keep the commands' order (ids ascend in that order).
 */
export async function recordCommands(tx: Tx, tenantId: string, records: readonly CommandRecord[]): Promise<void> {
  if (records.length === 0) return;
  const events = records.flatMap(eventRows);
  const keyed = records.filter((record) => record.input.idempotencyKey !== undefined).map((record) => keyRecord(record.input, record.spec, record.opId, record.result));
  const saved = await one(
    tx,
    sql<{ saved: number }>`
      WITH audit AS (
        INSERT INTO events (tenant_id, op_id, type, actor, correlation_id, store_id, subject_type, subject_id, payload, before, after, effects)
        SELECT ${tenantId}::uuid, e.op_id, e.type, e.actor, e.correlation_id, e.store_id, e.subject_type, e.subject_id,
               e.payload, e.before, e.after, e.effects
        FROM ROWS FROM (jsonb_to_recordset(${JSON.stringify(events)}::jsonb)
               AS (op_id uuid, type text, actor text, correlation_id text, store_id uuid, subject_type text, subject_id text,
                   payload jsonb, before jsonb, after jsonb, effects jsonb))
             WITH ORDINALITY AS e(op_id, type, actor, correlation_id, store_id, subject_type, subject_id, payload, before, after, effects, position)
        ORDER BY e.position
      ), saved AS (${insertKeyRecords(tenantId, keyed)})
      SELECT count(*)::int AS saved FROM saved`,
  );
  assert(saved.saved === keyed.length, 'idempotency record not saved: a live record appeared under the advisory lock');
}

/**
 * Takes the transaction-scoped advisory lock of each Idempotency-Key without
 * waiting; false where another transaction holds it (→ 409
 * idempotency_key_in_flight). Stored records must be read AFTER this, in a
 * later statement, so its snapshot sees what the previous holder committed.
 */
export async function claimIdempotencyKeys(tx: Tx, tenantId: string, keys: readonly string[]): Promise<boolean[]> {
  if (keys.length === 0) return [];
  const rows = await all(
    tx,
    sql<{ locked: boolean }>`
      SELECT pg_try_advisory_xact_lock(hashtextextended(${tenantId} || '/' || k.key, 0)) AS locked
      FROM unnest(${keys}::text[]) WITH ORDINALITY AS k(key, n) ORDER BY k.n`,
  );
  return rows.map((row) => row.locked);
}

export interface StoredResponse {
  fingerprint: string;
  op_id: string;
  response_status: number;
  response_body: unknown;
  /** The answer's ETag when it was a header only (CommandResult.etag); null: none. */
  response_etag: string | null;
  /** Who made the original request, and the store its operation belongs to (to decide who may see its replay). */
  actor_token_id: string | null;
  store_id: string | null;
}

/** The stored response of a key with its operation's actor and store (RLS keeps both to the tenant). */
const STORED_COLUMNS = sql`k.fingerprint, k.op_id, k.response_status, k.response_body, k.response_etag, coalesce(k.actor_token_id, o.actor_token_id) AS actor_token_id, o.store_id`;
const STORED_FROM = sql`idempotency_keys k JOIN operations o ON o.tenant_id = k.tenant_id AND o.id = k.op_id`;

/**
 * Live stored responses of the given keys (read after claimIdempotencyKeys
 * took their locks). Those of `formerForms` (keys' former forms, see
 * CommandInput.formerIdempotencyKeys) only where kept before keys were read
 * as text: a record written since under such a text is a key of its own.
 */
export async function storedResponses(tx: Tx, tenantId: string, keys: readonly string[], formerForms: readonly string[] = []): Promise<Map<string, StoredResponse>> {
  if (keys.length === 0) return new Map();
  const formerKeptBefore = formerForms.length === 0 ? sql`` : sql` AND (NOT k.key_as_text OR k.key <> ALL(${formerForms}::text[]))`;
  const rows = await all(
    tx,
    sql<StoredResponse & { key: string }>`
      SELECT k.key, ${STORED_COLUMNS} FROM ${STORED_FROM}
      WHERE k.tenant_id = ${tenantId} AND k.key = ANY(${keys}::text[]) AND k.expires_at > now()${formerKeptBefore}`,
  );
  return new Map(rows.map(({ key, ...stored }) => [key, stored]));
}

/** Every form a command's key may be stored under, the key's own first (none without a key). */
export function idempotencyKeyForms(input: Pick<CommandInput, 'idempotencyKey' | 'formerIdempotencyKeys'>): string[] {
  if (input.idempotencyKey === undefined) return [];
  return [input.idempotencyKey, ...(input.formerIdempotencyKeys ?? []).filter((former) => former !== input.idempotencyKey)];
}

/** The stored response of a command's key: under the key itself, else under a former form of it (idempotencyKeyForms). */
export function storedResponseOf(stored: ReadonlyMap<string, StoredResponse>, forms: readonly string[]): StoredResponse | undefined {
  for (const form of forms) {
    const response = stored.get(form);
    if (response !== undefined) return response;
  }
  return undefined;
}

export const idempotencyKeyInFlight = () =>
  new AppError('idempotency_key_in_flight', 'a request with this Idempotency-Key is still being processed; retry shortly');

/**
 * A stored response for this request: its replay, or 422 when the key was
 * used for a different request. With `replayVisibleTo` (see CommandSpec),
 * a caller other than the original token must pass it; with
 * `replayInStoreScopeOnly`, it must have the operation's store in scope
 * (404 otherwise).
 */
export function replayOf(input: CommandInput, stored: StoredResponse, spec?: Pick<CommandSpec, 'replayInStoreScopeOnly' | 'replayVisibleTo'>): CommandOutcome {
  if (stored.fingerprint !== input.fingerprint && !(input.equivalentFingerprints ?? []).includes(stored.fingerprint)) {
    throw new AppError('idempotency_key_reused', 'this Idempotency-Key was already used with a different request');
  }
  const principal = input.principal;
  const hidden =
    principal.kind === 'token' &&
    principal.tokenId !== stored.actor_token_id &&
    (spec?.replayVisibleTo !== undefined
      ? !spec.replayVisibleTo(principal, stored.response_body)
      : spec?.replayInStoreScopeOnly === true && !recordInScope(principal, stored.store_id));
  if (hidden) throw new AppError('not_found', 'no record for this Idempotency-Key in this token\'s stores');
  return {
    status: stored.response_status,
    body: stored.response_body,
    ...(stored.response_etag === null ? {} : { etag: stored.response_etag }),
    replayed: true,
    opId: stored.op_id,
  };
}

/**
 * Runs one command inside a transaction the caller owns (used directly by
 * group commit, where many commands share a transaction, each under its own
 * savepoint). The tenant must already be set on the transaction.
 */
export async function executeCommand(tx: Tx, input: CommandInput, spec: CommandSpec, fn: CommandFn): Promise<CommandOutcome> {
  const key = input.idempotencyKey;
  const opId = newId();
  const insertOperation = insertOperationsSql(input.tenantId, [operationRow(input, spec, opId, spec.storeId ?? null)]);
  if (key !== undefined) {
    // The key and its former forms (idempotencyKeyForms), locked together.
    const forms = idempotencyKeyForms(input);
    const locked = await claimIdempotencyKeys(tx, input.tenantId, forms);
    if (!locked.every(Boolean)) throw idempotencyKeyInFlight();
    // Under the lock, one statement reads the stored record — the key's own
    // before a former form's, kept before keys were read as text (see
    // storedResponses) — and, only when there is none, inserts the operation
    // row (one round trip instead of two). A key without former forms (ASCII)
    // is looked up by itself alone.
    const matching =
      forms.length === 1
        ? sql`k.key = ${key} AND k.expires_at > now()`
        : sql`k.key = ANY(${forms}::text[]) AND (k.key = ${key} OR NOT k.key_as_text) AND k.expires_at > now()
              ORDER BY array_position(${forms}::text[], k.key) LIMIT 1`;
    const stored = await maybeOne(
      tx,
      sql<StoredResponse>`
        WITH stored AS (
          SELECT ${STORED_COLUMNS} FROM ${STORED_FROM}
          WHERE k.tenant_id = ${input.tenantId} AND ${matching}
        ), operation AS (
          ${insertOperation}
          WHERE NOT EXISTS (SELECT 1 FROM stored)
        )
        SELECT * FROM stored`,
    );
    if (stored) return replayOf(input, stored, spec);
  } else {
    await insertOperation.execute(tx);
  }

  const cmd = new Command(tx, opId, input, spec.type);
  cmd.storeId = spec.storeId;
  const result = await fn(cmd);
  if (result.status >= 300) {
    // A refusal expressed as a result rather than thrown: the caller must roll back.
    throw new CommandRefused(result);
  }

  const storeId = cmd.storeId ?? null;
  if (storeId !== (spec.storeId ?? null)) {
    await sql`UPDATE operations SET store_id = ${storeId} WHERE tenant_id = ${input.tenantId} AND id = ${opId}`.execute(tx);
  }
  await recordCommands(tx, input.tenantId, [{ input, spec, opId, storeId, events: cmd.events, effects: cmd.effects, result }]);
  return { ...result, replayed: false, opId };
}

/** Thrown to roll back a command whose function returned a non-2xx result (the caller answers with that result). */
export class CommandRefused extends Error {
  constructor(readonly result: CommandResult) {
    super(`command refused with status ${result.status}`);
  }
}

/**
 * Thrown inside a command whose effect already happened through an earlier
 * operation (`doneBy`): voiding a voided sale, reverting a reverted
 * operation, completing a completed visit, revoking a revoked token. It must
 * be thrown before the command changed anything. The command is rolled back
 * (nothing new is written) and answered with `body` as a replay
 * (`Idempotent-Replayed: true`); its Idempotency-Key, if any, is kept with
 * that answer and the earlier operation (recordAlreadyDone), so the key is
 * refused for a different request like any used key.
 */
export class AlreadyDone extends Error {
  constructor(
    readonly body: unknown,
    /** The operation that did it (null: not known, e.g. for data older than its record; the key is then not kept). */
    readonly doneBy: string | null,
    readonly status = 200,
  ) {
    super('already done: answering with the earlier result');
  }
}

/**
 * The operation that took an action on a record — the one its `opColumn`
 * names (a transfer's `approved_op`, a settlement's `decided_op`) — with that
 * operation's audit event on the record: its `after` is the action's answer,
 * and `takenOn` the version the record was at when it was taken (its
 * `before.version`, when it has one). Undefined when the column is empty. For
 * an action repeated on a record it already moved (AlreadyDone).
 */
export async function actionTakenOn(
  tx: Tx,
  tenantId: string,
  record: { table: string; opColumn: string; subjectType: string; id: string },
): Promise<{ opId: string; takenOn: number | undefined; after: unknown } | undefined> {
  const done = await maybeOne(
    tx,
    sql<{ op_id: string | null; before: { version?: unknown } | null; after: unknown }>`
      SELECT r.${sql.ref(record.opColumn)} AS op_id, e.before, e.after
      FROM ${sql.table(record.table)} r
      LEFT JOIN events e ON e.tenant_id = r.tenant_id AND e.op_id = r.${sql.ref(record.opColumn)} AND e.subject_type = ${record.subjectType} AND e.subject_id = r.id::text
      WHERE r.tenant_id = ${tenantId} AND r.id = ${record.id}`,
  );
  if (!done || done.op_id === null) return undefined;
  return { opId: done.op_id, takenOn: typeof done.before?.version === 'number' ? done.before.version : undefined, after: done.after };
}

/** The outcome of a command that was already done. */
export const alreadyDoneOutcome = (done: AlreadyDone): CommandOutcome => ({ status: done.status, body: done.body, replayed: true, opId: done.doneBy });

/**
 * Keeps an already-done command's Idempotency-Key with its answer, naming
 * the earlier operation, and who sent this request (the operation's actor
 * may be another token), and gives the request's answer. Run in the
 * transaction after the command was rolled back, so the key was free for a
 * moment: the answer is the one a retry with the key would get. If another
 * request holds the key now, 409 idempotency_key_in_flight; if one stored it
 * meanwhile, that record answers (its replay, or 422 for a different
 * request) — never a 200 whose key holds another request's answer.
 */
export async function recordAlreadyDone(tx: Tx, input: CommandInput, spec: CommandSpec, done: AlreadyDone): Promise<CommandOutcome> {
  const key = input.idempotencyKey;
  if (key === undefined) return alreadyDoneOutcome(done);
  const forms = idempotencyKeyForms(input);
  const locked = await claimIdempotencyKeys(tx, input.tenantId, forms);
  if (!locked.every(Boolean)) throw idempotencyKeyInFlight();
  const stored = storedResponseOf(await storedResponses(tx, input.tenantId, forms, forms.slice(1)), forms);
  if (stored !== undefined) return replayOf(input, stored, spec);
  if (done.doneBy !== null) {
    const record = keyRecord(input, spec, done.doneBy, { status: done.status, body: done.body });
    const saved = await all(tx, insertKeyRecords(input.tenantId, [{ ...record, actor_token_id: input.principal.kind === 'token' ? input.principal.tokenId : null }]));
    assert(saved.length === 1, 'idempotency record not saved: a live record appeared under the advisory lock');
  }
  return alreadyDoneOutcome(done);
}

export interface RetryOptions {
  maxAttempts?: number;
  /**
   * `repeatable read`: every statement of `fn` reads one snapshot — a read
   * made of several statements that must agree (a sale and its return
   * lines). Default: PostgreSQL's read committed.
   */
  isolation?: 'repeatable read';
}

/**
 * Runs `fn` in a transaction with the tenant set, retrying the whole
 * transaction (bounded, with jittered exponential backoff) on serialization
 * failure or deadlock.
 */
export async function inTenantTransaction<T>(db: Db, tenantId: string, fn: (tx: Tx) => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const maxAttempts = options.maxAttempts ?? 5;
  for (let attempt = 1; ; attempt++) {
    try {
      const transaction = options.isolation === undefined ? db.transaction() : db.transaction().setIsolationLevel(options.isolation);
      return await transaction.execute(async (tx) => {
        await setTenant(tx, tenantId);
        return fn(tx);
      });
    } catch (error) {
      if (attempt >= maxAttempts || !isRetryableTransactionError(error)) throw error;
      commandRetries.inc();
      const ceilingMs = Math.min(200, 5 * 2 ** attempt);
      await new Promise((resolve) => setTimeout(resolve, Math.random() * ceilingMs));
    }
  }
}

/**
 * A request whose work is several commands, each its own transaction (a
 * snapshot run over a long gap, day by day), under the request's one
 * Idempotency-Key: the key is held for the whole request — a session-level
 * advisory lock on one connection, the same lock a command takes for it
 * (claimIdempotencyKeys), so another request with the key gets 409
 * idempotency_key_in_flight until this one ends — and its stored answer is
 * looked up before any work: a replay (or 422 for another request) does
 * nothing. `work` runs on that connection (`db`); its one keyed command,
 * run there, takes the lock again (the session's own) and stores the
 * answer. Without a key, `work` runs on `db` as it is.
 */
export async function holdingIdempotencyKey(
  db: Db,
  input: CommandInput,
  spec: CommandSpec,
  work: (db: Db) => Promise<CommandOutcome>,
): Promise<CommandOutcome> {
  const forms = idempotencyKeyForms(input);
  if (forms.length === 0) return work(db);
  return db.connection().execute(async (connection) => {
    const locks = await all(
      connection,
      sql<{ key: string; locked: boolean }>`
        SELECT k.key, pg_try_advisory_lock(hashtextextended(${input.tenantId} || '/' || k.key, 0)) AS locked
        FROM unnest(${forms}::text[]) WITH ORDINALITY AS k(key, n) ORDER BY k.n`,
    );
    const held = locks.filter((lock) => lock.locked).map((lock) => lock.key);
    let failed = false;
    try {
      if (held.length < forms.length) throw idempotencyKeyInFlight();
      const stored = await inTenantTransaction(connection, input.tenantId, async (tx) =>
        storedResponseOf(await storedResponses(tx, input.tenantId, forms, forms.slice(1)), forms),
      );
      if (stored !== undefined) return replayOf(input, stored, spec);
      return await work(connection);
    } catch (error) {
      failed = true;
      throw error;
    } finally {
      // Session locks outlive transactions: released here, before the connection goes back to the pool (a
      // connection that is gone took them with it: its error is the one to answer with, not the unlock's).
      if (held.length > 0) {
        try {
          await sql`SELECT pg_advisory_unlock(hashtextextended(${input.tenantId} || '/' || k.key, 0)) FROM unnest(${held}::text[]) AS k(key)`.execute(connection);
        } catch (unlockError) {
          if (!failed) throw unlockError;
        }
      }
    }
  });
}

/** One command, one transaction (an already-done command: rolled back, its key kept in a second one). */
export async function runCommand(db: Db, input: CommandInput, spec: CommandSpec, fn: CommandFn): Promise<CommandOutcome> {
  try {
    return await inTenantTransaction(db, input.tenantId, (tx) => executeCommand(tx, input, spec, fn));
  } catch (error) {
    if (error instanceof CommandRefused) return { ...error.result, replayed: false, opId: null };
    if (error instanceof AlreadyDone) {
      return await inTenantTransaction(db, input.tenantId, (tx) => recordAlreadyDone(tx, input, spec, error));
    }
    throw error;
  }
}
