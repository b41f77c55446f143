import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { ApiClient } from '../../test/support/client.js';

describe('tenants and stores are walls', () => {
  let t: TestApp;
  let a: { tenantId: string; owner: ApiClient };
  let b: { tenantId: string; owner: ApiClient };
  let storeB: { id: string };
  let skuB: { id: string };
  let storeA1: { id: string };
  let storeA2: { id: string };

  before(async () => {
    t = await startTestApp();
    a = await t.newTenant('Tenant A');
    b = await t.newTenant('Tenant B');
    storeB = (await b.owner.post('/v1/stores', { code: 'B1', name: 'B shop' })).body;
    skuB = (await b.owner.post('/v1/skus', { code: 'B-SKU', name: 'B thing', unit: 'piece', price: 100 })).body;
    await b.owner.post(`/v1/stores/${storeB.id}/stock/receipts`, { items: [{ sku_id: skuB.id, quantity: 10 }] });
    storeA1 = (await a.owner.post('/v1/stores', { code: 'A1', name: 'A one' })).body;
    storeA2 = (await a.owner.post('/v1/stores', { code: 'A2', name: 'A two' })).body;
  });
  after(() => t.close());

  it("tenant A's token cannot read tenant B's records: 404, as if they did not exist", async () => {
    assert.equal((await a.owner.get(`/v1/stores/${storeB.id}`)).status, 404);
    assert.equal((await a.owner.get(`/v1/skus/${skuB.id}`)).status, 404);
    assert.equal((await a.owner.get(`/v1/stores/${storeB.id}/stock`)).status, 404);
    const missing = await a.owner.get(`/v1/stores/00000000-0000-4000-8000-000000000000`);
    assert.equal(missing.status, 404);
    const foreign = await a.owner.get(`/v1/stores/${storeB.id}`);
    assert.deepEqual(Object.keys(foreign.body).sort(), Object.keys(missing.body).sort());
    const list = await a.owner.get('/v1/stores');
    assert.deepEqual(list.body.items.map((s: { code: string }) => s.code).sort(), ['A1', 'A2']);
  });

  it("tenant A's token cannot write into tenant B's records", async () => {
    const response = await a.owner.post(`/v1/stores/${storeB.id}/stock/receipts`, { items: [{ sku_id: skuB.id, quantity: 5 }] });
    assert.ok(response.status === 404 || response.status === 400, `got ${response.status}`);
    const stock = await t.admin.query('SELECT quantity FROM stock_balances WHERE store_id = $1', [storeB.id]);
    assert.equal(Number(stock.rows[0].quantity), 10);
  });

  it("a raw query under tenant A's RLS context sees none of B's rows, in every tenant table", async () => {
    const tables = (
      await t.admin.query<{ table_name: string }>(
        `SELECT c.table_name FROM information_schema.columns c
         JOIN information_schema.tables t USING (table_schema, table_name)
         WHERE c.table_schema = 'public' AND c.column_name = 'tenant_id' AND t.table_type = 'BASE TABLE'`,
      )
    ).rows.map((row) => row.table_name);
    assert.ok(tables.includes('stores') && tables.includes('events') && tables.includes('stock_ledger'));
    // A table the app role may not read at all shows it no tenant's rows: only
    // the owner's record of withheld job errors (migration 0910) is one.
    const unreadable = (
      await t.admin.query<{ table_name: string }>(`SELECT t AS table_name FROM unnest($1::text[]) AS t WHERE NOT has_table_privilege('storekeep_app', t, 'SELECT') ORDER BY 1`, [tables])
    ).rows.map((row) => row.table_name);
    assert.deepEqual(unreadable, ['review_item_withheld_errors']);
    await assert.rejects(t.appPool.query('SELECT 1 FROM review_item_withheld_errors'), /permission denied/);
    const client = await t.appPool.connect();
    try {
      await client.query('BEGIN');
      await client.query(`SELECT set_config('app.tenant_id', $1, true)`, [a.tenantId]);
      for (const table of tables.filter((name) => !unreadable.includes(name))) {
        const visible = await client.query(`SELECT count(*)::int AS n FROM ${table} WHERE tenant_id = $1`, [b.tenantId]);
        assert.equal(visible.rows[0].n, 0, `${table} leaks tenant B's rows`);
        const own = await client.query(`SELECT count(*)::int AS n FROM ${table} WHERE tenant_id <> $1`, [a.tenantId]);
        assert.equal(own.rows[0].n, 0, `${table} shows rows of another tenant`);
      }
      // and B's rows really exist (the test would pass vacuously otherwise)
      const real = await t.admin.query('SELECT count(*)::int AS n FROM stock_ledger WHERE tenant_id = $1', [b.tenantId]);
      assert.ok(real.rows[0].n > 0);
      // Writing a row for B under A's context is refused by the policy
      await assert.rejects(
        client.query(`UPDATE stores SET name = 'hacked' WHERE tenant_id = $1 RETURNING id`, [b.tenantId]).then((r) => {
          if (r.rowCount === 0) throw new Error('row-level security: no rows visible');
        }),
        /row-level security/,
      );
      await assert.rejects(
        client.query(`INSERT INTO stores (tenant_id, id, code, name, op_id) VALUES ($1, gen_random_uuid(), 'X', 'X', gen_random_uuid())`, [b.tenantId]),
        /row-level security/,
      );
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
  });

  it('every tenant table has row-level security on, its policy reading the session tenant once per statement', async () => {
    const { rows } = await t.admin.query<{ table_name: string; rls: boolean; qual: string | null; with_check: string | null }>(
      `SELECT c.relname AS table_name, c.relrowsecurity AS rls, p.qual, p.with_check
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_policies p ON p.schemaname = n.nspname AND p.tablename = c.relname AND p.policyname = 'tenant_isolation'
       WHERE n.nspname = 'public' AND c.relkind = 'r'
         AND (c.relname = 'tenants' OR EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped))
       ORDER BY 1`,
    );
    assert.ok(rows.length > 30, `tenant tables found: ${rows.length}`);
    // (SELECT current_tenant_id()) is an initplan: one read of the setting per statement, not one per row (migration 0808).
    const once = /^\((tenant_id|id) = \( SELECT current_tenant_id\(\) AS current_tenant_id\)\)$/;
    const wrong = rows.filter((row) => !row.rls || !once.test(row.qual ?? '') || !once.test(row.with_check ?? ''));
    assert.deepEqual(wrong, []);
  });

  it('with no tenant set, the app role sees no rows at all', async () => {
    const result = await t.appPool.query('SELECT count(*)::int AS n FROM stores');
    assert.equal(result.rows[0].n, 0);
  });

  it('the app role cannot bypass row-level security', async () => {
    const role = await t.appPool.query(`SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user`);
    assert.equal(role.rows[0].current_user, 'storekeep_app');
    assert.equal(role.rows[0].rolsuper, false);
    assert.equal(role.rows[0].rolbypassrls, false);
  });

  it('a store-scoped token sees only its stores; others are 404', async () => {
    const issued = await a.owner.post('/v1/tokens', { name: 'till 1', role: 'cashier', store_ids: [storeA1.id] });
    assert.equal(issued.status, 201);
    assert.match(issued.body.token, /^sk_/);
    const cashier = t.client(issued.body.token);
    assert.equal((await cashier.get(`/v1/stores/${storeA1.id}`)).status, 200);
    assert.equal((await cashier.get(`/v1/stores/${storeA2.id}`)).status, 404);
    assert.equal((await cashier.get(`/v1/stores/${storeA2.id}/stock`)).status, 404);
    const list = await cashier.get('/v1/stores');
    assert.deepEqual(list.body.items.map((s: { id: string }) => s.id), [storeA1.id]);
  });

  it('a store-scoped token cannot create stores (403, nothing written): a new store lies outside its reach, and a code already taken must not tell it that a store it cannot see exists', async () => {
    const manager = t.client((await a.owner.post('/v1/tokens', { name: 'A1 store manager', role: 'manager', store_ids: [storeA1.id] })).body.token);
    const stores = async () => (await t.admin.query('SELECT count(*)::int AS n FROM stores WHERE tenant_id = $1', [a.tenantId])).rows[0].n;
    const before = await stores();
    const taken = await manager.post('/v1/stores', { code: 'A2', name: 'Probe' });
    const fresh = await manager.post('/v1/stores', { code: 'A-NEW', name: 'Out of reach' });
    assert.deepEqual([taken.status, taken.body.code], [403, 'forbidden'], JSON.stringify(taken.body));
    assert.deepEqual([fresh.status, fresh.body.code], [403, 'forbidden'], JSON.stringify(fresh.body));
    assert.equal(taken.body.detail, fresh.body.detail, 'the same refusal whether the code is taken or not');
    assert.equal(await stores(), before);
  });

  it("a party's ledger for a store-scoped token: postings of its stores only; party balances (which span every store) 403", async () => {
    const customer = (await a.owner.post('/v1/parties', { kind: 'customer', name: 'Two-store customer' })).body;
    for (const [store, amount] of [[storeA1.id, 111], [storeA2.id, 222]] as const) {
      assert.equal((await a.owner.post('/v1/payments', { party_id: customer.id, store_id: store, method: 'cash', amount })).status, 201);
    }
    const scoped = t.client((await a.owner.post('/v1/tokens', { name: 'A1 manager', role: 'manager', store_ids: [storeA1.id] })).body.token);
    const amounts = (response: { body: { items: Array<{ amount: number }> } }) => response.body.items.map((p) => Math.abs(p.amount)).sort((x, y) => x - y);
    assert.deepEqual(amounts(await a.owner.get(`/v1/parties/${customer.id}/postings`)), [111, 222]);
    assert.deepEqual(amounts(await scoped.get(`/v1/parties/${customer.id}/postings`)), [111]);
    const balances = await scoped.get('/v1/ledger/customers');
    assert.equal(balances.status, 403, JSON.stringify(balances.body));
    assert.equal((await a.owner.get('/v1/ledger/customers')).status, 200);
  });

  it('a rotated token of the same scope replays what the old one did: a tenant-wide party, a transfer requested from the destination side', async () => {
    const scope = [storeA2.id];
    const mint = async () => t.client((await a.owner.post('/v1/tokens', { name: `A2 manager ${Math.random()}`, role: 'manager', store_ids: scope })).body.token);
    const before = await mint();
    const party = { kind: 'supplier', name: 'Rotating supplier' };
    const sku = (await a.owner.post('/v1/skus', { code: `ROT-${Date.now()}`, name: 'Rotating SKU', unit: 'piece', price: 1 })).body;
    const transfer = { source_store_id: storeA1.id, destination_store_id: storeA2.id, items: [{ sku_id: sku.id, quantity: 1 }] };
    const created = await before.post('/v1/parties', party, { idempotencyKey: 'rotation-party' });
    const requested = await before.post('/v1/transfers', transfer, { idempotencyKey: 'rotation-transfer' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(requested.status, 201, JSON.stringify(requested.body));
    const after = await mint();
    for (const [path, body, key, first] of [['/v1/parties', party, 'rotation-party', created], ['/v1/transfers', transfer, 'rotation-transfer', requested]] as const) {
      const replay = await after.post(path, body, { idempotencyKey: key });
      assert.equal(replay.status, 201, `${path}: ${JSON.stringify(replay.body)}`);
      assert.equal(replay.headers.get('idempotent-replayed'), 'true');
      assert.equal(replay.body.id, first.body.id);
    }
  });

  it('tenant-wide reads are closed to store-scoped tokens: integrity (403), operations without a store (404)', async () => {
    const issued = await a.owner.post('/v1/tokens', { name: 'scoped manager', role: 'manager', store_ids: [storeA1.id] });
    const manager = t.client(issued.body.token);
    const integrity = await manager.get('/v1/integrity');
    assert.equal(integrity.status, 403);
    assert.equal((await manager.post('/v1/stock/snapshots', {})).status, 403, 'snapshots cover every store');
    assert.equal(integrity.body.code, 'forbidden');
    assert.equal((await a.owner.get('/v1/integrity')).status, 200);
    // a SKU is tenant-wide: its creation has no store
    const sku = await a.owner.post('/v1/skus', { code: 'TW-SKU', name: 'Tenant wide', unit: 'piece', price: 1 });
    assert.equal((await a.owner.get(`/v1/operations/${sku.body.op_id}`)).status, 200);
    assert.equal((await manager.get(`/v1/operations/${sku.body.op_id}`)).status, 404);
    // …and reverting it is 404 too, without naming what it is
    const revert = await manager.post(`/v1/operations/${sku.body.op_id}/revert`, {});
    assert.equal(revert.status, 404, JSON.stringify(revert.body));
    assert.ok(!JSON.stringify(revert.body).includes('sku.create'));
    // the scoped store's own operations stay visible to it
    const store = await t.admin.query('SELECT op_id FROM stores WHERE id = $1', [storeA1.id]);
    assert.equal((await manager.get(`/v1/operations/${store.rows[0].op_id}`)).status, 200);
  });

  it('SECURITY DEFINER functions (which pass row-level security) are not executable by other database roles — every one of them', async () => {
    // Every SECURITY DEFINER function of our schema, from the catalog (not a
    // list kept by hand): PUBLIC must not hold EXECUTE on any.
    const definers = (
      await t.admin.query(
        `SELECT p.oid::regprocedure::text AS signature, has_function_privilege('public', p.oid, 'EXECUTE') AS public_may
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE p.prosecdef AND n.nspname = 'public'`,
      )
    ).rows as Array<{ signature: string; public_may: boolean }>;
    assert.ok(definers.length >= 5, `found ${definers.length} SECURITY DEFINER functions`);
    assert.deepEqual(definers.filter((d) => d.public_may).map((d) => d.signature), []);
    const role = `sk_outsider_${Date.now()}`;
    await t.admin.query(`CREATE ROLE ${role} NOLOGIN`);
    const client = await t.admin.connect();
    try {
      for (const call of ["find_api_token('\\x00'::bytea)", 'purge_expired_idempotency_keys()', 'tenants_with_expired_piece_reservations()', 'tenants_with_stock()']) {
        await client.query('BEGIN');
        await client.query(`SET LOCAL ROLE ${role}`);
        await assert.rejects(client.query(`SELECT * FROM ${call}`), /permission denied/, call);
        await client.query('ROLLBACK');
      }
      const app = await t.appPool.query(`SELECT count(*)::int AS n FROM tenants_with_expired_piece_reservations()`);
      assert.equal(app.rows[0].n, 0);
    } finally {
      await client.query('ROLLBACK').catch(() => undefined);
      client.release();
      await t.admin.query(`DROP ROLE ${role}`);
    }
  });

  it('a role without the permission gets 403 and nothing is written', async () => {
    const issued = await a.owner.post('/v1/tokens', { name: 'auditor', role: 'auditor' });
    const auditor = t.client(issued.body.token);
    const response = await auditor.post('/v1/stores', { code: 'NOPE', name: 'Nope' });
    assert.equal(response.status, 403);
    assert.equal(response.body.code, 'forbidden');
    assert.equal((await t.admin.query(`SELECT 1 FROM stores WHERE code = 'NOPE'`)).rowCount, 0);
  });

  it('tokens are stored only as hashes', async () => {
    const issued = await a.owner.post('/v1/tokens', { name: 'hash check', role: 'manager' });
    const rows = await t.admin.query(`SELECT * FROM api_tokens WHERE id = $1`, [issued.body.id]);
    assert.equal(rows.rowCount, 1);
    assert.ok(!JSON.stringify(rows.rows[0]).includes(issued.body.token));
    const events = await t.admin.query(`SELECT 1 FROM events WHERE tenant_id = $1 AND (payload::text LIKE $2 OR after::text LIKE $2)`, [a.tenantId, `%${issued.body.token}%`]);
    assert.equal(events.rowCount, 0);
  });

  it('no token, a bad token, or a tenant token on operator routes', async () => {
    const none = await new ApiClient(t.baseUrl, undefined).get('/v1/stores');
    assert.equal(none.status, 401);
    assert.equal(none.body.code, 'unauthorized');
    assert.equal((await t.client('sk_not-a-real-token').get('/v1/stores')).status, 401);
    assert.equal((await a.owner.post('/v1/tenants', { name: 'sneaky' })).status, 403);
    assert.equal((await t.operator.get('/v1/stores')).status, 403);
  });
});
