import { Type } from 'typebox';
import { assertStoreInScope } from '../core/auth.js';
import { rolesWith } from '../core/permissions.js';
import { inTenantTransaction } from '../core/command.js';
import { validationFailed } from '../core/errors.js';
import { assertStoreExists } from '../inventory/receiveStock.js';
import type { App, AppDeps } from '../http/app.js';
import { tenantOf } from '../http/command.js';
import { cursorField, decodeCursor, isCursorOf, limitOf, ListCursor, ListLimit, MoneyTotal, Page, listOf, pageOf, Timestamp, Uuid } from '../http/schemas.js';
import { listDailySales } from './rollupDailySales.js';

const Day = Type.String({ format: 'date', description: 'YYYY-MM-DD (a store\'s day, in its time_zone; a real day in the years 0001–9999)' });
const isDayCursor = isCursorOf<{ after: string }>({ after: cursorField.day });
const DailySales = Type.Object({
  store_id: Uuid,
  business_date: Type.String(),
  sales_count: Type.Integer(),
  voided_count: Type.Integer(),
  revenue: MoneyTotal,
  computed_at: Timestamp,
});

export async function analyticsRoutes(app: App, { db }: AppDeps): Promise<void> {
  app.get(
    '/v1/analytics/daily-sales',
    {
      config: { permission: 'analytics.read' },
      schema: {
        tags: ['analytics'],
        summary: `Daily sales figures of a store (rolled up nightly by the worker), from \`from\` to \`to\` inclusive; \`to\` at most 366 days after \`from\`; a store that is not the tenant's (or outside the token's stores) is 404. The shop's revenue: needs \`analytics.read\` (${rolesWith('analytics.read').join(', ')}), other roles get 403 before anything is read`,
        description:
          'A list like the others, in `business_date` order: `?limit=` (1–500, default 50) and `?cursor=`, `next_cursor` (until lists followed API.md here, an answer without `limit` had the whole range, up to 367 days, in one page). ' +
          'A sale counts on the day its money is booked on (its `sale` journal entry\'s `business_date`, a day of the store\'s `time_zone`, default UTC: an offline sale\'s till day, any other sale\'s day it was recorded, moved past the store\'s counted days); one with a total of 0 (no entry) on the store\'s day it happened (in its `time_zone`; never before 0001-01-01). ' +
          'A void takes the sale out of its own day\'s figures (`voided_count`, `revenue`), whenever it is voided — the money ledger books the reversal on the void\'s day. A partial return (POST /v1/sales/{id}/returns) likewise takes its refund out of the sale\'s own day\'s `revenue` (each sale counts its total less its `returned_total`), whenever it is made; the money ledger books the refund (`sale_return`) on the return\'s day. Only days with figures are listed (a day with only the void of an earlier day\'s sale has none). A field visit\'s consignment settlement credits the store\'s revenue account but is not a sale: not in these figures.',
        querystring: Type.Object(
          { store_id: Uuid, from: Day, to: Day, limit: ListLimit, cursor: ListCursor },
          { additionalProperties: false },
        ),
        response: { 200: Page(DailySales) },
      },
    },
    async (request) => {
      const principal = tenantOf(request);
      const { store_id: storeId, from, to } = request.query;
      assertStoreInScope(principal, storeId);
      const days = (Date.parse(to) - Date.parse(from)) / 86_400_000;
      if (!(days >= 0 && days <= 366)) throw validationFailed('/querystring/to', 'must be on or after from, and at most 366 days later');
      const limit = limitOf(request);
      const after = decodeCursor(request.query.cursor, isDayCursor, listOf(request))?.after;
      const rows = await inTenantTransaction(db, principal.tenantId, async (tx) => {
        // A store that is not the tenant's is 404, for every token (as a store-limited token's out-of-scope store is).
        await assertStoreExists(tx, principal.tenantId, storeId);
        return listDailySales({ tx }, principal.tenantId, storeId, from, to, after, limit + 1);
      });
      return pageOf(rows, limit, (last) => ({ after: last.business_date }), listOf(request));
    },
  );
}
