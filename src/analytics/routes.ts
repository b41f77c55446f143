import { Type } from 'typebox';
import { assertStoreInScope } from '../core/auth.js';
import { inTenantTransaction } from '../core/command.js';
import { validationFailed } from '../core/errors.js';
import type { App, AppDeps } from '../http/app.js';
import { tenantOf } from '../http/command.js';
import { Money, Timestamp, Uuid } from '../http/schemas.js';
import { listDailySales } from './rollupDailySales.js';

const Day = Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}$', description: 'YYYY-MM-DD (UTC day)' });

export async function analyticsRoutes(app: App, { db }: AppDeps): Promise<void> {
  app.get(
    '/v1/analytics/daily-sales',
    {
      config: { permission: 'sales.read' },
      schema: {
        tags: ['analytics'],
        summary: 'Daily sales figures of a store (rolled up nightly by the worker), from `from` to `to` inclusive; `to` at most 366 days after `from`',
        querystring: Type.Object({ store_id: Uuid, from: Day, to: Day }, { additionalProperties: false }),
        response: {
          200: Type.Object({
            items: Type.Array(
              Type.Object({
                store_id: Uuid,
                business_date: Type.String(),
                sales_count: Type.Integer(),
                voided_count: Type.Integer(),
                revenue: Money,
                computed_at: Timestamp,
              }),
            ),
          }),
        },
      },
    },
    async (request) => {
      const principal = tenantOf(request);
      const { store_id: storeId, from, to } = request.query;
      assertStoreInScope(principal, storeId);
      const days = (Date.parse(to) - Date.parse(from)) / 86_400_000;
      if (!(days >= 0 && days <= 366)) throw validationFailed('/querystring/to', 'must be on or after from, and at most 366 days later');
      return { items: await inTenantTransaction(db, principal.tenantId, (tx) => listDailySales({ tx }, principal.tenantId, storeId, from, to)) };
    },
  );
}
