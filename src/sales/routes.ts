import { Type, type Static } from 'typebox';
import { assertStoreInScope, inStoreScope } from '../core/auth.js';
import {
  fingerprintRequest,
  internalIdempotencyKey,
  inTenantTransaction,
  reservedKeyError,
  runCommand,
  type CommandInput,
  type CommandOutcome,
  type CommandSpec,
} from '../core/command.js';
import { readClientMoment } from '../core/db.js';
import { AppError, notFound } from '../core/errors.js';
import { findStore } from '../inventory/queries.js';
import { roleHas } from '../core/permissions.js';
import type { App, AppDeps } from '../http/app.js';
import { commandInputOf, formerKeyForms, sendOutcome, serializeAnswer, tenantOf } from '../http/command.js';
import { logAnsweredError, problemOf, toAppError } from '../http/problem.js';
import { makeBodyAjv, makeTextAjv } from '../http/ajv.js';
import { assertStorableText } from '../http/json.js';
import {
  cursorField,
  decodeCursor,
  IdempotencyHeaders,
  IdParams,
  isCursorOf,
  limitOf,
  ListCursor,
  ListLimit,
  listOf,
  LOWERCASE,
  Money,
  Page,
  pageOf,
  StoreParams,
  Timestamp,
  Uuid,
} from '../http/schemas.js';
import { findSale, findSaleStore, listSales } from './getSale.js';
import { groupCommitterFor } from './groupCommit.js';
import { recordReturn, returnableLines, SALE_RETURN_OP } from './returnSale.js';
import { remainingOf } from './returnPlan.js';
import { recordVoid, SALE_VOID_OP } from './voidSale.js';

const PaymentMethod = Type.Union([Type.Literal('cash'), Type.Literal('card'), Type.Literal('mobile'), Type.Literal('credit')]);
const SaleType = Type.Union([Type.Literal('regular'), Type.Literal('bulk')]);
const UnitPrice = Type.Integer({ minimum: 0, maximum: 9_000_000_000_000, description: 'minor units per kg / piece / metre' });

const saleBodyProperties = {
  store_id: Uuid,
  payment_method: PaymentMethod,
  items: Type.Array(
    Type.Object(
      {
        sku_id: Uuid,
        quantity: Type.Optional(
          Type.Integer({
            minimum: 1,
            maximum: 1_000_000_000_000,
            description: 'base units; required unless the SKU tracks pieces (then, if sent, it must equal the sum of the named pieces)',
          }),
        ),
        unit_price: UnitPrice,
        piece_ids: Type.Optional(
          Type.Array(Uuid, {
            minItems: 1,
            maxItems: 500,
            description:
              'piece-tracked SKUs only (and required for them): the workshop pieces sold, each in stock in this store and of this SKU; the line quantity is their sum. At most 500 pieces per sale.',
          }),
        ),
      },
      { additionalProperties: false },
    ),
    { minItems: 1, maxItems: 200 },
  ),
  customer_id: Type.Optional(Uuid),
  client_created_at: Type.Optional(Type.String({ format: 'date-time', description: 'when the till made the sale' })),
  sale_type: Type.Optional(SaleType),
  reservation_op_id: Type.Optional(
    Type.String({
      format: 'uuid',
      [LOWERCASE]: true,
      description:
        'a piece reservation (its op_id) this sale completes: pieces it holds may be sold (they leave the reservation); only with lines that name pieces',
    }),
  ),
};
const SaleBody = Type.Object(saleBodyProperties, { additionalProperties: false });

const ReturnLine = Type.Object({
  sale_item_id: Uuid,
  line_number: Type.Integer({ description: 'the sale line it takes back from' }),
  sku_id: Uuid,
  quantity: Type.Integer({ description: 'base units taken back from that line (a line of workshop pieces: the sum of the pieces taken back)' }),
  refund: Money,
  piece_ids: Type.Array(Uuid, { description: 'the workshop pieces taken back from that line, as the return named them ([] for a line without pieces)' }),
});

export const SaleReturn = Type.Object({
  id: Uuid,
  op_id: Uuid,
  sale_id: Uuid,
  return_number: Type.Integer({ minimum: 1, description: '1, 2, … per sale, in the order its returns were recorded' }),
  reason: Type.String(),
  refund_total: Money,
  client_created_at: Type.Union([Timestamp, Type.Null()], { description: 'when the till took the return back, as sent (null: not sent)' }),
  created_at: Timestamp,
  after_void: Type.Boolean({
    description:
      "true: a return the till made (client_created_at) before the sale was voided and sent after the void — recorded as a fact with no stock or money effect (the void already gave back everything the sale held and reversed all its money: no `return` ledger row, no `sale_return` entry, nothing added to the sale's returned_total), and a `sale_return_after_void` review item opened so someone checks the till's cash; false: every other return",
  }),
  lines: Type.Array(ReturnLine, { description: 'per sale line, in line order: a SKU is taken back from its lines in line order' }),
});


/** Where a page of a store's sales list ends: its last sale's created_at to the microsecond and receipt number. */
const isSaleListCursor = isCursorOf<{ created_at: string; receipt_number: number }>({
  created_at: cursorField.utcMicros,
  receipt_number: (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 1,
});

export const Sale = Type.Object({
  id: Uuid,
  op_id: Uuid,
  store_id: Uuid,
  receipt_number: Type.Integer({ minimum: 1, description: 'per store, from 1, gapless among committed sales' }),
  status: Type.Union([Type.Literal('completed'), Type.Literal('voided')]),
  payment_method: PaymentMethod,
  sale_type: SaleType,
  source: Type.Union([Type.Literal('online'), Type.Literal('offline')], { description: 'offline: synced from a till by POST /v1/sync/sales' }),
  customer_id: Type.Union([Uuid, Type.Null()]),
  total: Money,
  client_created_at: Type.Union([Timestamp, Type.Null()]),
  created_at: Timestamp,
  voided_at: Type.Union([Timestamp, Type.Null()]),
  voided_by_op: Type.Union([Uuid, Type.Null()]),
  void_reason: Type.Union([Type.String(), Type.Null()]),
  void_client_created_at: Type.Union([Timestamp, Type.Null()], {
    description: 'when the till voided the sale, as sent with the void (null: not sent, or not voided); voided_at is when the void was recorded',
  }),
  items: Type.Array(
    Type.Object({
      id: Uuid,
      line_number: Type.Integer(),
      sku_id: Uuid,
      quantity: Type.Integer({ description: 'base units (grams, pieces, millimetres)' }),
      unit_price: Money,
      line_total: Money,
      shortfall_quantity: Type.Integer({ description: 'offline sales: the part that was not in stock when synced' }),
      piece_ids: Type.Array(Uuid, { description: 'piece-tracked SKUs: the pieces the line named ([] for other SKUs)' }),
    }),
  ),
  returned_total: Type.Integer({ minimum: 0, maximum: 9_000_000_000_000, description: "minor units the sale's partial returns took back so far (the sum of their refund_total; 0 for a new sale)" }),
  returns: Type.Array(SaleReturn, { description: "the sale's partial returns (POST /v1/sales/{id}/returns), oldest first ([] for a new sale)" }),
});

/** Per SKU of a sale, what a return may still take back (a return's answer, after it; GET /v1/sales/{id}, now). */
function Remaining(description: string) {
  return Type.Array(
    Type.Object({
      sku_id: Uuid,
      sold: Type.Integer({ description: 'base units the sale sold of the SKU' }),
      returned: Type.Integer({ description: 'base units its returns took back (a return\'s answer: this one included)' }),
      returnable: Type.Integer({
        description:
          'base units a return may still take back: what the sale sold less what its returns took back (a line of an offline sale that synced short too); a SKU sold as workshop pieces: the sum of the pieces the sale still holds (returnable_piece_ids)',
      }),
      returnable_piece_ids: Type.Array(Uuid, {
        description:
          'a SKU the sale sold as workshop pieces: the pieces a return may still take back — sold by the sale (not those missing when an offline sale synced short) and taken back by no return (a return\'s answer: this one included) — sorted; [] for other SKUs',
      }),
    }),
    { description },
  );
}

const RETURN_SUMMARY =
  'Take back part of a sale (the customer brings back one of three items, or 200 g of 600 g): lines of one SKU are summed, and a SKU is ' +
  'taken back from the sale\'s lines of that SKU in line order. Stock comes back through new ledger rows (kind `return`); the refund of each line is ' +
  'lineTotal(quantity returned so far, this return included) − lineTotal(quantity returned before), by the sale line\'s own rounding, so ' +
  'returning a whole line in any number of parts refunds exactly its line_total; the refund leaves where the sale\'s money went (the ' +
  'cash drawer, the card or mobile clearing account, the customer\'s receivable for credit) through a `sale_return` journal entry booked ' +
  'like a void\'s (today, or the till\'s day of `client_created_at`, never before the sale\'s day). The receipt number stays. Returns and ' +
  'voids of one sale take turns on the sale row: more than the sale sold minus what earlier returns took back is 409 ' +
  '`return_exceeds_sale` with every requested SKU\'s `returnable` quantity, nothing written; a voided sale is 409 `invalid_transition` — unless ' +
  'the return carries `client_created_at` strictly before the void\'s moment (its `void_client_created_at` when a till queued the void, else ' +
  'its `voided_at`): the till made it before the void and handed out the refund, so it is recorded as a fact, `after_void: true`, with ' +
  'no stock or money effect (the void already gave back all the sale held and reversed its money: no `return` ledger row, no `sale_return` ' +
  'entry, the sale\'s returned_total unchanged; pieces left as the void left them) and a `sale_return_after_void` review item so someone ' +
  'checks the till\'s cash — held to the same validation (quantities within what the sale sold minus every return, before or after the void; ' +
  'pieces on the sale\'s line and not taken back by an earlier return); ' +
  'a SKU the sale did not sell is 400 at its line. A line of an offline sale that synced short (shortfall_quantity) is returned like any other, ' +
  'up to all it sold (its pieces: the ones the sale sold, not the ones missing when it synced): the return puts back all it takes back, and a ' +
  'later void gives back only what the sale took and its returns did not put back, never below 0; its review item stays. A SKU the sale sold as workshop pieces is returned by naming the pieces (`piece_ids`, as a sale line names them; ' +
  '`quantity`, if sent, must be their sum, else 400): each must be one the sale sold of that SKU and no earlier return took back, ' +
  'else 409 `piece_not_returnable` listing every such piece (`pieces`: `id`, `sku_id`, `reason` not_sold_by_sale | already_returned), ' +
  'nothing written; the pieces go back `in_stock` (`piece.returned` in their history), their sum comes back to stock and is refunded by ' +
  'the same cumulative rule. A quantity for such a SKU, `piece_ids` for another, or a piece named twice is 400. ' +
  'A void after returns brings back only what they left (the pieces the sale still holds). `remaining` gives, per SKU, what a return may ' +
  'still take back, and for a SKU sold as pieces the ids of those pieces (`returnable_piece_ids`, sorted; [] for other SKUs). The Idempotency-Key is kept ' +
  'as long as the return (each return is a new fact: the same key replays it, a different body is 422). With the tenant setting ' +
  '`require_second_approver_for_reversals`, the token that made the sale (sold it, or synced it from a till) may not take goods back from it: ' +
  '`403 forbidden` with `reason: second_approver_required`, nothing written and its Idempotency-Key not kept; another token with sales.return may.';

const SALE_SUMMARY =
  'Sell: every line is checked against stock atomically (lines of one SKU summed), the store\'s next receipt number is taken, and ' +
  'sale, lines, stock ledger, operation, audit and idempotency record commit together. Line total = quantity × unit_price for pieces; ' +
  'for kg / metre items quantity is grams / millimetres and unit_price is per kg / metre: quantity × unit_price / 1000, rounded half up. ' +
  'A line or sale total above 9,000,000,000,000 minor units → 400. Any short SKU → 409 insufficient_stock with every shortage, nothing written. A bulk sale (sale_type bulk, or a SKU quantity ≥ the ' +
  'tenant\'s bulk_sale_threshold) needs sales.bulk. A line of a piece-tracked SKU names the workshop pieces it sells (piece_ids; quantity = ' +
  'their sum): they are locked, marked sold by this sale and their sum leaves stock; a piece sold, consumed, deleted or reserved → 409 ' +
  'piece_unavailable naming the pieces, nothing written — unless it is reserved under the reservation the sale names (reservation_op_id), ' +
  'which sells it straight from the reservation. piece_ids on another SKU, or none on a piece-tracked one → 400. ' +
  'The sale\'s Idempotency-Key is kept as long as the sale (not IDEMPOTENCY_TTL_HOURS): sent again days later, it replays the sale.';

type SaleBody = Static<typeof SaleBody>;

/**
 * A key as its Idempotency-Key header carries it: HTTP drops the spaces and
 * tabs around a header's value (RFC 9110, section 5.5), so a till that sent a
 * sale online under ` k ` stored it under `k`.
 */
const keyAsHeaderCarries = (key: string): string => key.replace(/^[ \t]+|[ \t]+$/g, '');

/**
 * A synced sale's refusal names its fields where they are in the batch
 * (`/body/sales/<index>/…`), as its schema errors do: the sale's own rules
 * (an unknown SKU, a credit sale without its customer) decide as if it were
 * sent alone and name `/body/…` of that lone request.
 */
function placedInBatch(body: unknown, index: number): unknown {
  const errors = (body as { errors?: unknown } | null)?.errors;
  if (!Array.isArray(errors)) return body;
  const place = (path: string) => (path === '/body' || (path.startsWith('/body/') && !path.startsWith('/body/sales/')) ? `/body/sales/${index}${path.slice('/body'.length)}` : path);
  return {
    ...(body as object),
    errors: errors.map((error: unknown) =>
      typeof error === 'object' && error !== null && typeof (error as { path?: unknown }).path === 'string' ? { ...error, path: place((error as { path: string }).path) } : error,
    ),
  };
}

export async function salesRoutes(app: App, { db, reportError }: AppDeps): Promise<void> {
  const writer = groupCommitterFor(db);

  app.post(
    '/v1/sales',
    {
      config: { permission: 'sales.create', refusals: { insufficient_stock: 'every short line in `shortages` (`sku_id`, `requested`, `available`), nothing written', forbidden: 'a bulk sale (sale_type bulk, or a SKU quantity at or above bulk_sale_threshold) without `sales.bulk`', not_found: 'the store does not exist or is outside the token stores', piece_unavailable: 'a named piece is sold, consumed, deleted or reserved (under another reservation)', limit_exceeded: 'an account total would exceed 9 × 10^15 minor units', service_unavailable: "a stock balance, the store's receipt counter or a journal account the sale needs is held by another transaction: after the lane's lock wait (2 s; 15 s for a sale naming workshop pieces), or at once while the tenant's sale lane knows it held (a sale, void or return waited for it before); with `Retry-After`, nothing written, no receipt number taken" } },
      schema: { tags: ['sales'], summary: SALE_SUMMARY, headers: IdempotencyHeaders, body: SaleBody, response: { 201: Sale } },
    },
    async (request, reply) => {
      const principal = tenantOf(request);
      const body: SaleBody = request.body;
      assertStoreInScope(principal, body.store_id);
      const outcome = await writer.sale(commandInputOf(request), body, 'online');
      return sendOutcome(reply, outcome);
    },
  );

  app.get(
    '/v1/sales/:id',
    { config: { permission: 'sales.read' }, schema: { tags: ['sales'], summary: 'A sale with its lines and its partial returns', params: IdParams, response: { 200: Sale } } },
    async (request) => {
      const principal = tenantOf(request);
      const sale = await inTenantTransaction(db, principal.tenantId, (tx) => findSale(tx, principal.tenantId, request.params.id));
      if (!sale || !inStoreScope(principal, sale.store_id)) throw notFound('sale');
      return sale;
    },
  );

  app.get(
    '/v1/sales/:id/returnable',
    {
      config: { permission: 'sales.read' },
      schema: {
        tags: ['sales'],
        summary: "What a return may still take back of a sale, per SKU: the return screen's figures, as POST /v1/sales/{id}/returns answers them after each return",
        description:
          'Read with the sale from one snapshot: `remaining` is what the next return is held to (more is 409 `return_exceeds_sale`; a piece not listed is 409 `piece_not_returnable`), unless another return or a void commits first. ' +
          'Of a voided sale (`status: voided`), what a return the till made before the void (recorded `after_void`) may still take back; the void put the pieces back in stock, so none is listed. ' +
          'Another store\'s (outside the token\'s stores) or tenant\'s sale, or a made-up id: 404.',
        params: IdParams,
        response: {
          200: Type.Object({
            sale_id: Uuid,
            status: Sale.properties.status,
            returned_total: Sale.properties.returned_total,
            remaining: Remaining('per SKU of the sale, in line order'),
          }),
        },
      },
    },
    async (request) => {
      const principal = tenantOf(request);
      return await inTenantTransaction(db, principal.tenantId, async (tx) => {
        const sale = await findSale(tx, principal.tenantId, request.params.id);
        if (!sale || !inStoreScope(principal, sale.store_id)) throw notFound('sale');
        const remaining = remainingOf(await returnableLines(tx, principal.tenantId, sale.id));
        return { sale_id: sale.id, status: sale.status, returned_total: sale.returned_total, remaining };
      }, { isolation: 'repeatable read' });
    },
  );

  app.get(
    '/v1/stores/:store_id/sales',
    {
      config: { permission: 'sales.history.read' },
      schema: {
        tags: ['sales'],
        summary:
          "A store's sales, newest first (by when each was recorded, then receipt number), each as GET /v1/sales/{id} answers it; " +
          '`?receipt_number=` finds the sale of a receipt, `?from=` / `?to=` (RFC 3339 date-times) keep those recorded at or after `from` ' +
          'and before `to`, `?status=voided` the voided sales (`completed`: the others), `?customer_id=` the sales made to that customer. ' +
          'Filters combine. Pages with `?limit=` (1–500, default 50) and `?cursor=` like every list.',
        description:
          'A synced sale (POST /v1/sync/sales) is listed by when it arrived (`created_at`); `client_created_at` is when the till made it. ' +
          'Voided sales are listed with `status: voided`. Send the same filters with every cursor. ' +
          'A page is one index range whatever the store\'s history: of its sales by `created_at`, of its voided ones (`?status=voided`), of a customer\'s at this store (`?customer_id=`); ' +
          '`?status=completed` walks the store\'s sales past the voided ones among them. ' +
          'A `customer_id` of a party with no sale at this store, or of no party at all, is an empty page (not 404), as `?sku_id=` of GET /v1/pieces is. Each page is read when asked: sales recorded while the list is walked are on the ' +
          'first pages, never on a later one, and no sale is on two pages. The shop\'s takings are for those who run and audit it: needs ' +
          '`sales.history.read` (owner, admin, manager, auditor), not a cashier\'s or a field agent\'s `sales.read` (a sale by its id). ' +
          'A store that is not there, or outside the token\'s stores: 404. A `from` or `to` PostgreSQL cannot read, a `status` other than `completed` or `voided`, a `customer_id` not a UUID, a limit outside 1–500, ' +
          'a cursor this list did not write, or any other query parameter: 400 at `/querystring/<name>`.',
        params: StoreParams,
        querystring: Type.Object(
          {
            receipt_number: Type.Optional(Type.Integer({ minimum: 1, maximum: 9_007_199_254_740_991, description: 'only the sale with this receipt number' })),
            from: Type.Optional(Type.String({ format: 'date-time', description: 'recorded at or after this moment' })),
            to: Type.Optional(Type.String({ format: 'date-time', description: 'recorded before this moment' })),
            status: Type.Optional(
              Type.Union([Type.Literal('completed'), Type.Literal('voided')], { description: 'only the sales still standing (`completed`), or only the voided ones (`voided`)' }),
            ),
            customer_id: Type.Optional(Type.String({ format: 'uuid', [LOWERCASE]: true, description: 'only the sales made to this customer (a party id, any letter case); a party with no sale at this store, or no party at all, lists nothing' })),
            limit: ListLimit,
            cursor: ListCursor,
          },
          { additionalProperties: false },
        ),
        response: { 200: Page(Sale) },
      },
    },
    async (request) => {
      const principal = tenantOf(request);
      const storeId = request.params.store_id;
      assertStoreInScope(principal, storeId);
      const limit = limitOf(request);
      const list = listOf(request);
      const after = decodeCursor(request.query.cursor, isSaleListCursor, list);
      const rows = await inTenantTransaction(db, principal.tenantId, async (tx) => {
        if (!(await findStore(tx, principal.tenantId, storeId))) throw notFound('store');
        const { from, to, receipt_number: receiptNumber, status, customer_id: customerId } = request.query;
        const filter = {
          receiptNumber,
          status,
          customerId,
          from: from === undefined ? undefined : await readClientMoment(tx, from, { name: 'from', path: '/querystring/from' }),
          to: to === undefined ? undefined : await readClientMoment(tx, to, { name: 'to', path: '/querystring/to' }),
        };
        return listSales(tx, principal.tenantId, storeId, filter, after, limit + 1);
      });
      // The cursor holds created_at to the microsecond as stored: a millisecond
      // one would sort after the sale it came from and page it again.
      const page = pageOf(rows, limit, (last) => ({ created_at: last.position, receipt_number: last.receipt_number }), list);
      return { ...page, items: page.items.map(({ position: _position, ...sale }) => sale) };
    },
  );

  app.post(
    '/v1/sales/:id/void',
    {
      config: {
        permission: 'sales.void',
        refusals: {
          limit_exceeded: 'the stock returned, or an account total, would exceed its limit',
          forbidden: 'the token made the sale (sold it, or synced it from a till) and the tenant requires a second person to undo it (`reason`: second_approver_required; setting require_second_approver_for_reversals), voided already or not; nothing written',
          service_unavailable:
            "a stock balance or journal account the void needs is held by another transaction: after the lane's lock wait (2 s), or at once while the tenant's sale lane knows it held (a void, return or sale waited for it before); with `Retry-After`, nothing written, the Idempotency-Key not kept",
        },
      },
      schema: {
        tags: ['sales'],
        summary:
          'Void a sale: stock comes back through new ledger rows, workshop pieces it sold are back in stock, the receipt number is kept (never reused). The reversing journal entry is booked today — or, for a void a till queued offline and sends with `client_created_at`, on the till\'s day by the rule of a synced sale, never before the sale\'s own day (the sale keeps it as `void_client_created_at`; `voided_at` is when the void arrived). Voiding a voided sale returns it again as a replay (200, `Idempotent-Replayed: true`, nothing new written). With the tenant setting `require_second_approver_for_reversals`, the token that made the sale (sold it, or synced it from a till) may not void it: `403 forbidden` with `reason: second_approver_required`, voided already or not, nothing written and its Idempotency-Key not kept; another token with sales.void may.',
        headers: IdempotencyHeaders,
        params: IdParams,
        body: Type.Object(
          {
            reason: Type.String({ minLength: 1, maxLength: 500 }),
            client_created_at: Type.Optional(
              Type.String({
                format: 'date-time',
                description:
                  "when the till voided the sale — send it with a void queued offline: the cash handed back is booked on that day (the store's day, in its time_zone), like a synced sale's, and never before the sale's own day; never before the store's latest count (then the first day after it with no count), never after today unless the sale's own day is (its store's zone moved back since the sale). Kept as the sale's void_client_created_at; without it, the void is booked on the day it arrives (again never before the sale's own day). At or before the counted_at of a stock count of a SKU already recorded, the count saw the goods on the shelf: the void's `void` ledger row is followed by a `count_correction` row taking them out again (reason `count <count id>`): the SKU's balance moves by 0",
              }),
            ),
          },
          { additionalProperties: false },
        ),
        response: { 200: Sale },
      },
    },
    async (request, reply) => {
      const principal = tenantOf(request);
      const saleId = request.params.id;
      const storeId = await inTenantTransaction(db, principal.tenantId, (tx) => findSaleStore(tx, principal.tenantId, saleId));
      if (storeId === undefined || !inStoreScope(principal, storeId)) throw notFound('sale');
      const outcome = await writer.run(commandInputOf(request), { type: SALE_VOID_OP, storeId }, async (cmd) => ({
        status: 200,
        body: await recordVoid(cmd, saleId, request.body.reason, request.body.client_created_at),
      }));
      return sendOutcome(reply, outcome);
    },
  );

  app.post(
    '/v1/sales/:id/returns',
    {
      config: {
        permission: 'sales.return',
        refusals: {
          return_exceeds_sale: 'a SKU asked for beyond what the sale sold of it minus what earlier returns took back: `returnable` lists every requested SKU (`sku_id`, `requested`, `returnable`), nothing written',
          invalid_transition:
            "the sale is voided and the return carries no `client_created_at`, or one at or after the void's moment (its `void_client_created_at`, else its `voided_at`): nothing written",
          piece_not_returnable:
            'a named piece is not one the sale sold of its line\'s SKU (on an offline line that synced short, a piece missing then), or an earlier return of the sale took it back: `pieces` lists every such piece (`id`, `sku_id`, `reason`: not_sold_by_sale | already_returned), nothing written',
          limit_exceeded: 'the stock returned, or an account total, would exceed its limit',
          forbidden: 'the token made the sale (sold it, or synced it from a till) and the tenant requires a second person to undo it (`reason`: second_approver_required; setting require_second_approver_for_reversals); nothing written',
          service_unavailable:
            "a stock balance or journal account the return needs is held by another transaction: after the lane's lock wait (2 s), or at once while the tenant's sale lane knows it held (a void, return or sale waited for it before); with `Retry-After`, nothing written, the Idempotency-Key not kept",
        },
      },
      schema: {
        tags: ['sales'],
        summary: RETURN_SUMMARY,
        headers: IdempotencyHeaders,
        params: IdParams,
        body: Type.Object(
          {
            items: Type.Array(
              Type.Object(
                {
                  sku_id: Uuid,
                  quantity: Type.Optional(
                    Type.Integer({
                      minimum: 1,
                      maximum: 1_000_000_000_000,
                      description: 'base units (grams, pieces, millimetres) taken back; required unless the sale sold the SKU as workshop pieces (then, if sent, it must equal the sum of the named pieces)',
                    }),
                  ),
                  piece_ids: Type.Optional(
                    Type.Array(Uuid, {
                      minItems: 1,
                      maxItems: 500,
                      description:
                        'SKUs the sale sold as workshop pieces only (and required for them): the pieces brought back, each one the sale sold of this SKU and not taken back by an earlier return; they go back in stock',
                    }),
                  ),
                },
                { additionalProperties: false },
              ),
              { minItems: 1, maxItems: 200 },
            ),
            reason: Type.String({ minLength: 1, maxLength: 500 }),
            client_created_at: Type.Optional(
              Type.String({
                format: 'date-time',
                description:
                  "when the till took the return back — send it with a return queued offline: the refund is booked on that day by the rule of a void's client_created_at (the store's day, never before the sale's own day, nor before the store's latest count, never after today unless the sale's own day is: its store's zone moved back since the sale; without it, today, again never before the sale's own day). At or before the counted_at of a stock count of a SKU already recorded, the count saw the goods on the shelf: the `return` ledger row is followed by a `count_correction` row taking them out again (reason `count <count id>`): the SKU's balance moves by 0. Strictly before the moment of the sale's void (its `void_client_created_at`, else its `voided_at`) of a sale voided since: recorded with `after_void: true` and no stock or money effect (see the summary)",
              }),
            ),
          },
          { additionalProperties: false },
        ),
        response: {
          201: Type.Object({
            ...SaleReturn.properties,
            sale_returned_total: Type.Integer({ minimum: 0, maximum: 9_000_000_000_000, description: "minor units: the sale's returned_total after this return" }),
            remaining: Remaining("per SKU of the sale, in line order, after this return"),
          }),
        },
      },
    },
    async (request, reply) => {
      const principal = tenantOf(request);
      const saleId = request.params.id;
      const storeId = await inTenantTransaction(db, principal.tenantId, (tx) => findSaleStore(tx, principal.tenantId, saleId));
      if (storeId === undefined || !inStoreScope(principal, storeId)) throw notFound('sale');
      // Each return is a new fact (two returns of one item each are two): its key is kept as long as the return.
      const outcome = await writer.run(commandInputOf(request), { type: SALE_RETURN_OP, storeId, ttlHours: 'forever' }, async (cmd) => ({
        status: 201,
        body: await recordReturn(cmd, saleId, request.body),
      }));
      return sendOutcome(reply, outcome);
    },
  );

  /** A sync batch sent with an Idempotency-Key: one operation recording that the batch was taken (its sales are their own operations). */
  const SYNC_SPEC: CommandSpec = { type: 'sales.sync' };

  const SyncKey = Type.String({ minLength: 1, maxLength: 255 });
  const SyncSale = Type.Object({ idempotency_key: SyncKey, ...saleBodyProperties }, { additionalProperties: false });
  /** The batch as documented: every sale in full. */
  const SyncBody = Type.Object({ sales: Type.Array(SyncSale, { minItems: 1, maxItems: 500 }) }, { additionalProperties: false });
  /**
   * The batch as validated whole: its shape and every sale's key. Each sale
   * is then validated on its own (validateSyncSale), so a malformed one is
   * answered 400 in its own result, as it would be sent alone, and does not
   * keep the rest of a till's queue from syncing.
   */
  const SyncEnvelope = Type.Object(
    { sales: Type.Array(Type.Object({ idempotency_key: SyncKey }, { additionalProperties: true }), { minItems: 1, maxItems: 500 }) },
    { additionalProperties: false },
  );
  const bodyAjv = makeBodyAjv();
  const textAjv = makeTextAjv();
  const validateSyncSale = bodyAjv.compile(SyncSale);

  app.post(
    '/v1/sync/sales',
    {
      config: { permission: 'sales.sync', textCheckedByRoute: true },
      // The body is validated as an envelope here and sale by sale in the handler (SyncEnvelope).
      validatorCompiler: ({ schema, httpPart }) => (httpPart === 'body' ? bodyAjv.compile(SyncEnvelope) : textAjv.compile(schema)),
      schema: {
        tags: ['sales'],
        summary:
          'Sync sales an offline till queued. Each is applied as if sent alone to POST /v1/sales with its own Idempotency-Key (same fingerprint, ' +
          'so a sale sent online first is replayed, not duplicated; the key read as its header carries it: in UTF-8 — one key in the header and here, ASCII or not —, spaces and tabs around it dropped, and one of nothing else is 400); a sale that is not valid is answered 400 in its own result (paths /body/sales/<index>/…) ' +
          'and the others are applied; only a batch whose own shape is wrong (no sales, over 500, a sale without idempotency_key) is refused whole. A sale that already happened offline is never lost: when stock is now short, ' +
          'stock goes to 0 through the ledger, the missing quantity is recorded as shortfall_quantity on its lines and an ' +
          'offline_sale_shortage review item is opened (201, source offline). Likewise a named workshop piece no longer in stock is not sold: its ' +
          'quantity is the line\'s shortfall and the review item lists it under unavailable_pieces. A sale whose client_created_at is at or before the counted_at of the latest stock count of ' +
          'one of its SKUs in its store, recorded already, was found gone by that count: it keeps its stock ledger row of kind sale, preceded by one of kind count_correction ' +
          'giving the quantity back (the count took it out), so it moves that balance by 0 and takes no shortfall of it (README, Stock counts). The batch\'s own Idempotency-Key, when sent, ' +
          'is taken before any sale is applied: another batch under it is 422 idempotency_key_reused (one still running 409), nothing applied; the same batch ' +
          'again is applied again — each sale replays by its own key, one that failed only for the moment is tried afresh — and is answered with Idempotent-Replayed; the batch is compared as read (ids in any letter case are the same batch). ' +
          'The batch\'s key is a key space of its own, compared only with other batches\' keys: it may equal one of its sales\' keys, or a key used on another endpoint, without a 422.',
        headers: IdempotencyHeaders,
        body: SyncBody,
        response: {
          200: Type.Object({
            results: Type.Array(
              Type.Object({
                idempotency_key: Type.String(),
                status: Type.Integer(),
                replayed: Type.Boolean(),
                body: Type.Unknown({ description: 'the sale, or a problem document' }),
              }),
            ),
          }),
        },
      },
    },
    async (request, reply) => {
      const principal = tenantOf(request);
      // The batch as sent, then each sale validated on its own as if sent
      // alone — which reads its ids lowercased, in place — so the batch's
      // fingerprint below is taken over the sales as read: the same batch
      // naming a store or SKU in capitals is the same batch, as for POST
      // /v1/sales. Batch records stored under the fingerprint of the batch
      // as sent (before this) still replay.
      const asSent = commandInputOf(request);
      const unstorable = new Set<number>();
      const invalid = request.body.sales.map((queued, index): unknown => {
        try {
          assertStorableText(queued, `/body/sales/${index}`);
        } catch (error) {
          unstorable.add(index);
          return error;
        }
        if (validateSyncSale(queued)) return undefined;
        return Object.assign(new Error('a synced sale is not valid'), { validation: validateSyncSale.errors, validationContext: `body/sales/${index}` });
      });
      const read = commandInputOf(request);
      const base: CommandInput =
        read.fingerprint === asSent.fingerprint ? read : { ...read, equivalentFingerprints: [...(read.equivalentFingerprints ?? []), asSent.fingerprint] };
      // The batch's audit event keeps the batch as read, but a sale with text
      // the database cannot store (refused in its own result) is kept as null:
      // stored whole, it made the batch's record — and so the whole batch,
      // every time the till sent it again — fail at path "/".
      const batchPayload = unstorable.size === 0 ? base.payload : { sales: request.body.sales.map((queued, index) => (unstorable.has(index) ? null : queued)) };
      // The batch's own Idempotency-Key (optional; each sale has its own key).
      // Claimed and recorded — with the batch's fingerprint — BEFORE any sale
      // is applied, in storekeep's key space (`sync-batch:<key>`, apart from
      // the sales' keys): another batch under the key is 422 and one still
      // running is 409, with nothing applied. The same batch again is applied
      // again: every sale replays by its own key, and one that failed only for
      // the moment (in flight, unavailable) is tried afresh instead of its
      // failure being replayed forever. The answer then says it was replayed.
      const batchKey = base.idempotencyKey;
      let replayed = false;
      if (batchKey !== undefined) {
        const recorded = await runCommand(
          db,
          {
            ...base,
            idempotencyKey: internalIdempotencyKey('sync-batch', batchKey),
            // A batch key sent in UTF-8 before it was read as UTF-8 is stored under its Latin-1 reading (formerKeyForms).
            formerIdempotencyKeys: base.formerIdempotencyKeys?.map((former) => internalIdempotencyKey('sync-batch', former)),
            payload: batchPayload,
          },
          SYNC_SPEC,
          async () => ({ status: 200, body: { sales: request.body.sales.length } }),
        );
        replayed = recorded.replayed;
      }
      const results = await Promise.allSettled(
        request.body.sales.map(async (queued, index): Promise<CommandOutcome> => {
          // As if sent alone: a sale that is not valid is refused (400) on its
          // own, with the paths of its fields in the batch.
          if (invalid[index] !== undefined) throw invalid[index];
          const { idempotency_key, ...sale } = queued;
          if (!inStoreScope(principal, sale.store_id)) throw notFound('store');
          if (!roleHas(principal.role, 'sales.create')) throw new AppError('forbidden', `role ${principal.role} may not sales.create`);
          // The key as its Idempotency-Key header would carry it (spaces and
          // tabs around it dropped, keyAsHeaderCarries): a sale the till sent
          // online first and then synced is replayed, not sold again.
          const key = keyAsHeaderCarries(idempotency_key);
          if (key === '') {
            throw new AppError('validation_failed', 'an idempotency key of nothing but spaces and tabs is no key (a header carrying it is empty)', {
              errors: [{ path: `/body/sales/${index}/idempotency_key`, message: 'must hold more than spaces and tabs' }],
            });
          }
          const reserved = reservedKeyError(key, `/body/sales/${index}/idempotency_key`);
          if (reserved) throw reserved;
          const input: CommandInput = {
            ...base,
            idempotencyKey: key,
            // The forms an earlier release kept this sale's key under, so that
            // such a sale still replays: as sent, spaces and all (synced before
            // keys were read as a header carries them), and its UTF-8 read as
            // Latin-1 (sent online before headers were read as UTF-8). Not the
            // batch's own key's former forms, which `base` holds.
            formerIdempotencyKeys: [...(key === idempotency_key ? [] : [idempotency_key]), ...formerKeyForms(key)],
            fingerprint: fingerprintRequest('POST', '/v1/sales', sale),
            // the batch's other spelling is the batch's, not this sale's
            equivalentFingerprints: [],
            payload: sale,
          };
          return writer.sale(input, sale, 'offline');
        }),
      );
      const body = {
        results: results.map((result, index) => {
          const idempotencyKey = request.body.sales[index]!.idempotency_key;
          if (result.status === 'fulfilled') {
            const { status, replayed, body } = result.value;
            // A sale's answer as POST /v1/sales gives it: a stored one (replayed) through the schema's replay form.
            const answer = status === 201 ? JSON.parse(serializeAnswer(reply, Sale, body, replayed)) : placedInBatch(body, index);
            return { idempotency_key: idempotencyKey, status, replayed, body: answer };
          }
          const { appError, unexpected } = toAppError(result.reason);
          // Logged and reported as a request's own error is: the batch answers 200, so the error handler never sees these.
          logAnsweredError(request.log, result.reason, unexpected, reportError, { idempotency_key: idempotencyKey });
          return { idempotency_key: idempotencyKey, status: appError.status, replayed: false, body: placedInBatch(problemOf(appError, request.id), index) };
        }),
      };
      if (replayed) reply.header('idempotent-replayed', 'true');
      return body;
    },
  );
}
