import { Type, type Static, type TSchema } from 'typebox';
import { AppError } from '../core/errors.js';

/** Schemas shared by every module's routes (they also feed the OpenAPI document). */

/** Request schemas with this keyword set get the string lowercased as it is validated (src/http/app.ts). */
export const LOWERCASE = 'x-lowercase';

/** A UUID in any letter case; the API reads it lowercased (and always answers in lowercase). */
export const Uuid = Type.String({ format: 'uuid', [LOWERCASE]: true, description: 'UUID (any letter case; read as lowercase)' });

export const IdParams = Type.Object({ id: Uuid });

/** The Idempotency-Key header of every mutating request (documented in OpenAPI). */
export const IdempotencyHeaders = Type.Object({
  'idempotency-key': Type.Optional(
    Type.String({ minLength: 1, maxLength: 255, description: 'Same key + same request replays the first response.' }),
  ),
});

/**
 * The body of an action that takes no input: none, `{}` or `null`. Anything
 * else is refused (400), as unknown fields are everywhere else.
 */
export const NoBody = Type.Union([Type.Object({}, { additionalProperties: false }), Type.Null()]);

export const ListQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 50 })),
    cursor: Type.Optional(Type.String({ maxLength: 500 })),
  },
  { additionalProperties: false },
);
export type ListQuery = Static<typeof ListQuery>;

export const Problem = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    code: Type.String(),
    correlation_id: Type.String(),
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
export const PositiveQuantity = Type.Integer({ minimum: 1, maximum: 1_000_000_000_000, description: 'base units of the SKU' });

/**
 * One page of a list from the `limit + 1` rows its query returned: the first
 * `limit`, and — only when there was one more — the cursor of the last item.
 */
export function pageOf<T>(rows: readonly T[], limit: number, cursorOf: (last: T) => unknown): { items: T[]; next_cursor: string | null } {
  const items = rows.slice(0, limit);
  const last = items[items.length - 1];
  return { items, next_cursor: rows.length > limit && last !== undefined ? encodeCursor(cursorOf(last)) : null };
}

export function encodeCursor(position: unknown): string {
  return Buffer.from(JSON.stringify(position), 'utf8').toString('base64url');
}

/** Decodes a cursor made by encodeCursor; anything else is a validation error. */
export function decodeCursor<T>(cursor: string | undefined, isValid: (value: unknown) => value is T): T | undefined {
  if (cursor === undefined) return undefined;
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (isValid(value)) return value;
  } catch {
    // fall through
  }
  throw new AppError('validation_failed', 'cursor is not valid', { errors: [{ path: '/querystring/cursor', message: 'is not a cursor from this list' }] });
}

/** A timestamptz: rows carry Date, JSON carries an ISO 8601 string. */
export const Timestamp = Type.Unsafe<Date | string>({ type: 'string', format: 'date-time' });
