import { storeFilteredPage } from '../inventory/storeFilteredList.js';
import { Type } from 'typebox';
import { assertStoreInScope, inStoreScope } from '../core/auth.js';
import { inTenantTransaction, runCommand, type CommandOutcome } from '../core/command.js';
import { notFound } from '../core/errors.js';
import type { App, AppDeps } from '../http/app.js';
import { commandInputOf, tenantOf } from '../http/command.js';
import { requiredExpectedVersion, sendVersioned } from '../http/etag.js';
import { listOf, IdempotencyHeaders, IdParams, ListQuery, Money, MoneyTotal, Page, Timestamp, Uuid } from '../http/schemas.js';
import type { TenantPrincipal } from '../core/auth.js';
import { settlementAsSeenBy } from './blindCount.js';
import type { SettlementRow } from './settlements.table.js';
import type { Refusals } from '../http/refusals.js';
import { decideSettlement } from './decideSettlement.js';
import { findSettlement, listSettlements } from './queries.js';
import { etagOf, type SettlementDecision } from './settlementMath.js';
import { submitSettlement } from './submitSettlement.js';

const NullableString = Type.Union([Type.String(), Type.Null()]);
/** What a settlement works out (expected cash, variance): a count beyond ±(2^53 − 1) is 422 limit_exceeded (settlementMath). */
const SettlementFigure = (description: string) => Type.Integer({ minimum: -Number.MAX_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER, description });
/** When a blind figure is null: the same words on each (src/settlements/blindCount.ts). */
const BLIND =
  'null when the caller\'s role lacks `settlements.expected.read` (a cashier: a blind count, in every answer that shows a settlement — the submission, its replay, GET, the list; owner, admin, manager and auditor get the figure); always computed and stored';
/** A figure a blind count hides: the figure, or null for a caller without settlements.expected.read. */
const Blind = <T extends ReturnType<typeof Type.Integer>>(figure: T, description: string) =>
  Type.Union([figure, Type.Null()], { description: `${description}; ${BLIND}` });
const Settlement = Type.Object({
  id: Uuid,
  store_id: Uuid,
  business_date: Type.String({ format: 'date' }),
  status: Type.Union([Type.Literal('submitted'), Type.Literal('approved'), Type.Literal('rejected')]),
  version: Type.Integer({ description: 'also sent as the ETag; send it back as If-Match to approve or reject' }),
  float_amount: Money,
  // A day's movements of the drawer: sums of amounts, bounded as an account's totals are.
  cash_sales: Blind(MoneyTotal, 'the day\'s cash sales into the drawer, minor units'),
  cash_voids: Blind(MoneyTotal, 'the day\'s cash voids out of the drawer, minor units'),
  cash_returns: Blind(MoneyTotal, 'the day\'s cash refunds of partial returns of sales out of the drawer (entry kind sale_return), minor units'),
  payments_in: Blind(MoneyTotal, 'the day\'s cash payments in, minor units'),
  payments_out: Blind(MoneyTotal, 'the day\'s cash payments out, minor units'),
  other_cash: Blind(MoneyTotal, 'net cash of anything else posted to the drawer that day — e.g. the reversal of a cash payment reverted that day (entry kind payment_revert; the payment stays in payments_in / payments_out of its own day) — minor units'),
  expected_cash: Blind(SettlementFigure('float + the day\'s cash movements, minor units'), 'float + the day\'s cash movements, minor units'),
  declared_cash: Money,
  variance: Blind(SettlementFigure('declared − expected, minor units (negative: cash short)'), 'declared − expected, minor units (negative: cash short)'),
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

/**
 * A command's answer as this request's caller may see it: a settlement's
 * blind figures null for a role without settlements.expected.read. Applied
 * to first answers and replays alike (the stored answer holds every figure),
 * so who sees them depends on the caller, never on who stored the answer.
 */
function seenBy(principal: TenantPrincipal, outcome: CommandOutcome): CommandOutcome {
  if (outcome.status >= 300) return outcome;
  return { ...outcome, body: settlementAsSeenBy(principal, outcome.body as SettlementRow) };
}

export async function settlementRoutes(app: App, { db }: AppDeps): Promise<void> {
  app.post(
    '/v1/settlements',
    {
      config: { permission: 'settlements.submit', refusals: { not_found: 'the store does not exist or is outside the token stores', already_exists: 'the store-day has a submitted or approved settlement', limit_exceeded: 'the expected cash or variance lies beyond ±(2^53 − 1) minor units' } },
      schema: {
        tags: ['settlements'],
        summary:
          'Submit a store\'s cash settlement for a business date (the store\'s day, in its `time_zone`; not after its today): expected cash = tenant `settlement_float` (a recount after a rejection: the float of the day\'s first count) + the day\'s cash sales − cash voids − cash refunds of partial returns (`cash_returns`) + cash payments in − cash payments out + net cash of anything else posted to the drawer that day (`other_cash`), all from the ledger; declared cash; variance. Returns the version as ETag. One submitted-or-approved settlement per store-day (`409 already_exists`). An expected cash or variance beyond ±(2^53 − 1) minor units is `422 limit_exceeded`, nothing written. Its Idempotency-Key is kept for good (not IDEMPOTENCY_TTL_HOURS): sent again days later — after the count was rejected too — it replays the first answer and submits nothing. A blind count for a caller without `settlements.expected.read` (a cashier): its answer and its replay show `expected_cash`, `variance` and the day\'s movements as null (GET and the list too); a manager or an auditor sees them.',
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
      const principal = tenantOf(request);
      assertStoreInScope(principal, request.body.store_id);
      const outcome = await runCommand(db, commandInputOf(request), { type: 'settlement.submit', storeId: request.body.store_id, ttlHours: 'forever' }, async (cmd) => ({
        status: 201,
        body: await submitSettlement(cmd, request.body),
      }));
      return sendVersioned(reply, seenBy(principal, outcome));
    },
  );

  const decisionRefusals = (decision: SettlementDecision): Refusals => ({
    precondition_required: 'no If-Match, or `*`: a decision names the version it was made on',
    invalid_transition: 'the settlement is not submitted (`current_status`), or was decided the same way with another note',
    ...(decision === 'approve'
      ? {
          conflict: 'the store-day already has an approved settlement',
          forbidden: 'the token submitted it and the tenant requires a second approver (`reason`: second_approver_required)',
        }
      : {}),
  });
  for (const decision of ['approve', 'reject'] as SettlementDecision[]) {
    app.post(
      `/v1/settlements/:id/${decision}`,
      {
        config: { permission: 'settlements.approve', refusals: decisionRefusals(decision) },
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
        const outcome = await runCommand(db, commandInputOf(request), { type: `settlement.${decision}` }, async (cmd) => ({
          status: 200,
          body: await decideSettlement(cmd, principal, request.params.id, decision, expected, request.body?.note),
        }));
        return sendVersioned(reply, seenBy(principal, outcome));
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
      return settlementAsSeenBy(principal, settlement);
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
      const page = await storeFilteredPage(db, principal, request.query, (tx, before, limitPlusOne) =>
        listSettlements(tx, principal.tenantId, principal.storeIds, { storeId: request.query.store_id, businessDate: request.query.business_date }, before, limitPlusOne),
        listOf(request),
      );
      return { ...page, items: page.items.map((settlement) => settlementAsSeenBy(principal, settlement)) };
    },
  );
}
