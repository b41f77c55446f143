import { createHash } from 'node:crypto';
import { Type, type Static, type TSchema } from 'typebox';
import { AppError, ERROR_STATUS } from '../core/errors.js';
import { UNSTORABLE_CHARACTER } from '../core/text.js';

/** Schemas shared by every module's routes (they also feed the OpenAPI document). */

/** Request schemas with this keyword set get the string lowercased as it is validated (src/http/app.ts). */
export const LOWERCASE = 'x-lowercase';

/** Request schemas with this keyword set get the string in Unicode NFC as it is validated (src/http/ajv.ts). */
export const NFC = 'x-nfc';

/** What a string that breaks its schema's `pattern` is told (src/http/problem.ts), instead of the regular expression. */
export const PATTERN_MESSAGE = 'x-pattern-message';

/**
 * The code of a store, SKU or party: what people read on a label and type.
 * No whitespace at either end and no control or invisible (format) character
 * anywhere — `"MAIN "`, `"MA\u200bIN"` and `"MAIN"` look alike but were three
 * codes —, and read in Unicode NFC, so a code typed with a combining accent
 * (`E` + `\u0301`) is the same code as with the accented letter (`É`), and is
 * stored and answered so.
 */
export function Code(maxLength: number) {
  return Type.String({
    minLength: 1,
    maxLength,
    pattern: '^[^\\p{Cc}\\p{Cf}\\p{Z}](?:[^\\p{Cc}\\p{Cf}]*[^\\p{Cc}\\p{Cf}\\p{Z}])?$',
    [NFC]: true,
    [PATTERN_MESSAGE]: 'must have no whitespace at its ends and no control or invisible characters',
    description: 'no whitespace at its ends, no control or invisible characters; read in Unicode NFC (two spellings of one text are one code)',
  });
}

/**
 * The name of a record people pick from a list (a tenant, token, store, SKU,
 * party, point of sale): not only whitespace — `"   "` or a no-break space
 * showed as a blank line in every list and on every receipt.
 */
export function Name(maxLength: number) {
  return Type.String({
    minLength: 1,
    maxLength,
    pattern: '\\S',
    [PATTERN_MESSAGE]: 'must contain a character other than whitespace',
    description: 'at least one character other than whitespace',
  });
}

/** A UUID in any letter case; the API reads it lowercased (and always answers in lowercase). */
export const Uuid = Type.String({ format: 'uuid', [LOWERCASE]: true, description: 'UUID (any letter case; read as lowercase)' });

export const IdParams = Type.Object({ id: Uuid });

/** The path of a store's records: `/v1/stores/{store_id}/…`. */
export const StoreParams = Type.Object({ store_id: Uuid });

/** The Idempotency-Key header of every mutating request (documented in OpenAPI). */
export const IdempotencyHeaders = Type.Object({
  'idempotency-key': Type.Optional(
    Type.String({
      minLength: 1,
      description:
        'Same key + same request replays the first response (an empty body sent as none, `null` or `{}` is the same request). 1 to 255 characters, ' +
        'sent in UTF-8 (bytes that are not UTF-8 are read as Latin-1): the same key as a synced sale\'s `idempotency_key`. Counted in characters, ' +
        'not bytes (checked by the command, not by this schema, which sees the bytes). One header line: several Idempotency-Key headers are 400 validation_failed.',
    }),
  ),
});

/**
 * The headers of an action with an optional If-Match (src/http/etag.ts): the
 * Idempotency-Key and the record's ETag, documented in OpenAPI.
 */
export function IfMatchHeaders(what: string) {
  return Type.Object({
    ...IdempotencyHeaders.properties,
    'if-match': Type.Optional(
      Type.String({ description: `optional: the ${what}'s ETag (its version), or a list of them (RFC 9110); stale → 412 version_conflict, nothing changed` }),
    ),
  });
}

/**
 * The body of an action that takes no input: none, `{}` or `null`. Anything
 * else is refused (400), as unknown fields are everywhere else.
 */
export const NoBody = Type.Union([Type.Object({}, { additionalProperties: false }), Type.Null()]);

/**
 * Whether a body schema makes the body optional: one of its branches is
 * `null` (NoBody, and the actions whose input is all optional — a transfer
 * receipt, a settlement decision, an order's manual completion or cancel,
 * stock snapshots).
 * Such an action is taken without a body: an empty one declared as JSON is
 * read as none (strictJsonParser), and the OpenAPI document marks it
 * optional (buildApp).
 */
export function bodyIsOptional(schema: unknown): boolean {
  const branches = (schema as { anyOf?: unknown } | null | undefined)?.anyOf;
  return Array.isArray(branches) && branches.some((branch) => (branch as { type?: unknown } | null)?.type === 'null');
}

/**
 * The query string of a route that takes no parameters: none. buildApp gives
 * it to every route that declares no querystring of its own, so an unknown
 * parameter (a typo like `?as_of=` on a record's GET, a `?dry_run=1` on a
 * command) is a 400 at `/querystring/<name>` on every route, as the lists
 * refuse theirs, never silently ignored: the answer would not be the one asked for.
 */
export const NoQuery = Type.Object({}, { additionalProperties: false });

/** The page size of a list when `?limit=` is not given (API.md). */
export const DEFAULT_LIMIT = 50;

/**
 * `?limit=` and `?cursor=` of every list (API.md), the same everywhere: a
 * page of `limit` items (1–500, default 50 whether or not a cursor is sent),
 * `next_cursor` the cursor of the next page (`null` on the last one). A limit
 * outside 1–500 or not an integer, a cursor this list did not write (another
 * list's included), or a query parameter the list does not take: 400
 * `validation_failed` at `/querystring/<name>`.
 */
export const ListLimit = Type.Optional(
  Type.Integer({ minimum: 1, maximum: 500, default: DEFAULT_LIMIT, description: 'items a page, 1–500 (default 50, with or without a cursor)' }),
);
export const ListCursor = Type.Optional(
  Type.String({
    maxLength: 500,
    description: "the previous page's `next_cursor`, as it was written; only the list that wrote it (same route and path) reads it — any other cursor is 400 at /querystring/cursor",
  }),
);
export const ListQuery = Type.Object({ limit: ListLimit, cursor: ListCursor }, { additionalProperties: false });
export type ListQuery = Static<typeof ListQuery>;

export const Problem = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    code: Type.String({
      description: `stable, one status each (src/core/errors.ts; more may be added): ${Object.entries(ERROR_STATUS)
        .map(([code, status]) => `${code} (${status})`)
        .join(', ')}`,
    }),
    correlation_id: Type.String({ description: 'the X-Correlation-ID of the request' }),
    errors: Type.Optional(Type.Array(Type.Object({ path: Type.String(), message: Type.String() }))),
  },
  { additionalProperties: true, description: 'application/problem+json (RFC 9457)' },
);

/** A list response: `{ items, next_cursor }`. */
export function Page<T extends TSchema>(item: T) {
  return Type.Object({ items: Type.Array(item), next_cursor: Type.Union([Type.String(), Type.Null()]) });
}

/** Integer money in minor units / quantity in base units; never a float. */
export const Money = Type.Integer({ minimum: -9_000_000_000_000, maximum: 9_000_000_000_000, description: 'minor units' });
/**
 * A running total of an account (its balance, debit and credit totals, a
 * party's outstanding): sums of many amounts, bounded by the CHECK
 * accounts_totals_limit at 9 × 10^15 minor units each (migration 0804).
 */
export const MoneyTotal = Type.Integer({ minimum: -9_000_000_000_000_000, maximum: 9_000_000_000_000_000, description: 'minor units (a running total)' });
export const PositiveQuantity = Type.Integer({ minimum: 1, maximum: 1_000_000_000_000, description: 'base units of the SKU' });

/** What a list reads from a request: its route and path parameters (which list), and its `?limit=` and `?cursor=`. */
export interface ListRequest {
  routeOptions: { url?: string | undefined };
  params: unknown;
  query: unknown;
}

/**
 * Which list a request reads, as its cursors carry it: the route with its
 * path parameters as validated (`/v1/stores/<id>/stock`), hashed. A cursor
 * written by one list is refused by every other — another route, or the same
 * route of another store, SKU, account or party — as `400` at
 * `/querystring/cursor`, instead of being read as a position in a list it
 * does not come from (a `{ code }` of the stores read in the SKUs, a `{ id }`
 * of one account's postings in another's: a wrong page, silently).
 * Query filters (`?status=`, `?store_id=`, `as_of`) are not part of it: a
 * cursor is a position in the list's order, and a walk sends the same
 * filters with every page.
 */
export function listOf(request: ListRequest): string {
  const params = (request.params ?? {}) as Record<string, unknown>;
  return listAt((request.routeOptions.url ?? '').replace(/:(\w+)/g, (_, name: string) => String(params[name])));
}

/** The list at a path (`/v1/stores/<id>/stock`, ids in lowercase), as listOf names it. */
export function listAt(path: string): string {
  return createHash('sha256').update(path).digest('base64url').slice(0, 16);
}

/** The `?limit=` of a list request: as given (1–500, checked by its schema), else 50. */
export function limitOf(request: ListRequest): number {
  return (request.query as { limit?: number } | undefined)?.limit ?? DEFAULT_LIMIT;
}

/**
 * One page of a list from the `limit + 1` rows its query returned: the first
 * `limit`, and — only when there was one more — the cursor of the last item
 * (of `list`: see listOf).
 */
export function pageOf<T>(rows: readonly T[], limit: number, cursorOf: (last: T) => unknown, list: string): { items: T[]; next_cursor: string | null } {
  const items = rows.slice(0, limit);
  const last = items[items.length - 1];
  return { items, next_cursor: rows.length > limit && last !== undefined ? encodeCursor(cursorOf(last), list) : null };
}

/** A cursor: the position in its list, and which list (listOf) wrote it. */
export function encodeCursor(position: unknown, list: string): string {
  return Buffer.from(JSON.stringify({ list, at: position }), 'utf8').toString('base64url');
}

const UUID_TEXT = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const INT64_MAX = 9_223_372_036_854_775_807n;

/** A real calendar day YYYY-MM-DD in the years 1–9999 (what PostgreSQL's `date` reads the same way). */
export function isDayText(day: string): boolean {
  const date = new Date(`${day}T00:00:00Z`);
  return /^\d{4}-\d{2}-\d{2}$/.test(day) && day >= '0001' && !Number.isNaN(date.getTime()) && date.toISOString().slice(0, 10) === day;
}

/**
 * An RFC 3339 date-time (already checked as one) that PostgreSQL's
 * `timestamptz` reads as written: a year from 0001 (it refuses year 0) and an
 * offset within ±15:59 (it refuses a larger one). Either refusal came back as
 * a 400 at path `/`, not at the field.
 */
export function isMomentText(text: string): boolean {
  const match = /^(\d{4})-.*?(?:z|([+-])(\d\d)(?::?(\d\d))?)$/i.exec(text);
  if (match === null || match[1] === '0000') return false;
  return match[2] === undefined || Number(match[3]) * 60 + Number(match[4] ?? 0) <= 15 * 60 + 59;
}

/**
 * What one field of a cursor may hold: exactly the values its list's column
 * can take, so a cursor that decodes but names no position is the client's
 * 400 at /querystring/cursor — never a database error, nor (as PostgreSQL
 * reads `'yesterday'` as a time) a position nobody made.
 */
export const cursorField = {
  uuid: (value: unknown): value is string => typeof value === 'string' && UUID_TEXT.test(value),
  /** A bigint id written as text. */
  int64Text: (value: unknown): value is string => typeof value === 'string' && /^\d{1,19}$/.test(value) && BigInt(value) <= INT64_MAX,
  safeInteger: (value: unknown): value is number => Number.isSafeInteger(value),
  /** Text the database can hold (no NUL, no unpaired surrogate): a code that could be stored. */
  text: (value: unknown): value is string => typeof value === 'string' && !UNSTORABLE_CHARACTER.test(value),
  day: (value: unknown): value is string => typeof value === 'string' && isDayText(value),
  /** A moment as utcMicros writes it: `YYYY-MM-DDTHH:MM:SS.ffffffZ`. */
  utcMicros: (value: unknown): value is string => {
    if (typeof value !== 'string') return false;
    const match = /^(\d{4}-\d{2}-\d{2})T([01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{6}Z$/.exec(value);
    return match !== null && isDayText(match[1]!);
  },
};

/** A cursor predicate from the predicates of its fields (every field required, no other field). */
export function isCursorOf<T extends object>(fields: { [K in keyof T]: (value: unknown) => value is T[K] }): (value: unknown) => value is T {
  const names = Object.keys(fields);
  return (value: unknown): value is T =>
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    Object.keys(value).length === names.length &&
    names.every((name) => (fields as Record<string, (field: unknown) => boolean>)[name]!((value as Record<string, unknown>)[name]));
}

/** The cursor of a list in uuid-id order: `{ id }`, the last id of the page. */
export const isUuidIdCursor = isCursorOf<{ id: string }>({ id: cursorField.uuid });

/** Decodes a cursor made by encodeCursor for this list; anything else (another list's too) is a validation error. */
export function decodeCursor<T>(cursor: string | undefined, isValid: (value: unknown) => value is T, list: string): T | undefined {
  if (cursor === undefined) return undefined;
  try {
    // Only the cursor as we wrote it: Buffer's base64url decoding skips what
    // it cannot use (a stray last character, padding, `+` and `/`), so a
    // cursor with a character added read as the cursor without it.
    const bytes = Buffer.from(cursor, 'base64url');
    if (bytes.toString('base64url') !== cursor) throw new Error('not canonical base64url');
    const value: unknown = JSON.parse(bytes.toString('utf8'));
    if (isCursorOf({ list: (tag: unknown): tag is string => tag === list, at: isValid })(value)) return value.at;
  } catch {
    // fall through
  }
  throw new AppError('validation_failed', 'cursor is not valid', { errors: [{ path: '/querystring/cursor', message: 'is not a cursor from this list' }] });
}

/** A timestamptz: rows carry Date, JSON carries an ISO 8601 string. */
export const Timestamp = Type.Unsafe<Date | string>({ type: 'string', format: 'date-time' });
