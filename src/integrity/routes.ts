import { Type } from 'typebox';
import { inTenantTransaction, runCommand } from '../core/command.js';
import { notFound } from '../core/errors.js';
import type { App, AppDeps } from '../http/app.js';
import { command, commandInputOf, sendOutcome, tenantOf } from '../http/command.js';
import { decodeCursor, IdempotencyHeaders, IdParams, isUuidIdCursor, ListQuery, Page, listOf, pageOf, Timestamp, Uuid } from '../http/schemas.js';
import { assertAllStores, inStoreScope, recordInScope, SYSTEM_TENANT_ID, type TenantPrincipal } from '../core/auth.js';
import { findReviewItem, listReviewItems, type ReviewItemRow } from './listReviewItems.js';
import { allChecks } from './registry.js';
import { resolveReviewItem } from './resolveReviewItem.js';
import { checkSettingsOf, runChecksForTenant } from './runChecks.js';
import { serveOpenFindingsFrom } from './metrics.js';

/** Whether a tenant's token sees a review item: its store, or the other store it concerns, in scope (no store: tokens of every store). */
const reviewItemVisible = (principal: TenantPrincipal, item: Pick<ReviewItemRow, 'store_id' | 'other_store_id'>): boolean =>
  recordInScope(principal, item.store_id) || (item.other_store_id !== null && inStoreScope(principal, item.other_store_id));

const Finding = Type.Object({
  check: Type.String({ description: 'name of the invariant, e.g. stock_ledger_matches_balance' }),
  severity: Type.Union([Type.Literal('warning'), Type.Literal('critical')]),
  subject: Type.String({ description: 'the record breaking it (id, or store_id/sku_id …)' }),
  detail: Type.Unknown({
    description:
      'the figures that disagree; for a check that could not run (`subject: check_failed`), `{ error, correlation_id }`: always the same words, the cause being in the server log under that correlation id (never the database\'s error or SQL)',
  }),
});

const ReviewItem = Type.Object({
  id: Uuid,
  kind: Type.String({
    description:
      'integrity_finding, job_failed, offline_sale_shortage, transfer_shortfall, consignment_settled_twice, offline_consignment_shortage, order_failed, order_unknown_to_provider, sale_return_after_void …; a sale_return_after_void item (subject: the return, subject_type sale_return) is a return a till made before the sale was voided and sent after the void, recorded with no stock or money effect — the till refunded `refund_total` after a void that had already reversed the sale, so the till\'s cash is short of it in the books: `{ sale_id, receipt_number, return_id, return_number, payment_method, refund_total, client_created_at, voided_at, void_client_created_at, voided_by_op, message }`; a job_failed item\'s detail is `{ task, error, attempts, max_attempts, correlation_id, data }`, its `error` fixed words naming the task and attempts (never the job\'s error, which is in the server log under that correlation id); a consignment_settled_twice item (subject: the consignment) is a settlement synced late from a visit queued offline, not recorded because another operation had settled the consignment: `{ visit_id, point_of_sale_id, consignment_id, client_created_at, settled_by_op, settlement_id, settled_by_visit_id, settled_amount_owed, reported: { lines: [{ sku_id, sold_quantity, returned_quantity, unit_price }], amount_owed }, shortage_review_item_id? }`; an offline_consignment_shortage item (subject: the consignment) is goods left on a visit queued offline that the store no longer had: `{ visit_id, consignment_id, point_of_sale_id, client_created_at, shortages: [{ sku_id, requested, available, shortfall, returned_not_recorded? }], settlement_conflict_review_item_id? }` — the `?` fields only when the same completion\'s settlement was not recorded (a consignment_settled_twice item): each item names the other, and `returned_not_recorded` is what that settlement reported taken back of the SKU, which never reached the store\'s stock',
  }),
  severity: Type.Union([Type.Literal('info'), Type.Literal('warning'), Type.Literal('critical')]),
  subject_type: Type.Union([Type.String(), Type.Null()]),
  subject_id: Type.Union([Type.String(), Type.Null()]),
  store_id: Type.Union([Uuid, Type.Null()]),
  other_store_id: Type.Union([Uuid, Type.Null()], { description: 'a second store the item concerns (a transfer received short: its source), whose staff see and may resolve it too' }),
  detail: Type.Unknown(),
  status: Type.Union([Type.Literal('open'), Type.Literal('resolved')]),
  op_id: Uuid,
  created_at: Timestamp,
  resolved_at: Type.Union([Timestamp, Type.Null()]),
  resolved_by_op: Type.Union([Uuid, Type.Null()]),
  resolution_note: Type.Union([Type.String(), Type.Null()]),
  seen_count: Type.Integer({
    minimum: 1,
    description:
      'job_failed items: times the problem was seen while this item was open — 1 when opened, then each give-up of the same task (a periodic task failing at every tick) or subject. Every other kind stays 1 however often its problem is found again (an integrity finding found by each nightly run): not a count of sightings there',
  }),
  last_seen_at: Type.Unsafe<Date | string>({ type: 'string', format: 'date-time', description: 'job_failed items: when the problem was last seen (created_at until seen again); every other kind: created_at' }),
  last_seen_op: Type.Union([Uuid, Type.Null()], {
    description: 'job_failed items: the operation that last saw it again (its correlation_id finds that occurrence in the server log); null until seen again, and always null on every other kind',
  }),
});


export async function integrityRoutes(app: App, { db, config, pool }: AppDeps): Promise<void> {
  serveOpenFindingsFrom(pool);
  app.get(
    '/v1/integrity',
    {
      config: { permission: 'integrity.read', refusals: { forbidden: 'a token limited to some stores (the checks span every store)' } },
      schema: {
        tags: ['integrity'],
        summary:
          'Run every integrity check on the caller\'s tenant now. The checks span every store of the tenant, so a token limited to some stores gets 403.',
        response: { 200: Type.Object({ ok: Type.Boolean(), checked_at: Timestamp, findings: Type.Array(Finding) }) },
      },
    },
    async (request) => {
      const principal = tenantOf(request);
      // Findings name rows of every store (balances, orders, settlements); a
      // store-scoped token must not see other stores' figures through them.
      assertAllStores(principal, 'integrity checks');
      // A check that cannot run is logged on the request's log (its correlation id), not shown.
      const run = await runChecksForTenant(db, principal.tenantId, allChecks, checkSettingsOf(config), { logger: request.log, correlationId: request.id });
      return {
        ok: run.findings.length === 0,
        checked_at: run.checked_at,
        findings: run.findings.map(({ check, severity, subject, detail }) => ({ check, severity, subject, detail })),
      };
    },
  );

  app.get(
    '/v1/review-items',
    {
      config: { permission: 'review.read' },
      schema: {
        tags: ['integrity'],
        summary: 'The review queue, newest first (store-scoped tokens see their stores\' items only)',
        querystring: Type.Object(
          {
            ...ListQuery.properties,
            status: Type.Optional(Type.Union([Type.Literal('open'), Type.Literal('resolved')])),
            kind: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
          },
          { additionalProperties: false },
        ),
        response: { 200: Page(ReviewItem) },
      },
    },
    async (request) => {
      const principal = tenantOf(request);
      const limit = request.query.limit ?? 50;
      const beforeId = decodeCursor(request.query.cursor, isUuidIdCursor, listOf(request))?.id;
      const rows = await inTenantTransaction(db, principal.tenantId, (tx) =>
        listReviewItems(tx, principal.tenantId, { status: request.query.status, kind: request.query.kind, storeIds: principal.storeIds, beforeId, limit: limit + 1 }),
      );
      return pageOf(rows, limit, (last) => ({ id: last.id }), listOf(request));
    },
  );

  app.get(
    '/v1/review-items/:id',
    { config: { permission: 'review.read' }, schema: { tags: ['integrity'], summary: 'A review item', params: IdParams, response: { 200: ReviewItem } } },
    async (request) => {
      const principal = tenantOf(request);
      const item = await inTenantTransaction(db, principal.tenantId, (tx) => findReviewItem(tx, principal.tenantId, request.params.id));
      if (!item || !reviewItemVisible(principal, item)) throw notFound('review item');
      return item;
    },
  );

  app.post(
    '/v1/review-items/:id/resolve',
    {
      config: { permission: 'review.resolve', refusals: { forbidden: 'the item was opened by an operation of this token, not an owner (`reason`: second_resolver_required)', invalid_transition: 'the item is already resolved with another note' } },
      schema: {
        tags: ['integrity'],
        summary:
          'Resolve an open review item with a note. Already resolved: with the same note, answered with that resolution as already done (`200`, `Idempotent-Replayed: true`, nothing written, under any key — a repeat after the key expired too); with another note, `409 invalid_transition` (nothing recorded). ' +
          'Separation of duties: the token whose operation opened the item (the receipt that declared a transfer short, the sync of an offline sale short of stock) may not resolve it while it is open — `403 forbidden` with `reason: second_resolver_required`, nothing written; another token with review.resolve does. An owner token may resolve its own (a one-person shop). Items the worker, a webhook or the operator opened (integrity findings, failed jobs, orders) were opened by no token.',
        headers: IdempotencyHeaders,
        params: IdParams,
        body: Type.Object({ note: Type.String({ minLength: 1, maxLength: 2000 }) }, { additionalProperties: false }),
        response: { 200: ReviewItem },
      },
    },
    async (request, reply) => {
      // Checked before the command, as GET checks it, so a replay goes to whoever sees the item —
      // the staff of either store of a two-store item (a transfer's shortfall), not only of the
      // store its resolution was filed under — and to no one else. (The command checks again.)
      const principal = tenantOf(request);
      const item = await inTenantTransaction(db, principal.tenantId, (tx) => findReviewItem(tx, principal.tenantId, request.params.id));
      if (!item || !reviewItemVisible(principal, item)) throw notFound('review item');
      return command(db, request, reply, { type: 'review_item.resolve' }, async (cmd) => ({
        status: 200,
        body: await resolveReviewItem(cmd, request.params.id, request.body.note),
      }));
    },
  );

  // The operator's own queue: items of the system tenant — jobs that belong
  // to no tenant (nightly runs, sweeps) and gave up, checks that could not run.
  app.get(
    '/v1/system/review-items',
    {
      config: { auth: 'operator' },
      schema: {
        tags: ['integrity'],
        summary: 'The operator\'s review queue (system tenant: failed tenant-less jobs, checks that could not run), newest first',
        querystring: Type.Object(
          { ...ListQuery.properties, status: Type.Optional(Type.Union([Type.Literal('open'), Type.Literal('resolved')])) },
          { additionalProperties: false },
        ),
        response: { 200: Page(ReviewItem) },
      },
    },
    async (request) => {
      const limit = request.query.limit ?? 50;
      const beforeId = decodeCursor(request.query.cursor, isUuidIdCursor, listOf(request))?.id;
      const rows = await inTenantTransaction(db, SYSTEM_TENANT_ID, (tx) =>
        listReviewItems(tx, SYSTEM_TENANT_ID, { status: request.query.status, storeIds: null, beforeId, limit: limit + 1 }),
      );
      return pageOf(rows, limit, (last) => ({ id: last.id }), listOf(request));
    },
  );

  app.post(
    '/v1/system/review-items/:id/resolve',
    {
      config: { auth: 'operator', refusals: { invalid_transition: 'the item is already resolved with another note' } },
      schema: {
        tags: ['integrity'],
        summary: 'Resolve an item of the operator\'s review queue with a note (resolved already: the same note is answered as already done, `200` replayed; another note `409 invalid_transition`)',
        headers: IdempotencyHeaders,
        params: IdParams,
        body: Type.Object({ note: Type.String({ minLength: 1, maxLength: 2000 }) }, { additionalProperties: false }),
        response: { 200: ReviewItem },
      },
    },
    async (request, reply) =>
      sendOutcome(
        reply,
        await runCommand(db, commandInputOf(request, SYSTEM_TENANT_ID), { type: 'review_item.resolve', replayInStoreScopeOnly: true }, async (cmd) => ({
          status: 200,
          body: await resolveReviewItem(cmd, request.params.id, request.body.note),
        })),
      ),
  );
}
