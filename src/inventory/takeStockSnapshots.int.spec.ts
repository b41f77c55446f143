import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { waitFor } from '../../test/support/wait.js';
import { fingerprintRequest, runCommand, type Command, type CommandOutcome } from '../core/command.js';
import type { Tx } from '../core/db.js';
import { givenSku, givenStore } from '../sales/testkit.js';
import { loadConfig } from '../config.js';
import { createLogger } from '../core/logger.js';
import { enqueueJob } from '../jobs/enqueueJob.js';
import { WORKER_PRINCIPAL } from '../jobs/task.js';
import { startWorker } from '../jobs/worker.js';
import { stockSnapshotsNightly } from './snapshotJob.js';
import { takeAllStockSnapshots, takeStockSnapshots, type SnapshotResult } from './takeStockSnapshots.js';

/** The transaction `tx`, whose statement number `statement` (from 1) is held back until `gate` resolves. */
function pausedBefore(tx: Tx, statement: number, gate: Promise<void>, reached: () => void): Tx {
  let sent = 0;
  const bound = (target: object, value: unknown) => (typeof value === 'function' ? value.bind(target) : value);
  return new Proxy(tx, {
    get(target, prop) {
      if (prop !== 'getExecutor') return bound(target, Reflect.get(target, prop));
      return () => {
        const executor = target.getExecutor();
        return new Proxy(executor, {
          get(ex, p) {
            if (p !== 'executeQuery') return bound(ex, Reflect.get(ex, p));
            return async (...args: unknown[]) => {
              sent += 1;
              if (sent === statement) {
                reached();
                await gate;
              }
              return (ex.executeQuery as (...a: unknown[]) => unknown).apply(ex, args);
            };
          },
        });
      };
    },
  }) as Tx;
}

describe('stock snapshots: two runs of one tenant at once', () => {
  let t: TestApp;
  const DAY = 86_400_000;
  const today = Math.floor(Date.now() / DAY) * DAY; // UTC midnight
  const day = (offset: number) => new Date(today + offset * DAY).toISOString().slice(0, 10);
  /** Days of givenHistory's ledger (D-5..D-3). */
  const SPAN = 3;

  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  /** A tenant whose one SKU got +10 on D-5, +5 on D-4 and +7 on D-3 (balance 22), written as the ledger would have (past timestamps). */
  async function givenHistory(): Promise<{ owner: ApiClient; tenantId: string; store: string }> {
    const { owner, tenantId } = await t.newTenant();
    const store = await givenStore(owner, 'SR');
    const sku = await givenSku(owner, 'SR-A', 'piece');
    const opId = (await t.admin.query(`SELECT op_id FROM skus WHERE tenant_id = $1 LIMIT 1`, [tenantId])).rows[0].op_id;
    await t.admin.query(`INSERT INTO stock_balances (tenant_id, store_id, sku_id, quantity) VALUES ($1, $2, $3, 22)`, [tenantId, store, sku]);
    await t.admin.query(
      `INSERT INTO stock_ledger (tenant_id, store_id, sku_id, op_id, quantity_change, quantity_after, kind, created_at)
       VALUES ($1, $2, $3, $4, 10, 10, 'adjustment', $5), ($1, $2, $3, $4, 5, 15, 'adjustment', $6), ($1, $2, $3, $4, 7, 22, 'adjustment', $7)`,
      [tenantId, store, sku, opId, new Date(today - 5 * DAY + 3_600_000), new Date(today - 4 * DAY + 3_600_000), new Date(today - 3 * DAY + 3_600_000)],
    );
    return { owner, tenantId, store };
  }

  /**
   * A snapshot step as a run starts it (one command of the tenant), held back
   * before its statement number `statement`: `paused` resolves once it got
   * there, `resume()` lets it go on, `outcome` is its command's outcome. It
   * sums up to SPAN days in its one statement (the whole history here: as a
   * run did in one step before runs went by SNAPSHOT_STEP_DAYS), so two runs
   * meet on a step that writes several days.
   */
  function pausedRun(tenantId: string, statement: number, through?: string) {
    let resume!: () => void;
    const gate = new Promise<void>((resolve) => (resume = resolve));
    let reached!: () => void;
    const paused = new Promise<void>((resolve) => (reached = resolve));
    const outcome: Promise<CommandOutcome> = runCommand(
      t.db,
      { tenantId, principal: { kind: 'operator', name: 'operator' }, correlationId: 'paused-run', fingerprint: fingerprintRequest('JOB', 'stock.snapshot', { tenantId }) },
      { type: 'stock.snapshot' },
      async (cmd) => {
        const held = Object.create(cmd, { tx: { value: pausedBefore(cmd.tx, statement, gate, reached) } }) as Command;
        return { status: 200, body: await takeStockSnapshots(held, through, SPAN) };
      },
    );
    return { paused, resume, outcome };
  }

  /** Connections of this test's database waiting for an advisory lock. */
  const advisoryLockWaiters = async () =>
    (
      await t.admin.query(
        `SELECT count(*)::int AS n FROM pg_locks
         WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
      )
    ).rows[0].n as number;

  /** Asserts that `second` waits for the lock of the run that `resumeFirst` lets go on (then lets it go on, whatever happened). */
  async function waitsForTheLock(second: Promise<unknown>, resumeFirst: () => void): Promise<void> {
    try {
      await Promise.race([
        waitFor('the second run to wait for the snapshot lock', async () => (await advisoryLockWaiters()) === 1),
        second.then(() => assert.fail('the second run finished while the first one held the lock')),
      ]);
    } finally {
      resumeFirst();
    }
  }

  /** Every snapshot row of the tenant next to the full ledger sum of its pair up to the end of its day. */
  const snapshotsAndLedgerSums = async (tenantId: string) =>
    (
      await t.admin.query(
        `SELECT s.snapshot_date::text AS day, s.quantity::int AS snapshot,
                (SELECT coalesce(sum(l.quantity_change), 0)::int FROM stock_ledger l
                 WHERE l.tenant_id = s.tenant_id AND l.store_id = s.store_id AND l.sku_id = s.sku_id
                   AND l.created_at < (s.snapshot_date + 1)::timestamp AT TIME ZONE 'UTC') AS ledger
         FROM stock_snapshots s WHERE s.tenant_id = $1 ORDER BY s.store_id, s.sku_id, s.snapshot_date`,
        [tenantId],
      )
    ).rows as Array<{ day: string; snapshot: number; ledger: number }>;

  const expectSnapshotsEqualLedger = async (tenantId: string) => {
    const rows = await snapshotsAndLedgerSums(tenantId);
    assert.deepEqual(rows.map((row) => row.day), [day(-5), day(-4), day(-3)]);
    for (const row of rows) assert.equal(row.snapshot, row.ledger, `snapshot of ${row.day} = full ledger sum to the end of that day`);
  };

  it('the nightly run holds the lock while a manager asks for an earlier day: the manager waits, then finds it done', async () => {
    // Given: the nightly run has taken the tenant's snapshot lock (statement 1) and is held before it reads its bounds
    const { owner, tenantId, store } = await givenHistory();
    const nightly = pausedRun(tenantId, 2);
    await nightly.paused;
    // When: a manager takes the snapshots through D-4 meanwhile
    const manager = owner.post('/v1/stock/snapshots', { through: day(-4) });
    await waitsForTheLock(manager, nightly.resume);
    const [nightlyOutcome, managerResponse] = await Promise.all([nightly.outcome, manager]);
    // Then: the nightly run wrote D-5..D-3; the manager's run, after it, had nothing left to do
    assert.equal(nightlyOutcome.status, 200);
    assert.equal((nightlyOutcome.body as SnapshotResult).snapshots_written, 3);
    assert.equal(managerResponse.status, 200, JSON.stringify(managerResponse.body));
    assert.deepEqual(managerResponse.body, { through: null, snapshots_written: 0 });
    await expectSnapshotsEqualLedger(tenantId);
    const asOf = await owner.get(`/v1/stores/${store}/stock?as_of=${day(-2)}T12:00:00Z`);
    assert.equal(asOf.body.items[0].quantity, 22);
  });

  it('a manager\'s run through D-4 holds the lock while the nightly run starts: the nightly run continues from D-3 on its result', async () => {
    // Given: a run through D-4 holds the lock, held before it reads its bounds
    const { owner, tenantId, store } = await givenHistory();
    const manager = pausedRun(tenantId, 2, day(-4));
    await manager.paused;
    // When: the nightly run (the default `through`) starts meanwhile, through the API
    const nightly = owner.post('/v1/stock/snapshots', {});
    await waitsForTheLock(nightly, manager.resume);
    const [managerOutcome, nightlyResponse] = await Promise.all([manager.outcome, nightly]);
    // Then: D-5 and D-4 by the first run; D-3 on top of D-4's 15 by the second — 22, not 15 + 22
    assert.deepEqual(managerOutcome.body, { through: day(-4), snapshots_written: 2 });
    assert.equal(nightlyResponse.status, 200, JSON.stringify(nightlyResponse.body));
    assert.equal(nightlyResponse.body.snapshots_written, 1);
    await expectSnapshotsEqualLedger(tenantId);
    const asOf = await owner.get(`/v1/stores/${store}/stock?as_of=${day(-2)}T12:00:00Z`);
    assert.equal(asOf.body.items[0].quantity, 22);
  });

  it('snapshot rows committed while a run computes (say, by a process without the lock during a deploy) do not change its sums', async () => {
    // Given: a run that read its bounds (nothing snapshotted yet) and is held before its INSERT (statement 3)
    const { tenantId } = await givenHistory();
    const run = pausedRun(tenantId, 3);
    await run.paused;
    // When: a correct snapshot of D-4 commits meanwhile, outside the lock
    const [{ store_id: store, sku_id: sku, op_id: opId }] = (
      await t.admin.query(`SELECT store_id, sku_id, op_id FROM stock_ledger WHERE tenant_id = $1 LIMIT 1`, [tenantId])
    ).rows;
    await t.admin.query(
      `INSERT INTO stock_snapshots (tenant_id, store_id, sku_id, snapshot_date, quantity, op_id) VALUES ($1, $2, $3, $4, 15, $5)`,
      [tenantId, store, sku, day(-4), opId],
    );
    run.resume();
    const outcome = await run.outcome;
    // Then: the run summed from no snapshot at all, as it found when it started: D-5 = 10, D-3 = 22 (D-4 was already there)
    assert.equal(outcome.status, 200);
    assert.equal((outcome.body as SnapshotResult).snapshots_written, 2);
    await expectSnapshotsEqualLedger(tenantId);
  });

  it("the nightly run over every tenant: one tenant's failure does not keep the tenants after it from their snapshots", async () => {
    // Given two tenants with history, and the one the run takes first cannot write its snapshots (injected)
    const a = await givenHistory();
    const b = await givenHistory();
    const order = (await t.admin.query(`SELECT tenants_with_stock() AS id`)).rows.map((row) => row.id as string);
    const [first, second] = order.indexOf(a.tenantId) < order.indexOf(b.tenantId) ? [a, b] : [b, a];
    await t.admin.query(`
      CREATE FUNCTION refuse_snapshot_for_test() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'injected: this tenant cannot snapshot'; END $$;
      CREATE TRIGGER refuse_snapshot_for_test BEFORE INSERT ON stock_snapshots FOR EACH ROW
        WHEN (NEW.tenant_id = '${first.tenantId}') EXECUTE FUNCTION refuse_snapshot_for_test();`);
    try {
      // When the nightly run goes over every tenant
      const run = takeAllStockSnapshots(t.db, WORKER_PRINCIPAL, 'nightly-test');
      // Then it reports the failing tenant…
      await assert.rejects(run, (error: unknown) => {
        assert.ok(error instanceof AggregateError);
        assert.match(error.message, new RegExp(`${first.tenantId}: injected: this tenant cannot snapshot`));
        assert.doesNotMatch(error.message, new RegExp(second.tenantId));
        return true;
      });
      // …and the tenant after it has its snapshots, equal to its ledger
      const written = (await t.admin.query(`SELECT count(*)::int AS n FROM stock_snapshots WHERE tenant_id = $1`, [second.tenantId])).rows[0].n;
      assert.equal(written, 3);
      await expectSnapshotsEqualLedger(second.tenantId);
      assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM stock_snapshots WHERE tenant_id = $1`, [first.tenantId])).rows[0].n, 0);
    } finally {
      await t.admin.query(`DROP TRIGGER refuse_snapshot_for_test ON stock_snapshots; DROP FUNCTION refuse_snapshot_for_test()`);
    }
  });
  it("the nightly job's operations name the worker as their actor, like every other job's (they named `operator`, the root token's)", async () => {
    // Given a tenant with history and a worker running the nightly task
    const { tenantId } = await givenHistory();
    const worker = await startWorker({
      databaseUrl: t.url,
      appDatabaseUrl: t.appUrl,
      config: loadConfig({ LOG_LEVEL: 'silent' }),
      logger: createLogger('silent'),
      tasks: [stockSnapshotsNightly],
      cronItems: [],
      serveMetrics: false,
      pollIntervalMs: 100,
    });
    try {
      // When the job runs
      await t.db.transaction().execute((tx) => enqueueJob(tx, 'stock.snapshots', {}));
      // (its last step goes up to yesterday, the bound: D-2 and D-1 had no movement)
      await waitFor('the run up to yesterday', async () => {
        const { rows } = await t.admin.query(`SELECT 1 FROM events WHERE tenant_id = $1 AND type = 'stock.snapshot' AND subject_type = 'stock_snapshots' AND subject_id = $2`, [tenantId, day(-1)]);
        return rows.length > 0;
      });
      const operations = (await t.admin.query(`SELECT actor FROM operations WHERE tenant_id = $1 AND type = 'stock.snapshot'`, [tenantId])).rows;
      // Then its operations — a step per day with movements (SNAPSHOT_STEP_DAYS), and the last one up to yesterday — and audit events say the worker did it
      assert.deepEqual(operations, [{ actor: 'worker' }, { actor: 'worker' }, { actor: 'worker' }, { actor: 'worker' }]);
      const events = await t.admin.query(`SELECT DISTINCT actor FROM events WHERE tenant_id = $1 AND type = 'stock.snapshot'`, [tenantId]);
      assert.deepEqual(events.rows, [{ actor: 'worker' }]);
      await expectSnapshotsEqualLedger(tenantId);
    } finally {
      await worker.stop();
    }
  });
});
