import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { runCommand, type CommandInput } from './command.js';
import { createDb, createPool } from './db.js';
import { isConnectionFailure } from './pgErrors.js';
import { newId } from './ids.js';

describe('the command transaction', () => {
  let t: TestApp;
  let tenantId: string;
  let input: () => CommandInput;

  before(async () => {
    t = await startTestApp();
    ({ tenantId } = await t.newTenant());
    const tokenId = (await t.admin.query('SELECT id FROM api_tokens WHERE tenant_id = $1', [tenantId])).rows[0].id;
    input = () => ({
      tenantId,
      principal: { kind: 'token', tokenId, tenantId, name: 'test', role: 'owner', storeIds: null },
      correlationId: `corr-${newId()}`,
      idempotencyKey: `key-${newId()}`,
      fingerprint: newId(),
      payload: { test: true },
    });
  });
  after(() => t.close());

  const counts = async () => {
    const row = (
      await t.admin.query(
        `SELECT (SELECT count(*) FROM operations WHERE tenant_id = $1)::int AS operations,
                (SELECT count(*) FROM events WHERE tenant_id = $1)::int AS events,
                (SELECT count(*) FROM stores WHERE tenant_id = $1)::int AS stores,
                (SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1)::int AS keys`,
        [tenantId],
      )
    ).rows[0];
    return row as { operations: number; events: number; stores: number; keys: number };
  };

  it('a command that throws half-way leaves no row behind', async () => {
    const before = await counts();
    await assert.rejects(
      runCommand(t.db, input(), { type: 'store.create' }, async (cmd) => {
        await sql`INSERT INTO stores (tenant_id, id, code, name, op_id) VALUES (${cmd.tenantId}, ${newId()}, 'HALF', 'Half', ${cmd.opId})`.execute(cmd.tx);
        cmd.audit({ subjectType: 'store', subjectId: 'x', after: {} });
        throw new Error('crash after the business row');
      }),
      /crash after the business row/,
    );
    assert.deepEqual(await counts(), before);
  });

  it('a command that fails at the very end (after events are written) leaves nothing either', async () => {
    const before = await counts();
    await assert.rejects(
      runCommand(t.db, input(), { type: 'store.create' }, async (cmd) => {
        await sql`INSERT INTO stores (tenant_id, id, code, name, op_id) VALUES (${cmd.tenantId}, ${newId()}, 'LATE', 'Late', ${cmd.opId})`.execute(cmd.tx);
        // Violates the unique code at commit time of the second insert: a database error, not ours.
        await sql`INSERT INTO stores (tenant_id, id, code, name, op_id) VALUES (${cmd.tenantId}, ${newId()}, 'LATE', 'Late', ${cmd.opId})`.execute(cmd.tx);
        return { status: 201, body: {} };
      }),
    );
    assert.deepEqual(await counts(), before);
  });

  it('writes the operation, its audit event and the idempotency record with the effect', async () => {
    const before = await counts();
    const commandInput = input();
    const outcome = await runCommand(t.db, commandInput, { type: 'store.create' }, async (cmd) => {
      const id = newId();
      await sql`INSERT INTO stores (tenant_id, id, code, name, op_id) VALUES (${cmd.tenantId}, ${id}, 'FULL', 'Full', ${cmd.opId})`.execute(cmd.tx);
      cmd.touch('stores', id);
      return { status: 201, body: { id } };
    });
    const afterCounts = await counts();
    assert.deepEqual(afterCounts, { operations: before.operations + 1, events: before.events + 1, stores: before.stores + 1, keys: before.keys + 1 });
    const event = (await t.admin.query('SELECT * FROM events WHERE op_id = $1', [outcome.opId])).rows[0];
    assert.equal(event.correlation_id, commandInput.correlationId);
    assert.equal(event.actor, 'owner:test');
    assert.deepEqual(event.effects, [{ table: 'stores', id: (outcome.body as { id: string }).id, action: 'created' }]);
    assert.deepEqual(event.payload, { test: true });
  });

  it('runs the whole command again after a serialization failure, and it takes effect once', async () => {
    let attempts = 0;
    const before = await counts();
    const outcome = await runCommand(t.db, input(), { type: 'store.create' }, async (cmd) => {
      attempts += 1;
      await sql`INSERT INTO stores (tenant_id, id, code, name, op_id) VALUES (${cmd.tenantId}, ${newId()}, 'RETRY', 'Retry', ${cmd.opId})`.execute(cmd.tx);
      if (attempts === 1) await sql`DO $$ BEGIN RAISE EXCEPTION 'simulated' USING ERRCODE = 'serialization_failure'; END $$`.execute(cmd.tx);
      return { status: 201, body: { attempts } };
    });
    assert.equal(attempts, 2);
    assert.deepEqual(outcome.body, { attempts: 2 });
    const afterCounts = await counts();
    assert.equal(afterCounts.stores, before.stores + 1);
    assert.equal(afterCounts.operations, before.operations + 1);
  });

  it('a real deadlock between two commands is resolved by retrying the loser', async () => {
    // Given two stores both commands will lock, in opposite order
    const a = newId();
    const b = newId();
    await t.admin.query(
      `INSERT INTO operations (tenant_id, id, type, actor, correlation_id) VALUES ($1, $2, 'seed', 'test', 'seed')`,
      [tenantId, a],
    );
    await t.admin.query(`INSERT INTO stores (tenant_id, id, code, name, op_id) VALUES ($1, $2, 'DL-A', 'A', $2), ($1, $3, 'DL-B', 'B', $2)`, [tenantId, a, b]);
    let attempts = 0;
    // Each first attempt takes its second lock only once both hold their first
    // (a barrier, not a sleep: on a loaded machine one command could otherwise
    // take both locks before the other began, and there was no deadlock at all).
    let holdingFirst = 0;
    let bothHoldOne!: () => void;
    const barrier = new Promise<void>((resolve) => (bothHoldOne = resolve));
    const lockBoth = (first: string, second: string, commandInput: CommandInput) =>
      runCommand(t.db, commandInput, { type: 'store.touch' }, async (cmd) => {
        attempts += 1;
        await sql`SELECT 1 FROM stores WHERE tenant_id = ${cmd.tenantId} AND id = ${first} FOR UPDATE`.execute(cmd.tx);
        if (++holdingFirst === 2) bothHoldOne();
        await barrier;
        await sql`SELECT 1 FROM stores WHERE tenant_id = ${cmd.tenantId} AND id = ${second} FOR UPDATE`.execute(cmd.tx);
        return { status: 200, body: { ok: true } };
      });
    const before = await counts();
    const inputs = [input(), input()];
    const results = await Promise.all([lockBoth(a, b, inputs[0]!), lockBoth(b, a, inputs[1]!)]);
    assert.deepEqual(results.map((r) => r.status), [200, 200]);
    assert.ok(attempts >= 3, `one command was retried after the deadlock (attempts: ${attempts})`);
    // The loser's first try left nothing: one operation, one audit event and one key record per command, each under its own request.
    assert.deepEqual(await counts(), { ...before, operations: before.operations + 2, events: before.events + 2, keys: before.keys + 2 });
    for (const [index, commandInput] of inputs.entries()) {
      const rows = (
        await t.admin.query(
          `SELECT o.id::text AS op, o.correlation_id AS op_corr, e.correlation_id AS event_corr, e.actor, k.op_id::text AS key_op
           FROM operations o JOIN events e ON e.tenant_id = o.tenant_id AND e.op_id = o.id
           JOIN idempotency_keys k ON k.tenant_id = o.tenant_id AND k.key = o.idempotency_key
           WHERE o.tenant_id = $1 AND o.idempotency_key = $2`,
          [tenantId, commandInput.idempotencyKey],
        )
      ).rows;
      assert.deepEqual(rows, [{ op: results[index]!.opId, op_corr: commandInput.correlationId, event_corr: commandInput.correlationId, actor: 'owner:test', key_op: results[index]!.opId }]);
    }
  });

  it('a COMMIT whose answer is lost (the connection cut after PostgreSQL committed) fails; sent again with its key, it replays and is not run again', async () => {
    // A pool whose next COMMIT reaches PostgreSQL, which commits, and whose connection is cut before the answer is read.
    const pool = createPool(t.appUrl, { max: 2, asAppRole: true });
    let cutNextCommit = false;
    pool.on('connect', (client) => {
      const query = client.query.bind(client) as (...args: unknown[]) => unknown;
      (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
        if (cutNextCommit && typeof args[0] === 'string' && args[0].trim().toLowerCase() === 'commit') {
          cutNextCommit = false;
          const stream = (client as unknown as { connection: { stream: { pause(): void; destroy(): void } } }).connection.stream;
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
      const commandInput = input();
      let runs = 0;
      const createStore = async (cmd: import('./command.js').Command) => {
        runs += 1;
        const id = newId();
        await sql`INSERT INTO stores (tenant_id, id, code, name, op_id) VALUES (${cmd.tenantId}, ${id}, ${`AMB-${runs}`}, 'Ambiguous', ${cmd.opId})`.execute(cmd.tx);
        cmd.touch('stores', id);
        return { status: 201, body: { id } };
      };
      const before = await counts();
      cutNextCommit = true;
      // The caller cannot know whether it happened: an error it answers as 503 (a connection failure), never retried blindly.
      const lost = await runCommand(db, commandInput, { type: 'store.create' }, createStore).then(
        () => undefined,
        (error: unknown) => error,
      );
      assert.ok(lost !== undefined && isConnectionFailure(lost), `a connection failure: ${String(lost)}`);
      assert.equal(runs, 1);
      assert.deepEqual(await counts(), { operations: before.operations + 1, events: before.events + 1, stores: before.stores + 1, keys: before.keys + 1 }, 'it did commit');
      // Sent again with its key: the stored answer, replayed; the store is not created twice.
      const again = await runCommand(t.db, commandInput, { type: 'store.create' }, createStore);
      assert.deepEqual([again.status, again.replayed, runs], [201, true, 1]);
      assert.deepEqual(await counts(), { operations: before.operations + 1, events: before.events + 1, stores: before.stores + 1, keys: before.keys + 1 });
    } finally {
      await db.destroy();
    }
  });
});
