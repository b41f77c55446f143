import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from '../../test/support/database.js';
import { Outage } from '../../test/support/outage.js';
import { sleep, waitFor } from '../../test/support/wait.js';
import { createPool } from './db.js';
import { DatabaseSilent, isConnectionFailure } from './pgErrors.js';

describe('createPool: a connection lost while checked out', () => {
  let t: TestDatabase;
  before(async () => {
    t = await createTestDatabase();
  });
  after(() => t.drop());

  it('does not crash the process (no unhandled error event); the pool goes on with a new connection', async () => {
    // Given a pool of the service and a connection checked out of it, between two statements (no query running)
    const errors: Error[] = [];
    const pool = createPool(t.appUrl, { max: 2, asAppRole: true, onError: (error) => errors.push(error) });
    try {
      const client = await pool.connect();
      const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      const crashes: unknown[] = [];
      const onUncaught = (error: unknown) => crashes.push(error);
      process.prependListener('uncaughtException', onUncaught);
      try {
        // When PostgreSQL ends that session (a restart, a failover, an operator's pg_terminate_backend)
        await t.admin.query('SELECT pg_terminate_backend($1)', [pid]);
        await new Promise((resolve) => setTimeout(resolve, 300));
      } finally {
        process.removeListener('uncaughtException', onUncaught);
      }
      // Then nothing was thrown at the process; the holder's next statement fails, and the pool drops the client
      assert.deepEqual(crashes, []);
      await assert.rejects(client.query('SELECT 1'));
      client.release();
      assert.equal((await pool.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one, 1);
      assert.equal(pool.totalCount, 1, 'the dead connection left the pool');
    } finally {
      await pool.end();
    }
  });
});

describe('createPool: a connection that goes silent (the network stops passing data, nothing is closed)', () => {
  let t: TestDatabase;
  let outage: Outage;
  /** The app's connection string, through the proxy. */
  let proxied: string;
  before(async () => {
    t = await createTestDatabase();
    outage = await Outage.inFrontOf(t.appUrl);
    proxied = outage.through(t.appUrl);
  });
  after(async () => {
    outage.thaw();
    await outage.down();
    await t.drop();
  });

  /** `promise`, or a failure naming `what` if it has not settled within `ms` (the test must not wait as long as TCP does). */
  const within = <T>(ms: number, what: string, promise: Promise<T>): Promise<T> =>
    Promise.race([promise, sleep(ms).then(() => assert.fail(`${what}: no answer within ${ms} ms`))]);

  it('why not node-postgres query_timeout: it rejects the statement but leaves the connection busy with it, and the pool hands that connection out again', async () => {
    const pool = new pg.Pool({ connectionString: proxied, max: 1, query_timeout: 500 });
    pool.on('error', () => undefined);
    try {
      const first = await pool.connect();
      first.release();
      outage.dropOpenConnections();
      const held = await pool.connect();
      await assert.rejects(held.query('SELECT 1'), /Query read timeout/);
      held.release(); // as kysely releases a connection: without an error
      const next = await pool.connect();
      assert.equal(next, held, 'the same connection is handed out again');
      assert.equal((next as unknown as { _queryable: boolean })._queryable, true);
      // and its holder's statement queues behind the silent one, although a new connection would answer
      await assert.rejects(next.query('SELECT 2'), /Query read timeout/);
      next.release(new Error('done'));
    } finally {
      outage.thaw();
      await pool.end();
    }
  });

  it('a statement not answered within answerTimeoutMs fails with DatabaseSilent (a connection failure), its connection is closed and dropped; the pool goes on with a new one', async () => {
    // Given a pool with a short answer timeout and two connections open in it
    const answerTimeoutMs = 400;
    const errors: Error[] = [];
    const pool = createPool(proxied, { max: 3, asAppRole: true, answerTimeoutMs, onError: (error) => errors.push(error) });
    try {
      const [a, b] = [await pool.connect(), await pool.connect()];
      await a.query('SELECT 1');
      await b.query('SELECT 1');
      a.release();
      b.release();
      assert.equal(outage.openConnections, 2);

      // When the network drops the open connections silently
      outage.dropOpenConnections();

      // Then a statement of a checked-out client (how kysely runs them) fails within the timeout, and those queued behind it on that client too
      const client = await pool.connect();
      const started = Date.now();
      const running = client.query('SELECT 1 AS one');
      const queued = client.query('SELECT 2 AS two', []);
      const failure = await within(answerTimeoutMs * 5, 'a statement on a silent connection', running.then(() => assert.fail('answered'), (error: unknown) => error));
      const waitedMs = Date.now() - started;
      assert.ok(failure instanceof DatabaseSilent, String(failure));
      assert.ok(isConnectionFailure(failure));
      assert.ok(waitedMs >= answerTimeoutMs - 20 && waitedMs < answerTimeoutMs * 3, `failed after ${waitedMs} ms`);
      await assert.rejects(queued, DatabaseSilent);
      // and its next statement (a ROLLBACK after the failure) fails at once, with the same error
      await assert.rejects(within(100, 'a statement after the timeout', client.query('ROLLBACK')), DatabaseSilent);
      client.release();
      // and its connection was closed (the proxy saw it go) and left the pool
      await waitFor('the silent connection closed', async () => outage.openConnections === 1, 2_000);
      assert.equal(pool.totalCount, 1);

      // And a statement through pool.query (a callback inside pg-pool) on the other silent connection: the same
      await assert.rejects(within(answerTimeoutMs * 5, 'pool.query on a silent connection', pool.query('SELECT 3')), DatabaseSilent);
      await waitFor('both silent connections closed', async () => outage.openConnections === 0, 2_000);
      assert.equal(pool.totalCount, 0);

      // And the pool serves again from new connections (new ones pass), with no error thrown at the process
      assert.equal((await within(2_000, 'a new connection', pool.query<{ one: number }>('SELECT 1 AS one'))).rows[0]!.one, 1);
      assert.deepEqual(errors, []);
    } finally {
      outage.thaw();
      // (bounded: a client a failed assertion left checked out would hold pool.end() for ever)
      await Promise.race([pool.end(), sleep(2_000)]);
    }
  });

  it('a statement answered within the timeout keeps its connection, however many run', async () => {
    const pool = createPool(proxied, { max: 1, asAppRole: true, answerTimeoutMs: 400 });
    try {
      const client = await pool.connect();
      const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      // a statement that takes most of the timeout, then the timers of answered statements fire into nothing
      await client.query('SELECT pg_sleep(0.3)');
      for (let i = 0; i < 20; i++) await client.query('SELECT $1::int AS i', [i]);
      client.release();
      await sleep(500);
      assert.equal((await pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid, pid);
      assert.equal(pool.totalCount, 1);
    } finally {
      await pool.end();
    }
  });
});
