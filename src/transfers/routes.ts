import { storeFilteredPage } from '../inventory/storeFilteredList.js';
import type { ExpectedVersions } from '../core/expectedVersions.js';
import { Type } from 'typebox';
import { inStoreScope } from '../core/auth.js';
import type { TenantPrincipal } from '../core/auth.js';
import { inTenantTransaction, runCommand, type Command, type CommandSpec } from '../core/command.js';
import { notFound } from '../core/errors.js';
import type { App, AppDeps } from '../http/app.js';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { commandInputOf, tenantOf } from '../http/command.js';
import { etagOf, optionalExpectedVersion, sendVersioned, versionedCommand } from '../http/etag.js';
import { listOf, IdempotencyHeaders, IdParams, IfMatchHeaders, ListQuery, NoBody, Page, PositiveQuantity, Timestamp, Uuid } from '../http/schemas.js';
import { approveTransfer } from './approveTransfer.js';
import { cancelTransfer } from './cancelTransfer.js';
import { findTransfer, listTransfers } from './queries.js';
import { receiveTransfer } from './receiveTransfer.js';
import { requestTransfer } from './requestTransfer.js';
import { assertTransferAction, type TransferSide } from './transferScope.js';
import type { TransferRow } from './transfers.table.js';

const Status = Type.Union([Type.Literal('requested'), Type.Literal('approved'), Type.Literal('received'), Type.Literal('cancelled')]);
const NullableString = Type.Union([Type.String(), Type.Null()]);
const NullableTime = Type.Union([Timestamp, Type.Null()]);
const Transfer = Type.Object({
  id: Uuid,
  source_store_id: Uuid,
  destination_store_id: Uuid,
  status: Status,
  version: Type.Integer(),
  note: NullableString,
  requested_by: Type.String(),
  approved_by: NullableString,
  approved_at: NullableTime,
  received_by: NullableString,
  received_at: NullableTime,
  cancelled_by: NullableString,
  cancelled_at: NullableTime,
  op_id: Uuid,
  created_at: Timestamp,
  items: Type.Array(
    Type.Object({
      sku_id: Uuid,
      quantity: Type.Integer(),
      quantity_in_transit: Type.Integer(),
      quantity_received: Type.Union([Type.Integer(), Type.Null()]),
    }),
  ),
});

export async function transferRoutes(app: App, { db }: AppDeps): Promise<void> {
  /**
   * The store-scope check of an action, made before the command runs, so a
   * replayed response is never handed to a token that cannot see the
   * transfer. (The command checks again on the rows it locks.)
   */
  const assertVisible = async (principal: TenantPrincipal, id: string, side: TransferSide) => {
    const transfer = await inTenantTransaction(db, principal.tenantId, (tx) => findTransfer(tx, principal.tenantId, id));
    assertTransferAction(principal, transfer, side);
  };

  /**
   * Runs a transfer action with the version its optional If-Match names; the
   * response carries the transfer's version as its ETag.
   */
  const act = async (
    request: FastifyRequest,
    reply: FastifyReply,
    side: TransferSide,
    spec: CommandSpec,
    fn: (cmd: Command, expectedVersion: ExpectedVersions | undefined) => Promise<TransferRow>,
  ) => {
    await assertVisible(tenantOf(request), (request.params as { id: string }).id, side);
    const expected = optionalExpectedVersion(request, 'transfer');
    return sendVersioned(reply, await runCommand(db, commandInputOf(request), spec, async (cmd) => ({ status: 200, body: await fn(cmd, expected) })));
  };
  app.post(
    '/v1/transfers',
    {
      config: { permission: 'transfers.request', refusals: { not_found: 'neither store is in the token stores (no field named); or an end is not a store of the tenant, named in `errors` at `/body/source_store_id` or `/body/destination_store_id`' } },
      schema: {
        tags: ['transfers'],
        summary: 'Request a stock transfer between two stores (no stock moves). The caller must have the source or the destination in scope. Its Idempotency-Key is kept for good (not IDEMPOTENCY_TTL_HOURS): sent again days later, it replays the first answer.',
        headers: IdempotencyHeaders,
        body: Type.Object(
          {
            source_store_id: Uuid,
            destination_store_id: Uuid,
            items: Type.Array(Type.Object({ sku_id: Uuid, quantity: PositiveQuantity }, { additionalProperties: false }), { minItems: 1, maxItems: 1000 }),
            note: Type.Optional(Type.String({ maxLength: 500 })),
          },
          { additionalProperties: false },
        ),
        response: { 201: Transfer },
      },
    },
    async (request, reply) => {
      // Either end must be the requester's (a destination asks a source for goods, or a source offers them);
      // checked before the command, so a replay to a caller with neither store in scope is refused too.
      const principal = tenantOf(request);
      if (!inStoreScope(principal, request.body.source_store_id) && !inStoreScope(principal, request.body.destination_store_id)) throw notFound('store');
      return versionedCommand(db, request, reply, { type: 'transfer.request', ttlHours: 'forever' }, async (cmd) => ({ status: 201, body: await requestTransfer(cmd, request.body) }));
    },
  );

  app.post(
    '/v1/transfers/:id/approve',
    {
      config: { permission: 'transfers.approve', refusals: { insufficient_stock: 'the source store lacks the stock (`shortages`)', invalid_transition: 'the transfer is not in a status that allows this (`current_status`), or was already past it by a request with other content', forbidden: 'the token sees the transfer (its destination is one of the token\'s stores) but not its source, whose staff approve it; or the token requested it and the tenant requires a second approver (`reason`: second_approver_required)' } },
      schema: {
        tags: ['transfers'],
        summary:
          'Approve a requested transfer: the stock leaves the source and is in transit, in one transaction. Needs the SOURCE store in scope (a token that sees the transfer only by its destination: `403 forbidden`; by neither store: `404`). `409 insufficient_stock` (nothing written) when the source is short; `409 invalid_transition` when cancelled. Approving an approved (or since received) transfer again is answered with that approval as already done: `200`, `Idempotent-Replayed: true`, nothing written, under any key (a repeat after the key expired too). Optional `If-Match` with the transfer\'s ETag: stale → `412 version_conflict` (a repeat\'s If-Match names the version it was approved on).',
        headers: IfMatchHeaders('transfer'),
        params: IdParams,
        body: NoBody,
        response: { 200: Transfer },
      },
    },
    async (request, reply) =>
      act(request, reply, 'source', { type: 'transfer.approve' }, (cmd, expected) => approveTransfer(cmd, tenantOf(request), request.params.id, expected)),
  );

  app.post(
    '/v1/transfers/:id/receive',
    {
      config: { permission: 'transfers.receive', refusals: { forbidden: 'the token sees the transfer (its source is one of the token\'s stores) but not its destination, whose staff receive it', invalid_transition: 'the transfer is not in a status that allows this (`current_status`), or was already past it by a request with other content', limit_exceeded: 'the destination stock of a SKU would exceed 10^15 base units' } },
      schema: {
        tags: ['transfers'],
        summary:
          'Receive an approved transfer at the destination (sent while its approval commits, it waits for it). Without `items` everything arrived; with `items`, they list what arrived (each SKU once, its total — a SKU listed twice, one not sent or more than was sent is `400`) and any shortfall opens a `transfer_shortfall` review item. Needs the DESTINATION store in scope (a token that sees the transfer only by its source: `403 forbidden`; by neither store: `404`). Receiving the received transfer again with the same quantities (no `items` = all that was sent) is answered with that receipt as already done: `200`, `Idempotent-Replayed: true`, nothing written, under any key (a repeat after the key expired too); other quantities → `409 invalid_transition`, nothing recorded. Optional `If-Match` with the transfer\'s ETag: stale → `412 version_conflict` (a repeat\'s If-Match names the version it was received on).',
        headers: IfMatchHeaders('transfer'),
        params: IdParams,
        body: Type.Union([
          Type.Object(
            {
              items: Type.Optional(
                Type.Array(
                  Type.Object(
                    {
                      sku_id: Uuid,
                      // What was sent of a SKU is its lines summed (up to 1,000 lines of 10^12), so what
                      // arrived may be above one line's bound; more than was sent is refused by planReceipt.
                      quantity_received: Type.Integer({ minimum: 0, maximum: 1_000_000_000_000_000, description: 'base units; at most what was sent of the SKU' }),
                    },
                    { additionalProperties: false },
                  ),
                  { maxItems: 1000 },
                ),
              ),
            },
            { additionalProperties: false },
          ),
          Type.Null(),
        ]),
        response: { 200: Transfer },
      },
    },
    async (request, reply) =>
      act(request, reply, 'destination', { type: 'transfer.receive' }, (cmd, expected) => receiveTransfer(cmd, tenantOf(request), request.params.id, request.body?.items, expected)),
  );

  app.post(
    '/v1/transfers/:id/cancel',
    {
      config: { permission: 'transfers.request', refusals: { invalid_transition: 'the transfer is not in a status that allows this (`current_status`), or was already past it by a request with other content' } },
      schema: {
        tags: ['transfers'],
        summary: 'Cancel a transfer that is still requested (nothing has moved). `409 invalid_transition` after approval. Cancelling the cancelled transfer again is answered with that cancel as already done: `200`, `Idempotent-Replayed: true`, nothing written. Optional `If-Match` with the transfer\'s ETag: stale → `412 version_conflict`.',
        headers: IfMatchHeaders('transfer'),
        params: IdParams,
        body: NoBody,
        response: { 200: Transfer },
      },
    },
    async (request, reply) =>
      act(request, reply, 'either', { type: 'transfer.cancel' }, (cmd, expected) => cancelTransfer(cmd, tenantOf(request), request.params.id, expected)),
  );

  app.get(
    '/v1/transfers/:id',
    {
      config: { permission: 'transfers.read' },
      schema: { tags: ['transfers'], summary: 'A stock transfer; its `version` is sent as the ETag', params: IdParams, response: { 200: Transfer } },
    },
    async (request, reply) => {
      const principal = tenantOf(request);
      const transfer = await inTenantTransaction(db, principal.tenantId, (tx) => findTransfer(tx, principal.tenantId, request.params.id));
      if (!transfer || (!inStoreScope(principal, transfer.source_store_id) && !inStoreScope(principal, transfer.destination_store_id))) {
        throw notFound('transfer');
      }
      reply.header('etag', etagOf(transfer.version));
      return transfer;
    },
  );

  app.get(
    '/v1/transfers',
    {
      config: { permission: 'transfers.read' },
      schema: {
        tags: ['transfers'],
        summary: 'Transfers touching the caller\'s stores, newest first',
        querystring: Type.Object({ ...ListQuery.properties, store_id: Type.Optional(Uuid), status: Type.Optional(Status) }, { additionalProperties: false }),
        response: { 200: Page(Transfer) },
      },
    },
    async (request) => {
      const principal = tenantOf(request);
      return storeFilteredPage(db, principal, request.query, (tx, before, limitPlusOne) =>
        listTransfers(tx, principal.tenantId, principal.storeIds, { storeId: request.query.store_id, status: request.query.status }, before, limitPlusOne),
        listOf(request),
      );
    },
  );
}
