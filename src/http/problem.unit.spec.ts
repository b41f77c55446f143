import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import Fastify from 'fastify';
import { AppError } from '../core/errors.js';
import { DatabaseSilent } from '../core/pgErrors.js';
import { sendProblem, toAppError } from './problem.js';

const pgError = (code: string, message = 'x', constraint?: string) => Object.assign(new Error(message), { code, ...(constraint ? { constraint } : {}) });

describe('toAppError and database errors', () => {
  it('values a request carried that PostgreSQL refuses are 400 validation_failed (not unexpected)', () => {
    for (const code of ['22P02', '22007', '22008', '22009', '22003', '22021', '22P05', '22001']) {
      const { appError, unexpected } = toAppError(pgError(code));
      assert.deepEqual([appError.code, unexpected], ['validation_failed', false], code);
    }
  });

  it('other data exceptions are bugs: 500 internal_error, unexpected (reported)', () => {
    for (const code of ['22012', '22023', '22004']) {
      const { appError, unexpected } = toAppError(pgError(code));
      assert.deepEqual([appError.code, unexpected], ['internal_error', true], code);
    }
  });

  it('the amount-limit constraints are 422 limit_exceeded; any other CHECK violation stays a 500', () => {
    assert.equal(toAppError(pgError('23514', 'x', 'stock_balances_quantity_limit')).appError.code, 'limit_exceeded');
    assert.equal(toAppError(pgError('23514', 'x', 'accounts_totals_limit')).appError.code, 'limit_exceeded');
    assert.deepEqual([toAppError(pgError('23514', 'x', 'journal_entry_balanced')).appError.code, toAppError(pgError('23514', 'x', 'journal_entry_balanced')).unexpected], ['internal_error', true]);
  });

  it('a database out of disk space or memory is 503 service_unavailable with Retry-After — nothing was written, a retry with the same key may succeed once it is freed — and still logged and reported as unexpected (it was a 500 internal_error)', () => {
    for (const [code, message] of [
      ['53100', 'could not extend file "base/16384/16735": No space left on device'],
      ['53200', 'out of memory'],
    ]) {
      const { appError, unexpected } = toAppError(pgError(code!, message));
      assert.deepEqual([appError.code, appError.retryAfterSeconds !== undefined, unexpected], ['service_unavailable', true, true], code);
      assert.doesNotMatch(appError.message, /base\/16384/, 'no file of the database in the answer');
    }
  });

  it('a database that cannot be reached, a connection lost, or a statement whose answer never came is 503 service_unavailable with Retry-After (not unexpected)', () => {
    const lost = [
      Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }),
      Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }),
      new Error('Connection terminated unexpectedly'),
      new Error('timeout exceeded when trying to connect'),
      new Error('Client has encountered a connection error and is not queryable'),
      pgError('57P01', 'terminating connection due to administrator command'),
      pgError('57P03', 'the database system is starting up'),
      pgError('53300', 'sorry, too many clients already'),
      pgError('08006', 'connection failure'),
      new Error('wrapped', { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) }),
      new DatabaseSilent(45_000),
      new Error('wrapped', { cause: new DatabaseSilent(45_000) }),
    ];
    for (const error of lost) {
      const { appError, unexpected } = toAppError(error);
      assert.deepEqual([appError.code, unexpected], ['service_unavailable', false], error.message);
      assert.ok((appError.retryAfterSeconds ?? 0) > 0, error.message);
    }
  });

  it('a deadlock or serialization failure left after the retries is 503 service_unavailable with Retry-After (not unexpected): nothing was written, the request can be sent again', () => {
    for (const code of ['40P01', '40001']) {
      const { appError, unexpected } = toAppError(pgError(code, 'deadlock detected'));
      assert.deepEqual([appError.code, appError.status, appError.retryAfterSeconds, unexpected], ['service_unavailable', 503, 1, false], code);
    }
  });

  it('a lock wait past lock_timeout or a statement past statement_timeout is 503 service_unavailable with Retry-After: rolled back, nothing written (the app logs and reports it: src/http/lockTimeout.int.spec.ts)', () => {
    for (const [code, message] of [
      ['55P03', 'canceling statement due to lock timeout'],
      ['57014', 'canceling statement due to statement timeout'],
    ] as const) {
      const { appError, unexpected } = toAppError(pgError(code, message));
      assert.deepEqual([appError.code, appError.status, unexpected], ['service_unavailable', 503, false], code);
      assert.ok((appError.retryAfterSeconds ?? 0) > 0, code);
      assert.match(appError.message, /nothing was written/, code);
    }
  });
});

describe('sendProblem', () => {
  it('sends Retry-After when the error says when to try again (load shed), and not otherwise', async () => {
    const app = Fastify();
    app.get('/shed', (request, reply) => sendProblem(request, reply, new AppError('service_unavailable', 'busy', { retryAfterSeconds: 1 })));
    app.get('/plain', (request, reply) => sendProblem(request, reply, new AppError('service_unavailable', 'busy')));
    try {
      const shed = await app.inject({ method: 'GET', url: '/shed' });
      assert.equal(shed.statusCode, 503);
      assert.equal(shed.headers['retry-after'], '1');
      assert.equal(shed.headers['content-type'], 'application/problem+json; charset=utf-8');
      assert.equal(JSON.parse(shed.body).code, 'service_unavailable');
      const plain = await app.inject({ method: 'GET', url: '/plain' });
      assert.equal(plain.headers['retry-after'], undefined);
    } finally {
      await app.close();
    }
  });
});
