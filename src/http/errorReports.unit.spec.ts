import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { apiRegistry } from '../core/metrics.js';
import { RowHeldElsewhere } from '../sales/saleRows.js';
import { capturingLogger } from '../../test/support/logs.js';
import { logAnsweredError, TIMEOUT_REPORT_WINDOW_MS, timeoutReportClock } from './problem.js';

const pgError = (code: string, message: string, where?: string) => Object.assign(new Error(message), { code, ...(where ? { where } : {}) });
const lockTimeout = (relation = 'stock_balances') => pgError('55P03', 'canceling statement due to lock timeout', `while locking tuple (0,3) in relation "${relation}"`);
const statementTimeout = () => pgError('57014', 'canceling statement due to statement timeout');

/** The value of storekeep_database_wait_refusals_total{kind}. */
async function refusals(kind: string): Promise<number> {
  const metric = await apiRegistry.getSingleMetric('storekeep_database_wait_refusals_total')?.get();
  return metric?.values.find((value) => value.labels.kind === kind)?.value ?? 0;
}

/** Runs `body` with the report windows' clock at `at` (ms), moved by `advance`. */
async function withClock<T>(body: (advance: (ms: number) => void) => Promise<T> | T): Promise<T> {
  const saved = timeoutReportClock.now;
  let at = 1_000_000;
  timeoutReportClock.now = () => at;
  try {
    return await body((ms) => (at += ms));
  } finally {
    timeoutReportClock.now = saved;
  }
}

describe('logAnsweredError and database waits', () => {
  it('a sale refused because a row it needs is held elsewhere (RowHeldElsewhere, answered at once) is not reported: counted and logged briefly, without a stack', async () => {
    const { logger, lines } = capturingLogger('info');
    const reported: unknown[] = [];
    const before = await refusals('row_held');
    for (let i = 0; i < 3; i++) {
      logAnsweredError(logger, new RowHeldElsewhere('the stock balance of SKU x of store y held by another transaction: the sale was not written'), false, (error) => reported.push(error), { idempotency_key: `k${i}` });
    }
    assert.equal(reported.length, 0, 'never reported');
    assert.equal(await refusals('row_held'), before + 3, 'counted, each');
    const logged = lines.filter((line) => line.msg === 'a row the request needs is held by another transaction: refused at once');
    assert.equal(logged.length, 3, JSON.stringify(lines));
    for (const line of logged) {
      assert.equal(line.level, 30, 'at info: an expected refusal');
      assert.equal(line.err, undefined, 'no stack');
      assert.match(JSON.stringify(line.error), /held by another transaction/);
      assert.doesNotMatch(JSON.stringify(line), /stack|    at /);
    }
    assert.deepEqual(logged.map((line) => line.idempotency_key), ['k0', 'k1', 'k2']);
  });

  it('a lock wait or statement that timed out is reported once per kind and relation per window, each counted and logged; the next report says how many went unreported', async () => {
    await withClock(async (advance) => {
      const { logger, lines } = capturingLogger('info');
      const reported: unknown[] = [];
      const report = (error: unknown) => reported.push(error);
      const locksBefore = await refusals('lock_timeout');
      const statementsBefore = await refusals('statement_timeout');

      const first = lockTimeout();
      logAnsweredError(logger, first, false, report);
      for (let i = 0; i < 4; i++) logAnsweredError(logger, lockTimeout(), false, report);
      // another relation, and a statement timeout: kinds of their own
      const other = lockTimeout('accounts');
      logAnsweredError(logger, other, false, report);
      const statement = statementTimeout();
      logAnsweredError(logger, statement, false, report);
      logAnsweredError(logger, statementTimeout(), false, report);
      assert.deepEqual(reported, [first, other, statement], 'one report per kind in the window');
      assert.equal(await refusals('lock_timeout'), locksBefore + 6);
      assert.equal(await refusals('statement_timeout'), statementsBefore + 2);

      const waits = lines.filter((line) => line.msg === 'the database gave up waiting for this request');
      assert.equal(waits.length, 8, 'each one logged at warn');
      assert.ok(waits.every((line) => line.level === 40));
      assert.deepEqual(
        waits.map((line) => [line.kind, line.relation, line.reported]),
        [
          ['lock_timeout', 'stock_balances', true],
          ['lock_timeout', 'stock_balances', false],
          ['lock_timeout', 'stock_balances', false],
          ['lock_timeout', 'stock_balances', false],
          ['lock_timeout', 'stock_balances', false],
          ['lock_timeout', 'accounts', true],
          ['statement_timeout', undefined, true],
          ['statement_timeout', undefined, false],
        ],
      );
      assert.ok(waits.filter((line) => line.reported === false).every((line) => line.err === undefined), 'the unreported ones without a stack');

      // Within the window still nothing more; once it has passed, reported again, saying how many were not.
      advance(TIMEOUT_REPORT_WINDOW_MS - 1);
      logAnsweredError(logger, lockTimeout(), false, report);
      assert.equal(reported.length, 3);
      advance(1);
      const later = lockTimeout();
      logAnsweredError(logger, later, false, report);
      assert.deepEqual(reported, [first, other, statement, later]);
      const last = lines.filter((line) => line.msg === 'the database gave up waiting for this request').at(-1)!;
      assert.deepEqual([last.reported, last.unreported_before], [true, 5], 'the 4 and the 1 of the window before');
    });
  });

  it('the windows are per reporting function (each process, each app its own)', async () => {
    await withClock(() => {
      const { logger } = capturingLogger('info');
      const a: unknown[] = [];
      const b: unknown[] = [];
      logAnsweredError(logger, lockTimeout(), false, (error) => a.push(error));
      logAnsweredError(logger, lockTimeout(), false, (error) => b.push(error));
      assert.deepEqual([a.length, b.length], [1, 1]);
    });
  });

  it('unexpected errors and values the database refused are still reported every time', () => {
    const { logger } = capturingLogger('info');
    const reported: unknown[] = [];
    for (let i = 0; i < 3; i++) logAnsweredError(logger, new Error('bug'), true, (error) => reported.push(error));
    for (let i = 0; i < 2; i++) logAnsweredError(logger, pgError('22P02', 'invalid input syntax for type uuid'), false, (error) => reported.push(error));
    assert.equal(reported.length, 5);
  });
});
