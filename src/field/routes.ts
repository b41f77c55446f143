import { storeFilteredPage } from '../inventory/storeFilteredList.js';
import { Type } from 'typebox';
import { assertStoreInScope, inStoreScope } from '../core/auth.js';
import { inTenantTransaction } from '../core/command.js';
import { AppError, notFound } from '../core/errors.js';
import type { App, AppDeps } from '../http/app.js';
import { command, commandInputOf, tenantOf } from '../http/command.js';
import { ListCursor, ListLimit, cursorField, decodeCursor, IdempotencyHeaders, IdParams, isCursorOf, isUuidIdCursor, ListQuery, LOWERCASE, Money, Name, Page, listOf, pageOf, PositiveQuantity, Timestamp, Uuid } from '../http/schemas.js';
import { completeVisit, completionGoods, findVisitOwner, mayCompleteVisit } from './completeVisit.js';
import { createPointOfSale } from './createPointOfSale.js';
import { findPointOfSale, listOpenConsignments, listPointsOfSale, listVisits, loadVisitCompletion } from './queries.js';
import { scheduleVisit } from './scheduleVisit.js';

const Latitude = Type.Number({ minimum: -90, maximum: 90, description: 'decimal degrees (WGS 84)' });
const Longitude = Type.Number({ minimum: -180, maximum: 180, description: 'decimal degrees (WGS 84)' });
const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(schema: T) => Type.Union([schema, Type.Null()]);

const PointOfSale = Type.Object({
  id: Uuid,
  name: Type.String(),
  store_id: Uuid,
  party_id: Uuid,
  latitude: Type.Number(),
  longitude: Type.Number(),
  last_visit_at: Type.Union([Timestamp, Type.Null()], {
    description:
      "when the last visit happened: of the completed visits, the latest by its device time (client_created_at, no later than its arrival, no earlier than its scheduling) or, without one, its arrival (completed_at) — a visit synced days late does not replace a newer one",
  }),
  last_visit_id: Type.Union([Uuid, Type.Null()], { description: 'the visit last_visit_at is of' }),
  op_id: Uuid,
  created_at: Timestamp,
});
const Visit = Type.Object({
  id: Uuid,
  point_of_sale_id: Uuid,
  store_id: Uuid,
  agent_token_id: Uuid,
  scheduled_for: Timestamp,
  status: Type.Union([Type.Literal('scheduled'), Type.Literal('completed')]),
  completed_at: Nullable(Timestamp),
  completed_by_op: Nullable(Uuid),
  completed_latitude: Nullable(Type.Number()),
  completed_longitude: Nullable(Type.Number()),
  completed_distance_m: Nullable(Type.Integer({ description: 'great-circle distance from the point of sale at completion, whole metres' })),
  client_created_at: Type.Union([Timestamp, Type.Null()], {
    description: "when the agent's device completed the visit, as sent with the completion (null: not sent); completed_at is when the completion reached us",
  }),
  op_id: Uuid,
  created_at: Timestamp,
});
const Consignment = Type.Object({
  id: Uuid,
  visit_id: Uuid,
  point_of_sale_id: Uuid,
  store_id: Uuid,
  status: Type.Union([Type.Literal('open'), Type.Literal('settled')]),
  settled_by_op: Nullable(Uuid),
  op_id: Uuid,
  created_at: Timestamp,
  lines: Type.Array(
    Type.Object({
      sku_id: Uuid,
      quantity: Type.Integer({ description: 'left at the point of sale (what its settlement accounts for)' }),
      unit_price: Money,
      shortfall_quantity: Type.Integer({
        description:
          'left on a visit queued offline (client_created_at) when the store was short: the part that was not in its stock — the ledger took quantity − shortfall_quantity, and an offline_consignment_shortage review item was opened; 0 otherwise',
      }),
    }),
  ),
});
const Settlement = Type.Object({
  id: Uuid,
  consignment_id: Uuid,
  visit_id: Uuid,
  amount_owed: Type.Integer({ description: 'what the point of sale owes, minor units: Σ per line what a sale of the sold quantity at unit_price would total (kg / metre lines: base units × price / 1000, rounded half up)' }),
  journal_entry_id: Nullable(Uuid),
  op_id: Uuid,
  created_at: Timestamp,
  lines: Type.Array(Type.Object({ sku_id: Uuid, sold_quantity: Type.Integer(), returned_quantity: Type.Integer(), unit_price: Money })),
});
const SettlementConflict = Type.Object(
  {
    consignment_id: Uuid,
    settlement_id: Uuid,
    settled_by_op: Uuid,
    review_item_id: Uuid,
  },
  {
    description:
      "present only when the settlement this completion carried was NOT recorded: the completion was queued offline (sent with client_created_at) and its consignment had been settled by another operation meanwhile (`settlement_id`, `settled_by_op`). The goods left and the visit were recorded as usual; no money was owed and no goods came back for this settlement. What it reported is on the `consignment_settled_twice` review item `review_item_id`, for a person to decide",
  },
);
const VisitCompletion = Type.Object({ visit: Visit, consignment: Nullable(Consignment), settlement: Nullable(Settlement), settlement_conflict: Type.Optional(SettlementConflict) });

const isVisitCursor = isCursorOf<{ scheduled_for: string; id: string }>({ scheduled_for: cursorField.utcMicros, id: cursorField.uuid });

export async function fieldRoutes(app: App, { db }: AppDeps): Promise<void> {
  app.post(
    '/v1/points-of-sale',
    {
      config: { permission: 'field.manage', refusals: { not_found: 'the store does not exist or is outside the token stores' } },
      schema: {
        tags: ['field'],
        summary: 'Create a point of sale supplied from a store. What it owes for goods sold on consignment is posted to the receivable of its customer party (given, or created with it). Its Idempotency-Key is kept for good (not IDEMPOTENCY_TTL_HOURS): sent again days later, it replays the first answer.',
        headers: IdempotencyHeaders,
        body: Type.Object(
          {
            name: Name(200),
            store_id: Uuid,
            latitude: Latitude,
            longitude: Longitude,
            party_id: Type.Optional(Type.String({ format: 'uuid', [LOWERCASE]: true, description: 'an existing customer party that owes for this point of sale; default: a new customer party named after it' })),
          },
          { additionalProperties: false },
        ),
        response: { 201: PointOfSale },
      },
    },
    async (request, reply) => {
      assertStoreInScope(tenantOf(request), request.body.store_id);
      return command(db, request, reply, { type: 'point_of_sale.create', storeId: request.body.store_id, ttlHours: 'forever' }, async (cmd) => ({
        status: 201,
        body: await createPointOfSale(cmd, request.body),
      }));
    },
  );

  app.get(
    '/v1/points-of-sale',
    {
      config: { permission: 'field.read' },
      schema: {
        tags: ['field'],
        summary: "List points of sale in the caller's stores",
        querystring: Type.Object(
          {
            store_id: Type.Optional(Uuid),
            limit: ListLimit,
            cursor: ListCursor,
          },
          { additionalProperties: false },
        ),
        response: { 200: Page(PointOfSale) },
      },
    },
    async (request) => {
      const principal = tenantOf(request);
      return storeFilteredPage(db, principal, request.query, (tx, after, limitPlusOne) =>
        listPointsOfSale(tx, principal.tenantId, principal.storeIds, { storeId: request.query.store_id }, after, limitPlusOne),
        listOf(request),
      );
    },
  );

  app.get(
    '/v1/points-of-sale/:id',
    { config: { permission: 'field.read' }, schema: { tags: ['field'], summary: 'A point of sale', params: IdParams, response: { 200: PointOfSale } } },
    async (request) => {
      const principal = tenantOf(request);
      const row = await inTenantTransaction(db, principal.tenantId, (tx) => findPointOfSale(tx, principal.tenantId, request.params.id));
      if (!row || !inStoreScope(principal, row.store_id)) throw notFound('point of sale');
      return row;
    },
  );

  app.get(
    '/v1/points-of-sale/:id/consignments',
    {
      config: { permission: 'field.read' },
      schema: {
        tags: ['field'],
        summary: 'Open consignments at a point of sale (what the next visit settles), oldest id first',
        params: IdParams,
        querystring: ListQuery,
        response: { 200: Page(Consignment) },
      },
    },
    async (request) => {
      const principal = tenantOf(request);
      const limit = request.query.limit ?? 50;
      const after = decodeCursor(request.query.cursor, isUuidIdCursor, listOf(request))?.id;
      return inTenantTransaction(db, principal.tenantId, async (tx) => {
        const row = await findPointOfSale(tx, principal.tenantId, request.params.id);
        if (!row || !inStoreScope(principal, row.store_id)) throw notFound('point of sale');
        return pageOf(await listOpenConsignments(tx, principal.tenantId, row.id, after, limit + 1), limit, (last) => ({ id: last.id }), listOf(request));
      });
    },
  );

  app.post(
    '/v1/visits',
    {
      config: { permission: 'field.manage', refusals: { not_found: 'the point of sale does not exist or is outside the token stores' } },
      schema: {
        tags: ['field'],
        summary: 'Schedule a visit of a field agent (a field_agent token reaching the store) to a point of sale. Its Idempotency-Key is kept for good (not IDEMPOTENCY_TTL_HOURS): sent again days later, it replays the first answer.',
        description:
          "An agent token that is not an active field_agent reaching the point of sale's store is a 400 at /body/agent_token_id. A token limited to some stores gets the same reason for every token outside its stores, whether or not the id exists.",
        headers: IdempotencyHeaders,
        body: Type.Object(
          { point_of_sale_id: Uuid, agent_token_id: Uuid, scheduled_for: Type.String({ format: 'date-time' }) },
          { additionalProperties: false },
        ),
        response: { 201: Visit },
      },
    },
    async (request, reply) =>
      command(db, request, reply, { type: 'visit.schedule', replayInStoreScopeOnly: true, ttlHours: 'forever' }, async (cmd) => ({ status: 201, body: await scheduleVisit(cmd, request.body) })),
  );

  app.get(
    '/v1/visits',
    {
      config: { permission: 'field.read', refusals: { not_found: 'the point of sale in `point_of_sale_id` does not exist or is outside the token stores' } },
      schema: {
        tags: ['field'],
        summary: 'List visits by scheduled time. A field agent sees only their own visits.',
        description:
          '`agent_token_id` filters by the agent the visits are for. A field agent sees only its own visits: it may leave the filter out or name itself; naming any other id is `403 forbidden` with `reason: own_visits_only` (not an empty list). Other roles filter by any agent.',
        querystring: Type.Object(
          {
            status: Type.Optional(Type.Union([Type.Literal('scheduled'), Type.Literal('completed')])),
            point_of_sale_id: Type.Optional(Uuid),
            agent_token_id: Type.Optional(Uuid),
            limit: ListLimit,
            cursor: ListCursor,
          },
          { additionalProperties: false },
        ),
        response: { 200: Page(Visit) },
      },
    },
    async (request) => {
      const principal = tenantOf(request);
      const limit = request.query.limit ?? 50;
      const after = decodeCursor(request.query.cursor, isVisitCursor, listOf(request));
      const agentTokenId = principal.role === 'field_agent' ? principal.tokenId : request.query.agent_token_id;
      // An agent filtering by another agent is refused, not answered an empty
      // list: "none" would hide a permission problem as "no visits". The same
      // answer for any id, a token or not (an agent learns nothing of others).
      if (principal.role === 'field_agent' && request.query.agent_token_id !== undefined && request.query.agent_token_id !== principal.tokenId) {
        throw new AppError('forbidden', 'a field agent lists only its own visits: leave agent_token_id out, or send its own token id', {
          extra: { reason: 'own_visits_only' },
        });
      }
      const rows = await inTenantTransaction(db, principal.tenantId, async (tx) => {
        // A point of sale that is not there, or is outside the token's stores, is 404 (as its own GET is), not an empty list.
        const pointOfSaleId = request.query.point_of_sale_id;
        if (pointOfSaleId !== undefined) {
          const pointOfSale = await findPointOfSale(tx, principal.tenantId, pointOfSaleId);
          if (!pointOfSale || !inStoreScope(principal, pointOfSale.store_id)) throw notFound('point of sale');
        }
        return listVisits(
          tx,
          principal.tenantId,
          { storeIds: principal.storeIds, agentTokenId },
          { status: request.query.status, pointOfSaleId },
          after,
          limit + 1,
        );
      });
      // The cursor holds scheduled_for to the microsecond as stored: a millisecond
      // one would sort before the row it came from and page it again forever.
      const page = pageOf(rows, limit, (last) => ({ scheduled_for: last.position, id: last.id }), listOf(request));
      return { ...page, items: page.items.map(({ position: _position, ...visit }) => visit) };
    },
  );

  app.get(
    '/v1/visits/:id',
    {
      config: { permission: 'field.read' },
      schema: { tags: ['field'], summary: 'A visit with the consignment it left and the settlement it made', params: IdParams, response: { 200: VisitCompletion } },
    },
    async (request) => {
      const principal = tenantOf(request);
      const found = await inTenantTransaction(db, principal.tenantId, (tx) => loadVisitCompletion(tx, principal.tenantId, request.params.id));
      if (!found || !inStoreScope(principal, found.visit.store_id)) throw notFound('visit');
      if (principal.role === 'field_agent' && found.visit.agent_token_id !== principal.tokenId) throw notFound('visit');
      return found;
    },
  );

  app.post(
    '/v1/visits/:id/complete',
    {
      config: { permission: 'visits.complete', refusals: { geofence_violation: 'the agent is outside the geofence (`distance_m`, `radius_m`)', insufficient_stock: 'the supplying store lacks the goods to leave (`shortages`) — a completion sent without `client_created_at`; one queued offline takes what is there and records the rest as `shortfall_quantity`', invalid_transition: 'the visit was already completed with a different request, or the consignment to settle is already settled (a completion sent without `client_created_at`; one queued offline is recorded without its settlement, see `settlement_conflict`)', limit_exceeded: 'the goods returned to the store, or an account total of the settlement, would exceed its limit' } },
      schema: {
        tags: ['field'],
        summary:
          "Complete a visit at the point of sale: in one transaction, settle an earlier consignment (sold → money owed, returned → stock), leave goods on a new consignment (taken out of the supplying store's stock), update the point of sale's last visit and mark the visit completed. The agent's position must be within the geofence (`geofence_radius_m`, default 200 m) or `422 geofence_violation` with `distance_m` and `radius_m`. Completing a completed visit replays its result. A field agent can complete only their own visits (others are 404). A completion the agent's device queued offline sends `client_created_at` (when the visit was completed on the device): the point of sale's last visit is the latest visit by that time (no later than its arrival, no earlier than the visit's scheduling), so a visit synced days late does not replace a newer one; without it, the arrival counts, as before. Kept on the visit as sent; a bad time is 400 at /body/client_created_at. Like the position, it is not compared: the same completion sent again with another time replays the first. The consignment, its stock moves and a settlement's money are recorded when the completion arrives (the money is receivable and revenue, no drawer cash). A completion sent with `client_created_at` whose settlement names a consignment of this point of sale that another operation settled meanwhile is recorded WITHOUT its settlement (no money, no goods back, the consignment untouched) and answered `200` with `settlement: null` and `settlement_conflict`; a `consignment_settled_twice` review item holds what it reported. Settlement lines that do not fit that consignment are still `400`; without `client_created_at` the whole completion is `409 invalid_transition`, as before. Sent with `client_created_at`, goods left are never refused for stock: each line takes what the store has (plus what this visit's settlement returns), down to 0, and the rest is its `shortfall_quantity`, with an `offline_consignment_shortage` review item; without it, a shortage is `409 insufficient_stock`.",
        headers: IdempotencyHeaders,
        params: IdParams,
        body: Type.Object(
          {
            latitude: Latitude,
            longitude: Longitude,
            lines: Type.Array(
              Type.Object(
                { sku_id: Uuid, quantity: PositiveQuantity, unit_price: Type.Optional(Type.Integer({ minimum: 0, maximum: 9_000_000_000_000, description: 'default: the SKU price' })) },
                { additionalProperties: false },
              ),
              { maxItems: 500, description: 'goods left on consignment (may be empty)' },
            ),
            settlement: Type.Optional(
              Type.Object(
                {
                  consignment_id: Uuid,
                  lines: Type.Array(
                    Type.Object(
                      {
                        sku_id: Uuid,
                        sold_quantity: Type.Integer({ minimum: 0, maximum: 1_000_000_000_000 }),
                        returned_quantity: Type.Integer({ minimum: 0, maximum: 1_000_000_000_000 }),
                      },
                      { additionalProperties: false },
                    ),
                    { minItems: 1, maxItems: 500, description: 'every consignment line, sold + returned = quantity left' },
                  ),
                },
                { additionalProperties: false },
              ),
            ),
            client_created_at: Type.Optional(
              Type.String({
                format: 'date-time',
                description:
                  "when the agent completed the visit on the device — send it with a completion queued offline (RFC 3339, any offset; within the years 0001–9999 in UTC, else 400). The point of sale's last visit is the latest by this time: a time ahead of the arrival counts as the arrival, one before the visit was scheduled as its scheduling. Kept on the visit as sent; without it, the visit counts at its arrival. It also marks the completion as queued offline, which changes two refusals: goods left that the store no longer has are not refused (`shortfall_quantity`, a review item), and a settlement of a consignment settled meanwhile is recorded as not applied (`settlement_conflict`) instead of `409`. A device completing the visit online, the agent still at the point of sale, sends none: it gets those refusals and can act on them",
              }),
            ),
          },
          { additionalProperties: false },
        ),
        response: { 200: VisitCompletion },
      },
    },
    async (request, reply) => {
      // Visibility before the command, so a replayed completion (an
      // Idempotency-Key of the same tenant) is never handed to a token that
      // may not see the visit — another agent of the same store included.
      const principal = tenantOf(request);
      const visit = await inTenantTransaction(db, principal.tenantId, (tx) => findVisitOwner(tx, principal.tenantId, request.params.id));
      if (!visit || !mayCompleteVisit(principal, visit)) throw notFound('visit');
      // The same completion is the same goods and settlement wherever the
      // agent stands: a retry under its key after a lost answer may re-read
      // its GPS and still replays (the position is checked, not compared), and
      // the goods may be listed in another order (completionGoods).
      return command(
        db,
        request,
        reply,
        { type: 'visit.complete', storeId: visit.store_id },
        async (cmd) => ({ status: 200, body: await completeVisit(cmd, request.params.id, request.body) }),
        commandInputOf(request, undefined, completionGoods(request.body)),
      );
    },
  );
}
