import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { fingerprintRequest, insertOperations, setTenant, type CommandInput } from '../core/command.js';
import { isRetryableTransactionError } from '../core/pgErrors.js';
import { createDb, createPool } from '../core/db.js';
import { DATABASE_RETRY_AFTER_SECONDS } from '../http/problem.js';
import { saleCommand } from './createSale.js';
import { GroupCommitter } from './groupCommit.js';
import { planSale } from './salePlan.js';
import { loadSaleStates, PlannedStateMoved, writeSales } from './saleRows.js';
import { recordVoid } from './voidSale.js';
import type { SaleInput } from './sale.table.js';
import { givenSku, givenStock, givenStore } from './testkit.js';

describe('group commit: many sales, one transaction, each its own outcome', () => {
  let t: TestApp;
  let tenantId: string;
  let storeId: string;
  let skuId: string;
  let principal: CommandInput['principal'];
  let owner: Awaited<ReturnType<TestApp['newTenant']>>['owner'];

  before(async () => {
    t = await startTestApp();
    const tenant = await t.newTenant();
    tenantId = tenant.tenantId;
    owner = tenant.owner;
    storeId = await givenStore(tenant.owner, 'GC');
    skuId = await givenSku(tenant.owner, 'GC-1', 'piece', 10);
    await givenStock(tenant.owner, storeId, [{ sku_id: skuId, quantity: 1000 }]);
    const tokenId = (await t.admin.query('SELECT id FROM api_tokens WHERE tenant_id = $1', [tenantId])).rows[0].id;
    principal = { kind: 'token', tokenId, tenantId, name: 'test', role: 'owner', storeIds: null };
  });
  after(() => t.close());

  const body = (quantity = 1): SaleInput => ({ store_id: storeId, payment_method: 'cash', items: [{ sku_id: skuId, quantity, unit_price: 10 }] });
  const inputOf = (sale: SaleInput, key: string | undefined = randomUUID()): CommandInput => ({
    tenantId,
    principal,
    correlationId: randomUUID(),
    idempotencyKey: key,
    fingerprint: fingerprintRequest('POST', '/v1/sales', sale),
    payload: sale,
  });
  const spec = { type: 'sale.create', storeId: '' };
  const state = async () =>
    (
      await t.admin.query(
        `SELECT (SELECT count(*) FROM sales WHERE tenant_id = $1)::int AS sales,
                (SELECT count(*) FROM operations WHERE tenant_id = $1 AND type = 'sale.create')::int AS operations,
                (SELECT quantity::int FROM stock_balances WHERE tenant_id = $1 AND sku_id = $2) AS stock,
                (SELECT last_number::int FROM store_receipt_counters WHERE tenant_id = $1) AS counter`,
        [tenantId, skuId],
      )
    ).rows[0] as { sales: number; operations: number; stock: number; counter: number | null };

  it('batches concurrent sales; a refused one is rolled back alone and takes no number', async () => {
    const committer = new GroupCommitter(t.db);
    const before = await state();
    const sales = [body(1), body(1), body(10_000), body(2), body(1)];
    const outcomes = await Promise.all(
      sales.map((sale) =>
        committer.sale(inputOf(sale), sale, 'online').then(
          (outcome) => outcome.status,
          (error: { code?: string }) => error.code,
        ),
      ),
    );
    assert.deepEqual(outcomes, [201, 201, 'insufficient_stock', 201, 201]);
    const after = await state();
    assert.equal(after.sales, before.sales + 4);
    assert.equal(after.stock, before.stock - 5);
    assert.equal(after.counter, (before.counter ?? 0) + 4);
    const numbers = (await t.admin.query(`SELECT receipt_number::int AS n FROM sales WHERE tenant_id = $1 ORDER BY 1`, [tenantId])).rows.map((r) => r.n);
    assert.deepEqual(numbers, Array.from({ length: numbers.length }, (_, i) => i + 1));
    // The first sale found the lane idle and ran alone; the other four queued
    // behind it and committed together (one transaction: one now()).
    const batches = await t.admin.query(`SELECT count(DISTINCT created_at)::int AS n FROM (SELECT created_at FROM sales WHERE tenant_id = $1 ORDER BY receipt_number DESC LIMIT 4) s`, [tenantId]);
    assert.equal(batches.rows[0].n, 2);
  });

  it('the same idempotency key twice at once: never in one batch; the second replays the first', async () => {
    const committer = new GroupCommitter(t.db);
    const before = await state();
    const sale = body(3);
    const key = randomUUID();
    const [first, second] = await Promise.all([
      committer.run(inputOf(sale, key), { ...spec, storeId }, saleCommand(sale, 'online')),
      committer.run(inputOf(sale, key), { ...spec, storeId }, saleCommand(sale, 'online')),
    ]);
    assert.equal(first.status, 201);
    assert.equal(second.status, 201);
    assert.deepEqual([first.replayed, second.replayed], [false, true]);
    assert.equal((second.body as { id: string }).id, (first.body as { id: string }).id);
    const after = await state();
    assert.equal(after.sales, before.sales + 1);
    assert.equal(after.stock, before.stock - 3);
  });

  it('an unexpected error in one command fails that caller only', async () => {
    const committer = new GroupCommitter(t.db);
    const before = await state();
    const results = await Promise.allSettled([
      committer.run(inputOf(body()), { ...spec, storeId }, saleCommand(body(), 'online')),
      committer.run(inputOf(body()), { ...spec, storeId }, async (cmd) => {
        await saleCommand(body(), 'online')(cmd);
        throw new Error('boom after the sale was written');
      }),
      committer.run(inputOf(body()), { ...spec, storeId }, saleCommand(body(), 'online')),
    ]);
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
    assert.match(String((results[1] as PromiseRejectedResult).reason), /boom/);
    const after = await state();
    assert.equal(after.sales, before.sales + 2);
    assert.equal(after.stock, before.stock - 2);
    assert.equal(after.counter, (before.counter ?? 0) + 2);
  });

  it('a deadlock re-runs the whole batch: every sale once, nothing from the failed attempt', async () => {
    const committer = new GroupCommitter(t.db);
    const before = await state();
    let thrown = false;
    const outcomes = await Promise.all([
      committer.run(inputOf(body()), { ...spec, storeId }, saleCommand(body(), 'online')),
      committer.run(inputOf(body()), { ...spec, storeId }, async (cmd) => {
        const result = await saleCommand(body(), 'online')(cmd);
        if (!thrown) {
          thrown = true;
          throw Object.assign(new Error('deadlock detected'), { code: '40P01' });
        }
        return result;
      }),
      committer.run(inputOf(body()), { ...spec, storeId }, saleCommand(body(), 'online')),
    ]);
    assert.equal(thrown, true);
    assert.deepEqual(outcomes.map((o) => [o.status, o.replayed]), [[201, false], [201, false], [201, false]]);
    const after = await state();
    assert.equal(after.sales, before.sales + 3);
    assert.equal(after.operations, before.operations + 3);
    assert.equal(after.stock, before.stock - 3);
    assert.equal(after.counter, (before.counter ?? 0) + 3);
  });

  it("sheds load: past its lane's or the process's queue limit a command is refused at once (503, Retry-After) and writes nothing; the queued ones commit", async () => {
    const committer = new GroupCommitter(t.db, { maxQueue: 2, maxWaiting: 3 });
    const other = await t.newTenant();
    const otherTokenId = (await t.admin.query('SELECT id FROM api_tokens WHERE tenant_id = $1', [other.tenantId])).rows[0].id;
    const otherInput = (): CommandInput => ({
      tenantId: other.tenantId,
      principal: { kind: 'token', tokenId: otherTokenId, tenantId: other.tenantId, name: 'test', role: 'owner', storeIds: null },
      correlationId: randomUUID(),
      idempotencyKey: randomUUID(),
      fingerprint: fingerprintRequest('POST', '/v1/test', {}),
      payload: {},
    });
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const hold = async () => {
      await gate;
      return { status: 200, body: {} };
    };
    const noop = async () => ({ status: 200, body: {} });
    const before = await state();
    const otherOperations = async () => Number((await t.admin.query(`SELECT count(*) FROM operations WHERE tenant_id = $1`, [other.tenantId])).rows[0].count);
    const otherBefore = await otherOperations();

    // Each tenant's lane is busy with a batch that waits for the gate (a batch taken is no longer waiting).
    const busy = [committer.run(inputOf(body()), { type: 'test.hold' }, hold), committer.run(otherInput(), { type: 'test.hold' }, hold)];
    await new Promise((resolve) => setImmediate(resolve));
    const queued = [committer.sale(inputOf(body()), body(), 'online'), committer.sale(inputOf(body()), body(), 'online')];
    const shed = (promise: Promise<unknown>) =>
      Promise.race([
        promise.then(
          () => 'accepted',
          (error: { code?: string; retryAfterSeconds?: number; message?: string }) => [error.code, error.retryAfterSeconds, error.message],
        ),
        new Promise((resolve) => setTimeout(() => resolve('still waiting after 2 s'), 2000)),
      ]);
    // This tenant's lane holds 2 waiting sales: a third is refused at once, whatever the process holds.
    assert.deepEqual(await shed(committer.sale(inputOf(body()), body(), 'online')), [
      'service_unavailable',
      1,
      'too many commands of this tenant are waiting to be written; retry shortly with the same Idempotency-Key',
    ]);
    // The other tenant's lane has room, and takes one more: the process now holds 3 waiting commands (its limit).
    queued.push(committer.run(otherInput(), { type: 'test.noop' }, noop));
    assert.deepEqual(await shed(committer.run(otherInput(), { type: 'test.noop' }, noop)), [
      'service_unavailable',
      1,
      'too many commands are waiting to be written; retry shortly with the same Idempotency-Key',
    ]);

    open();
    assert.deepEqual((await Promise.all([...busy, ...queued])).map((outcome) => outcome.status), [200, 200, 201, 201, 200]);
    const after = await state();
    assert.equal(after.sales, before.sales + 2, 'the two queued sales, not the refused one');
    assert.equal(after.operations, before.operations + 2);
    assert.equal(after.stock, before.stock - 2);
    assert.equal(after.counter, (before.counter ?? 0) + 2);
    assert.equal(await otherOperations(), otherBefore + 2, "the other tenant's held and queued commands, not the refused one");
    // With the lanes drained, the same commands are accepted again.
    assert.equal((await committer.sale(inputOf(body()), body(), 'online')).status, 201);
  });

  it('a batch whose COMMIT fails rejects every caller and leaves nothing (numbers included)', async () => {
    const committer = new GroupCommitter(t.db);
    // A check only COMMIT runs (a deferred constraint trigger): a sale of total 777 fails it.
    await t.admin.query(`
      CREATE FUNCTION refuse_777() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'total 777 refused at commit'; END $$;
      CREATE CONSTRAINT TRIGGER refuse_777 AFTER INSERT ON sales DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.total = 777) EXECUTE FUNCTION refuse_777();`);
    try {
      // Fill the lane so the next three run as one batch (one run of sales).
      const blocker = committer.run(inputOf(body()), { ...spec, storeId }, async (cmd) => {
        await new Promise((resolve) => setTimeout(resolve, 200));
        return saleCommand(body(), 'online')(cmd);
      });
      await new Promise((resolve) => setTimeout(resolve, 50));
      const before = await state();
      const doomed: SaleInput = { store_id: storeId, payment_method: 'cash', items: [{ sku_id: skuId, quantity: 7, unit_price: 111 }] };
      const batch = await Promise.allSettled([
        committer.sale(inputOf(doomed), doomed, 'online'),
        committer.sale(inputOf(body()), body(), 'online'),
        committer.sale(inputOf(body()), body(), 'online'),
      ]);
      assert.equal((await blocker).status, 201);
      assert.deepEqual(batch.map((r) => r.status), ['rejected', 'rejected', 'rejected']);
      assert.match(String((batch[1] as PromiseRejectedResult).reason), /777/);
      const after = await state();
      assert.equal(after.sales, before.sales + 1, 'only the blocker (which committed before) is there');
      assert.equal(after.stock, before.stock - 1);
      assert.equal(after.counter, (before.counter ?? 0) + 1);
      const numbers = (await t.admin.query(`SELECT receipt_number::int AS n FROM sales WHERE tenant_id = $1 ORDER BY 1`, [tenantId])).rows.map((r) => r.n);
      assert.deepEqual(numbers, Array.from({ length: numbers.length }, (_, i) => i + 1));
    } finally {
      await t.admin.query(`DROP TRIGGER refuse_777 ON sales; DROP FUNCTION refuse_777()`);
    }
  });

  it('a connection cut while its COMMIT is answered: every caller gets 503; sent again with their keys, the sales that did commit replay (no second sale, receipts gapless), and one whose COMMIT never arrived is sold once', async () => {
    // A pool whose next COMMIT is cut: `arrives` — the COMMIT reaches PostgreSQL
    // (which commits) and the connection is cut before its answer is read;
    // otherwise the connection is cut before the COMMIT is sent.
    const pool = createPool(t.appUrl, { max: 4, asAppRole: true });
    let cut: 'arrives' | 'lost' | null = null;
    pool.on('connect', (client) => {
      const query = client.query.bind(client) as (...args: unknown[]) => unknown;
      (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
        const stream = (client as unknown as { connection: { stream: { pause(): void; destroy(): void } } }).connection.stream;
        if (cut !== null && typeof args[0] === 'string' && args[0].trim().toLowerCase() === 'commit') {
          const how = cut;
          cut = null;
          if (how === 'lost') {
            stream.destroy();
            return query(...args);
          }
          stream.pause();
          const answer = query(...args);
          setTimeout(() => stream.destroy(), 300);
          return answer;
        }
        return query(...args);
      };
    });
    const db = createDb(pool);
    try {
      for (const how of ['arrives', 'lost'] as const) {
        const committer = new GroupCommitter(db);
        const before = await state();
        const sales = [body(1), body(2), body(3)];
        const inputs = sales.map((sale) => inputOf(sale));
        // The first runs alone; the other two queue behind it and form the next batch, whose COMMIT is cut.
        const first = committer.sale(inputs[0]!, sales[0]!, 'online');
        const rest = sales.slice(1).map((sale, index) => committer.sale(inputs[index + 1]!, sale, 'online'));
        assert.equal((await first).status, 201);
        cut = how;
        const settled = await Promise.allSettled(rest);
        // (with Retry-After, as every 503 of a database that is away: a till told to retry is told when)
        assert.deepEqual(
          settled.map((result) =>
            result.status === 'rejected' ? [(result.reason as { code?: string }).code, (result.reason as { retryAfterSeconds?: number }).retryAfterSeconds] : result.value.status,
          ),
          [
            ['service_unavailable', DATABASE_RETRY_AFTER_SECONDS],
            ['service_unavailable', DATABASE_RETRY_AFTER_SECONDS],
          ],
          how,
        );
        const afterCut = await state();
        assert.equal(afterCut.sales, before.sales + (how === 'arrives' ? 3 : 1), `${how}: what committed`);
        // Sent again with their keys: a replay of what committed, a sale of what did not.
        const again = await Promise.all(sales.slice(1).map((sale, index) => committer.sale(inputs[index + 1]!, sale, 'online')));
        assert.deepEqual(again.map((outcome) => [outcome.status, outcome.replayed]), [[201, how === 'arrives'], [201, how === 'arrives']], how);
        const after = await state();
        assert.equal(after.sales, before.sales + 3, `${how}: each sale once`);
        assert.equal(after.stock, before.stock - 6);
        assert.equal(after.counter, (before.counter ?? 0) + 3);
        const numbers = (await t.admin.query(`SELECT receipt_number::int AS n FROM sales WHERE tenant_id = $1 AND store_id = $2 ORDER BY 1`, [tenantId, storeId])).rows.map((r) => r.n);
        assert.deepEqual(numbers, Array.from({ length: numbers.length }, (_, i) => i + 1), `${how}: receipts gapless`);
      }
    } finally {
      await db.destroy();
    }
    await assertLedgerChain(skuId);
  });

  // ── Sales written set-based (GroupCommitter.sale) ──────────────────────────
  // The first call finds the lane idle and runs alone; calls made in the same
  // tick queue behind it and form the next batch (one run of sales).

  const statusOf = (promise: Promise<{ status: number; replayed: boolean }>) =>
    promise.then(
      (outcome) => (outcome.replayed ? `${outcome.status} replayed` : outcome.status),
      (error: { code?: string; message?: string }) => error.code ?? error.message,
    );

  /** The stock ledger of the SKU is a chain (each row's quantity_after = the previous one's + its change) ending at the balance. */
  async function assertLedgerChain(sku: string, store?: string) {
    const { rows } = await t.admin.query(
      `SELECT quantity_change::int AS change, quantity_after::int AS after FROM stock_ledger
       WHERE tenant_id = $1 AND sku_id = $2 AND ($3::uuid IS NULL OR store_id = $3) ORDER BY id`,
      [tenantId, sku, store ?? null],
    );
    let running = 0;
    for (const row of rows) {
      running += row.change;
      assert.equal(row.after, running, 'quantity_after follows the ledger order');
    }
    const balance = (
      await t.admin.query(`SELECT quantity::int AS q FROM stock_balances WHERE tenant_id = $1 AND sku_id = $2 AND ($3::uuid IS NULL OR store_id = $3)`, [
        tenantId,
        sku,
        store ?? null,
      ])
    ).rows[0].q;
    assert.equal(balance, running, 'balance = Σ ledger');
  }

  it('a run of sales is planned in order against one locked state; refused ones write nothing and take no number', async () => {
    const committer = new GroupCommitter(t.db);
    const before = await state();
    const sales = [body(1), body(1), body(1_000_000), { ...body(1), items: [{ sku_id: randomUUID(), quantity: 1, unit_price: 10 }] }, body(2), body(1)];
    const inputs = sales.map((sale) => inputOf(sale));
    const outcomes = await Promise.all(sales.map((sale, index) => statusOf(committer.sale(inputs[index]!, sale, 'online'))));
    assert.deepEqual(outcomes, [201, 201, 'insufficient_stock', 'validation_failed', 201, 201]);

    const after = await state();
    assert.equal(after.sales, before.sales + 4);
    assert.equal(after.operations, before.operations + 4);
    assert.equal(after.stock, before.stock - 5);
    assert.equal(after.counter, (before.counter ?? 0) + 4);
    const numbers = (await t.admin.query(`SELECT receipt_number::int AS n FROM sales WHERE tenant_id = $1 ORDER BY 1`, [tenantId])).rows.map((r) => r.n);
    assert.deepEqual(numbers, Array.from({ length: numbers.length }, (_, i) => i + 1));
    await assertLedgerChain(skuId);
    // Sales 2, 5 and 6 committed together (one transaction: one now()).
    const batches = await t.admin.query(`SELECT count(DISTINCT created_at)::int AS n FROM (SELECT created_at FROM sales WHERE tenant_id = $1 ORDER BY receipt_number DESC LIMIT 3) s`, [tenantId]);
    assert.equal(batches.rows[0].n, 1);

    // Every accepted sale has its whole record: operation, two audit events
    // (command with effects, sale after), idempotency record, journal entry
    // with balanced postings, and the ledger row its effects name.
    const accepted = [0, 1, 4, 5].map((index) => inputs[index]!.idempotencyKey!);
    const { rows } = await t.admin.query(
      `SELECT k.key, s.id AS sale_id, s.total::int,
              (SELECT count(*)::int FROM events e WHERE e.tenant_id = k.tenant_id AND e.op_id = k.op_id) AS events,
              (SELECT e.effects FROM events e WHERE e.tenant_id = k.tenant_id AND e.op_id = k.op_id AND e.subject_type IS NULL) AS effects,
              (SELECT sum(p.amount)::int FROM journal_entries j JOIN postings p ON p.tenant_id = j.tenant_id AND p.entry_id = j.id
               WHERE j.tenant_id = k.tenant_id AND j.subject_id = s.id) AS posted,
              (SELECT count(*)::int FROM journal_entries j WHERE j.tenant_id = k.tenant_id AND j.subject_id = s.id) AS entries,
              (SELECT array_agg(l.id::text) FROM stock_ledger l WHERE l.tenant_id = k.tenant_id AND l.op_id = k.op_id) AS ledger_ids
       FROM idempotency_keys k JOIN sales s ON s.tenant_id = k.tenant_id AND s.op_id = k.op_id
       WHERE k.tenant_id = $1 AND k.key = ANY($2::text[])`,
      [tenantId, accepted],
    );
    assert.equal(rows.length, 4);
    for (const row of rows) {
      assert.equal(row.events, 2);
      assert.equal(row.entries, 1);
      assert.equal(row.posted, 0, 'postings of the entry sum to 0');
      const effects = row.effects as Array<{ table: string; id: string }>;
      assert.deepEqual(effects.filter((e) => e.table === 'stock_ledger').map((e) => e.id), row.ledger_ids);
      assert.deepEqual(effects.filter((e) => e.table === 'sales').map((e) => e.id), [row.sale_id]);
    }
  });

  it('keys in a run: in flight elsewhere → 409, stored → replay, stored for another request → 422, new → 201', async () => {
    const committer = new GroupCommitter(t.db);
    const stored = body(1);
    const storedKey = randomUUID();
    assert.equal((await committer.sale(inputOf(stored, storedKey), stored, 'online')).status, 201);
    const reusedKey = randomUUID();
    const reusedFirst = body(2);
    assert.equal((await committer.sale(inputOf(reusedFirst, reusedKey), reusedFirst, 'online')).status, 201);
    // Another transaction holds the advisory lock of a key: that request is in flight.
    const busyKey = randomUUID();
    const holder = await t.admin.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))`, [tenantId, busyKey]);
      const before = await state();
      const primer = body(1);
      const sales = [
        { sale: primer, input: inputOf(primer) },
        { sale: stored, input: inputOf(stored, storedKey) },
        { sale: body(5), input: inputOf(body(5), reusedKey) },
        { sale: body(1), input: inputOf(body(1), busyKey) },
        { sale: body(1), input: inputOf(body(1)) },
      ];
      const outcomes = await Promise.all(sales.map(({ sale, input }) => statusOf(committer.sale(input, sale, 'online'))));
      assert.deepEqual(outcomes, [201, '201 replayed', 'idempotency_key_reused', 'idempotency_key_in_flight', 201]);
      const after = await state();
      assert.equal(after.sales, before.sales + 2);
      assert.equal(after.stock, before.stock - 2);
    } finally {
      await holder.query('ROLLBACK');
      holder.release();
    }
  });

  it('an unexpected failure inside a run: the run is re-run sale by sale and only the failing sale gets the error', async () => {
    const committer = new GroupCommitter(t.db);
    await t.admin.query(`
      CREATE FUNCTION refuse_total_777() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.total = 777 THEN RAISE EXCEPTION 'a total of 777 is cursed'; END IF; RETURN NEW; END $$;
      CREATE TRIGGER refuse_total_777 BEFORE INSERT ON sales FOR EACH ROW EXECUTE FUNCTION refuse_total_777();`);
    try {
      const before = await state();
      const cursed: SaleInput = { ...body(1), items: [{ sku_id: skuId, quantity: 1, unit_price: 777 }] };
      const sales = [body(1), body(1), cursed, body(1)];
      const outcomes = await Promise.all(sales.map((sale) => statusOf(committer.sale(inputOf(sale), sale, 'online'))));
      assert.equal(outcomes[0], 201);
      assert.equal(outcomes[1], 201);
      assert.match(String(outcomes[2]), /cursed|P0001/);
      assert.equal(outcomes[3], 201);
      const after = await state();
      assert.equal(after.sales, before.sales + 3);
      assert.equal(after.operations, before.operations + 3);
      assert.equal(after.stock, before.stock - 3);
      assert.equal(after.counter, (before.counter ?? 0) + 3);
      await assertLedgerChain(skuId);
    } finally {
      await t.admin.query(`DROP TRIGGER refuse_total_777 ON sales; DROP FUNCTION refuse_total_777()`);
    }
  });

  it('offline sales in one run share what is left: the first takes it, the next records the shortfall', async () => {
    const committer = new GroupCommitter(t.db);
    const scarce = await givenSku(owner, `GC-SCARCE-${randomUUID().slice(0, 6)}`, 'piece', 10);
    await givenStock(owner, storeId, [{ sku_id: scarce, quantity: 5 }]);
    const line = (quantity: number): SaleInput => ({ store_id: storeId, payment_method: 'cash', items: [{ sku_id: scarce, quantity, unit_price: 10 }], client_created_at: new Date().toISOString() });
    const sales = [body(1), line(4), line(3), line(2)];
    const outcomes = await Promise.all(sales.map((sale) => committer.sale(inputOf(sale), sale, 'offline')));
    assert.deepEqual(outcomes.map((o) => o.status), [201, 201, 201, 201]);
    const shortfalls = outcomes.slice(1).map((o) => (o.body as { items: Array<{ shortfall_quantity: number }> }).items[0]!.shortfall_quantity);
    assert.deepEqual(shortfalls, [0, 2, 2], '4 of 5 taken, then 1 of 3, then 0 of 2');
    const reviews = await t.admin.query(
      `SELECT count(*)::int AS n FROM review_items WHERE tenant_id = $1 AND kind = 'offline_sale_shortage' AND subject_id = ANY($2::text[])`,
      [tenantId, outcomes.slice(1).map((o) => (o.body as { id: string }).id)],
    );
    assert.equal(reviews.rows[0].n, 2);
    await assertLedgerChain(scarce);
    const balance = await t.admin.query(`SELECT quantity::int AS q FROM stock_balances WHERE tenant_id = $1 AND sku_id = $2`, [tenantId, scarce]);
    assert.equal(balance.rows[0].q, 0);
  });

  it('a void queued between sales ends the run before it and commits alone; the sales after it are the next run', async () => {
    const committer = new GroupCommitter(t.db);
    const sold = await committer.sale(inputOf(body(4)), body(4), 'online');
    const saleId = (sold.body as { id: string }).id;
    const before = await state();
    const outcomes = await Promise.all([
      statusOf(committer.sale(inputOf(body(1)), body(1), 'online')),
      statusOf(committer.sale(inputOf(body(2)), body(2), 'online')),
      statusOf(
        committer.run(inputOf(body()), { type: 'sale.void', storeId }, async (cmd) => ({ status: 200, body: await recordVoid(cmd, saleId, 'test') })),
      ),
      statusOf(committer.sale(inputOf(body(3)), body(3), 'online')),
    ]);
    assert.deepEqual(outcomes, [201, 201, 200, 201]);
    const after = await state();
    assert.equal(after.sales, before.sales + 3);
    assert.equal(after.stock, before.stock - 1 - 2 + 4 - 3);
    await assertLedgerChain(skuId);
    // The first sale ran alone (idle lane); the second ran as a run of its
    // own; the void committed alone (a void in a batch with sales would lock
    // the store's accounts before their balances: the order every other
    // writer takes them in reversed), and the sale after it in a run of its own.
    const times = await t.admin.query(
      // The void's transaction time is the sale's voided_at (its ledger row is stamped when written, under the balance lock).
      `SELECT (SELECT s.voided_at FROM sales s WHERE s.tenant_id = $1 AND s.id = $2
                 AND EXISTS (SELECT 1 FROM stock_ledger l WHERE l.tenant_id = $1 AND l.kind = 'void' AND l.op_id = s.voided_by_op)) AS voided,
              array_agg(created_at ORDER BY receipt_number) AS sold
       FROM (SELECT created_at, receipt_number FROM sales WHERE tenant_id = $1 ORDER BY receipt_number DESC LIMIT 3) s`,
      [tenantId, saleId],
    );
    const { voided, sold: soldAt } = times.rows[0] as { voided: Date | null; sold: Date[] };
    assert.ok(voided !== null, 'the void wrote its ledger row');
    assert.equal(new Set([...soldAt, voided].map((time) => time.getTime())).size, 4, 'four transactions: three sales and the void');
  });

  it('a void of a voided sale in a batch: answered as done, its key kept in the batch; a failure keeping the key fails that caller only', async () => {
    const committer = new GroupCommitter(t.db);
    const sold = await committer.sale(inputOf(body(2)), body(2), 'online');
    const saleId = (sold.body as { id: string }).id;
    const voidOf = (key: string) =>
      committer.run(inputOf(body(), key), { type: 'sale.void', storeId }, async (cmd) => ({ status: 200, body: await recordVoid(cmd, saleId, 'test') }));
    assert.equal((await voidOf(randomUUID())).status, 200);
    const kept = randomUUID();
    const before = await state();
    const outcomes = await Promise.all([statusOf(committer.sale(inputOf(body(1)), body(1), 'online')), voidOf(kept), statusOf(committer.sale(inputOf(body(1)), body(1), 'online'))]);
    assert.deepEqual([outcomes[0], outcomes[1].status, outcomes[1].replayed, outcomes[2]], [201, 200, true, 201]);
    const keptRow = await t.admin.query(`SELECT response_status FROM idempotency_keys WHERE tenant_id = $1 AND key = $2`, [tenantId, kept]);
    assert.deepEqual(keptRow.rows, [{ response_status: 200 }]);
    assert.equal((await state()).sales, before.sales + 2);

    // Keeping the key fails (injected): that caller gets the error, the sales around it commit.
    const doomed = `doomed-${randomUUID()}`;
    await t.admin.query(`
      CREATE FUNCTION refuse_doomed_key() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.key LIKE 'doomed-%' THEN RAISE EXCEPTION 'this key cannot be kept'; END IF; RETURN NEW; END $$;
      CREATE TRIGGER refuse_doomed_key BEFORE INSERT ON idempotency_keys FOR EACH ROW EXECUTE FUNCTION refuse_doomed_key();`);
    try {
      const middle = await state();
      const results = await Promise.all([
        statusOf(committer.sale(inputOf(body(1)), body(1), 'online')),
        statusOf(voidOf(doomed)),
        statusOf(committer.sale(inputOf(body(1)), body(1), 'online')),
      ]);
      assert.equal(results[0], 201);
      assert.match(String(results[1]), /cannot be kept|P0001/);
      assert.equal(results[2], 201);
      assert.equal((await state()).sales, middle.sales + 2);
      assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM idempotency_keys WHERE key = $1`, [doomed])).rows[0].n, 0);
    } finally {
      await t.admin.query(`DROP TRIGGER refuse_doomed_key ON idempotency_keys; DROP FUNCTION refuse_doomed_key()`);
    }
    await assertLedgerChain(skuId);
  });

  it('two processes (two committers, two pools) selling the last units of one SKU: exactly the stock is sold, receipts gapless, books balanced', async () => {
    const scarce = await givenSku(owner, `GC-RACE-${randomUUID().slice(0, 6)}`, 'piece', 10);
    await givenStock(owner, storeId, [{ sku_id: scarce, quantity: 300 }]);
    const counterBefore = (await state()).counter ?? 0;
    const drawerBefore = await t.admin.query(`SELECT coalesce(sum(balance), 0)::int AS b FROM accounts WHERE tenant_id = $1 AND store_id = $2 AND kind = 'cash_drawer'`, [tenantId, storeId]);
    const otherPool = createPool(t.appUrl, { max: 10, asAppRole: true });
    const otherDb = createDb(otherPool);
    try {
      const committers = [new GroupCommitter(t.db), new GroupCommitter(otherDb)];
      const line: SaleInput = { store_id: storeId, payment_method: 'cash', items: [{ sku_id: scarce, quantity: 1, unit_price: 10 }] };
      // 2 × 32 clients, 8 one-unit sales each: 512 attempts on 300 units.
      const outcomes = await Promise.all(
        Array.from({ length: 64 }, async (_, client) => {
          const statuses: unknown[] = [];
          for (let i = 0; i < 8; i++) statuses.push(await statusOf(committers[client % 2]!.sale(inputOf(line), line, 'online')));
          return statuses;
        }),
      ).then((all) => all.flat());
      assert.equal(outcomes.filter((o) => o === 201).length, 300);
      assert.equal(outcomes.filter((o) => o === 'insufficient_stock').length, 212);
      assert.equal(outcomes.length, 512);
    } finally {
      await otherDb.destroy();
    }
    await assertLedgerChain(scarce);
    const after = await t.admin.query(
      `SELECT (SELECT quantity::int FROM stock_balances WHERE tenant_id = $1 AND sku_id = $2) AS stock,
              (SELECT last_number::int FROM store_receipt_counters WHERE tenant_id = $1 AND store_id = $3) AS counter,
              (SELECT count(*)::int FROM sales s JOIN sale_items i ON i.tenant_id = s.tenant_id AND i.sale_id = s.id
               WHERE s.tenant_id = $1 AND i.sku_id = $2) AS sold,
              (SELECT coalesce(sum(balance), 0)::int FROM accounts WHERE tenant_id = $1 AND store_id = $3 AND kind = 'cash_drawer') AS drawer`,
      [tenantId, scarce, storeId],
    );
    assert.deepEqual(after.rows[0], { stock: 0, counter: counterBefore + 300, sold: 300, drawer: drawerBefore.rows[0].b + 300 * 10 });
    const numbers = (await t.admin.query(`SELECT receipt_number::int AS n FROM sales WHERE tenant_id = $1 AND store_id = $2 ORDER BY 1`, [tenantId, storeId])).rows.map((r) => r.n);
    assert.deepEqual(numbers, Array.from({ length: numbers.length }, (_, i) => i + 1));
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it("a store's first sales from two processes at once: every sale lands, receipts 1..n; a refused first sale leaves no counter row", async () => {
    const fresh = await givenStore(owner, `GC-NEW-${randomUUID().slice(0, 6)}`);
    const item = await givenSku(owner, `GC-NEW-${randomUUID().slice(0, 6)}`, 'piece', 10);
    await givenStock(owner, fresh, [{ sku_id: item, quantity: 1000 }]);
    const line = (quantity: number): SaleInput => ({ store_id: fresh, payment_method: 'cash', items: [{ sku_id: item, quantity, unit_price: 10 }] });
    const counterRows = async () => (await t.admin.query(`SELECT count(*)::int AS n FROM store_receipt_counters WHERE tenant_id = $1 AND store_id = $2`, [tenantId, fresh])).rows[0].n;

    // Refused: nothing written, not even the counter row.
    assert.equal(await statusOf(new GroupCommitter(t.db).sale(inputOf(line(5000)), line(5000), 'online')), 'insufficient_stock');
    assert.equal(await counterRows(), 0);

    const otherPool = createPool(t.appUrl, { max: 10, asAppRole: true });
    const otherDb = createDb(otherPool);
    try {
      const committers = [new GroupCommitter(t.db), new GroupCommitter(otherDb)];
      const outcomes = await Promise.all(
        Array.from({ length: 32 }, async (_, client) => {
          const statuses: unknown[] = [];
          for (let i = 0; i < 4; i++) statuses.push(await statusOf(committers[client % 2]!.sale(inputOf(line(1)), line(1), 'online')));
          return statuses;
        }),
      ).then((all) => all.flat());
      assert.deepEqual(outcomes.filter((o) => o !== 201), []);
    } finally {
      await otherDb.destroy();
    }
    const numbers = (await t.admin.query(`SELECT receipt_number::int AS n FROM sales WHERE tenant_id = $1 AND store_id = $2 ORDER BY 1`, [tenantId, fresh])).rows.map((r) => r.n);
    assert.deepEqual(numbers, Array.from({ length: 128 }, (_, i) => i + 1));
    assert.equal((await t.admin.query(`SELECT last_number::int AS n FROM store_receipt_counters WHERE tenant_id = $1 AND store_id = $2`, [tenantId, fresh])).rows[0].n, 128);
    await assertLedgerChain(item);
  });

  it('sales of several stores in one batch: one transaction, each store its own receipt numbers (a new store from 1), stock and books per store', async () => {
    const committer = new GroupCommitter(t.db);
    const [x, y] = [await givenStore(owner, `GC-MX-${randomUUID().slice(0, 6)}`), await givenStore(owner, `GC-MY-${randomUUID().slice(0, 6)}`)];
    const item = await givenSku(owner, `GC-M-${randomUUID().slice(0, 6)}`, 'piece', 10);
    await givenStock(owner, x, [{ sku_id: item, quantity: 3 }]);
    await givenStock(owner, y, [{ sku_id: item, quantity: 2 }]);
    await givenStock(owner, storeId, [{ sku_id: item, quantity: 5 }]);
    const counterOf = async (store: string) =>
      (await t.admin.query(`SELECT last_number::int AS n FROM store_receipt_counters WHERE tenant_id = $1 AND store_id = $2`, [tenantId, store])).rows[0]?.n ?? 0;
    const counterBefore = await counterOf(storeId);
    const line = (store: string, quantity: number): SaleInput => ({ store_id: store, payment_method: 'cash', items: [{ sku_id: item, quantity, unit_price: 10 }] });
    // The first call runs alone (the lane was idle); the rest form one batch across three stores.
    const sales = [line(storeId, 1), line(x, 1), line(y, 2), line(storeId, 1), line(x, 3), line(y, 1), line(x, 2), line(storeId, 2)];
    const outcomes = await Promise.all(sales.map((sale) => statusOf(committer.sale(inputOf(sale), sale, 'online'))));
    // x: 1 then 3 (short: 2 left) then 2; y: 2 then 1 (short: 0 left).
    assert.deepEqual(outcomes, [201, 201, 201, 201, 'insufficient_stock', 'insufficient_stock', 201, 201]);

    const receipts = async (store: string) =>
      (await t.admin.query(`SELECT receipt_number::int AS n FROM sales WHERE tenant_id = $1 AND store_id = $2 ORDER BY 1`, [tenantId, store])).rows.map((r) => r.n);
    assert.deepEqual(await receipts(x), [1, 2]);
    assert.deepEqual(await receipts(y), [1]);
    assert.deepEqual((await receipts(storeId)).slice(-3), [counterBefore + 1, counterBefore + 2, counterBefore + 3]);
    const counters = await t.admin.query(`SELECT store_id, last_number::int AS n FROM store_receipt_counters WHERE tenant_id = $1 AND store_id = ANY($2::uuid[])`, [
      tenantId,
      [x, y, storeId],
    ]);
    assert.deepEqual(Object.fromEntries(counters.rows.map((r) => [r.store_id, r.n])), { [x]: 2, [y]: 1, [storeId]: counterBefore + 3 });
    const stock = await t.admin.query(`SELECT store_id, quantity::int AS q FROM stock_balances WHERE tenant_id = $1 AND sku_id = $2`, [tenantId, item]);
    assert.deepEqual(Object.fromEntries(stock.rows.map((r) => [r.store_id, r.q])), { [x]: 0, [y]: 0, [storeId]: 1 });
    for (const store of [x, y, storeId]) await assertLedgerChain(item, store);
    // Everything after the first sale committed together (one transaction: one now()).
    const batches = await t.admin.query(`SELECT count(DISTINCT s.created_at)::int AS n FROM sales s JOIN sale_items i ON i.tenant_id = s.tenant_id AND i.sale_id = s.id WHERE s.tenant_id = $1 AND i.sku_id = $2`, [
      tenantId,
      item,
    ]);
    assert.equal(batches.rows[0].n, 2);
    // Each store's drawer got its own sales' money.
    const drawers = await t.admin.query(`SELECT store_id, balance::int AS b FROM accounts WHERE tenant_id = $1 AND kind = 'cash_drawer' AND store_id = ANY($2::uuid[])`, [tenantId, [x, y]]);
    assert.deepEqual(Object.fromEntries(drawers.rows.map((r) => [r.store_id, r.b])), { [x]: 30, [y]: 20 });
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('two processes selling the last units in three stores, each batch spanning stores: exactly each store\'s stock is sold, receipts gapless per store, no deadlock reaches a caller', async () => {
    const stores = [await givenStore(owner, `GC-P1-${randomUUID().slice(0, 6)}`), await givenStore(owner, `GC-P2-${randomUUID().slice(0, 6)}`), await givenStore(owner, `GC-P3-${randomUUID().slice(0, 6)}`)];
    const skus = [await givenSku(owner, `GC-PA-${randomUUID().slice(0, 6)}`, 'piece', 10), await givenSku(owner, `GC-PB-${randomUUID().slice(0, 6)}`, 'piece', 10)];
    for (const store of stores) await givenStock(owner, store, skus.map((sku) => ({ sku_id: sku, quantity: 40 })));
    const otherPool = createPool(t.appUrl, { max: 10, asAppRole: true });
    const otherDb = createDb(otherPool);
    try {
      const committers = [new GroupCommitter(t.db), new GroupCommitter(otherDb)];
      // 64 clients × 6 sales of one unit of each SKU (two lines) in a store chosen per sale: 384 attempts on 3 × 40 units of each.
      const outcomes = await Promise.all(
        Array.from({ length: 64 }, async (_, client) => {
          const statuses: unknown[] = [];
          for (let i = 0; i < 6; i++) {
            const store = stores[(client + i) % 3]!;
            const sale: SaleInput = { store_id: store, payment_method: 'cash', items: (client % 2 ? skus : [...skus].reverse()).map((sku) => ({ sku_id: sku, quantity: 1, unit_price: 10 })) };
            statuses.push(await statusOf(committers[client % 2]!.sale(inputOf(sale), sale, 'online')));
          }
          return statuses;
        }),
      ).then((all) => all.flat());
      assert.equal(outcomes.filter((o) => o === 201).length, 120);
      assert.equal(outcomes.filter((o) => o === 'insufficient_stock').length, 384 - 120);
    } finally {
      await otherDb.destroy();
    }
    for (const store of stores) {
      const numbers = (await t.admin.query(`SELECT receipt_number::int AS n FROM sales WHERE tenant_id = $1 AND store_id = $2 ORDER BY 1`, [tenantId, store])).rows.map((r) => r.n);
      assert.deepEqual(numbers, Array.from({ length: 40 }, (_, i) => i + 1));
      for (const sku of skus) await assertLedgerChain(sku, store);
    }
    const left = await t.admin.query(`SELECT coalesce(sum(quantity), 0)::int AS q FROM stock_balances WHERE tenant_id = $1 AND store_id = ANY($2::uuid[])`, [tenantId, stores]);
    assert.equal(left.rows[0].q, 0);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('two processes whose queues hold sales of two stores around a void: no batch locks one store after another, so no deadlock', async () => {
    const [a, b, c] = [await givenStore(owner, `GC-DA-${randomUUID().slice(0, 6)}`), await givenStore(owner, `GC-DB-${randomUUID().slice(0, 6)}`), await givenStore(owner, `GC-DC-${randomUUID().slice(0, 6)}`)];
    const item = await givenSku(owner, `GC-D-${randomUUID().slice(0, 6)}`, 'piece', 10);
    for (const store of [a, b, c]) await givenStock(owner, store, [{ sku_id: item, quantity: 1000 }]);
    const line = (store: string): SaleInput => ({ store_id: store, payment_method: 'cash', items: [{ sku_id: item, quantity: 1, unit_price: 10 }] });
    const seed = new GroupCommitter(t.db);
    const [x, y] = [
      ((await seed.sale(inputOf(line(c)), line(c), 'online')).body as { id: string }).id,
      ((await seed.sale(inputOf(line(c)), line(c), 'online')).body as { id: string }).id,
    ];
    const deadlocks = async () => Number((await t.admin.query(`SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()`)).rows[0].deadlocks);
    const deadlocksBefore = await deadlocks();
    const otherPool = createPool(t.appUrl, { max: 10, asAppRole: true });
    const otherDb = createDb(otherPool);
    const gate = await t.admin.connect();
    try {
      // Holds the two sales to be voided: a batch reaching a void waits there.
      await gate.query('BEGIN');
      await gate.query(`SELECT 1 FROM sales WHERE id = ANY($1::uuid[]) FOR UPDATE`, [[x, y]]);
      const [p1, p2] = [new GroupCommitter(t.db), new GroupCommitter(otherDb)];
      const voidOf = (id: string) => async (cmd: Parameters<Parameters<GroupCommitter['run']>[2]>[0]) => ({ status: 200, body: await recordVoid(cmd, id, 'test') });
      // Each first call runs alone (idle lane); the rest queue: sale, void, sale — the two processes in opposite store order.
      const firsts = [p1.sale(inputOf(line(c)), line(c), 'online'), p2.sale(inputOf(line(c)), line(c), 'online')];
      const queued = [
        p1.sale(inputOf(line(a)), line(a), 'online'),
        p1.run(inputOf(line(c)), { type: 'sale.void', storeId: c }, voidOf(x)),
        p1.sale(inputOf(line(b)), line(b), 'online'),
        p2.sale(inputOf(line(b)), line(b), 'online'),
        p2.run(inputOf(line(c)), { type: 'sale.void', storeId: c }, voidOf(y)),
        p2.sale(inputOf(line(a)), line(a), 'online'),
      ];
      await Promise.all(firsts);
      await new Promise((resolve) => setTimeout(resolve, 300));
      await gate.query('COMMIT');
      assert.deepEqual(await Promise.all(queued.map((p) => statusOf(p))), [201, 200, 201, 201, 200, 201]);
    } finally {
      await gate.query('ROLLBACK').catch(() => undefined);
      gate.release();
      await otherDb.destroy();
    }
    assert.equal((await deadlocks()) - deadlocksBefore, 0, 'no deadlock detected');
    for (const store of [a, b, c]) await assertLedgerChain(item, store);
  });

  // A batch that held a void and then a sale of its store locked the store's
  // accounts (the void's postings) before the sale's balance; another
  // process's run holding that balance and waiting for those accounts
  // deadlocked with it (1 s deadlock_timeout, the batch re-run). A void runs
  // alone now (takeBatch).
  it("two processes: a batch holding a void and then a sale of its store, against another process's sale of that store: no deadlock", async () => {
    const [c, d] = [await givenStore(owner, `GC-VS-C-${randomUUID().slice(0, 6)}`), await givenStore(owner, `GC-VS-D-${randomUUID().slice(0, 6)}`)];
    const [s1, s2, s3] = [
      await givenSku(owner, `GC-VS1-${randomUUID().slice(0, 6)}`, 'piece', 10),
      await givenSku(owner, `GC-VS2-${randomUUID().slice(0, 6)}`, 'piece', 10),
      await givenSku(owner, `GC-VS3-${randomUUID().slice(0, 6)}`, 'piece', 10),
    ];
    await givenStock(owner, c, [{ sku_id: s1, quantity: 100 }, { sku_id: s2, quantity: 100 }]);
    await givenStock(owner, d, [{ sku_id: s3, quantity: 100 }]);
    const line = (store: string, sku: string): SaleInput => ({ store_id: store, payment_method: 'cash', items: [{ sku_id: sku, quantity: 1, unit_price: 10 }] });
    const sold = await new GroupCommitter(t.db).sale(inputOf(line(c, s1)), line(c, s1), 'online');
    const saleId = (sold.body as { id: string }).id;
    const deadlocks = async () => Number((await t.admin.query(`SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()`)).rows[0].deadlocks);
    const deadlocksBefore = await deadlocks();
    const otherPool = createPool(t.appUrl, { max: 10, asAppRole: true });
    const otherDb = createDb(otherPool);
    const [gateD, gateC] = [await t.admin.connect(), await t.admin.connect()];
    const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    try {
      // gateD keeps process 1 busy (its lane's first batch waits for store d's balance) while its next batch queues;
      // gateC holds store c's balance of s2, which process 2's sale and process 1's second batch both need.
      await gateD.query('BEGIN');
      await gateD.query(`SELECT 1 FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3 FOR UPDATE`, [tenantId, d, s3]);
      await gateC.query('BEGIN');
      await gateC.query(`SELECT 1 FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3 FOR UPDATE`, [tenantId, c, s2]);
      const [p1, p2] = [new GroupCommitter(t.db), new GroupCommitter(otherDb)];
      const busy = statusOf(p1.sale(inputOf(line(d, s3)), line(d, s3), 'online'));
      await pause(100);
      // Process 1's next batch: the void (store c), then a sale of store c.
      const voided = statusOf(p1.run(inputOf(line(c, s1)), { type: 'sale.void', storeId: c }, async (cmd) => ({ status: 200, body: await recordVoid(cmd, saleId, 'test') })));
      const afterVoid = statusOf(p1.sale(inputOf(line(c, s2)), line(c, s2), 'online'));
      // Process 2: a sale of store c, waiting for s2's balance before process 1's batch begins.
      const other = statusOf(p2.sale(inputOf(line(c, s2)), line(c, s2), 'online'));
      await pause(200);
      await gateD.query('COMMIT');
      assert.equal(await busy, 201);
      // Process 1's second batch has voided (its postings hold store c's accounts) and waits for s2's balance.
      await pause(300);
      await gateC.query('COMMIT');
      assert.deepEqual(await Promise.all([voided, afterVoid, other]), [200, 201, 201]);
    } finally {
      await gateD.query('ROLLBACK').catch(() => undefined);
      await gateC.query('ROLLBACK').catch(() => undefined);
      gateD.release();
      gateC.release();
      await otherDb.destroy();
    }
    assert.equal((await deadlocks()) - deadlocksBefore, 0, 'no deadlock detected');
    for (const sku of [s1, s2]) await assertLedgerChain(sku, c);
  });

  /**
   * Plans `sales` inside `tx` as a batch would (tenant set, states loaded and
   * locked, operation rows written) and returns the plans and their write,
   * not yet run.
   */
  async function planInTransaction(tx: Awaited<ReturnType<ReturnType<typeof t.db.startTransaction>['execute']>>, sales: SaleInput[]) {
    await setTenant(tx, tenantId);
    const states = await loadSaleStates(tx, tenantId, sales, { lock: true });
    const locked = new Map([...states].map(([store, st]) => [store, st.lastReceipt]));
    const plans = sales.map((sale) => {
      const planned = planSale(states.get(sale.store_id)!, { input: inputOf(sale), sale, source: 'online' }, randomUUID());
      assert.ok(planned.ok);
      return planned.plan;
    });
    await insertOperations(
      tx,
      tenantId,
      plans.map((plan, index) => ({ input: inputOf(sales[index]!), spec: { ...spec, storeId: plan.sale.store_id }, opId: plan.opId, storeId: plan.sale.store_id })),
    );
    return { plans, write: () => writeSales(tx, tenantId, plans, locked) };
  }

  /**
   * Two transactions plan their sales against the same state; the first
   * writes and commits while the second's write waits for it. Returns both
   * plans and what the second write ended with (its error, or 'written').
   */
  async function raceTwoTransactions(firstSales: SaleInput[], secondSales: SaleInput[]) {
    const first = await t.db.startTransaction().execute();
    const second = await t.db.startTransaction().execute();
    try {
      const one = await planInTransaction(first, firstSales);
      const two = await planInTransaction(second, secondSales);
      await one.write();
      // Its outcome is taken at once: it can fail as the first commits,
      // before the commit's answer is awaited here.
      const late = two.write().then(
        () => 'written',
        (error: unknown) => error,
      );
      await first.commit().execute();
      return { plans: [one.plans, two.plans], outcome: await late };
    } finally {
      await second.rollback().execute().catch(() => undefined);
    }
  }

  const oneUnit = (store: string, sku: string): SaleInput => ({ store_id: store, payment_method: 'cash', items: [{ sku_id: sku, quantity: 1, unit_price: 10 }] });

  it("two transactions planning a store's first sales at once: the later one fails as a serialization conflict, never a second receipt 1", async () => {
    const fresh = await givenStore(owner, `GC-RACE1-${randomUUID().slice(0, 6)}`);
    const [a, b] = [await givenSku(owner, `GC-R1A-${randomUUID().slice(0, 6)}`), await givenSku(owner, `GC-R1B-${randomUUID().slice(0, 6)}`)];
    await givenStock(owner, fresh, [{ sku_id: a, quantity: 5 }, { sku_id: b, quantity: 5 }]);
    // Two SKUs: the transactions share no balance row, only the store's (not yet existing) counter.
    const { plans, outcome } = await raceTwoTransactions([oneUnit(fresh, a)], [oneUnit(fresh, b)]);
    assert.deepEqual(plans.flat().map((plan) => plan.sale.receipt_number), [1, 1], 'both plan the first number');
    assert.ok(outcome instanceof PlannedStateMoved && isRetryableTransactionError(outcome), `expected PlannedStateMoved, got ${String(outcome)}`);
    const rows = await t.admin.query(`SELECT receipt_number::int AS n FROM sales WHERE tenant_id = $1 AND store_id = $2`, [tenantId, fresh]);
    assert.deepEqual(rows.rows.map((r) => r.n), [1]);
  });

  it("a batch planning the first sales of two stores while another transaction makes one of them: it fails as a serialization conflict and writes nothing", async () => {
    const [p, q] = [await givenStore(owner, `GC-FP-${randomUUID().slice(0, 6)}`), await givenStore(owner, `GC-FQ-${randomUUID().slice(0, 6)}`)];
    const [a, b] = [await givenSku(owner, `GC-FA-${randomUUID().slice(0, 6)}`), await givenSku(owner, `GC-FB-${randomUUID().slice(0, 6)}`)];
    for (const store of [p, q]) await givenStock(owner, store, [{ sku_id: a, quantity: 5 }, { sku_id: b, quantity: 5 }]);
    // Different SKUs: the two share no balance row, only q's (not yet existing) counter.
    const { outcome } = await raceTwoTransactions([oneUnit(q, a)], [oneUnit(p, b), oneUnit(q, b)]);
    assert.ok(outcome instanceof PlannedStateMoved && isRetryableTransactionError(outcome), `expected PlannedStateMoved, got ${String(outcome)}`);
    const rows = await t.admin.query(`SELECT store_id, receipt_number::int AS n FROM sales WHERE tenant_id = $1 AND store_id = ANY($2::uuid[])`, [tenantId, [p, q]]);
    assert.deepEqual(rows.rows, [{ store_id: q, n: 1 }]);
    const counters = await t.admin.query(`SELECT store_id FROM store_receipt_counters WHERE tenant_id = $1 AND store_id = ANY($2::uuid[])`, [tenantId, [p, q]]);
    assert.deepEqual(counters.rows, [{ store_id: q }]);
  });
});
