import { sql } from 'kysely';
import { Type } from 'typebox';
import { assertAllStores, assertStoreInScope, inStoreScope } from '../core/auth.js';
import { assertStoreExists } from '../inventory/receiveStock.js';
import { inTenantTransaction } from '../core/command.js';
import { maybeOne } from '../core/db.js';
import { AppError, notFound } from '../core/errors.js';
import type { App, AppDeps } from '../http/app.js';
import { command, tenantOf } from '../http/command.js';
import { Code, cursorField, decodeCursor, IdempotencyHeaders, IdParams, isCursorOf, isUuidIdCursor, ListQuery, Money, MoneyTotal, Name, Page, limitOf, listOf, type ListRequest, pageOf, Timestamp, Uuid } from '../http/schemas.js';
import { createParty } from './createParty.js';
import { createPayment } from './createPayment.js';
import { listPartyBalances, type BalanceCursor } from './listPartyBalances.js';
import { listAccountPostings, listStoreAccounts } from './listStoreAccounts.js';
import { STORE_ACCOUNT_KINDS } from './money.table.js';
import type { PartyKind } from './money.table.js';
import { findParty, findPayment, listEntriesOfOperation, listParties } from './queries.js';
import { operationInScope } from '../operations/getOperation.js';
import { findPurchase } from './getPurchase.js';
import { findPurchaseStore, PURCHASE_RETURN_OP, returnToSupplier } from './returnToSupplier.js';

const PartyKindSchema = Type.Union([Type.Literal('supplier'), Type.Literal('customer')]);
const Party = Type.Object({
  id: Uuid,
  kind: PartyKindSchema,
  name: Type.String(),
  code: Type.Union([Type.String(), Type.Null()]),
  op_id: Uuid,
  created_at: Timestamp,
});
const PaymentMethodSchema = Type.Union([Type.Literal('cash'), Type.Literal('card'), Type.Literal('mobile'), Type.Literal('bank')]);
const Payment = Type.Object({
  id: Uuid,
  party_id: Uuid,
  store_id: Uuid,
  direction: Type.Union([Type.Literal('in'), Type.Literal('out')]),
  method: PaymentMethodSchema,
  amount: Money,
  reference: Type.Union([Type.String(), Type.Null()]),
  client_created_at: Type.Union([Timestamp, Type.Null()], { description: 'when the till made the payment, as sent (null: not sent)' }),
  business_date: Type.String({
    format: 'date',
    description:
      "the day its journal entry is booked on, whose cash count it is in: the store's day (in its time_zone) of client_created_at (else of created_at), or the first day after it that has no count — never before the store's latest count, never after today, never before 0001-01-01 (a till time early on that day in UTC is still 1 BC west of UTC)",
  }),
  entry_id: Uuid,
  op_id: Uuid,
  created_at: Timestamp,
});
const PaymentView = Type.Object({
  ...Payment.properties,
  reverted_by_op: Type.Union([Uuid, Type.Null()], {
    description: 'the operation that reverted the payment (POST /v1/operations/{op_id}/revert of its op_id); null: not reverted',
  }),
  reverted_at: Type.Union([Timestamp, Type.Null()], { description: 'when it was reverted; null: not reverted' }),
  revert_business_date: Type.Union([Type.String({ format: 'date' }), Type.Null()], {
    description:
      "the day its reversing entry (kind payment_revert) is booked on, whose cash count it is in (as other_cash): the day it was reverted, or the first day after it with no count — never a counted day; null: not reverted",
  }),
});
const PurchaseReturnLine = Type.Object({
  line_number: Type.Integer({ minimum: 1, description: 'the purchase line sent back from (its `line_number`)' }),
  sku_id: Uuid,
  quantity: Type.Integer({ description: 'base units (grams, pieces, millimetres) sent back from that line' }),
  unit_cost: Money,
  line_total: Type.Integer({
    minimum: 0,
    maximum: 9_000_000_000_000,
    description:
      "minor units credited: lineTotal(sent back from the line so far, this return included) − lineTotal(sent back before), at the line's unit cost and by its own rounding, so sending a whole line back in any number of parts credits exactly its line_total",
  }),
});
const PurchaseReturn = Type.Object({
  id: Uuid,
  op_id: Uuid,
  purchase_id: Uuid,
  store_id: Uuid,
  supplier_id: Uuid,
  return_number: Type.Integer({ minimum: 1, description: '1, 2, … per purchase, in the order its returns were recorded' }),
  reason: Type.String(),
  reference: Type.Union([Type.String(), Type.Null()], { description: "the supplier's credit note or returns slip, as sent (null: not sent)" }),
  credit_total: Type.Integer({ minimum: 0, maximum: 9_000_000_000_000, description: "minor units credited: the sum of the lines' line_total; the supplier's outstanding drops by it" }),
  entry_id: Type.Union([Uuid, Type.Null()], {
    description: "the `purchase_return` journal entry (debit the supplier's `payable`, credit the store's `inventory`); null when nothing is credited (goods bought at cost 0)",
  }),
  business_date: Type.Union([Type.String({ format: 'date' }), Type.Null()], {
    description: "the day the entry is booked on: the store's today in its time zone, or the first day after it with no count (as every store entry); null without an entry",
  }),
  created_at: Timestamp,
  lines: Type.Array(PurchaseReturnLine, { description: 'per purchase line, in line order: a SKU is taken from its purchase lines in line order' }),
});
const PurchaseView = Type.Object({
  id: Uuid,
  op_id: Uuid,
  store_id: Uuid,
  supplier_id: Uuid,
  total: Money,
  entry_id: Type.Union([Uuid, Type.Null()], { description: "the `purchase` journal entry (debit the store's `inventory`, credit the supplier's `payable`); null when the total is 0" }),
  business_date: Type.Union([Type.String({ format: 'date' }), Type.Null()], { description: 'the day the purchase entry is booked on; null without an entry' }),
  reference: Type.Union([Type.String(), Type.Null()], { description: "the receipt's `reference` (the delivery note), or null" }),
  created_at: Timestamp,
  returned_total: Type.Integer({ minimum: 0, maximum: 9_000_000_000_000, description: "minor units its returns to the supplier credited so far (the sum of their credit_total; 0 for none)" }),
  lines: Type.Array(
    Type.Object({
      line_number: Type.Integer({ minimum: 1 }),
      sku_id: Uuid,
      quantity: Type.Integer({ description: 'base units bought' }),
      unit_cost: Money,
      line_total: Money,
      returned_quantity: Type.Integer({ minimum: 0, description: 'base units its returns sent back from this line so far' }),
    }),
    { description: 'one per receipt line, in its order' },
  ),
  returns: Type.Array(PurchaseReturn, { description: 'its returns to the supplier (POST /v1/purchases/{id}/returns), oldest first ([] for none)' }),
});

const PURCHASE_RETURN_SUMMARY =
  'Send goods of a purchase back to its supplier (damaged, wrong): the supplier credits them. Lines of one SKU are summed, and a SKU is taken from ' +
  "the purchase's lines of that SKU in line order, each part credited at its line's unit cost: lineTotal(sent back so far, this return included) − " +
  "lineTotal(sent back before), by the line's own rounding, so sending a whole line back in any number of parts credits exactly its line_total. " +
  "Stock leaves the purchase's store through new ledger rows (kind `supplier_return`, `reason` as their reason), each a conditional decrement; a " +
  "`purchase_return` journal entry debits the supplier's `payable` and credits the store's `inventory` by the credit (none for a credit of 0), so the " +
  "supplier's outstanding at GET /v1/ledger/suppliers drops by it. Returns of one purchase take turns on the purchase row: more than the purchase bought " +
  'minus what earlier returns sent back is 409 `return_exceeds_purchase` with every requested SKU\'s `returnable` quantity; less stock in the store than ' +
  'is sent back is 409 `insufficient_stock` with the `shortages`; a SKU the purchase did not buy is 400 at its line; nothing is written on a refusal. ' +
  'This is how a purchase is corrected (POST /v1/operations/{op_id}/revert of a receipt is 422). Needs `stock.receive`, as the purchase did. ' +
  'The Idempotency-Key is kept as long as the return (each return is a new fact: the same key replays it, a different body is 422).';

const PartyBalance = Type.Object({
  party_id: Uuid,
  name: Type.String(),
  code: Type.Union([Type.String(), Type.Null()]),
  debit_total: MoneyTotal,
  credit_total: MoneyTotal,
  outstanding: MoneyTotal,
});
const JournalEntry = Type.Object({
  id: Uuid,
  kind: Type.String(),
  store_id: Type.Union([Uuid, Type.Null()]),
  business_date: Type.String({ format: 'date' }),
  subject_type: Type.Union([Type.String(), Type.Null()]),
  subject_id: Type.Union([Uuid, Type.Null()]),
  op_id: Uuid,
  created_at: Timestamp,
  postings: Type.Array(Type.Object({ account_id: Uuid, account_key: Type.String(), amount: Money })),
});

const Account = Type.Object({
  id: Type.Union([Uuid, Type.Null()]),
  key: Type.String(),
  kind: Type.String(),
  balance: MoneyTotal,
  debit_total: MoneyTotal,
  credit_total: MoneyTotal,
});
const Posting = Type.Object({
  id: Type.Integer(),
  entry_id: Uuid,
  entry_kind: Type.String(),
  business_date: Type.String({ format: 'date' }),
  subject_type: Type.Union([Type.String(), Type.Null()]),
  subject_id: Type.Union([Uuid, Type.Null()]),
  amount: Money,
  op_id: Uuid,
  created_at: Timestamp,
});
const StoreAccountKindSchema = Type.Union([
  Type.Literal('cash_drawer'),
  Type.Literal('bank'),
  Type.Literal('card_clearing'),
  Type.Literal('mobile_clearing'),
  Type.Literal('sales_revenue'),
  Type.Literal('inventory'),
]);
const isPostingCursor = isCursorOf<{ id: number }>({ id: cursorField.safeInteger });
const isAccountCursor = isCursorOf<{ kind: string }>({ kind: (value: unknown): value is string => typeof value === 'string' && (STORE_ACCOUNT_KINDS as readonly string[]).includes(value) });

/**
 * One page of a short list read whole (a store's six accounts, an
 * operation's journal entries), after the item whose key the cursor names:
 * paged like every list (API.md), 50 a page unless `?limit=` says otherwise.
 */
function pageOfWhole<T, C extends object>(
  items: readonly T[],
  request: ListRequest & { query: { limit?: number; cursor?: string } },
  isCursor: (value: unknown) => value is C,
  cursorOf: (item: T) => C,
): { items: T[]; next_cursor: string | null } {
  const list = listOf(request);
  const after = decodeCursor(request.query.cursor, isCursor, list);
  let start = 0;
  if (after !== undefined) {
    const key = JSON.stringify(after);
    const index = items.findIndex((item) => JSON.stringify(cursorOf(item)) === key);
    if (index < 0) throw new AppError('validation_failed', 'cursor is not valid', { errors: [{ path: '/querystring/cursor', message: 'is not a cursor from this list' }] });
    start = index + 1;
  }
  const rest = items.slice(start);
  return pageOf(rest, limitOf(request), cursorOf, list);
}
const isBalanceCursor = isCursorOf<BalanceCursor>({ outstanding: cursorField.safeInteger, party_id: cursorField.uuid });

export async function moneyRoutes(app: App, { db }: AppDeps): Promise<void> {
  app.post(
    '/v1/parties',
    {
      config: { permission: 'parties.write', refusals: { already_exists: 'a party of this kind with this code exists' } },
      schema: {
        tags: ['money'],
        summary: 'Create a supplier or customer (and its payable / receivable account, at zero). Its Idempotency-Key is kept for good (not IDEMPOTENCY_TTL_HOURS): sent again days later, it replays the first answer.',
        headers: IdempotencyHeaders,
        body: Type.Object(
          { kind: PartyKindSchema, name: Name(200), code: Type.Optional(Code(100)) },
          { additionalProperties: false },
        ),
        response: { 201: Party },
      },
    },
    async (request, reply) => command(db, request, reply, { type: 'party.create', ttlHours: 'forever' }, async (cmd) => ({ status: 201, body: await createParty(cmd, request.body) })),
  );

  app.get(
    '/v1/parties',
    {
      config: { permission: 'parties.read' },
      schema: {
        tags: ['money'],
        summary: 'List suppliers and customers (creation order)',
        querystring: Type.Object({ ...ListQuery.properties, kind: Type.Optional(PartyKindSchema) }, { additionalProperties: false }),
        response: { 200: Page(Party) },
      },
    },
    async (request) => {
      const principal = tenantOf(request);
      const limit = request.query.limit ?? 50;
      const after = decodeCursor(request.query.cursor, isUuidIdCursor, listOf(request))?.id;
      const rows = await inTenantTransaction(db, principal.tenantId, (tx) => listParties(tx, principal.tenantId, request.query.kind, after, limit + 1));
      return pageOf(rows, limit, (last) => ({ id: last.id }), listOf(request));
    },
  );

  app.get(
    '/v1/parties/:id',
    { config: { permission: 'parties.read' }, schema: { tags: ['money'], summary: 'A supplier or customer', params: IdParams, response: { 200: Party } } },
    async (request) => {
      const principal = tenantOf(request);
      const party = await inTenantTransaction(db, principal.tenantId, (tx) => findParty(tx, principal.tenantId, request.params.id));
      if (!party) throw notFound('party');
      return party;
    },
  );

  app.post(
    '/v1/payments',
    {
      config: { permission: 'payments.create', refusals: { not_found: 'the store does not exist or is outside the token stores', limit_exceeded: 'an account total would exceed 9 × 10^15 minor units' } },
      schema: {
        tags: ['money'],
        summary:
          'Pay a supplier or receive from a customer through a store (payment + journal entry in one transaction). `direction` defaults to `out` for a supplier and `in` for a customer; the other direction is a refund. A payment a till queued offline sends `client_created_at` (when the till paid): its money is booked on that day, by the rule of a synced sale (never before the store\'s latest count, never after today); `business_date` says where it was booked, `created_at` when it arrived. Its Idempotency-Key is kept for good (not IDEMPOTENCY_TTL_HOURS): sent again days later, it replays the first answer. A payment recorded wrongly is reverted with POST /v1/operations/{op_id}/revert of its `op_id` (a `payment_revert` entry moves its amount back; GET shows `reverted_by_op`), not with a payment the other way, which is a refund.',
        headers: IdempotencyHeaders,
        body: Type.Object(
          {
            party_id: Uuid,
            store_id: Uuid,
            method: PaymentMethodSchema,
            amount: Type.Integer({ minimum: 1, maximum: 9_000_000_000_000, description: 'minor units' }),
            direction: Type.Optional(Type.Union([Type.Literal('in'), Type.Literal('out')])),
            reference: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
            client_created_at: Type.Optional(
              Type.String({
                format: 'date-time',
                description:
                  "when the till made the payment — send it with a payment queued offline: its money is booked on that day (the store's day, in its time_zone), like a synced sale's: never before the store's latest count (then the first day after it with no count), never after today (a clock ahead books today). Kept as sent; without it, the payment is booked on the day it arrives",
              }),
            ),
          },
          { additionalProperties: false },
        ),
        response: { 201: Payment },
      },
    },
    async (request, reply) => {
      assertStoreInScope(tenantOf(request), request.body.store_id);
      return command(db, request, reply, { type: 'payment.create', storeId: request.body.store_id, ttlHours: 'forever' }, async (cmd) => ({
        status: 201,
        body: await createPayment(cmd, request.body),
      }));
    },
  );

  app.get(
    '/v1/payments/:id',
    {
      config: { permission: 'ledger.read' },
      schema: {
        tags: ['money'],
        summary: 'A payment, and whether it was reverted (`reverted_by_op`, `reverted_at`, `revert_business_date`)',
        params: IdParams,
        response: { 200: PaymentView },
      },
    },
    async (request) => {
      const principal = tenantOf(request);
      const payment = await inTenantTransaction(db, principal.tenantId, (tx) => findPayment(tx, principal.tenantId, request.params.id));
      if (!payment) throw notFound('payment');
      assertStoreInScope(principal, payment.store_id, 'payment');
      return payment;
    },
  );

  app.get(
    '/v1/purchases/:id',
    {
      config: { permission: 'ledger.read' },
      schema: {
        tags: ['money'],
        summary:
          "A purchase (a stock receipt with `supplier_id` and costs: its `id` is the receipt answer's `purchase.id`) with its lines — each with what its returns sent back (`returned_quantity`) — and its returns to the supplier, oldest first. Another store's purchase is 404 for a token limited to some stores.",
        params: IdParams,
        response: { 200: PurchaseView },
      },
    },
    async (request) => {
      const principal = tenantOf(request);
      const purchase = await inTenantTransaction(db, principal.tenantId, (tx) => findPurchase(tx, principal.tenantId, request.params.id));
      if (!purchase) throw notFound('purchase');
      assertStoreInScope(principal, purchase.store_id, 'purchase');
      return purchase;
    },
  );

  app.post(
    '/v1/purchases/:id/returns',
    {
      config: {
        permission: 'stock.receive',
        refusals: {
          return_exceeds_purchase:
            'a SKU asked for beyond what the purchase bought of it minus what earlier returns sent back: `returnable` lists every requested SKU (`sku_id`, `requested`, `returnable`), nothing written',
          insufficient_stock: "the purchase's store holds less of a SKU than is sent back (`shortages`: `sku_id`, `requested`, `available`), nothing written",
          limit_exceeded: 'an account total would exceed 9 × 10^15 minor units',
        },
      },
      schema: {
        tags: ['money'],
        summary: PURCHASE_RETURN_SUMMARY,
        headers: IdempotencyHeaders,
        params: IdParams,
        body: Type.Object(
          {
            items: Type.Array(
              Type.Object(
                {
                  sku_id: Uuid,
                  quantity: Type.Integer({ minimum: 1, maximum: 1_000_000_000_000, description: 'base units (grams, pieces, millimetres) sent back' }),
                },
                { additionalProperties: false },
              ),
              { minItems: 1, maxItems: 1000 },
            ),
            reason: Type.String({ minLength: 1, maxLength: 500, description: 'why the goods go back (damaged, wrong goods …): the stock ledger rows\' reason' }),
            reference: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: "the supplier's credit note or returns slip; the entry's memo" })),
          },
          { additionalProperties: false },
        ),
        response: {
          201: Type.Object({
            ...PurchaseReturn.properties,
            purchase_returned_total: Type.Integer({ minimum: 0, maximum: 9_000_000_000_000, description: "minor units: the purchase's returned_total after this return" }),
            remaining: Type.Array(
              Type.Object({
                sku_id: Uuid,
                purchased: Type.Integer({ description: 'base units the purchase bought of the SKU' }),
                returned: Type.Integer({ description: 'base units its returns sent back, this one included' }),
                returnable: Type.Integer({ description: 'base units a return may still send back' }),
              }),
              { description: 'per SKU of the purchase, in line order, after this return' },
            ),
          }),
        },
      },
    },
    async (request, reply) => {
      const principal = tenantOf(request);
      const purchaseId = request.params.id;
      const storeId = await inTenantTransaction(db, principal.tenantId, (tx) => findPurchaseStore(tx, principal.tenantId, purchaseId));
      if (storeId === undefined || !inStoreScope(principal, storeId)) throw notFound('purchase');
      // Each return is a new fact (two returns of one crate each are two): its key is kept as long as the return.
      return command(db, request, reply, { type: PURCHASE_RETURN_OP, storeId, ttlHours: 'forever' }, async (cmd) => ({
        status: 201,
        body: await returnToSupplier(cmd, purchaseId, request.body),
      }));
    },
  );

  for (const [path, kind] of [
    ['/v1/ledger/suppliers', 'supplier'],
    ['/v1/ledger/customers', 'customer'],
  ] as Array<[string, PartyKind]>) {
    app.get(
      path,
      {
        config: { permission: 'ledger.read', refusals: { forbidden: 'a token limited to some stores (balances span every store)' } },
        schema: {
          tags: ['money'],
          summary: `${kind === 'supplier' ? 'Supplier' : 'Customer'} balances: total debit, credit and outstanding per party (${kind === 'supplier' ? 'what we owe' : 'what they owe'}), most outstanding first, ties by party id; parties with no postings are listed with zeros.${kind === 'supplier' ? " A purchase (a stock receipt with `supplier_id` and costs) raises a supplier's outstanding by its total; a payment out to it brings it down." : ''} Balances span every store: 403 for a token limited to some stores.`,
          querystring: ListQuery,
          response: { 200: Page(PartyBalance) },
        },
      },
      async (request) => {
        const principal = tenantOf(request);
        // A party's balance sums its dealings with every store.
        assertAllStores(principal, 'party balances');
        const limit = request.query.limit ?? 50;
        const after = decodeCursor(request.query.cursor, isBalanceCursor, listOf(request));
        const rows = await inTenantTransaction(db, principal.tenantId, (tx) => listPartyBalances(tx, principal.tenantId, kind, after, limit + 1));
        return pageOf(rows, limit, (last) => ({ outstanding: last.outstanding, party_id: last.party_id }), listOf(request));
      },
    );
  }

  app.get(
    '/v1/stores/:store_id/accounts',
    {
      config: { permission: 'ledger.read' },
      schema: {
        tags: ['money'],
        summary: `A store's accounts (${STORE_ACCOUNT_KINDS.join(', ')}) with balance (debit − credit) and totals, minor units; \`{ items, next_cursor }\` like every list. \`inventory\` holds the cost of goods received from suppliers (purchases: a stock receipt with \`supplier_id\` and costs debits it); no sale or count reads it.`,
        params: Type.Object({ store_id: Uuid }),
        querystring: ListQuery,
        response: { 200: Page(Account) },
      },
    },
    async (request) => {
      const principal = tenantOf(request);
      assertStoreInScope(principal, request.params.store_id);
      const accounts = await inTenantTransaction(db, principal.tenantId, async (tx) => {
        await assertStoreExists(tx, principal.tenantId, request.params.store_id);
        return listStoreAccounts(tx, principal.tenantId, request.params.store_id);
      });
      return pageOfWhole(accounts, request, isAccountCursor, (account) => ({ kind: account.kind }));
    },
  );

  app.get(
    '/v1/stores/:store_id/accounts/:kind/postings',
    {
      config: { permission: 'ledger.read' },
      schema: {
        tags: ['money'],
        summary: 'The postings of one store account, newest first',
        params: Type.Object({ store_id: Uuid, kind: StoreAccountKindSchema }),
        querystring: ListQuery,
        response: { 200: Page(Posting) },
      },
    },
    async (request) => {
      const principal = tenantOf(request);
      assertStoreInScope(principal, request.params.store_id);
      const limit = request.query.limit ?? 50;
      const before = decodeCursor(request.query.cursor, isPostingCursor, listOf(request))?.id;
      const rows = await inTenantTransaction(db, principal.tenantId, async (tx) => {
        await assertStoreExists(tx, principal.tenantId, request.params.store_id);
        return listAccountPostings(tx, principal.tenantId, `store/${request.params.store_id}/${request.params.kind}`, before, limit + 1);
      });
      return pageOf(rows, limit, (last) => ({ id: last.id }), listOf(request));
    },
  );

  app.get(
    '/v1/parties/:id/postings',
    {
      config: { permission: 'ledger.read' },
      schema: { tags: ['money'], summary: 'The postings of a party\'s account, newest first (a token limited to some stores sees those of its stores)', params: IdParams, querystring: ListQuery, response: { 200: Page(Posting) } },
    },
    async (request) => {
      const principal = tenantOf(request);
      const limit = request.query.limit ?? 50;
      const before = decodeCursor(request.query.cursor, isPostingCursor, listOf(request))?.id;
      const rows = await inTenantTransaction(db, principal.tenantId, async (tx) => {
        if (!(await findParty(tx, principal.tenantId, request.params.id))) throw notFound('party');
        // A party deals with every store; a store-scoped token sees the postings of its stores only.
        return listAccountPostings(tx, principal.tenantId, `party/${request.params.id}`, before, limit + 1, principal.storeIds);
      });
      return pageOf(rows, limit, (last) => ({ id: last.id }), listOf(request));
    },
  );

  app.get(
    '/v1/ledger/operations/:op_id',
    {
      config: { permission: 'ledger.read' },
      schema: {
        tags: ['money'],
        summary: 'The journal entries (with postings) an operation wrote; `{ items, next_cursor }` like every list: in entry id order, 50 a page unless `?limit=` (1–500) says otherwise',
        description: 'Visible as at GET /v1/operations/{op_id} (a transfer\'s operations at either end); otherwise, or for an unknown operation, 404.',
        params: Type.Object({ op_id: Uuid }),
        querystring: ListQuery,
        response: { 200: Page(JournalEntry) },
      },
    },
    async (request) => {
      const principal = tenantOf(request);
      const { visible, items } = await inTenantTransaction(db, principal.tenantId, async (tx) => {
        const operation = await maybeOne(
          tx,
          sql<{ id: string; type: string; store_id: string | null }>`SELECT id, type, store_id FROM operations WHERE tenant_id = ${principal.tenantId} AND id = ${request.params.op_id}`,
        );
        const entries = await listEntriesOfOperation(tx, principal.tenantId, request.params.op_id);
        // By its entries' stores, or (none written) as GET /v1/operations/{op_id} sees it.
        return { visible: operation !== undefined && (entries.length > 0 || (await operationInScope(tx, principal, operation))), items: entries };
      });
      // 404 alike for an operation that is not there and one outside the caller's stores.
      if (!visible) throw notFound('operation');
      for (const entry of items) if (entry.store_id !== null) assertStoreInScope(principal, entry.store_id, 'operation');
      return pageOfWhole(items, request, isUuidIdCursor, (entry) => ({ id: entry.id }));
    },
  );
}
