import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { Outage } from './support/outage.js';
import { runStorekeepCheck } from './support/processes.js';

/**
 * `storekeep check` runs from cron: it must end. Each check gets `--timeout`
 * seconds (default 600, as the nightly run); a check past it is a
 * `check_failed` finding and the other checks still run. A database that
 * stops answering mid-run (a network that drops packets, a frozen host) ends
 * the run with exit 2 once `--timeout` plus 15 s has passed without an answer
 * — before, the CLI waited on the socket for as long as TCP kept it open.
 *
 * The tests run side by side (they share no rows or locks: the second's check
 * never gets past its first BEGIN, the third's never reaches a database), so
 * the others run while the second waits out its 16 s.
 */
describe('storekeep check is bounded in time', { timeout: 180_000, concurrency: true }, () => {
  let t: TestDatabase;

  before(async () => {
    t = await createTestDatabase();
  });
  after(async () => {
    await t.drop();
  });

  it('--timeout 2: the check held up by a lock is check_failed after its 2 s (statement timeout, not the 15 s lock wait); every other check runs clean', async () => {
    const holder = new pg.Client(t.url);
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE stock_snapshots IN ACCESS EXCLUSIVE MODE');
      const result = await runStorekeepCheck(t.url, ['--timeout', '2', '--json']);
      assert.equal(result.code, 1, `${result.stdout}${result.stderr}`);
      const report = JSON.parse(result.stdout) as { ok: boolean; findings: Array<{ check: string; subject: string }> };
      assert.deepEqual(
        report.findings.map((finding) => [finding.check, finding.subject]),
        [['stock_snapshot_matches_ledger', 'check_failed']],
      );
      // --timeout ended it, not the session's lock wait (15 s), which says "lock timeout".
      assert.match(result.stderr, /canceling statement due to statement timeout/, result.stderr);
      assert.doesNotMatch(result.stderr, /lock timeout/, result.stderr);
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end();
    }
    const clean = await runStorekeepCheck(t.url, ['--timeout', '2']);
    assert.equal(clean.code, 0, `${clean.stdout}${clean.stderr}`);
    assert.match(clean.stdout, /^ok: \d+ checks, no findings$/m);
  });

  it('a database that stops answering mid-run: exit 2 with one line saying so, after --timeout + 15 s, no findings printed', async () => {
    const outage = await Outage.inFrontOf(t.url);
    try {
      // The first check's BEGIN reaches the server; nothing it answers comes back.
      outage.loseAnswers((sent) => sent.includes('BEGIN READ ONLY'));
      const result = await runStorekeepCheck(outage.through(t.url), ['--timeout', '1'], 90_000);
      assert.equal(result.code, 2, `${result.stdout}${result.stderr}`);
      assert.equal(result.stdout, '');
      assert.match(result.stderr, /^storekeep: cannot reach the database: the database did not answer a statement within 16000 ms; its connection was closed$/m, result.stderr);
      assert.ok(result.ms >= 16_000, `exited after ${result.ms} ms, before the answer limit`);
    } finally {
      outage.thaw();
      await outage.down();
    }
  });

  it('a --timeout that is not whole seconds from 1 to 86400: exit 2 saying so, before touching the database', async () => {
    for (const value of ['0', '1.5', '86401']) {
      const result = await runStorekeepCheck('postgres://nobody@127.0.0.1:1/nowhere', ['--timeout', value]);
      assert.equal(result.code, 2, `${value}: ${result.stdout}${result.stderr}`);
      assert.equal(result.stderr, `storekeep check: --timeout takes whole seconds from 1 to 86400 (each check's time limit), not "${value}"\n`);
    }
    const missing = await runStorekeepCheck('postgres://nobody@127.0.0.1:1/nowhere', ['--timeout']);
    assert.equal(missing.code, 2);
    assert.equal(missing.stderr, 'storekeep check: --timeout needs a value\n');
  });
});
