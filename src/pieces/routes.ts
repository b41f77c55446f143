import { storeFilteredPage } from '../inventory/storeFilteredList.js';
import { Type } from 'typebox';
import { assertStoreInScope, inStoreScope } from '../core/auth.js';
import { inTenantTransaction } from '../core/command.js';
import { notFound } from '../core/errors.js';
import type { App, AppDeps } from '../http/app.js';
import { command, tenantOf } from '../http/command.js';
import { optionalExpectedVersion } from '../http/etag.js';
import { ListCursor, ListLimit, cursorField, decodeCursor, IdempotencyHeaders, IdParams, isCursorOf, LOWERCASE, NoBody, Page, listOf, pageOf, PositiveQuantity, Timestamp, Uuid } from '../http/schemas.js';
import { combinePieces } from './combinePieces.js';
import { cutPiece } from './cutPiece.js';
import { findPiece, listPieces, pieceHistory } from './queries.js';
import { assertPiecesVisible } from './usable.js';
import { receivePieces } from './receivePieces.js';
import { releaseReservation, reservePieces } from './reservePieces.js';

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(schema: T) => Type.Union([schema, Type.Null()]);
const Kind = Type.Union([Type.Literal('roll'), Type.Literal('cut'), Type.Literal('spare'), Type.Literal('bundle')]);

const Piece = Type.Object({
  id: Uuid,
  store_id: Uuid,
  sku_id: Uuid,
  kind: Kind,
  quantity: Type.Integer({ description: 'millimetres for rolls and cut pieces, pieces for spare pieces and bundles' }),
  status: Type.Union([Type.Literal('in_stock'), Type.Literal('reserved'), Type.Literal('consumed'), Type.Literal('sold')]),
  version: Type.Integer(),
  original_piece_id: Uuid,
  source_piece_ids: Type.Array(Uuid),
  created_by_op: Uuid,
  consumed_by_op: Nullable(Uuid),
  reserved_by_op: Nullable(Uuid),
  reserved_until: Nullable(Timestamp),
  sold_by_op: Nullable(Uuid),
  deleted_by_op: Nullable(Uuid),
  created_at: Timestamp,
  updated_at: Timestamp,
});
const PieceIds = Type.Array(Uuid, { minItems: 1, maxItems: 500 });
const ReservationOpId = Type.Optional(Type.String({ format: 'uuid', [LOWERCASE]: true, description: 'use pieces reserved under this reservation operation; what is made of them stays held by it, until the same time' }));
const HistoryItem = Type.Object({
  event_id: Type.Integer(),
  type: Type.String({ description: 'piece.created, piece.reserved, piece.released, piece.reservation_expired, piece.cut, piece.combined, piece.reverted, piece.sold (by a sale), piece.returned (by a return of the sale or its void)' }),
  op_id: Uuid,
  operation_type: Type.String(),
  actor: Type.String(),
  correlation_id: Type.String(),
  before: Type.Unknown(),
  after: Type.Unknown(),
  detail: Type.Unknown(),
  created_at: Timestamp,
});

const isEventCursor = isCursorOf<{ event_id: number }>({ event_id: cursorField.safeInteger });

export async function pieceRoutes(app: App, { db }: AppDeps): Promise<void> {
  app.post(
    '/v1/pieces',
    {
      config: { permission: 'pieces.write', refusals: { not_found: 'the store does not exist or is outside the token stores', limit_exceeded: 'the stock of the SKU in the store would exceed 10^15 base units' } },
      schema: {
        tags: ['pieces'],
        summary:
          'Receive pieces of a piece-tracked SKU into a store: rolls / cut pieces with a length (metre SKUs, quantity in millimetres) or spare pieces / bundles with a count (piece SKUs). Stock rises by their sum, in the same transaction. Its Idempotency-Key is kept for good (not IDEMPOTENCY_TTL_HOURS): sent again days later, it replays the first answer.',
        headers: IdempotencyHeaders,
        body: Type.Object(
          {
            store_id: Uuid,
            sku_id: Uuid,
            pieces: Type.Array(Type.Object({ kind: Kind, quantity: PositiveQuantity }, { additionalProperties: false }), { minItems: 1, maxItems: 500 }),
          },
          { additionalProperties: false },
        ),
        response: { 201: Type.Object({ op_id: Uuid, pieces: Type.Array(Piece) }) },
      },
    },
    async (request, reply) => {
      assertStoreInScope(tenantOf(request), request.body.store_id);
      return command(db, request, reply, { type: 'piece.receive', storeId: request.body.store_id, ttlHours: 'forever' }, async (cmd) => ({ status: 201, body: await receivePieces(cmd, request.body) }));
    },
  );

  app.post(
    '/v1/pieces/cut',
    {
      config: { permission: 'pieces.write', refusals: { not_found: 'a named piece does not exist or is outside the token stores (`piece_ids`)', piece_unavailable: 'a named piece is sold, consumed, deleted or held by another reservation', unprocessable: 'a bundle, or parts that do not fit the piece', insufficient_stock: 'the stock balance is below its pieces (see the integrity check piece_stock_matches_balance)' } },
      schema: {
        tags: ['pieces'],
        summary:
          'Cut a roll or cut piece into the given lengths (millimetres), or split a spare piece into the given counts. The input is consumed; each part and the remainder become new pieces. Parts that do not fit: 422. A piece in use: 409 piece_unavailable. Optional `If-Match` with the piece\'s ETag (version): 412 version_conflict when it moved; `*` matches any version. Its Idempotency-Key is kept for good (not IDEMPOTENCY_TTL_HOURS): sent again days later — even after the cut was reverted — it replays the first answer.',
        headers: Type.Intersect([IdempotencyHeaders, Type.Object({ 'if-match': Type.Optional(Type.String({ description: 'ETag (version) of the piece from GET /v1/pieces/{id}, or a list of them (RFC 9110)' })) })]),
        body: Type.Object(
          { piece_id: Uuid, parts: Type.Array(PositiveQuantity, { minItems: 1, maxItems: 200 }), reservation_op_id: ReservationOpId },
          { additionalProperties: false },
        ),
        response: { 201: Type.Object({ op_id: Uuid, consumed: Piece, pieces: Type.Array(Piece), remainder: Nullable(Piece) }) },
      },
    },
    async (request, reply) => {
      // A header naming no version is 412, but a piece that is not there (or
      // not in the caller's stores) is 404 first; `*` matches any version.
      if (request.headers['if-match'] !== undefined) {
        const principal = tenantOf(request);
        const piece = await inTenantTransaction(db, principal.tenantId, (tx) => findPiece(tx, principal.tenantId, request.body.piece_id));
        assertPiecesVisible(principal, [request.body.piece_id], piece ? [piece] : []);
      }
      const expected = optionalExpectedVersion(request, 'piece');
      return command(db, request, reply, { type: 'piece.cut', replayInStoreScopeOnly: true, ttlHours: 'forever' }, async (cmd) => ({ status: 201, body: await cutPiece(cmd, request.body, expected) }));
    },
  );

  app.post(
    '/v1/pieces/combine',
    {
      config: { permission: 'pieces.write', refusals: { not_found: 'a named piece does not exist or is outside the token stores (`piece_ids`)', piece_unavailable: 'a named piece is sold, consumed, deleted or held by another reservation', unprocessable: 'pieces that are not spare, not of one SKU in one store, or a bundle count that does not fit', insufficient_stock: 'the stock balance is below its pieces (see the integrity check piece_stock_matches_balance)' } },
      schema: {
        tags: ['pieces'],
        summary:
          'Combine spare pieces (one SKU, one store) into `bundle_count` bundles of `bundle_size`; what is left becomes a remainder spare piece. Concurrent combines over overlapping pieces: one wins, the other gets 409 piece_unavailable. Its Idempotency-Key is kept for good (not IDEMPOTENCY_TTL_HOURS): sent again days later, it replays the first answer.',
        headers: IdempotencyHeaders,
        body: Type.Object(
          {
            piece_ids: PieceIds,
            bundle_size: Type.Integer({ minimum: 1, maximum: 1_000_000_000 }),
            bundle_count: Type.Integer({ minimum: 1, maximum: 10_000 }),
            reservation_op_id: ReservationOpId,
          },
          { additionalProperties: false },
        ),
        response: { 201: Type.Object({ op_id: Uuid, consumed: Type.Array(Piece), bundles: Type.Array(Piece), remainder: Nullable(Piece) }) },
      },
    },
    async (request, reply) => command(db, request, reply, { type: 'piece.combine', replayInStoreScopeOnly: true, ttlHours: 'forever' }, async (cmd) => ({ status: 201, body: await combinePieces(cmd, request.body) })),
  );

  app.post(
    '/v1/pieces/reservations',
    {
      config: { permission: 'pieces.write', refusals: { not_found: 'a named piece does not exist or is outside the token stores (`piece_ids`)', piece_unavailable: 'a named piece is sold, consumed, deleted or held by another reservation', unprocessable: 'pieces of more than one store' } },
      schema: {
        tags: ['pieces'],
        summary:
          'Reserve pieces (one store) for this operation until an expiry. Only a cut, combine or sale naming this reservation (`reservation_op_id`) can use them; expired reservations are released lazily and by the sweep. The reservation id is the returned `op_id`. Its Idempotency-Key is kept for good (not IDEMPOTENCY_TTL_HOURS): sent again days later — the reservation since expired, released, sold or still holding its pieces — it replays the first answer and reserves nothing again.',
        headers: IdempotencyHeaders,
        body: Type.Object(
          { piece_ids: PieceIds, expires_in_seconds: Type.Integer({ minimum: 1, maximum: 7 * 24 * 3600 }) },
          { additionalProperties: false },
        ),
        response: { 201: Type.Object({ op_id: Uuid, reserved_until: Timestamp, pieces: Type.Array(Piece) }) },
      },
    },
    async (request, reply) => command(db, request, reply, { type: 'piece.reserve', replayInStoreScopeOnly: true, ttlHours: 'forever' }, async (cmd) => ({ status: 201, body: await reservePieces(cmd, request.body) })),
  );

  app.post(
    '/v1/pieces/reservations/:op_id/release',
    {
      config: { permission: 'pieces.write' },
      schema: {
        tags: ['pieces'],
        summary: 'Release the pieces still held by a reservation (already consumed pieces stay consumed). Releasing twice releases nothing the second time.',
        headers: IdempotencyHeaders,
        params: Type.Object({ op_id: Uuid }),
        body: NoBody,
        response: { 200: Type.Object({ op_id: Uuid, reservation_op_id: Uuid, released: Type.Array(Piece) }) },
      },
    },
    async (request, reply) => command(db, request, reply, { type: 'piece.release', replayInStoreScopeOnly: true }, async (cmd) => ({ status: 200, body: await releaseReservation(cmd, request.params.op_id) })),
  );

  app.get(
    '/v1/pieces',
    {
      config: { permission: 'pieces.read' },
      schema: {
        tags: ['pieces'],
        summary: "List pieces in the caller's stores (live ones unless `include_gone=true`)",
        querystring: Type.Object(
          {
            store_id: Type.Optional(Uuid),
            sku_id: Type.Optional(Uuid),
            include_gone: Type.Optional(Type.Boolean()),
            limit: ListLimit,
            cursor: ListCursor,
          },
          { additionalProperties: false },
        ),
        response: { 200: Page(Piece) },
      },
    },
    async (request) => {
      const principal = tenantOf(request);
      return storeFilteredPage(db, principal, request.query, (tx, after, limitPlusOne) =>
        listPieces(tx, principal.tenantId, principal.storeIds, { storeId: request.query.store_id, skuId: request.query.sku_id, includeGone: request.query.include_gone }, after, limitPlusOne),
        listOf(request),
      );
    },
  );

  app.get(
    '/v1/pieces/:id',
    { config: { permission: 'pieces.read' }, schema: { tags: ['pieces'], summary: 'A piece; its `version` is also the ETag', params: IdParams, response: { 200: Piece } } },
    async (request, reply) => {
      const principal = tenantOf(request);
      const piece = await inTenantTransaction(db, principal.tenantId, (tx) => findPiece(tx, principal.tenantId, request.params.id));
      if (!piece || !inStoreScope(principal, piece.store_id)) throw notFound('piece');
      reply.header('etag', `"${piece.version}"`);
      return piece;
    },
  );

  app.get(
    '/v1/pieces/:id/history',
    {
      config: { permission: 'pieces.read' },
      schema: {
        tags: ['pieces'],
        summary:
          "The lifecycle of a piece in order, from the append-only event log: each step with its operation, actor and before/after state, and `created_at` — when the step was written under the piece's lock, so the dates follow the steps' order",
        params: IdParams,
        querystring: Type.Object(
          { limit: ListLimit, cursor: Type.Optional(Type.String({ maxLength: 500 })) },
          { additionalProperties: false },
        ),
        response: { 200: Page(HistoryItem) },
      },
    },
    async (request) => {
      const principal = tenantOf(request);
      const limit = request.query.limit ?? 50;
      const after = decodeCursor(request.query.cursor, isEventCursor, listOf(request))?.event_id;
      return inTenantTransaction(db, principal.tenantId, async (tx) => {
        const piece = await findPiece(tx, principal.tenantId, request.params.id);
        if (!piece || !inStoreScope(principal, piece.store_id)) throw notFound('piece');
        const rows = await pieceHistory(tx, principal.tenantId, piece.id, after, limit + 1);
        return pageOf(rows, limit, (last) => ({ event_id: Number(last.event_id) }), listOf(request));
      });
    },
  );
}
