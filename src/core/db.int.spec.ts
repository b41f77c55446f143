import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../../test/support/database.js';
import { createPool } from './db.js';

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
