import { Type } from 'typebox';
import { assertAllStores, assertStoreInScope } from '../core/auth.js';
import { holdingIdempotencyKey, inTenantTransaction } from '../core/command.js';
import { notFound } from '../core/errors.js';
import type { App, AppDeps } from '../http/app.js';
import { command, commandInputOf, sendOutcome, tenantOf } from '../http/command.js';
import { Code, cursorField, decodeCursor, IdempotencyHeaders, IdParams, IfMatchHeaders, isCursorOf, limitOf, ListCursor, ListLimit, ListQuery, Money, Name, Page, listOf, pageOf, PositiveQuantity, StoreParams, Timestamp, Uuid } from '../http/schemas.js';
import { adjustStock } from './adjustStock.js';
import { COUNT_CLOCK_SKEW, COUNT_MAX_AGE_DAYS, countStock, findStockCount, listStockCounts } from './countStock.js';
import { createSku, updateSku } from './createSku.js';
import { createStore, updateStore } from './createStore.js';
import { MERGE_PATCH_CONSUMES } from '../http/json.js';
import { etagOf, optionalExpectedVersion, versionedCommand } from '../http/etag.js';
import { findSku, findStore, listSkus, listStock, listStores } from './queries.js';
import { receiveStock } from './receiveStock.js';
import { listStockLedger } from './listStockLedger.js';
import { findReorderLevel, listLowStock } from './listLowStock.js';
import { setReorderLevel } from './setReorderLevel.js';
import { readAsOf, stockAsOf } from './stockAsOf.js';
import { SNAPSHOT_COMMAND, SNAPSHOT_SETTLE_MINUTES, SNAPSHOT_STEP_DAYS, takeStockSnapshotsInSteps } from './takeStockSnapshots.js';

const TimeZone = Type.String({
  minLength: 1,
  maxLength: 100,
  description:
    "The store's time zone: an IANA name as PostgreSQL lists it in pg_timezone_names (e.g. `America/New_York`, `Europe/Paris`, `UTC`). " +
    "The store's business day is the calendar day on its wall clock: the day its money is booked on (and counted), its daily sales figures' day, its \"today\". " +
    'A day when the clocks change has 23 or 25 hours. An unknown name is 400 at this field.',
  examples: ['America/New_York'],
});
const Store = Type.Object({
  id: Uuid,
  code: Type.String(),
  name: Type.String(),
  time_zone: TimeZone,
  version: Type.Integer({ minimum: 1, description: 'starts at 1, one more at each change; sent as the ETag of GET /v1/stores/{id} and of a change (If-Match on PATCH)' }),
  op_id: Uuid,
  created_at: Timestamp,
});
const Sku = Type.Object({
  id: Uuid,
  code: Type.String(),
  name: Type.String(),
  unit: Type.Union([Type.Literal('kg'), Type.Literal('piece'), Type.Literal('metre')]),
  price: Money,
  tracks_pieces: Type.Boolean(),
  version: Type.Integer({ minimum: 1, description: 'starts at 1, one more at each change; sent as the ETag of GET /v1/skus/{id} and of a change (If-Match on PATCH)' }),
  op_id: Uuid,
  created_at: Timestamp,
});
const UnitCost = Type.Integer({
  minimum: 0,
  maximum: 9_000_000_000_000,
  description:
    'What the supplier charges, in minor units per kg / piece / metre (as a sale line\'s unit_price): the line costs quantity × unit_cost for pieces, ' +
    'quantity × unit_cost / 1000 rounded half up for grams and millimetres. Required on every line when `supplier_id` is sent (0 for goods given free); refused without it.',
});
const PurchaseLineView = Type.Object({ sku_id: Uuid, quantity: Type.Integer(), unit_cost: Money, line_total: Money });
const Purchase = Type.Object(
  {
    id: Uuid,
    supplier_id: Uuid,
    total: Money,
    entry_id: Type.Union([Uuid, Type.Null()], { description: 'the `purchase` journal entry (debit the store\'s `inventory`, credit the supplier\'s `payable`); null when the total is 0' }),
    business_date: Type.Union([Type.String({ format: 'date' }), Type.Null()], {
      description: "the day the entry is booked on: the store's today in its time zone, or the first day after it with no count (as every store entry); null without an entry",
    }),
    lines: Type.Array(PurchaseLineView, { description: 'one per request line, in its order' }),
  },
  { description: 'Only on a purchase (a receipt with `supplier_id` and costs): what the receipt put on the supplier\'s balance.' },
);
const ReceiptSchema = {
  tags: ['inventory'],
  summary:
    'Receive goods into a store; with `supplier_id` and a `unit_cost` on every line, a purchase: what we owe the supplier is recorded in the same transaction. ' +
    'Piece-tracked SKUs are refused (422 unprocessable): they are received as pieces (POST /v1/pieces). Its Idempotency-Key is kept for good (not IDEMPOTENCY_TTL_HOURS): sent again days later, it replays the first answer.',
  description:
    'A receipt without `supplier_id` and costs moves stock only, and is answered as it always was (no `purchase`). ' +
    'A purchase also writes a journal entry of kind `purchase`: debit the store\'s `inventory` account, credit the supplier\'s `payable` account, by the sum of the line totals ' +
    '(each line rounded as a sale line is); the supplier\'s outstanding at GET /v1/ledger/suppliers rises by it. A total of 0 writes no entry. ' +
    '`supplier_id` that is not a supplier of the tenant (unknown, or a customer): 400 at `/body/supplier_id`; `unit_cost` without `supplier_id`: 400 at `/body/supplier_id`; ' +
    '`supplier_id` with a line lacking `unit_cost`: 400 at `/body/items/<index>/unit_cost`. Nothing is written on a refusal. Needs `stock.receive`, costs or not. ' +
    'A purchase is not reverted (POST /v1/operations/{op_id}/revert of a receipt is 422): goods of it sent back, or recorded by mistake, are a return to the supplier (POST /v1/purchases/{id}/returns with `purchase.id`), which credits the supplier line by line.',
  headers: IdempotencyHeaders,
  params: StoreParams,
  body: Type.Object(
    {
      items: Type.Array(Type.Object({ sku_id: Uuid, quantity: PositiveQuantity, unit_cost: Type.Optional(UnitCost) }, { additionalProperties: false }), { minItems: 1, maxItems: 1000 }),
      reference: Type.Optional(Type.String({ maxLength: 200 })),
      supplier_id: Type.Optional(Uuid),
    },
    { additionalProperties: false },
  ),
  response: { 201: Type.Object({ op_id: Uuid, items: Type.Array(Type.Object({ sku_id: Uuid, quantity_after: Type.Integer() })), purchase: Type.Optional(Purchase) }) },
};
const isIdCursor = isCursorOf<{ id: string }>({ id: cursorField.int64Text });
const StockCount = Type.Object({
  id: Uuid,
  op_id: Uuid,
  store_id: Uuid,
  counted_at: Timestamp,
  counted_at_exact: Type.String({
    format: 'date-time',
    description: 'counted_at to the microsecond (UTC, `…T10:00:00.123456Z`): the stock ledger rows with `created_at_exact` at or before it are what `expected_quantity` was read from',
  }),
  reference: Type.Union([Type.String(), Type.Null()]),
  created_at: Timestamp,
  items: Type.Array(
    Type.Object({
      sku_id: Uuid,
      counted_quantity: Type.Integer({ description: 'base units on the shelf at counted_at, as sent' }),
      expected_quantity: Type.Integer({ description: "the store's stock of the SKU at counted_at: the quantity_after of its last stock ledger row at or before that moment (0 when none), plus the variances of earlier counts recorded after it, plus what sales synced by tills with a client_created_at at or before it, recorded after it, moved" }),
      variance: Type.Integer({ description: 'counted_quantity − expected_quantity: what the count moved the balance by' }),
      quantity_after: Type.Integer({ description: 'the balance the count left (the current balance moved by the variance; unchanged when the variance is 0)' }),
      ledger_id: Type.Union([Type.Integer(), Type.Null()], { description: 'the stock ledger row (kind `count`) that moved the balance; null when the variance is 0' }),
    }),
    { description: 'one per SKU counted, in sku_id order' },
  ),
});
const isUuidCursor = isCursorOf<{ id: string }>({ id: cursorField.uuid });

const isCodeCursor = isCursorOf<{ code: string }>({ code: cursorField.text });
const isSkuCursor = isCursorOf<{ sku_id: string }>({ sku_id: cursorField.uuid });
const ReorderLevel = Type.Union([Type.Integer({ minimum: 0, maximum: 1_000_000_000_000_000 }), Type.Null()], {
  description: "the store's reorder level of the SKU, in its base units (grams, pieces, millimetres): at or below it, the SKU is on the store's low-stock list (GET …/stock/low); null: none",
});
const LowStockItem = Type.Object({
  sku_id: Uuid,
  code: Type.String(),
  name: Type.String(),
  quantity: Type.Integer({ description: "the store's stock of the SKU now (0 when the store never held it)" }),
  reorder_level: Type.Integer(),
  shortfall: Type.Integer({ minimum: 0, description: 'reorder_level − quantity: what brings the stock back up to the level' }),
});

export async function inventoryRoutes(app: App, { db }: AppDeps): Promise<void> {
  app.post(
    '/v1/stores',
    {
      config: { permission: 'stores.write', refusals: { forbidden: 'a token limited to some stores (the new store would lie outside its reach)', already_exists: 'a store with this code exists' } },
      schema: {
        tags: ['inventory'],
        summary: 'Create a store. A token limited to some stores may not (403): the store would lie outside its reach.',
        description: '`time_zone` (optional, default `UTC`) sets the store\'s business day: see the Store schema.',
        headers: IdempotencyHeaders,
        body: Type.Object({ code: Code(50), name: Name(200), time_zone: Type.Optional(TimeZone) }, { additionalProperties: false }),
        response: { 201: Store },
      },
    },
    async (request, reply) => {
      // A new store lies outside a store-limited token's reach (it could not
      // use it), and its code clashing with a store it cannot see would tell
      // it that store exists (409): like other tenant-wide acts, 403 first.
      assertAllStores(tenantOf(request), 'new stores');
      return versionedCommand(db, request, reply, { type: 'store.create' }, async (cmd) => ({ status: 201, body: await createStore(cmd, request.body) }));
    },
  );

  app.get(
    '/v1/stores',
    { config: { permission: 'stores.read' }, schema: { tags: ['inventory'], summary: 'List stores in the caller\'s scope', querystring: ListQuery, response: { 200: Page(Store) } } },
    async (request) => {
      const principal = tenantOf(request);
      const limit = request.query.limit ?? 50;
      const after = decodeCursor(request.query.cursor, isCodeCursor, listOf(request))?.code;
      const rows = await inTenantTransaction(db, principal.tenantId, (tx) => listStores(tx, principal.tenantId, principal.storeIds, after, limit + 1));
      return pageOf(rows, limit, (last) => ({ code: last.code }), listOf(request));
    },
  );

  app.get(
    '/v1/stores/:id',
    { config: { permission: 'stores.read' }, schema: { tags: ['inventory'], summary: 'A store; its `version` is sent as the ETag (If-Match on PATCH)', params: IdParams, response: { 200: Store } } },
    async (request, reply) => {
      const principal = tenantOf(request);
      assertStoreInScope(principal, request.params.id);
      const store = await inTenantTransaction(db, principal.tenantId, (tx) => findStore(tx, principal.tenantId, request.params.id));
      if (!store) throw notFound('store');
      reply.header('etag', etagOf(store.version));
      return store;
    },
  );

  app.patch(
    '/v1/stores/:id',
    {
      config: {
        permission: 'stores.write',
        refusals: {
          conflict:
            "the new zone's today is before the store's latest counted day (`latest_counted_day`, `today_in_time_zone`; possible from `allowed_from`, that day's first moment in the new zone)",
        },
      },
      schema: {
        tags: ['inventory'],
        summary: "Change a store's name or time zone (a JSON merge patch, sent as application/json or application/merge-patch+json: what is sent changes, the rest stays); not to a zone whose today is before the store's latest counted day (409, the name unchanged too).",
        description:
          'What is booked stays booked: journal entries keep their business day and settlements theirs (a counted day stays closed, and money booked after the change never lands on a day already counted). ' +
          "A zone whose today is before the store's latest counted day (a settlement of any status) is refused, `409 conflict`, nothing changed: money taken next would be booked on the day after that count, a day the new zone's clock has not reached and that could not be counted until it does (a store whose today was counted in UTC+14, moved to UTC−11, for two or three days). " +
          "The problem names `latest_counted_day`, `today_in_time_zone` (the new zone's) and `allowed_from`, the first moment of the counted day in the new zone, from which the change is allowed. " +
          "From the change on, moments become days in the new zone; the store's daily sales figures, derived from its sales, are recomputed in the new zone by the same command (a day left without sales gets zeros). " +
          "Sales do not wait for the change: one that reads the zone before the change commits is booked in the old zone, and one that commits after the recompute read the sales is counted by the next catch-up of the figures. A count of the store waits for the change. " +
          'The same zone again changes nothing. An unknown zone is 400 at `/body/time_zone`. ' +
          "Optional `If-Match` with the ETag of GET (the store's `version`): a store changed since → `412 version_conflict` with `current_version`, nothing changed. " +
          'A change that changes something (the name, the zone, or both) adds 1 to the version; the answer carries the new ETag, a replay (same Idempotency-Key) the ETag its first answer carried.',
        headers: IfMatchHeaders('store'),
        consumes: MERGE_PATCH_CONSUMES,
        params: IdParams,
        body: Type.Object({ name: Type.Optional(Name(200)), time_zone: Type.Optional(TimeZone) }, { additionalProperties: false }),
        response: { 200: Store },
      },
    },
    async (request, reply) => {
      assertStoreInScope(tenantOf(request), request.params.id);
      const expected = optionalExpectedVersion(request, 'store');
      return versionedCommand(db, request, reply, { type: 'store.update' }, async (cmd) => ({
        status: 200,
        body: await updateStore(cmd, request.params.id, request.body, expected),
      }));
    },
  );

  app.post(
    '/v1/skus',
    {
      config: { permission: 'skus.write', refusals: { already_exists: 'a SKU with this code exists' } },
      schema: {
        tags: ['inventory'],
        summary: 'Create a SKU. `price` is per kg / piece / metre in minor units; quantities are grams, pieces or millimetres.',
        headers: IdempotencyHeaders,
        body: Type.Object(
          {
            code: Code(100),
            name: Name(200),
            unit: Type.Union([Type.Literal('kg'), Type.Literal('piece'), Type.Literal('metre')]),
            price: Type.Integer({ minimum: 0, maximum: 9_000_000_000_000 }),
            tracks_pieces: Type.Optional(Type.Boolean({ description: 'stock is the sum of workshop pieces (rolls, cut pieces, bundles)' })),
          },
          { additionalProperties: false },
        ),
        response: { 201: Sku },
      },
    },
    async (request, reply) => versionedCommand(db, request, reply, { type: 'sku.create' }, async (cmd) => ({ status: 201, body: await createSku(cmd, request.body) })),
  );

  app.get(
    '/v1/skus',
    {
      config: { permission: 'skus.read' },
      schema: {
        tags: ['inventory'],
        summary:
          "List SKUs by code; `?code=` is the SKU of exactly that code (a till scanning a label: one item or none), `?q=` the SKUs whose code or name contains the text in any letter case (a back office searching). Pages with `?limit=` (1–500, default 50) and `?cursor=` like every list.",
        description:
          'Both filters keep the plain list\'s order (code) and cursor, combine with each other, and are sent again with every cursor. ' +
          '`code` is read like a stored code (Unicode NFC; no whitespace at its ends, no control or invisible characters, 1–100 characters) and compared exactly (letter case too); a code no SKU has is an empty page. ' +
          '`q` (3–200 characters, not only whitespace; `%` and `_` are plain characters) is looked up by its trigrams (PostgreSQL pg_trgm): a page reads the SKUs of the tenant that hold the text, not the others — ' +
          'a text of two characters would match most SKUs and is refused; one whose letters and digits come in runs shorter than three (`a-b`) finds what it should but reads every SKU of the tenant. ' +
          'An empty `q` or `code`, a `q` longer than 200 characters, a `code` no SKU could have, any other query parameter: 400 at `/querystring/<name>`.',
        querystring: Type.Object(
          {
            code: Type.Optional(Code(100)),
            q: Type.Optional(
              Type.String({
                minLength: 3,
                maxLength: 200,
                pattern: '\\S',
                description: 'SKUs whose code or name contains this text, any letter case (3–200 characters, not only whitespace)',
              }),
            ),
            limit: ListLimit,
            cursor: ListCursor,
          },
          { additionalProperties: false },
        ),
        response: { 200: Page(Sku) },
      },
    },
    async (request) => {
      const principal = tenantOf(request);
      const limit = request.query.limit ?? 50;
      const after = decodeCursor(request.query.cursor, isCodeCursor, listOf(request))?.code;
      const filter = { code: request.query.code, q: request.query.q };
      const rows = await inTenantTransaction(db, principal.tenantId, (tx) => listSkus(tx, principal.tenantId, after, limit + 1, filter));
      return pageOf(rows, limit, (last) => ({ code: last.code }), listOf(request));
    },
  );

  app.get(
    '/v1/skus/:id',
    { config: { permission: 'skus.read' }, schema: { tags: ['inventory'], summary: 'A SKU; its `version` is sent as the ETag (If-Match on PATCH)', params: IdParams, response: { 200: Sku } } },
    async (request, reply) => {
      const principal = tenantOf(request);
      const sku = await inTenantTransaction(db, principal.tenantId, (tx) => findSku(tx, principal.tenantId, request.params.id));
      if (!sku) throw notFound('SKU');
      reply.header('etag', etagOf(sku.version));
      return sku;
    },
  );

  app.patch(
    '/v1/skus/:id',
    {
      config: {
        permission: 'skus.write',
        refusals: { already_exists: 'another SKU has this code', forbidden: 'a token limited to some stores (a SKU is sold in every store)' },
      },
      schema: {
        tags: ['inventory'],
        summary:
          "Change a SKU's code, name or price (a JSON merge patch, sent as application/json or application/merge-patch+json): what is sent changes, the rest stays.",
        description:
          'The price is the default a till, an order or a visit proposes; what was recorded keeps what it was recorded with (a sale line its `unit_price`, a consignment line the price agreed when it was left). ' +
          "A SKU's `unit` and `tracks_pieces` never change (its quantities are in that unit's base, and its stock moves as pieces or not): sent, they are 400 like any other unknown member. " +
          'Two changes of one SKU take turns: the later one applies to what the earlier left. The same values again, or an empty patch, change nothing (answered the SKU as it is, no audit event, its version unchanged). ' +
          'Optional `If-Match` with the ETag of GET (the SKU\'s `version`): a SKU changed since → `412 version_conflict` with `current_version`, nothing changed — two managers repricing from what each saw: the second is told, not overwritten unseen. ' +
          'Each change that changes something adds 1 to the version; the answer carries the new ETag, a replay (same Idempotency-Key) the ETag its first answer carried. ' +
          'A code another SKU of the tenant has: 409 already_exists, nothing changed. A SKU is sold in every store: a token limited to some stores may not change it (403). An unknown SKU: 404. ' +
          'The change is audited (`sku.update`, before and after).',
        headers: IfMatchHeaders('SKU'),
        consumes: MERGE_PATCH_CONSUMES,
        params: IdParams,
        body: Type.Object(
          {
            code: Type.Optional(Code(100)),
            name: Type.Optional(Name(200)),
            price: Type.Optional(Type.Integer({ minimum: 0, maximum: 9_000_000_000_000, description: 'minor units per kg / piece / metre' })),
          },
          { additionalProperties: false },
        ),
        response: { 200: Sku },
      },
    },
    async (request, reply) => {
      assertAllStores(tenantOf(request), 'SKUs');
      const expected = optionalExpectedVersion(request, 'SKU');
      return versionedCommand(db, request, reply, { type: 'sku.update' }, async (cmd) => ({ status: 200, body: await updateSku(cmd, request.params.id, request.body, expected) }));
    },
  );

  app.post(
    '/v1/stores/:store_id/stock/receipts',
    { config: { permission: 'stock.receive', refusals: { unprocessable: 'a piece-tracked SKU (received as pieces: POST /v1/pieces)', limit_exceeded: 'the stock of a SKU in the store would exceed 10^15 base units' } }, schema: ReceiptSchema },
    async (request, reply) => {
      assertStoreInScope(tenantOf(request), request.params.store_id);
      return command(db, request, reply, { type: 'stock.receive', storeId: request.params.store_id, ttlHours: 'forever' }, async (cmd) => ({
        status: 201,
        body: await receiveStock(cmd, request.params.store_id, request.body),
      }));
    },
  );

  app.post(
    '/v1/stores/:store_id/stock/adjustments',
    {
      config: { permission: 'stock.adjust', refusals: { insufficient_stock: 'the stock would go negative (`shortages`)', unprocessable: 'a piece-tracked SKU (its stock moves only through its pieces)', limit_exceeded: 'the stock of a SKU in the store would exceed 10^15 base units' } },
      schema: {
        tags: ['inventory'],
        summary: 'Correct a stock balance by a relative change (a negative result is refused with insufficient_stock). Piece-tracked SKUs are refused (422 unprocessable): their stock moves only through their pieces. The audit event records the balance before and after. Its Idempotency-Key is kept for good (not IDEMPOTENCY_TTL_HOURS): sent again days later, it replays the first answer.',
        headers: IdempotencyHeaders,
        params: StoreParams,
        body: Type.Object(
          {
            sku_id: Uuid,
            quantity_change: Type.Integer({ minimum: -1_000_000_000_000, maximum: 1_000_000_000_000, not: { const: 0 } }),
            reason: Type.String({ minLength: 1, maxLength: 500 }),
          },
          { additionalProperties: false },
        ),
        response: { 201: Type.Object({ op_id: Uuid, sku_id: Uuid, quantity_change: Type.Integer(), quantity_after: Type.Integer(), reason: Type.String() }) },
      },
    },
    async (request, reply) => {
      assertStoreInScope(tenantOf(request), request.params.store_id);
      return command(db, request, reply, { type: 'stock.adjust', storeId: request.params.store_id, ttlHours: 'forever' }, async (cmd) => ({
        status: 201,
        body: await adjustStock(cmd, request.params.store_id, request.body),
      }));
    },
  );

  app.post(
    '/v1/stores/:store_id/stock/counts',
    {
      config: {
        permission: 'stock.adjust',
        refusals: {
          insufficient_stock: 'a variance would make a balance negative (less was counted than has been sold since counted_at): `shortages` and `lines`, nothing written',
          unprocessable: 'a piece-tracked SKU (its stock moves only through its pieces)',
          limit_exceeded: 'the stock of a SKU in the store would exceed 10^15 base units',
          conflict: 'a count of one of its SKUs counted at or after this `counted_at` is already recorded (`later_counts`): it set the stock; or a SKU\'s stock at `counted_at` comes out below 0 (`lines`: an earlier count found less than the ledger then took out before this `counted_at`): count it as of now; nothing written',
        },
      },
      schema: {
        tags: ['inventory'],
        summary:
          'Record a stock count (stocktake) taken while the shop is open: each line is what was on the shelf at `counted_at`; each balance moves by the variance between that and the stock the ledger held at `counted_at`, ' +
          'so sales and receipts recorded after it are kept. Its Idempotency-Key is kept for good (not IDEMPOTENCY_TTL_HOURS).',
        description:
          '`expected_quantity` is the store\'s stock of the SKU at `counted_at` (the `quantity_after` of its last stock ledger row at or before it), read while the balance row is locked, plus the variances of earlier counts of the SKU recorded after that moment (their correction holds from their own `counted_at`), ' +
          'plus what sales synced by tills (POST /v1/sync/sales) with a `client_created_at` at or before `counted_at`, recorded after it, moved (they had left the shelf the count saw; a synced sale recorded after the count moves the balance by 0 through a `count_correction` row: each such sale is taken out once), ' +
          'plus what voids and returns sent with a `client_created_at` (the till\'s time) at or before `counted_at`, recorded after it, moved (their goods were back on the shelf the count saw; one recorded after the count moves the balance by 0 through a `count_correction` row of −q: each is given back once); ' +
          '`variance` = `counted_quantity` − `expected_quantity` is applied to the current balance through one stock ledger row of kind `count` (the `reference` as its reason) per line whose variance is not 0; ' +
          'a line with variance 0 writes no ledger row but is answered. The count and its lines are kept (GET …/stock/counts). ' +
          `\`counted_at\` defaults to now; one up to ${COUNT_CLOCK_SKEW} ahead of the server's clock is taken as counted now (the answer's \`counted_at\`), one further ahead or more than ${COUNT_MAX_AGE_DAYS} days ago is 400 at \`/body/counted_at\`. ` +
          'A variance that would make a balance negative (less counted than sold since): 409 insufficient_stock with `shortages` and `lines`, nothing written. ' +
          'A SKU already counted at or after this `counted_at` (by a count recorded earlier): 409 conflict with `later_counts`, nothing written — the later count set the stock (the same count sent again under another key is refused so too). ' +
          'A SKU whose stock at `counted_at` comes out below 0 — an earlier count found less than the ledger then took out before this `counted_at` (a miscount), or tills sold before it more than the ledger held — is 409 conflict with `lines` (`sku_id`, `expected_quantity`), nothing written: count it as of now. ' +
          'An unknown SKU: 400 at its line\'s `/body/items/<index>/sku_id`; a SKU on two lines: 400 at the second; a piece-tracked SKU: 422. Needs `stock.adjust`.',
        headers: IdempotencyHeaders,
        params: StoreParams,
        body: Type.Object(
          {
            items: Type.Array(
              Type.Object({ sku_id: Uuid, counted_quantity: Type.Integer({ minimum: 0, maximum: 1_000_000_000_000_000, description: 'base units on the shelf (grams, pieces, millimetres)' }) }, { additionalProperties: false }),
              { minItems: 1, maxItems: 1000 },
            ),
            counted_at: Type.Optional(Type.String({ format: 'date-time', description: 'when the shelf was counted (RFC 3339 with its offset); default now' })),
            reference: Type.Optional(Type.String({ maxLength: 200 })),
          },
          { additionalProperties: false },
        ),
        response: { 201: StockCount },
      },
    },
    async (request, reply) => {
      assertStoreInScope(tenantOf(request), request.params.store_id);
      return command(db, request, reply, { type: 'stock.count', storeId: request.params.store_id, ttlHours: 'forever' }, async (cmd) => ({
        status: 201,
        body: await countStock(cmd, request.params.store_id, request.body),
      }));
    },
  );

  app.get(
    '/v1/stores/:store_id/stock/counts',
    {
      config: { permission: 'stock.read' },
      schema: {
        tags: ['inventory'],
        summary: "A store's stock counts with their lines (counted, expected, variance), newest first (cursor pagination)",
        params: StoreParams,
        querystring: ListQuery,
        response: { 200: Page(StockCount) },
      },
    },
    async (request) => {
      const principal = tenantOf(request);
      const storeId = request.params.store_id;
      assertStoreInScope(principal, storeId);
      const limit = limitOf(request);
      const list = listOf(request);
      const before = decodeCursor(request.query.cursor, isUuidCursor, list)?.id;
      return inTenantTransaction(db, principal.tenantId, async (tx) => {
        if (!(await findStore(tx, principal.tenantId, storeId))) throw notFound('store');
        return pageOf(await listStockCounts(tx, principal.tenantId, storeId, before, limit + 1), limit, (last) => ({ id: last.id }), list);
      });
    },
  );

  app.get(
    '/v1/stores/:store_id/stock/counts/:id',
    {
      config: { permission: 'stock.read' },
      schema: { tags: ['inventory'], summary: 'A stock count of the store, with its lines', params: Type.Object({ store_id: Uuid, id: Uuid }), response: { 200: StockCount } },
    },
    async (request) => {
      const principal = tenantOf(request);
      const { store_id: storeId, id } = request.params;
      assertStoreInScope(principal, storeId);
      const count = await inTenantTransaction(db, principal.tenantId, (tx) => findStockCount(tx, principal.tenantId, storeId, id));
      if (!count) throw notFound('stock count');
      return count;
    },
  );

  app.get(
    '/v1/stores/:store_id/stock',
    {
      config: { permission: 'stock.read' },
      schema: {
        tags: ['inventory'],
        summary:
          'Stock of every SKU in a store: now, or with `?as_of=` (ISO 8601) at that moment — served from the daily snapshot ' +
          'plus the ledger since, so it costs the same with 10 million ledger rows as with 10 thousand. An as-of answer has ' +
          '`as_of` and no `updated_at`. `as_of` is read as PostgreSQL reads a timestamptz, to the microsecond (a ledger row\'s ' +
          '`created_at_exact` includes that row); the answer\'s `as_of` is that moment in UTC, to the millisecond like every ' +
          'timestamp of the API. Outside the years 0001–9999 in UTC, or unreadable: 400. In `sku_id` order; pages with `?limit=` ' +
          '(1–500, default 50) and `?cursor=` (the previous page\'s `next_cursor`) like every list: without a limit, 50 SKUs a page, ' +
          'with or without a cursor (until lists followed API.md here, an answer without either had every SKU).',
        description:
          'A page is the SKUs after the cursor\'s `sku_id` (a range of the balances\' primary key, whatever the store\'s size), each read ' +
          'when its page is: walking the pages while sales and receipts go on lists every SKU of the store once, in order, with its ' +
          'quantity when its page was read (a SKU first stocked during the walk is listed if it falls after the cursor). With `as_of`, ' +
          'every page is the stock at that moment (send the same `as_of` with each cursor); a SKU the store stocked only later is ' +
          'listed with 0. A limit outside 1–500, a cursor this list did not write, or any other query parameter: 400 ' +
          '(application/problem+json, at `/querystring/<name>`). A token limited to other stores: 404.',
        params: StoreParams,
        querystring: Type.Object(
          {
            as_of: Type.Optional(Type.String({ format: 'date-time' })),
            limit: ListLimit,
            cursor: ListCursor,
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            as_of: Type.Optional(Timestamp),
            items: Type.Array(Type.Object({ sku_id: Uuid, quantity: Type.Integer(), updated_at: Type.Optional(Timestamp) })),
            next_cursor: Type.Union([Type.String(), Type.Null()]),
          }),
        },
      },
    },
    async (request) => {
      const principal = tenantOf(request);
      assertStoreInScope(principal, request.params.store_id);
      const { as_of, cursor } = request.query;
      const list = listOf(request);
      const after = decodeCursor(cursor, isSkuCursor, list)?.sku_id;
      const limit = limitOf(request);
      return inTenantTransaction(db, principal.tenantId, async (tx) => {
        const store = await findStore(tx, principal.tenantId, request.params.store_id);
        if (!store) throw notFound('store');
        const page = { after, limit: limit + 1 };
        const paged = <T extends { sku_id: string }>(rows: T[]) => pageOf(rows, limit, (last) => ({ sku_id: last.sku_id }), list);
        if (as_of !== undefined) {
          const asOf = await readAsOf(tx, as_of);
          return { as_of: new Date(asOf), ...paged(await stockAsOf(tx, principal.tenantId, request.params.store_id, asOf, page)) };
        }
        return paged(await listStock(tx, principal.tenantId, request.params.store_id, page));
      });
    },
  );

  app.get(
    '/v1/stores/:store_id/stock/low',
    {
      config: { permission: 'stock.read' },
      schema: {
        tags: ['inventory'],
        summary:
          "A store's low stock: every SKU whose stock is at or below the store's reorder level of it (PUT …/stock/{sku_id}/reorder-level), " +
          'with `quantity` (0 when the store never held it), `reorder_level` and `shortfall` (level − quantity), in `sku_id` order (cursor pagination).',
        description:
          "A page is a range of the store's reorder levels from the cursor's `sku_id`, each joined to its balance and SKU by their keys: it reads the levels " +
          'after the cursor until it has a page of low ones (levels only, never the ledger). Each SKU is read when its page is: a walk while sales and receipts go on ' +
          'lists a SKU by its stock when its page was read. A limit outside 1–500, a cursor this list did not write, or any other query parameter: 400 ' +
          "(at `/querystring/<name>`). A store that is not there or outside the token's stores: 404.",
        params: StoreParams,
        querystring: ListQuery,
        response: { 200: Page(LowStockItem) },
      },
    },
    async (request) => {
      const principal = tenantOf(request);
      const storeId = request.params.store_id;
      assertStoreInScope(principal, storeId);
      const list = listOf(request);
      const after = decodeCursor(request.query.cursor, isSkuCursor, list)?.sku_id;
      const limit = limitOf(request);
      return inTenantTransaction(db, principal.tenantId, async (tx) => {
        if (!(await findStore(tx, principal.tenantId, storeId))) throw notFound('store');
        return pageOf(await listLowStock(tx, principal.tenantId, storeId, after, limit + 1), limit, (last) => ({ sku_id: last.sku_id }), list);
      });
    },
  );

  app.put(
    '/v1/stores/:store_id/stock/:sku_id/reorder-level',
    {
      config: { permission: 'stock.adjust' },
      schema: {
        tags: ['inventory'],
        summary:
          "Set a store's reorder level of a SKU (`{ quantity }`, base units, 0 to 10^15), or remove it (`{ quantity: null }`): at or below it the SKU is on the store's low-stock list (GET …/stock/low). " +
          'Answered `{ store_id, sku_id, reorder_level }`.',
        description:
          'Each change is audited (`stock.reorder_level.set`, subject `reorder_level` `<store_id>/<sku_id>`, with the level before and after). Changes of one level take turns: ' +
          "the later applies to what the earlier left, so each event's `before` is the previous event's `after`. The same level again, or removing a level there is not, changes nothing (answered, no event). " +
          'A quantity that is negative, not an integer, above 10^15 or missing: 400 at `/body/quantity`. An unknown SKU, or a store that is not there or outside the token\'s stores: 404. Needs `stock.adjust`. ' +
          'Nothing is written on a refusal.',
        headers: IdempotencyHeaders,
        params: Type.Object({ store_id: Uuid, sku_id: Uuid }),
        body: Type.Object({ quantity: ReorderLevel }, { additionalProperties: false }),
        response: { 200: Type.Object({ store_id: Uuid, sku_id: Uuid, reorder_level: ReorderLevel }) },
      },
    },
    async (request, reply) => {
      const { store_id: storeId, sku_id: skuId } = request.params;
      assertStoreInScope(tenantOf(request), storeId);
      return command(db, request, reply, { type: 'stock.reorder_level.set', storeId }, async (cmd) => ({
        status: 200,
        body: await setReorderLevel(cmd, storeId, skuId, request.body.quantity),
      }));
    },
  );

  app.get(
    '/v1/stores/:store_id/stock/:sku_id',
    {
      config: { permission: 'stock.read' },
      schema: {
        tags: ['inventory'],
        summary:
          "One SKU's stock in a store: now (`{ sku_id, quantity, updated_at, reorder_level }`; `reorder_level` the store's level of the SKU, null when none), or with `?as_of=` at that moment (`{ as_of, sku_id, quantity }`), " +
          'as the store\'s stock list gives it (one primary-key read, and one of the reorder level; with `as_of`, its daily snapshot plus the ledger since, and no `reorder_level`). ' +
          'A SKU the store never held: quantity 0 (`updated_at` null).',
        description:
          'An unknown SKU, or a store that is not there or outside the token\'s stores: 404. An `as_of` PostgreSQL cannot read, or outside the years 0001–9999 in UTC: 400 at `/querystring/as_of`.',
        params: Type.Object({ store_id: Uuid, sku_id: Uuid }),
        querystring: Type.Object({ as_of: Type.Optional(Type.String({ format: 'date-time' })) }, { additionalProperties: false }),
        response: {
          200: Type.Object({
            as_of: Type.Optional(Timestamp),
            sku_id: Uuid,
            quantity: Type.Integer(),
            updated_at: Type.Optional(Type.Union([Timestamp, Type.Null()], { description: 'when the balance last moved (null: never held); absent with as_of' })),
            reorder_level: Type.Optional(ReorderLevel),
          }),
        },
      },
    },
    async (request) => {
      const principal = tenantOf(request);
      const { store_id: storeId, sku_id: skuId } = request.params;
      assertStoreInScope(principal, storeId);
      return inTenantTransaction(db, principal.tenantId, async (tx) => {
        if (!(await findStore(tx, principal.tenantId, storeId))) throw notFound('store');
        if (!(await findSku(tx, principal.tenantId, skuId))) throw notFound('SKU');
        const page = { skuId };
        if (request.query.as_of !== undefined) {
          const asOf = await readAsOf(tx, request.query.as_of);
          const [row] = await stockAsOf(tx, principal.tenantId, storeId, asOf, page);
          return { as_of: new Date(asOf), sku_id: skuId, quantity: row?.quantity ?? 0 };
        }
        const [row] = await listStock(tx, principal.tenantId, storeId, page);
        return { sku_id: skuId, quantity: row?.quantity ?? 0, updated_at: row?.updated_at ?? null, reorder_level: await findReorderLevel(tx, principal.tenantId, storeId, skuId) };
      });
    },
  );

  app.get(
    '/v1/stores/:store_id/stock/:sku_id/ledger',
    {
      config: { permission: 'stock.read' },
      schema: {
        tags: ['inventory'],
        summary: 'The stock ledger of one SKU in a store, newest first (cursor pagination). `kind`: receipt, adjustment, count (the variance of a stock count), count_correction (in a sale synced with a client_created_at at or before the counted_at of a count already recorded: gives back what its sale row takes, the count having found the goods gone; in a void or return sent with a client_created_at at or before it: takes out what its void or return row puts back, the count having found the goods on the shelf; reason `count <count id>`), sale, void, return (a partial return of a sale), supplier_return (goods of a purchase sent back to its supplier), transfer_out, …',
        params: Type.Object({ store_id: Uuid, sku_id: Uuid }),
        querystring: ListQuery,
        response: {
          200: Page(
            Type.Object({
              id: Type.Integer(),
              op_id: Uuid,
              kind: Type.String(),
              quantity_change: Type.Integer(),
              quantity_after: Type.Integer(),
              reason: Type.Union([Type.String(), Type.Null()]),
              created_at: Timestamp,
              created_at_exact: Type.String({
                format: 'date-time',
                description: 'created_at to the microsecond, as stored (UTC, `…T10:00:00.123456Z`); as `as_of` of the stock, it includes this row',
              }),
            }),
          ),
        },
      },
    },
    async (request) => {
      const principal = tenantOf(request);
      const { store_id: storeId, sku_id: skuId } = request.params;
      assertStoreInScope(principal, storeId);
      const limit = request.query.limit ?? 50;
      const beforeId = decodeCursor(request.query.cursor, isIdCursor, listOf(request))?.id;
      return inTenantTransaction(db, principal.tenantId, async (tx) => {
        const store = await findStore(tx, principal.tenantId, storeId);
        if (!store) throw notFound('store');
        if (!(await findSku(tx, principal.tenantId, skuId))) throw notFound('SKU');
        const rows = await listStockLedger(tx, principal.tenantId, storeId, skuId, beforeId, limit + 1);
        return pageOf(rows, limit, (last) => ({ id: String(last.id) }), listOf(request));
      });
    },
  );

  app.post(
    '/v1/stock/snapshots',
    {
      config: { permission: 'stock.adjust', refusals: { forbidden: 'a token limited to some stores (snapshots span every store)' } },
      schema: {
        tags: ['inventory'],
        summary:
          'Take the daily stock snapshots of this tenant now (the nightly job does the same): every UTC day after the latest ' +
          `snapshot up to \`through\` (by default, and at the latest — a later date is taken as it — the last day that ended ${SNAPSHOT_SETTLE_MINUTES} minutes ago). ` +
          'The answer\'s `through` is the day it went up to, `null` when every day up to it was already taken. ' +
          `Taken in steps of ${SNAPSHOT_STEP_DAYS} UTC day(s) with stock movements, each its own operation and transaction, so a long gap ` +
          'never makes one statement sum more than that; a request cut off midway leaves only whole days, and the next run continues after them.',
        headers: IdempotencyHeaders,
        // Its input is all optional: taken with no body or `null` too, like the other such actions.
        body: Type.Union([Type.Object({ through: Type.Optional(Type.String({ format: 'date' })) }, { additionalProperties: false }), Type.Null()]),
        response: { 200: Type.Object({ through: Type.Union([Type.String(), Type.Null()]), snapshots_written: Type.Integer() }) },
      },
    },
    async (request, reply) => {
      // Snapshots are taken for every store of the tenant at once.
      assertAllStores(tenantOf(request), 'stock snapshots');
      // In steps, each its own command (takeStockSnapshotsInSteps), under the request's key.
      const input = commandInputOf(request);
      return sendOutcome(reply, await holdingIdempotencyKey(db, input, SNAPSHOT_COMMAND, (held) => takeStockSnapshotsInSteps(held, input, request.body?.through)));
    },
  );
}
