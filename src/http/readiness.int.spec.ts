import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type pg from 'pg';
import { startTestApp, type TestApp } from '../../test/support/app.js';

describe('/readyz with every pooled connection busy', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp({ readinessTimeoutMs: 1_000 });
  });
  after(async () => {
    await t.close();
  });

  it('answers ready from a connection of its own: a full pool is load, not a database that cannot be reached', async () => {
    assert.equal((await t.client('none').get('/readyz')).status, 200);

    // Given every connection of the API's pool checked out (a burst of commands holding them)
    const held: pg.PoolClient[] = await Promise.all(Array.from({ length: t.appPool.options.max }, () => t.appPool.connect()));
    try {
      assert.equal(t.appPool.idleCount, 0);
      const queued = t.appPool.query('SELECT 1'); // and a command waiting behind them
      assert.equal(t.appPool.waitingCount, 1);

      // Then the probe still asks the database, and the database answers
      const ready = await t.client('none').get('/readyz');
      assert.equal(ready.status, 200, JSON.stringify(ready.body));
      assert.deepEqual(ready.body, { status: 'ready', database: 'ok', migrations: 'applied' });

      for (const client of held.splice(0)) client.release();
      await queued;
    } finally {
      for (const client of held) client.release();
    }
  });
});
