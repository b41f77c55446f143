import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { countQueries, integrityFindings } from '../../test/support/integrity.js';

describe('money: parties, payments and the double-entry ledger', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let store: { id: string };
  let otherStore: { id: string };
  let customer: { id: string };
  let supplier: { id: string };
  let foreignStore: { id: string };
  let queries: ReturnType<typeof countQueries>;

  before(async () => {
    t = await startTestApp();
    queries = countQueries(t.appPool);
    ({ owner, tenantId } = await t.newTenant());
    store = (await owner.post('/v1/stores', { code: 'M1', name: 'Money one' })).body;
    otherStore = (await owner.post('/v1/stores', { code: 'M2', name: 'Money two' })).body;
    customer = (await owner.post('/v1/parties', { kind: 'customer', name: 'Ada', code: 'C-1' })).body;
    supplier = (await owner.post('/v1/parties', { kind: 'supplier', name: 'Mill', code: 'S-1' })).body;
    foreignStore = (await (await t.newTenant()).owner.post('/v1/stores', { code: 'M1', name: 'Not yours' })).body;
  });
  after(() => t.close());

  const accountsOf = async () =>
    new Map(
      (
        await t.admin.query<{ key: string; balance: number; debit_total: number; credit_total: number }>(
          `SELECT key, balance::int, debit_total::int, credit_total::int FROM accounts WHERE tenant_id = $1`,
          [tenantId],
        )
      ).rows.map((row) => [row.key, row]),
    );

  const counts = async () =>
    (
      await t.admin.query(
        `SELECT (SELECT count(*) FROM operations WHERE tenant_id = $1)::int AS operations,
                (SELECT count(*) FROM parties WHERE tenant_id = $1)::int AS parties,
                (SELECT count(*) FROM accounts WHERE tenant_id = $1)::int AS accounts,
                (SELECT count(*) FROM payments WHERE tenant_id = $1)::int AS payments,
                (SELECT count(*) FROM journal_entries WHERE tenant_id = $1)::int AS entries,
                (SELECT count(*) FROM postings WHERE tenant_id = $1)::int AS postings,
                (SELECT coalesce(sum(balance), 0) FROM accounts WHERE tenant_id = $1)::int AS balance_sum,
                (SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1)::int AS keys`,
        [tenantId],
      )
    ).rows[0];

  it('a party is created with its account at zero', async () => {
    const accounts = await accountsOf();
    assert.deepEqual(accounts.get(`party/${customer.id}`), { key: `party/${customer.id}`, balance: 0, debit_total: 0, credit_total: 0 });
    assert.equal((await t.admin.query(`SELECT kind FROM accounts WHERE party_id = $1`, [supplier.id])).rows[0].kind, 'payable');
    const listed = await owner.get('/v1/parties?kind=customer');
    assert.deepEqual(listed.body.items.map((p: { id: string }) => p.id), [customer.id]);
  });

  it('a customer payment debits the store drawer and credits the customer, atomically with the payment row', async () => {
    const response = await owner.post('/v1/payments', { party_id: customer.id, store_id: store.id, method: 'cash', amount: 1250 }, { idempotencyKey: randomUUID() });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    assert.equal(response.body.direction, 'in');
    const entry = await t.admin.query(`SELECT p.amount::int, a.key FROM postings p JOIN accounts a ON a.id = p.account_id WHERE p.entry_id = $1 ORDER BY a.key`, [
      response.body.entry_id,
    ]);
    assert.deepEqual(entry.rows, [
      { amount: -1250, key: `party/${customer.id}` },
      { amount: 1250, key: `store/${store.id}/cash_drawer` },
    ]);
    const accounts = await accountsOf();
    assert.equal(accounts.get(`store/${store.id}/cash_drawer`)?.balance, 1250);
    assert.equal(accounts.get(`party/${customer.id}`)?.credit_total, 1250);
    const ledger = await owner.get(`/v1/ledger/operations/${response.body.op_id}`);
    assert.equal(ledger.status, 200);
    assert.equal(ledger.body.items.length, 1);
    assert.equal(ledger.body.items[0].kind, 'payment');
  });

  it('paying a supplier by bank credits the store bank and debits the supplier', async () => {
    const response = await owner.post('/v1/payments', { party_id: supplier.id, store_id: store.id, method: 'bank', amount: 9000, reference: 'INV-7' });
    assert.equal(response.status, 201);
    assert.equal(response.body.direction, 'out');
    const accounts = await accountsOf();
    assert.equal(accounts.get(`store/${store.id}/bank`)?.balance, -9000);
    assert.equal(accounts.get(`party/${supplier.id}`)?.debit_total, 9000);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('the same payment retried concurrently with one key makes one payment', async () => {
    const before = await counts();
    const key = randomUUID();
    const body = { party_id: customer.id, store_id: otherStore.id, method: 'card', amount: 700 };
    const responses = await Promise.all(Array.from({ length: 12 }, () => owner.post('/v1/payments', body, { idempotencyKey: key })));
    const statuses = responses.map((r) => r.status);
    assert.ok(statuses.every((s) => s === 201 || s === 409), statuses.join(','));
    assert.ok(statuses.includes(201));
    const ids = new Set(responses.filter((r) => r.status === 201).map((r) => r.body.id));
    assert.equal(ids.size, 1);
    const replay = await owner.post('/v1/payments', body, { idempotencyKey: key });
    assert.equal(replay.status, 201);
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
    const afterCounts = await counts();
    assert.equal(afterCounts.payments, before.payments + 1);
    assert.equal(afterCounts.postings, before.postings + 2);
    assert.equal((await accountsOf()).get(`store/${otherStore.id}/card_clearing`)?.balance, 700);
  });

  it('the database refuses an unbalanced entry (postings: at the statement; an entry without postings: at commit), and postings cannot be changed', async () => {
    const notBalanced = (error: { code?: string; message: string }) => error.code === '23514' && /not balanced/.test(error.message);
    const inTransaction = async (work: (client: pg.PoolClient, op: string, account: string) => Promise<void>) => {
      const client = await t.appPool.connect();
      try {
        await client.query('BEGIN');
        await client.query(`SELECT set_config('app.tenant_id', $1, true)`, [tenantId]);
        const op = randomUUID();
        await client.query(`INSERT INTO operations (tenant_id, id, type, actor, correlation_id) VALUES ($1, $2, 'test', 'test', 'test')`, [tenantId, op]);
        const account = (await client.query(`SELECT id FROM accounts WHERE tenant_id = $1 AND party_id = $2`, [tenantId, customer.id])).rows[0].id;
        await work(client, op, account);
      } finally {
        await client.query('ROLLBACK').catch(() => undefined);
        client.release();
      }
    };
    const postingsBefore = (await t.admin.query(`SELECT count(*)::int AS n FROM postings WHERE tenant_id = $1`, [tenantId])).rows[0].n;
    // A one-legged entry: the INSERT of its posting is refused.
    await inTransaction(async (client, op, account) => {
      const entry = randomUUID();
      await client.query(`INSERT INTO journal_entries (tenant_id, id, kind, op_id) VALUES ($1, $2, 'broken', $3)`, [tenantId, entry, op]);
      await assert.rejects(
        client.query(`INSERT INTO postings (tenant_id, entry_id, account_id, amount, op_id) VALUES ($1, $2, $3, 100, $4)`, [tenantId, entry, account, op]),
        notBalanced,
      );
    });
    // An entry with no postings at all: refused at COMMIT.
    await inTransaction(async (client, op) => {
      await client.query(`INSERT INTO journal_entries (tenant_id, id, kind, op_id) VALUES ($1, $2, 'empty', $3)`, [tenantId, randomUUID(), op]);
      await assert.rejects(client.query('COMMIT'), notBalanced);
    });
    // A posting added later to an existing, balanced entry (under the entry's own operation, as a posting must be — migration 0821): refused.
    const existing = (await t.admin.query(`SELECT entry_id, account_id, op_id FROM postings WHERE tenant_id = $1 LIMIT 1`, [tenantId])).rows[0];
    await inTransaction(async (client) => {
      await assert.rejects(
        client.query(`INSERT INTO postings (tenant_id, entry_id, account_id, amount, op_id) VALUES ($1, $2, $3, 5, $4)`, [tenantId, existing.entry_id, existing.account_id, existing.op_id]),
        notBalanced,
      );
    });
    assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM postings WHERE tenant_id = $1`, [tenantId])).rows[0].n, postingsBefore);
    await assert.rejects(t.admin.query(`UPDATE postings SET amount = amount + 1 WHERE tenant_id = $1`, [tenantId]), /append-only/);
  });

  it('a balance changed behind the ledger\'s back is reported by the integrity check', async () => {
    await t.admin.query(`UPDATE accounts SET balance = balance + 1, debit_total = debit_total + 1 WHERE tenant_id = $1 AND party_id = $2`, [tenantId, supplier.id]);
    const findings = await integrityFindings(t.admin, tenantId);
    await t.admin.query(`UPDATE accounts SET balance = balance - 1, debit_total = debit_total - 1 WHERE tenant_id = $1 AND party_id = $2`, [tenantId, supplier.id]);
    assert.deepEqual(findings.map((f) => f.check), ['money_account_totals_match_postings']);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('100 concurrent payments on one customer and one drawer: each adds exactly its amount (no lost update)', async () => {
    const accountsBefore = await accountsOf();
    const amounts = Array.from({ length: 100 }, (_, i) => 1 + ((i * 37) % 500));
    const responses = await Promise.all(
      amounts.map((amount) => owner.post('/v1/payments', { party_id: customer.id, store_id: store.id, method: 'cash', amount }, { idempotencyKey: randomUUID() })),
    );
    assert.ok(responses.every((r) => r.status === 201));
    const total = amounts.reduce((sum, amount) => sum + amount, 0);
    const accountsAfter = await accountsOf();
    assert.equal(accountsAfter.get(`party/${customer.id}`)!.credit_total, accountsBefore.get(`party/${customer.id}`)!.credit_total + total);
    assert.equal(accountsAfter.get(`store/${store.id}/cash_drawer`)!.balance, accountsBefore.get(`store/${store.id}/cash_drawer`)!.balance + total);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('lists a store\'s accounts (all kinds, zeros where nothing was posted) and pages an account\'s postings', async () => {
    const accounts = await owner.get(`/v1/stores/${store.id}/accounts`);
    assert.equal(accounts.status, 200);
    assert.deepEqual(accounts.body.items.map((a: { kind: string }) => a.kind), ['cash_drawer', 'bank', 'card_clearing', 'mobile_clearing', 'sales_revenue', 'inventory']);
    const stored = await accountsOf();
    for (const account of accounts.body.items) {
      const row = stored.get(account.key);
      assert.equal(account.balance, row?.balance ?? 0, account.key);
      assert.equal(account.debit_total - account.credit_total, account.balance);
    }
    const all = (await t.admin.query(`SELECT p.id::int, p.amount::int FROM postings p JOIN accounts a ON a.id = p.account_id WHERE a.key = $1 ORDER BY p.id DESC`, [`party/${customer.id}`])).rows;
    assert.ok(all.length > 3);
    const seen: Array<{ id: number; amount: number }> = [];
    let cursor: string | null = null;
    do {
      const page: { status: number; body: { items: Array<{ id: number; amount: number }>; next_cursor: string | null } } = await owner.get(`/v1/parties/${customer.id}/postings?limit=3${cursor ? `&cursor=${cursor}` : ''}`);
      assert.equal(page.status, 200);
      seen.push(...page.body.items.map(({ id, amount }) => ({ id, amount })));
      cursor = page.body.next_cursor;
    } while (cursor !== null);
    assert.deepEqual(seen, all);
    const drawer = await owner.get(`/v1/stores/${store.id}/accounts/cash_drawer/postings?limit=500`);
    assert.equal(drawer.body.items.reduce((sum: number, p: { amount: number }) => sum + p.amount, 0), stored.get(`store/${store.id}/cash_drawer`)!.balance);
    assert.equal((await owner.get(`/v1/stores/${store.id}/accounts/safe/postings`)).status, 400);
    assert.equal((await owner.get(`/v1/parties/${randomUUID()}/postings`)).status, 404);
  });

  it('a failure after the postings are written leaves neither the payment nor its entry nor any balance change', async () => {
    const before = await counts();
    const accountsBefore = await accountsOf();
    // Injected fault: the payment row (written after the journal entry) cannot be inserted.
    await t.admin.query(`CREATE FUNCTION fail_payment() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected fault'; END $$`);
    await t.admin.query(`CREATE TRIGGER fail_payment BEFORE INSERT ON payments FOR EACH ROW EXECUTE FUNCTION fail_payment()`);
    try {
      const response = await owner.post('/v1/payments', { party_id: customer.id, store_id: store.id, method: 'cash', amount: 999 }, { idempotencyKey: randomUUID() });
      assert.equal(response.status, 500);
      assert.equal(response.body.code, 'internal_error');
    } finally {
      await t.admin.query(`DROP TRIGGER fail_payment ON payments`);
      await t.admin.query(`DROP FUNCTION fail_payment()`);
    }
    assert.deepEqual(await counts(), before);
    assert.deepEqual(await accountsOf(), accountsBefore);
  });

  it('the endpoints are documented in the OpenAPI document', async () => {
    const openapi = await owner.get('/openapi.json');
    assert.equal(openapi.status, 200);
    for (const path of ['/v1/parties', '/v1/payments', '/v1/ledger/customers', '/v1/ledger/suppliers', '/v1/transfers/{id}/approve', '/v1/transfers/{id}/receive', '/v1/settlements', '/v1/settlements/{id}/approve']) {
      assert.ok(openapi.body.paths[path], `${path} documented`);
    }
    assert.ok(openapi.body.paths['/v1/payments'].post.responses['201']);
    assert.ok(openapi.body.paths['/v1/ledger/customers'].get.responses['200']);
  });

  describe('bad input: problem+json and nothing written', () => {
    const cases: Array<[string, () => Record<string, unknown>, number, string]> = [
      ['unknown party', () => ({ party_id: randomUUID(), store_id: store.id, method: 'cash', amount: 1 }), 400, 'validation_failed'],
      ['zero amount', () => ({ party_id: customer.id, store_id: store.id, method: 'cash', amount: 0 }), 400, 'validation_failed'],
      ['fractional amount', () => ({ party_id: customer.id, store_id: store.id, method: 'cash', amount: 10.5 }), 400, 'validation_failed'],
      ['amount as text', () => ({ party_id: customer.id, store_id: store.id, method: 'cash', amount: '10' }), 400, 'validation_failed'],
      ['negative amount', () => ({ party_id: customer.id, store_id: store.id, method: 'cash', amount: -500 }), 400, 'validation_failed'],
      ['amount above the largest (9 × 10^12)', () => ({ party_id: customer.id, store_id: store.id, method: 'cash', amount: 9_000_000_000_001 }), 400, 'validation_failed'],
      ['amount null', () => ({ party_id: customer.id, store_id: store.id, method: 'cash', amount: null }), 400, 'validation_failed'],
      ['a store of another tenant', () => ({ party_id: customer.id, store_id: foreignStore.id, method: 'cash', amount: 10 }), 404, 'not_found'],
      ['credit is not a payment method', () => ({ party_id: customer.id, store_id: store.id, method: 'credit', amount: 10 }), 400, 'validation_failed'],
      ['unknown field', () => ({ party_id: customer.id, store_id: store.id, method: 'cash', amount: 10, tip: 1 }), 400, 'validation_failed'],
      ['unknown store', () => ({ party_id: customer.id, store_id: randomUUID(), method: 'cash', amount: 10 }), 404, 'not_found'],
    ];
    for (const [name, body, status, code] of cases) {
      it(`${name} → ${status} ${code}`, async () => {
        const before = await counts();
        const response = await owner.post('/v1/payments', body(), { idempotencyKey: randomUUID() });
        assert.equal(response.status, status, JSON.stringify(response.body));
        assert.equal(response.body.code, code);
        assert.match(response.headers.get('content-type') ?? '', /problem\+json/);
        assert.deepEqual(await counts(), before);
      });
    }

    it('an amount above 2^53 as sent (9007199254740993: JSON numbers lose it) → 400 validation_failed, nothing written', async () => {
      const before = await counts();
      const response = await owner.post('/v1/payments', undefined, {
        idempotencyKey: randomUUID(),
        rawBody: `{"party_id":"${customer.id}","store_id":"${store.id}","method":"cash","amount":9007199254740993}`,
      });
      assert.equal(response.status, 400, JSON.stringify(response.body));
      assert.equal(response.body.code, 'validation_failed');
      assert.deepEqual(response.body.errors.map((error: { path: string }) => error.path), ['/body/amount']);
      assert.match(response.headers.get('content-type') ?? '', /problem\+json/);
      assert.deepEqual(await counts(), before);
    });

    it('party with an unknown kind or duplicate code → 400 / 409, nothing written', async () => {
      const before = await counts();
      assert.equal((await owner.post('/v1/parties', { kind: 'friend', name: 'X' })).status, 400);
      const duplicate = await owner.post('/v1/parties', { kind: 'customer', name: 'Again', code: 'C-1' });
      assert.equal(duplicate.status, 409);
      assert.equal(duplicate.body.code, 'already_exists');
      assert.deepEqual(await counts(), before);
    });

    it('a store outside the token\'s scope is 404 and a cashier may not create parties (403)', async () => {
      const scoped = t.client((await owner.post('/v1/tokens', { name: 'm1', role: 'manager', store_ids: [store.id] })).body.token);
      const cashier = t.client((await owner.post('/v1/tokens', { name: 'c', role: 'cashier' })).body.token);
      const before = await counts();
      const outside = await scoped.post('/v1/payments', { party_id: customer.id, store_id: otherStore.id, method: 'cash', amount: 5 });
      assert.equal(outside.status, 404);
      assert.equal((await cashier.post('/v1/parties', { kind: 'customer', name: 'Nope' })).status, 403);
      assert.deepEqual(await counts(), before);
    });
  });

  describe('balance listing', () => {
    it('lists every party of a kind — with and without postings — with exact totals, most outstanding first, in stable pages, one query per page', async () => {
      const { owner: fresh, tenantId: freshTenant } = await t.newTenant();
      const shop = (await fresh.post('/v1/stores', { code: 'B', name: 'Balances' })).body;
      const customers: string[] = [];
      for (let i = 0; i < 9; i++) customers.push((await fresh.post('/v1/parties', { kind: 'customer', name: `Customer ${i}` })).body.id);
      const suppliers: string[] = [];
      for (let i = 0; i < 5; i++) suppliers.push((await fresh.post('/v1/parties', { kind: 'supplier', name: `Supplier ${i}` })).body.id);
      // Customers 0..5 get payments and refunds (several share a balance, so ties are exercised); 6..8 none.
      const moves: Array<[number, 'in' | 'out', number]> = [
        [0, 'in', 500], [0, 'out', 200], [1, 'out', 1000], [2, 'out', 300], [3, 'out', 300], [3, 'in', 100], [4, 'out', 200], [5, 'in', 50],
      ];
      for (const [i, direction, amount] of moves) {
        assert.equal((await fresh.post('/v1/payments', { party_id: customers[i], store_id: shop.id, method: 'cash', amount, direction })).status, 201);
      }
      for (const [i, amount] of [[0, 400], [1, 400], [2, 100]] as Array<[number, number]>) {
        assert.equal((await fresh.post('/v1/payments', { party_id: suppliers[i], store_id: shop.id, method: 'bank', amount })).status, 201);
      }
      assert.equal((await fresh.post('/v1/payments', { party_id: suppliers[1], store_id: shop.id, method: 'bank', amount: 900, direction: 'in' })).status, 201);

      for (const [kind, path, sign] of [
        ['customer', '/v1/ledger/customers', 1],
        ['supplier', '/v1/ledger/suppliers', -1],
      ] as const) {
        // Expected figures straight from the postings (an independent aggregate).
        const expected = (
          await t.admin.query<{ party_id: string; name: string; debit_total: number; credit_total: number }>(
            `SELECT p.id AS party_id, p.name,
                    coalesce(sum(x.amount) FILTER (WHERE x.amount > 0), 0)::int AS debit_total,
                    coalesce(-sum(x.amount) FILTER (WHERE x.amount < 0), 0)::int AS credit_total
             FROM parties p JOIN accounts a ON a.party_id = p.id LEFT JOIN postings x ON x.account_id = a.id
             WHERE p.tenant_id = $1 AND p.kind = $2 GROUP BY p.id, p.name`,
            [freshTenant, kind],
          )
        ).rows
          .map((row) => ({ ...row, code: null, outstanding: sign * (row.debit_total - row.credit_total) + 0 }))
          .sort((a, b) => b.outstanding - a.outstanding || (a.party_id < b.party_id ? -1 : 1));

        const seen: unknown[] = [];
        let cursor: string | null = null;
        let pages = 0;
        do {
          queries.reset();
          const page: { status: number; body: { items: unknown[]; next_cursor: string | null } } = await fresh.get(`${path}?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
          assert.equal(page.status, 200);
          const touching = queries.texts.filter((text) => /accounts|postings|parties/.test(text));
          assert.equal(touching.length, 1, `one query per page, got: ${touching.join(' | ')}`);
          seen.push(...page.body.items);
          cursor = page.body.next_cursor;
          pages++;
        } while (cursor !== null && pages < 20);
        assert.deepEqual(seen, expected);
        assert.equal(pages, Math.ceil(expected.length / 2));
        // One more page fetch with the first cursor returns exactly the same page (stable).
        const first = await fresh.get(`${path}?limit=3`);
        const again = await fresh.get(`${path}?limit=3&cursor=${first.body.next_cursor}`);
        const twice = await fresh.get(`${path}?limit=3&cursor=${first.body.next_cursor}`);
        assert.deepEqual(again.body, twice.body);
        assert.deepEqual(again.body.items, expected.slice(3, 6));
      }
      const customersListed = (await fresh.get('/v1/ledger/customers?limit=500')).body.items as Array<{ party_id: string; debit_total: number }>;
      assert.equal(customersListed.length, 9);
      for (const id of customers.slice(6)) {
        assert.deepEqual(
          customersListed.filter((row) => row.party_id === id).map((row) => row.debit_total),
          [0],
        );
      }
      assert.equal((await fresh.get('/v1/ledger/customers?cursor=garbage')).status, 400);
    });
  });
});
