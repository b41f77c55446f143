import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { sql } from 'kysely';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { waitFor } from '../../test/support/wait.js';
import { fingerprintRequest, runCommand } from '../core/command.js';
import { one } from '../core/db.js';
import { WORKER_PRINCIPAL } from '../jobs/task.js';
import { givenSku, givenStore } from '../sales/testkit.js';
import { takeAllStockSnapshots, takeStockSnapshots, type SnapshotResult } from './takeStockSnapshots.js';

/**
 * A snapshot run over a long gap (a first run over a long history, a worker
 * down for weeks) goes in steps of one day, each its own command: no
 * statement sums more than a day of the ledger, however long the gap, where
 * it summed every day of the gap in one statement (and a long enough gap hit
 * the 30 s statement_timeout, every night again). Each step writes whole
 * days, so a run stopped midway leaves complete days behind, and the next one
 * continues after them. The answers stay exact: every snapshot and the stock
 * as of any moment equal the full ledger sum.
 */
describe('stock snapshots over a long gap: in steps of a day, resumable, exact', () => {
  const DAY = 86_400_000;
  const today = Math.floor(Date.now() / DAY) * DAY; // UTC midnight
  const day = (offset: number) => new Date(today + offset * DAY).toISOString().slice(0, 10);
  const PAIRS = 4;
  const ROWS_PER_PAIR_AND_DAY = 25;
  /** Days with movements: D-60..D-41, then none for 20 days, then D-20..D-2 (yesterday, D-1, has none). */
  const MOVING_DAYS = [...Array.from({ length: 20 }, (_, i) => -60 + i), ...Array.from({ length: 19 }, (_, i) => -20 + i)];
  let t: TestApp;

  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  /** A tenant with PAIRS store/SKU pairs and the history of MOVING_DAYS (written as the ledger would have, with past timestamps). */
  async function givenLongHistory(): Promise<{ owner: ApiClient; tenantId: string; store: string }> {
    const { owner, tenantId } = await t.newTenant();
    const store = await givenStore(owner, `LG${randomUUID().slice(0, 4)}`);
    const skus: string[] = [];
    for (let i = 0; i < PAIRS; i++) skus.push(await givenSku(owner, `LG-${i}-${randomUUID().slice(0, 4)}`, 'piece'));
    const opId = (await t.admin.query(`SELECT op_id FROM skus WHERE tenant_id = $1 LIMIT 1`, [tenantId])).rows[0].op_id;
    // Each pair: +5 first, then a seeded mix of +1..+4 and -1 (never below 0), 25 rows a day spread over the day
    let seed = 7;
    const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
    const rows: Array<[string, number, number, Date]> = [];
    for (const sku of skus) {
      let balance = 0;
      for (const offset of MOVING_DAYS) {
        for (let r = 0; r < ROWS_PER_PAIR_AND_DAY; r++) {
          const change = balance === 0 ? 5 : random() < 0.3 ? -1 : 1 + Math.floor(random() * 4);
          balance += change;
          rows.push([sku, change, balance, new Date(today + offset * DAY + 1_000 + r * Math.floor((DAY - 2_000) / ROWS_PER_PAIR_AND_DAY))]);
        }
      }
      await t.admin.query(`INSERT INTO stock_balances (tenant_id, store_id, sku_id, quantity) VALUES ($1, $2, $3, $4)`, [tenantId, store, sku, balance]);
    }
    await t.admin.query(
      `INSERT INTO stock_ledger (tenant_id, store_id, sku_id, op_id, quantity_change, quantity_after, kind, created_at)
       SELECT $1, $2, r.sku, $3, r.change, r.after, 'adjustment', r.at
       FROM unnest($4::uuid[], $5::int[], $6::int[], $7::timestamptz[]) AS r(sku, change, after, at)`,
      [tenantId, store, opId, rows.map((row) => row[0]), rows.map((row) => row[1]), rows.map((row) => row[2]), rows.map((row) => row[3])],
    );
    await t.admin.query('ANALYZE stock_ledger, stock_balances, stock_snapshots');
    return { owner, tenantId, store };
  }

  /** Every snapshot row of the tenant next to the full ledger sum of its pair up to the end of its day. */
  async function expectSnapshotsEqualLedger(tenantId: string): Promise<void> {
    const { rows } = await t.admin.query(
      `SELECT s.snapshot_date::text AS day, s.quantity::int AS snapshot,
              (SELECT coalesce(sum(l.quantity_change), 0)::int FROM stock_ledger l
               WHERE l.tenant_id = s.tenant_id AND l.store_id = s.store_id AND l.sku_id = s.sku_id
                 AND l.created_at < (s.snapshot_date + 1)::timestamp AT TIME ZONE 'UTC') AS ledger
       FROM stock_snapshots s WHERE s.tenant_id = $1 ORDER BY s.store_id, s.sku_id, s.snapshot_date`,
      [tenantId],
    );
    for (const row of rows) assert.equal(row.snapshot, row.ledger, `snapshot of ${row.day} = full ledger sum to the end of that day`);
  }

  /** The (pair, day) that have ledger rows up to the end of `through` and those that have snapshots: equal when every day up to it is taken whole. */
  async function daysTaken(tenantId: string, through: string): Promise<{ ledger: string[]; snapshots: string[] }> {
    const ledger = await t.admin.query(
      `SELECT DISTINCT sku_id::text || '/' || (created_at AT TIME ZONE 'UTC')::date::text AS pair_day FROM stock_ledger
       WHERE tenant_id = $1 AND created_at < ($2::date + 1)::timestamp AT TIME ZONE 'UTC' ORDER BY 1`,
      [tenantId, through],
    );
    const snapshots = await t.admin.query(`SELECT sku_id::text || '/' || snapshot_date::text AS pair_day FROM stock_snapshots WHERE tenant_id = $1 ORDER BY 1`, [tenantId]);
    return { ledger: ledger.rows.map((row) => row.pair_day), snapshots: snapshots.rows.map((row) => row.pair_day) };
  }

  /** Stock as of `asOf` by the API, and by the full ledger sum. */
  async function expectStockAsOfEqualsLedger(owner: ApiClient, tenantId: string, store: string, asOf: string): Promise<void> {
    const answer = await owner.get(`/v1/stores/${store}/stock?as_of=${encodeURIComponent(asOf)}&limit=500`);
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    const full = await t.admin.query(
      `SELECT b.sku_id, coalesce(sum(l.quantity_change) FILTER (WHERE l.created_at <= $3::timestamptz), 0)::int AS quantity
       FROM stock_balances b LEFT JOIN stock_ledger l USING (tenant_id, store_id, sku_id)
       WHERE b.tenant_id = $1 AND b.store_id = $2 GROUP BY b.sku_id ORDER BY b.sku_id`,
      [tenantId, store, asOf],
    );
    assert.deepEqual(
      answer.body.items.map((item: { sku_id: string; quantity: number }) => ({ sku_id: item.sku_id, quantity: Number(item.quantity) })),
      full.rows,
      `stock as of ${asOf}`,
    );
  }

  /** The ranges the tenant's snapshot steps summed (their audit events), oldest first. */
  const summedRanges = async (tenantId: string) =>
    (
      await t.admin.query(
        `SELECT after->'summed' AS summed FROM events WHERE tenant_id = $1 AND type = 'stock.snapshot' AND subject_type = 'stock_snapshots' ORDER BY id`,
        [tenantId],
      )
    ).rows.map((row) => row.summed as { from: string; through: string } | null);

  it('each step of a run over a 40-day gap reads one day of the ledger (and a row per pair to find it), not the gap', async () => {
    // Given a history snapshotted through D-41, then 20 days without movements and 19 with, never snapshotted
    const { tenantId } = await givenLongHistory();
    const first = await runCommand(
      t.db,
      { tenantId, principal: WORKER_PRINCIPAL, correlationId: 'first', fingerprint: fingerprintRequest('JOB', 'stock.snapshot', { tenantId }) },
      { type: 'stock.snapshot' },
      async (cmd) => ({ status: 200, body: await takeStockSnapshots(cmd, day(-41), 20) }),
    );
    assert.deepEqual(first.body, { through: day(-41), snapshots_written: PAIRS * 20 });
    // When the run goes on from there, step after step, as the service runs it (the app role)
    const bound = day(-1);
    const reads: number[] = [];
    for (let steps = 0; ; steps++) {
      assert.ok(steps <= MOVING_DAYS.length, 'the run ends');
      const outcome = await runCommand(
        t.db,
        { tenantId, principal: WORKER_PRINCIPAL, correlationId: 'steps', fingerprint: fingerprintRequest('JOB', 'stock.snapshot', { tenantId }) },
        { type: 'stock.snapshot' },
        async (cmd) => {
          // The ledger rows this transaction read: index entries returned and rows read by sequential scans (this transaction's own counts)
          const ledgerRowsRead = async () =>
            (
              await one(
                cmd.tx,
                sql<{ n: number }>`
                  SELECT (SELECT coalesce(sum(pg_stat_get_xact_tuples_returned(indexrelid)), 0) FROM pg_index WHERE indrelid = 'stock_ledger'::regclass)::int
                       + pg_stat_get_xact_tuples_returned('stock_ledger'::regclass)::int AS n`,
              )
            ).n;
          const before = await ledgerRowsRead();
          const body = await takeStockSnapshots(cmd, bound);
          reads.push((await ledgerRowsRead()) - before);
          return { status: 200, body };
        },
      );
      const step = outcome.body as SnapshotResult;
      if (step.through === null || step.through === bound) break;
    }
    // Then each step read at most one day's rows of the tenant and one row per pair (its first ledger row from the step's day on)
    const day_rows = PAIRS * ROWS_PER_PAIR_AND_DAY;
    for (const read of reads) assert.ok(read <= day_rows + 2 * PAIRS, `a step read ${read} ledger rows (a day has ${day_rows}); every step: ${reads.join(', ')}`);
    // — a step per day with movements (D-20..D-2) and the last, up to yesterday, summing nothing
    assert.equal(reads.length, 19 + 1, `steps: ${reads.join(', ')}`);
    assert.deepEqual(await daysTaken(tenantId, bound).then(({ ledger, snapshots }) => ledger.length === snapshots.length && ledger.every((pairDay, i) => pairDay === snapshots[i])), true);
    await expectSnapshotsEqualLedger(tenantId);
  });

  it('the nightly run and a manager\'s request at once over a long history (their steps take turns on the tenant\'s lock): each day written once, by one of them, equal to the ledger', async () => {
    // Given a 60-day history never snapshotted
    const { owner, tenantId } = await givenLongHistory();
    // When the nightly run and a manager's request go at once
    const [nightly, manager] = await Promise.all([
      takeAllStockSnapshots(t.db, WORKER_PRINCIPAL, 'nightly-at-once').then((results) => results.find((result) => result.tenantId === tenantId)!),
      owner.post('/v1/stock/snapshots', {}, { idempotencyKey: randomUUID() }),
    ]);
    // Then between them they wrote every day once: the rows they say they wrote are the rows there are, each equal to the ledger
    assert.equal(manager.status, 200, JSON.stringify(manager.body));
    assert.equal(nightly.snapshots_written + manager.body.snapshots_written, PAIRS * MOVING_DAYS.length, JSON.stringify({ nightly, manager: manager.body }));
    const all = await daysTaken(tenantId, day(-1));
    assert.deepEqual(all.snapshots, all.ledger);
    await expectSnapshotsEqualLedger(tenantId);
    // and each day's rows are one step's (one operation per day)
    const perDay = await t.admin.query(`SELECT snapshot_date, count(DISTINCT op_id)::int AS ops FROM stock_snapshots WHERE tenant_id = $1 GROUP BY 1 HAVING count(DISTINCT op_id) > 1`, [tenantId]);
    assert.deepEqual(perDay.rows, []);
  });

  it('a request with a key that fails midway keeps the days it took and not its key: sent again, it continues after them and its answer is kept', async () => {
    // Given a 60-day history never snapshotted, and a snapshot of D-50 that cannot be written (injected)
    const { owner, tenantId } = await givenLongHistory();
    await t.admin.query(`
      CREATE FUNCTION refuse_snapshot_day_for_test() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'injected: the run stops here'; END $$;
      CREATE TRIGGER refuse_snapshot_day_for_test BEFORE INSERT ON stock_snapshots FOR EACH ROW
        WHEN (NEW.tenant_id = '${tenantId}' AND NEW.snapshot_date = '${day(-50)}') EXECUTE FUNCTION refuse_snapshot_day_for_test();`);
    const key = randomUUID();
    try {
      // When a manager takes the snapshots with a key
      const failed = await owner.post('/v1/stock/snapshots', {}, { idempotencyKey: key });
      // Then the request fails, the days before D-50 are taken whole
      assert.equal(failed.status, 500, JSON.stringify(failed.body));
      const stopped = await daysTaken(tenantId, day(-51));
      assert.equal(stopped.snapshots.length, PAIRS * 10);
      assert.deepEqual(stopped.snapshots, stopped.ledger);
    } finally {
      await t.admin.query(`DROP TRIGGER refuse_snapshot_day_for_test ON stock_snapshots; DROP FUNCTION refuse_snapshot_day_for_test()`);
    }
    // When it is sent again with the key (nothing was stored under it, and the key is free again)
    const again = await owner.post('/v1/stock/snapshots', {}, { idempotencyKey: key });
    // Then it continues after D-51 up to yesterday, and that answer is the key's
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.headers.get('idempotent-replayed'), null);
    assert.deepEqual(again.body, { through: day(-1), snapshots_written: PAIRS * (MOVING_DAYS.length - 10) });
    const all = await daysTaken(tenantId, day(-1));
    assert.deepEqual(all.snapshots, all.ledger);
    await expectSnapshotsEqualLedger(tenantId);
    const replay = await owner.post('/v1/stock/snapshots', {}, { idempotencyKey: key });
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(replay.body, again.body);
  });

  it('a nightly run stopped midway leaves whole days; the next run (by the API, with a key) continues after them, and stock as of any moment is the ledger sum', async () => {
    // Given a 60-day history never snapshotted, and a store whose snapshot of D-10 cannot be written (injected: a crash at that step)
    const { owner, tenantId, store } = await givenLongHistory();
    await t.admin.query(`
      CREATE FUNCTION refuse_snapshot_day_for_test() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'injected: the run stops here'; END $$;
      CREATE TRIGGER refuse_snapshot_day_for_test BEFORE INSERT ON stock_snapshots FOR EACH ROW
        WHEN (NEW.tenant_id = '${tenantId}' AND NEW.snapshot_date = '${day(-10)}') EXECUTE FUNCTION refuse_snapshot_day_for_test();`);
    try {
      // When the nightly run goes over the tenant
      await assert.rejects(takeAllStockSnapshots(t.db, WORKER_PRINCIPAL, 'nightly-stopped'), /injected: the run stops here/);
    } finally {
      await t.admin.query(`DROP TRIGGER refuse_snapshot_day_for_test ON stock_snapshots; DROP FUNCTION refuse_snapshot_day_for_test()`);
    }
    // Then every day up to D-11 is taken, whole (every pair that moved that day), and none after it
    const stopped = await daysTaken(tenantId, day(-11));
    assert.equal(stopped.snapshots.length, PAIRS * (20 + 10));
    assert.deepEqual(stopped.snapshots, stopped.ledger);
    await expectSnapshotsEqualLedger(tenantId);
    // and stock as of moments in the days taken and in those not yet taken is the ledger's
    for (const asOf of [`${day(-50)}T12:00:00Z`, `${day(-30)}T00:00:00Z`, `${day(-11)}T23:59:59.999999Z`, `${day(-5)}T07:30:00+02:00`]) {
      await expectStockAsOfEqualsLedger(owner, tenantId, store, asOf);
    }

    // When a manager takes the snapshots now, with a key, while the tenant's snapshot lock is held (a run under way)
    const holder = new pg.Client({ connectionString: t.url });
    await holder.connect();
    const key = randomUUID();
    let resumed: ReturnType<ApiClient['post']>;
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [`stock-snapshots/${tenantId}`]);
      resumed = owner.post('/v1/stock/snapshots', {}, { idempotencyKey: key });
      await waitFor('the request to wait for the snapshot lock', async () => {
        const { rows } = await t.admin.query(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`);
        return rows[0].n >= 1;
      });
      // Then the same key meanwhile is 409 in flight, and another request under it too — nothing written by either
      const operationsBefore = (await t.admin.query(`SELECT count(*)::int AS n FROM operations WHERE tenant_id = $1`, [tenantId])).rows[0].n;
      for (const body of [{}, { through: day(-3) }]) {
        const again = await owner.post('/v1/stock/snapshots', body, { idempotencyKey: key });
        assert.equal(again.status, 409, JSON.stringify(again.body));
        assert.equal(again.body.code, 'idempotency_key_in_flight');
      }
      assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM operations WHERE tenant_id = $1`, [tenantId])).rows[0].n, operationsBefore);
    } finally {
      await holder.query('COMMIT');
      await holder.end();
    }
    // …and the first continues after D-11 up to yesterday, a step per day
    const response = await resumed!;
    assert.equal(response.status, 200, JSON.stringify(response.body));
    assert.deepEqual(response.body, { through: day(-1), snapshots_written: PAIRS * 9 });
    const all = await daysTaken(tenantId, day(-1));
    assert.deepEqual(all.snapshots, all.ledger);
    await expectSnapshotsEqualLedger(tenantId);
    const ranges = await summedRanges(tenantId);
    for (const range of ranges) if (range !== null) assert.equal(range.from, range.through, `a step sums one day: ${JSON.stringify(ranges)}`);

    // When it is sent again with its key: the same answer, replayed, nothing run; with another body: 422, nothing run
    const operations = (await t.admin.query(`SELECT count(*)::int AS n FROM operations WHERE tenant_id = $1`, [tenantId])).rows[0].n;
    const replay = await owner.post('/v1/stock/snapshots', {}, { idempotencyKey: key });
    assert.equal(replay.status, 200);
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(replay.body, response.body);
    const reused = await owner.post('/v1/stock/snapshots', { through: day(-2) }, { idempotencyKey: key });
    assert.equal(reused.status, 422, JSON.stringify(reused.body));
    assert.equal(reused.body.code, 'idempotency_key_reused');
    assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM operations WHERE tenant_id = $1`, [tenantId])).rows[0].n, operations);

    // And stock as of random moments over the whole history (and before it) is the full ledger sum
    let seed = 11;
    const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
    for (let i = 0; i < 12; i++) {
      const moment = new Date(today - 65 * DAY + Math.floor(random() * 66 * DAY)).toISOString();
      await expectStockAsOfEqualsLedger(owner, tenantId, store, moment);
    }
    await expectStockAsOfEqualsLedger(owner, tenantId, store, new Date().toISOString());
  });
});
