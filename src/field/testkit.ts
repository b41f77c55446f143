import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';

/** A token limited to the given stores: its client and its id (a visit names its agent by id). */
export interface FieldToken {
  client: ApiClient;
  id: string;
}

/**
 * A depot for the field specs: a tenant (its owner), one store `DEPOT`, and
 * tokens of that store — a manager and two field agents. With `stock`, soap
 * (a piece at 120) and tea (a piece at 300) with that much of each in the
 * depot; without, no SKUs (the spec makes its own).
 */
export async function givenFieldDepot(
  t: TestApp,
  options: { stock?: number } = {},
): Promise<{
  owner: ApiClient;
  tenantId: string;
  storeId: string;
  manager: ApiClient;
  agent: FieldToken;
  otherAgent: FieldToken;
  goods: { soap: string; tea: string } | null;
}> {
  const { owner, tenantId } = await t.newTenant();
  const storeId = (await owner.post('/v1/stores', { code: 'DEPOT', name: 'Depot' })).body.id;
  let goods: { soap: string; tea: string } | null = null;
  if (options.stock !== undefined) {
    const soap = (await owner.post('/v1/skus', { code: 'SOAP', name: 'Soap', unit: 'piece', price: 120 })).body.id;
    const tea = (await owner.post('/v1/skus', { code: 'TEA', name: 'Tea', unit: 'piece', price: 300 })).body.id;
    const received = await owner.post(`/v1/stores/${storeId}/stock/receipts`, {
      items: [
        { sku_id: soap, quantity: options.stock },
        { sku_id: tea, quantity: options.stock },
      ],
    });
    assert.equal(received.status, 201, JSON.stringify(received.body));
    goods = { soap, tea };
  }
  const token = async (role: string): Promise<FieldToken> => {
    const issued = await owner.post('/v1/tokens', { name: `${role}-${randomUUID().slice(0, 6)}`, role, store_ids: [storeId] });
    assert.equal(issued.status, 201, JSON.stringify(issued.body));
    return { client: t.client(issued.body.token), id: issued.body.id };
  };
  const manager = (await token('manager')).client;
  const agent = await token('field_agent');
  const otherAgent = await token('field_agent');
  return { owner, tenantId, storeId, manager, agent, otherAgent, goods };
}

/** Everything a visit completion could have written, counted for one tenant (for "nothing written"). */
export const fieldRowCounts = async (t: TestApp, tenantId: string) =>
  (
    await t.admin.query(
      `SELECT (SELECT count(*) FROM operations WHERE tenant_id = $1)::int AS operations,
              (SELECT count(*) FROM events WHERE tenant_id = $1)::int AS events,
              (SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1)::int AS keys,
              (SELECT count(*) FROM visits WHERE tenant_id = $1 AND status = 'completed')::int AS completed_visits,
              (SELECT count(*) FROM consignments WHERE tenant_id = $1)::int AS consignments,
              (SELECT count(*) FROM consignments WHERE tenant_id = $1 AND status = 'settled')::int AS settled,
              (SELECT count(*) FROM consignment_lines WHERE tenant_id = $1)::int AS consignment_lines,
              (SELECT count(*) FROM consignment_settlements WHERE tenant_id = $1)::int AS settlements,
              (SELECT count(*) FROM stock_ledger WHERE tenant_id = $1)::int AS ledger,
              (SELECT coalesce(sum(quantity), 0) FROM stock_balances WHERE tenant_id = $1)::bigint AS stock,
              (SELECT count(*) FROM journal_entries WHERE tenant_id = $1)::int AS entries,
              (SELECT count(*) FROM review_items WHERE tenant_id = $1)::int AS review_items,
              (SELECT string_agg(id || ':' || coalesce(last_visit_id::text, '-'), ',' ORDER BY id) FROM points_of_sale WHERE tenant_id = $1) AS last_visits`,
      [tenantId],
    )
  ).rows[0];

/** Every balance is its ledger's sum and its last quantity_after; every journal entry sums to zero; the integrity checks are clean. */
export async function assertFieldBooksConsistent(t: TestApp, tenantId: string): Promise<void> {
  const drift = await t.admin.query(
    `SELECT b.store_id, b.sku_id, b.quantity, l.total, l.last_after
     FROM stock_balances b
     LEFT JOIN LATERAL (SELECT coalesce(sum(quantity_change), 0) AS total,
                               (SELECT quantity_after FROM stock_ledger x WHERE x.tenant_id = b.tenant_id AND x.store_id = b.store_id AND x.sku_id = b.sku_id ORDER BY id DESC LIMIT 1) AS last_after
                        FROM stock_ledger s WHERE s.tenant_id = b.tenant_id AND s.store_id = b.store_id AND s.sku_id = b.sku_id) l ON true
     WHERE b.tenant_id = $1 AND (b.quantity <> l.total OR b.quantity <> l.last_after OR b.quantity < 0)`,
    [tenantId],
  );
  assert.deepEqual(drift.rows, []);
  const unbalanced = await t.admin.query(`SELECT entry_id, sum(amount) AS total FROM postings WHERE tenant_id = $1 GROUP BY entry_id HAVING sum(amount) <> 0`, [tenantId]);
  assert.deepEqual(unbalanced.rows, []);
  assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
}
