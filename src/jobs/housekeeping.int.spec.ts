import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../core/logger.js';
import { loadConfig } from '../config.js';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { sleep } from '../../test/support/wait.js';
import { purgeIdempotencyKeys } from './housekeeping.js';
import type { JobContext } from './task.js';

describe('idempotency.purge', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
  });
  after(() => t.close());

  /** Runs the job's handler as the worker does (owner pool). */
  const purge = () =>
    purgeIdempotencyKeys.handle({}, { ownerPool: t.admin, logger: createLogger('silent'), config: loadConfig({ LOG_LEVEL: 'silent' }) } as unknown as JobContext);

  const record = async (key: string) =>
    (await t.admin.query<{ op_id: string; live: boolean }>('SELECT op_id, expires_at > now() AS live FROM idempotency_keys WHERE tenant_id = $1 AND key = $2', [tenantId, key])).rows[0];

  it('a purge racing the command that reuses an expired key leaves the new record (kept its 24 hours): a retry replays instead of running again', async () => {
    // Given a key whose record expired
    const key = 'reused-after-expiry';
    assert.equal((await owner.post('/v1/stores', { code: 'S-OLD', name: 'Old' }, { idempotencyKey: key })).status, 201);
    await t.admin.query(`UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE tenant_id = $1 AND key = $2`, [tenantId, key]);
    // and a command that, having replaced it, is slow to commit (test-only trigger)
    await t.admin.query(`
      CREATE FUNCTION test_slow_key_commit() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_sleep(1.5); RETURN NEW; END $$;
      CREATE TRIGGER test_slow_key_commit AFTER UPDATE ON idempotency_keys
        FOR EACH ROW WHEN (NEW.key = 'reused-after-expiry') EXECUTE FUNCTION test_slow_key_commit();`);
    try {
      // When the hourly purge runs while that command commits
      const fresh = owner.post('/v1/stores', { code: 'S-NEW', name: 'New' }, { idempotencyKey: key });
      await sleep(500);
      const purgeStarted = Date.now();
      await purge();
      assert.ok(Date.now() - purgeStarted > 500, 'the purge waited for the command (the race this test is about happened)');
      const created = await fresh;
      assert.equal(created.status, 201);

      // Then the new record is there, live, naming the new operation
      const kept = await record(key);
      assert.ok(kept, 'the record written by the command that reused the key was purged the moment it committed');
      assert.equal(kept.live, true);
      // and a retry of that request replays it: no second store
      const retried = await owner.post('/v1/stores', { code: 'S-NEW', name: 'New' }, { idempotencyKey: key });
      assert.equal(retried.status, 201);
      assert.equal(retried.headers.get('idempotent-replayed'), 'true');
      const stores = await t.admin.query(`SELECT count(*)::int AS n FROM stores WHERE tenant_id = $1 AND code = 'S-NEW'`, [tenantId]);
      assert.equal(stores.rows[0].n, 1);
    } finally {
      await t.admin.query('DROP TRIGGER test_slow_key_commit ON idempotency_keys; DROP FUNCTION test_slow_key_commit()');
    }
  });

  it('removes expired records and only those', async () => {
    const keys = ['purge-expired-1', 'purge-expired-2', 'purge-live'];
    for (const [index, key] of keys.entries()) assert.equal((await owner.post('/v1/stores', { code: `S-P${index}`, name: 'P' }, { idempotencyKey: key })).status, 201);
    await t.admin.query(`UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE tenant_id = $1 AND key = ANY($2)`, [tenantId, keys.slice(0, 2)]);
    await purge();
    assert.equal(await record('purge-expired-1'), undefined);
    assert.equal(await record('purge-expired-2'), undefined);
    assert.equal((await record('purge-live'))?.live, true);
  });
});
