import { storeFilteredPage } from '../inventory/storeFilteredList.js';
import { Type } from 'typebox';
import { assertStoreInScope, inStoreScope } from '../core/auth.js';
import { inTenantTransaction } from '../core/command.js';
import { notFound } from '../core/errors.js';
import type { App, AppDeps } from '../http/app.js';
import { tenantOf } from '../http/command.js';
import { requiredExpectedVersion, versionedCommand } from '../http/etag.js';
import { IdempotencyHeaders, IdParams, ListQuery, Money, MoneyTotal, Page, Timestamp, Uuid } from '../http/schemas.js';
import { decideSettlement } from './decideSettlement.js';
import { findSettlement, listSettlements } from './queries.js';
import { etagOf, type SettlementDecision } from './settlementMath.js';
import { submitSettlement } from './submitSettlement.js';

const NullableString = Type.Union([Type.String(), Type.Null()]);
/** What a settlement works out (expected cash, variance): a count beyond ±(2^53 − 1) is 422 limit_exceeded (settlementMath). */
const SettlementFigure = (description: string) => Type.Integer({ minimum: -Number.MAX_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER, description });
const Settlement = Type.Object({
  id: Uuid,
  store_id: Uuid,
  business_date: Type.String({ format: 'date' }),
  status: Type.Union([Type.Literal('submitted'), Type.Literal('approved'), Type.Literal('rejected')]),
  version: Type.Integer({ description: 'also sent as the ETag; send it back as If-Match to approve or reject' }),
  float_amount: Money,
  // A day's movements of the drawer: sums of amounts, bounded as an account's totals are.
  cash_sales: MoneyTotal,
  cash_voids: MoneyTotal,
  payments_in: MoneyTotal,
  payments_out: MoneyTotal,
  other_cash: MoneyTotal,
  expected_cash: SettlementFigure('float + the day\'s cash movements, minor units'),
  declared_cash: Money,
  variance: SettlementFigure('declared − expected, minor units (negative: cash short)'),
  note: NullableString,
  submitted_by: Type.String(),
  decided_by: NullableString,
  decided_at: Type.Union([Timestamp, Type.Null()]),
  decision_note: NullableString,
  op_id: Uuid,
  created_at: Timestamp,
});
const DecisionHeaders = Type.Object({
  ...IdempotencyHeaders.properties,
  'if-match': Type.Optional(Type.String({ description: 'the ETag (version) of the settlement being decided, or a list of them (RFC 9110); required' })),
});
const DecisionBody = Type.Union([Type.Object({ note: Type.Optional(Type.String({ minLength: 1, maxLength: 1000 })) }, { additionalProperties: false }), Type.Null()]);

export async function settlementRoutes(app: App, { db }: AppDeps): Promise<void> {
  app.post(
    '/v1/settlements',
    {
      config: { permission: 'settlements.submit' },
      schema: {
        tags: ['settlements'],
        summary:
          'Submit a store\'s cash settlement for a business date (the store\'s day, in its `time_zone`; not after its today): expected cash = tenant `settlement_float` (a recount after a rejection: the float of the day\'s first count) + the day\'s cash sales − cash voids + cash payments in − cash payments out + net cash of anything else posted to the drawer that day (`other_cash`), all from the ledger; declared cash; variance. Returns the version as ETag. One submitted-or-approved settlement per store-day (`409 already_exists`). An expected cash or variance beyond ±(2^53 − 1) minor units is `422 limit_exceeded`, nothing written. Its Idempotency-Key is kept for good (not IDEMPOTENCY_TTL_HOURS): sent again days later — after the count was rejected too — it replays the first answer and submits nothing.',
        headers: IdempotencyHeaders,
        body: Type.Object(
          {
            store_id: Uuid,
            business_date: Type.String({ format: 'date' }),
            declared_cash: Type.Integer({ minimum: 0, maximum: 9_000_000_000_000, description: 'counted cash, minor units' }),
            note: Type.Optional(Type.String({ minLength: 1, maxLength: 1000 })),
          },
          { additionalProperties: false },
        ),
        response: { 201: Settlement },
      },
    },
    async (request, reply) => {
      assertStoreInScope(tenantOf(request), request.body.store_id);
      return versionedCommand(db, request, reply, { type: 'settlement.submit', storeId: request.body.store_id, ttlHours: 'forever' }, async (cmd) => ({
        status: 201,
        body: await submitSettlement(cmd, request.body),
      }));
    },
  );

  for (const decision of ['approve', 'reject'] as SettlementDecision[]) {
    app.post(
      `/v1/settlements/:id/${decision}`,
      {
        config: { permission: 'settlements.approve' },
        schema: {
          tags: ['settlements'],
          summary: `${decision === 'approve' ? 'Approve' : 'Reject'} a submitted settlement. Requires \`If-Match\` with its ETag: missing or \`*\` → \`428 precondition_required\`, stale → \`412 version_conflict\`; not submitted → \`409 invalid_transition\`. The same decision sent again on a settlement it decided (If-Match naming the version it was decided on, the same note) is answered with that decision as already done: \`200\`, \`Idempotent-Replayed: true\`, nothing written, under any key (a repeat after the key expired too); the same decision with another note → \`409 invalid_transition\`, nothing recorded.`,
          headers: DecisionHeaders,
          params: IdParams,
          body: DecisionBody,
          response: { 200: Settlement },
        },
      },
      async (request, reply) => {
        const principal = tenantOf(request);
        // Scope checked before the command too, so a replayed decision is never
        // handed to a token that cannot see the settlement; and before If-Match,
        // so a settlement that is not there is 404 whatever the header says.
        const visible = await inTenantTransaction(db, principal.tenantId, (tx) => findSettlement(tx, principal.tenantId, request.params.id));
        if (!visible || !inStoreScope(principal, visible.store_id)) throw notFound('settlement');
        const expected = requiredExpectedVersion(request, 'settlement');
        return versionedCommand(db, request, reply, { type: `settlement.${decision}` }, async (cmd) => ({
          status: 200,
          body: await decideSettlement(cmd, principal, request.params.id, decision, expected, request.body?.note),
        }));
      },
    );
  }

  app.get(
    '/v1/settlements/:id',
    { config: { permission: 'settlements.read' }, schema: { tags: ['settlements'], summary: 'A settlement (its version as ETag)', params: IdParams, response: { 200: Settlement } } },
    async (request, reply) => {
      const principal = tenantOf(request);
      const settlement = await inTenantTransaction(db, principal.tenantId, (tx) => findSettlement(tx, principal.tenantId, request.params.id));
      if (!settlement || !inStoreScope(principal, settlement.store_id)) throw notFound('settlement');
      reply.header('etag', etagOf(settlement.version));
      return settlement;
    },
  );

  app.get(
    '/v1/settlements',
    {
      config: { permission: 'settlements.read' },
      schema: {
        tags: ['settlements'],
        summary: 'Settlements of the caller\'s stores, newest first',
        querystring: Type.Object(
          { ...ListQuery.properties, store_id: Type.Optional(Uuid), business_date: Type.Optional(Type.String({ format: 'date' })) },
          { additionalProperties: false },
        ),
        response: { 200: Page(Settlement) },
      },
    },
    async (request) => {
      const principal = tenantOf(request);
      return storeFilteredPage(db, principal, request.query, (tx, before, limitPlusOne) =>
        listSettlements(tx, principal.tenantId, principal.storeIds, { storeId: request.query.store_id, businessDate: request.query.business_date }, before, limitPlusOne),
      );
    },
  );
}
