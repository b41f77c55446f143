import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { withTriggersOff } from '../../test/support/database.js';

/**
 * A point of sale's last visit is the visit completed last. A visit's times
 * are its transaction's start (now()), and visits of one point of sale can
 * commit in another order than they started (one waits on a stock balance
 * another command holds), so the later commit must not overwrite a later time.
 */
const SHOP = { latitude: -1.286389, longitude: 36.817223 };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('points of sale: the last visit', () => {
  let t: TestApp;
  let tenantId: string;
  let owner: ApiClient;
  let n = 0;
  const key = () => ({ idempotencyKey: `last-visit-${process.pid}-${++n}` });

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
  });
  after(() => t.close());

  async function waitUntilBlocked(): Promise<void> {
    // Until some app-role backend of this database waits on a lock.
    for (let i = 0; i < 100; i++) {
      const { rows } = await t.admin.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`,
      );
      if (rows[0].n > 0) return;
      await sleep(20);
    }
    throw new Error('no request ever waited on a lock');
  }

  it('never goes back in time when two visits complete concurrently and the one that started first commits last', async () => {
    const store = (await owner.post('/v1/stores', { code: 'F1', name: 'Depot F1' })).body;
    const soap = (await owner.post('/v1/skus', { code: 'F1-SOAP', name: 'Soap', unit: 'piece', price: 120 })).body;
    assert.equal((await owner.post(`/v1/stores/${store.id}/stock/receipts`, { items: [{ sku_id: soap.id, quantity: 10 }] })).status, 201);
    const agent = (await owner.post('/v1/tokens', { name: 'agent-f1', role: 'field_agent', store_ids: [store.id] })).body;
    const pos = (await owner.post('/v1/points-of-sale', { name: 'Kiosk F1', store_id: store.id, ...SHOP }, key())).body;
    const schedule = async () =>
      (await owner.post('/v1/visits', { point_of_sale_id: pos.id, agent_token_id: agent.id, scheduled_for: new Date().toISOString() }, key())).body;
    const v1 = await schedule();
    const v2 = await schedule();

    // Something else (any command on the soap's balance: a sale, a transfer approval…) holds the balance row for a moment.
    const holder = await t.admin.connect();
    let first: Promise<{ status: number; body: any }>;
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT quantity FROM stock_balances WHERE store_id = $1 AND sku_id = $2 FOR UPDATE', [store.id, soap.id]);
      // Visit 1 starts first and waits for the balance; visit 2 (no goods) completes meanwhile.
      first = owner.post(`/v1/visits/${v1.id}/complete`, { ...SHOP, lines: [{ sku_id: soap.id, quantity: 1 }] }, key());
      await waitUntilBlocked();
      await sleep(50);
      const second = await owner.post(`/v1/visits/${v2.id}/complete`, { ...SHOP, lines: [] }, key());
      assert.equal(second.status, 200, JSON.stringify(second.body));
    } finally {
      await holder.query('COMMIT');
      holder.release();
    }
    const firstResponse = await first!;
    assert.equal(firstResponse.status, 200, JSON.stringify(firstResponse.body));

    const { rows: visits } = await t.admin.query(
      `SELECT id, completed_at FROM visits WHERE tenant_id = $1 AND point_of_sale_id = $2 ORDER BY completed_at DESC, id`,
      [tenantId, pos.id],
    );
    const { rows: [row] } = await t.admin.query(`SELECT last_visit_id, last_visit_at FROM points_of_sale WHERE id = $1`, [pos.id]);
    const latest = visits[0];
    assert.ok(
      row.last_visit_at.getTime() >= latest.completed_at.getTime() && row.last_visit_id === latest.id,
      `point of sale says last visit ${row.last_visit_id} at ${row.last_visit_at.toISOString()}, ` +
        `but visit ${latest.id} was completed later, at ${latest.completed_at.toISOString()} ` +
        `(visits: ${visits.map((v) => `${v.id === v1.id ? 'v1' : 'v2'}@${v.completed_at.toISOString()}`).join(', ')})`,
    );
  });

  /**
   * A visit completed offline reaches us days later: its device time
   * (client_created_at) says when it happened, and the point of sale's last
   * visit is the latest visit by that time — not the one that arrived last.
   */
  describe('by the time the visit happened (client_created_at)', () => {
    const DAY = 86_400_000;
    const iso = (ms: number) => new Date(ms).toISOString();

    async function givenPointOfSale(code: string, soapStock = 100) {
      const store = (await owner.post('/v1/stores', { code, name: `Depot ${code}` })).body;
      const soap = (await owner.post('/v1/skus', { code: `${code}-SOAP`, name: 'Soap', unit: 'piece', price: 120 })).body;
      assert.equal((await owner.post(`/v1/stores/${store.id}/stock/receipts`, { items: [{ sku_id: soap.id, quantity: soapStock }] })).status, 201);
      const agent = (await owner.post('/v1/tokens', { name: `agent-${code}`, role: 'field_agent', store_ids: [store.id] })).body;
      const pos = (await owner.post('/v1/points-of-sale', { name: `Kiosk ${code}`, store_id: store.id, ...SHOP }, key())).body;
      /** A visit scheduled `daysAgo` days ago (the round is planned ahead; its completion comes after). */
      const schedule = async (daysAgo = 7) => {
        const visit = await owner.post('/v1/visits', { point_of_sale_id: pos.id, agent_token_id: agent.id, scheduled_for: new Date().toISOString() }, key());
        assert.equal(visit.status, 201, JSON.stringify(visit.body));
        if (daysAgo > 0) {
          // created_at is immutable for the app (a trigger); the test moves it back as if scheduled then
          await withTriggersOff(t.admin, [[`UPDATE visits SET created_at = created_at - make_interval(days => $2) WHERE id = $1`, [visit.body.id, daysAgo]]]);
        }
        return visit.body as { id: string; created_at: string };
      };
      const lastVisit = async () => {
        const { rows: [row] } = await t.admin.query(`SELECT last_visit_id, last_visit_at FROM points_of_sale WHERE id = $1`, [pos.id]);
        return row as { last_visit_id: string | null; last_visit_at: Date | null };
      };
      return { store, soap, agent, pos, schedule, lastVisit };
    }

    const complete = (visitId: string, extra: Record<string, unknown> = {}, lines: unknown[] = []) =>
      owner.post(`/v1/visits/${visitId}/complete`, { ...SHOP, lines, ...extra }, key());

    it('a visit synced three days late does not replace the newer one; it keeps its device time', async () => {
      const f = await givenPointOfSale('T1');
      const older = await f.schedule();
      const newer = await f.schedule();
      const done = await complete(newer.id);
      assert.equal(done.status, 200, JSON.stringify(done.body));
      assert.equal(done.body.visit.client_created_at, null);

      // the agent's phone was offline; the visit it made three days ago arrives now
      const madeAt = iso(Date.now() - 3 * DAY);
      const late = await complete(older.id, { client_created_at: madeAt }, [{ sku_id: f.soap.id, quantity: 2 }]);
      assert.equal(late.status, 200, JSON.stringify(late.body));
      assert.equal(late.body.visit.status, 'completed');
      assert.equal(late.body.visit.client_created_at, madeAt);
      assert.ok(Date.now() - new Date(late.body.visit.completed_at).getTime() < 60_000, 'completed_at is when it arrived');

      const last = await f.lastVisit();
      assert.equal(last.last_visit_id, newer.id);
      assert.equal(last.last_visit_at!.toISOString(), done.body.visit.completed_at);
      const read = await owner.get(`/v1/points-of-sale/${f.pos.id}`);
      assert.deepEqual([read.body.last_visit_id, read.body.last_visit_at], [newer.id, done.body.visit.completed_at]);
      const visit = await owner.get(`/v1/visits/${older.id}`);
      assert.equal(visit.body.visit.client_created_at, madeAt);
      // the late visit's goods did leave (its consignment is recorded whatever its time)
      assert.equal(late.body.consignment.lines[0].quantity, 2);
    });

    it('a late visit that is the latest by its device time is the last visit, at that time; a visit without one is at its arrival', async () => {
      const f = await givenPointOfSale('T2');
      const [a, b, c] = [await f.schedule(), await f.schedule(), await f.schedule()];
      const threeDaysAgo = iso(Date.now() - 3 * DAY);
      const twoDaysAgo = iso(Date.now() - 2 * DAY + 123);
      assert.equal((await complete(b.id, { client_created_at: twoDaysAgo })).status, 200);
      // a visit made before it, arriving after it: the last visit stays b's
      assert.equal((await complete(a.id, { client_created_at: threeDaysAgo })).status, 200);
      assert.deepEqual(await f.lastVisit(), { last_visit_id: b.id, last_visit_at: new Date(twoDaysAgo) });
      // no device time: the visit is when it arrived (as before)
      const now = await complete(c.id);
      assert.equal(now.status, 200);
      assert.deepEqual(await f.lastVisit(), { last_visit_id: c.id, last_visit_at: new Date(now.body.visit.completed_at) });
    });

    it('any offset and microseconds are read as PostgreSQL reads them; a time before the visit was scheduled counts from when it was', async () => {
      const f = await givenPointOfSale('T3');
      const v = await f.schedule();
      const yesterday = new Date(Date.now() - DAY).toISOString().slice(0, 10);
      const done = await complete(v.id, { client_created_at: `${yesterday}T20:30:00.123456+02:00` });
      assert.equal(done.status, 200, JSON.stringify(done.body));
      assert.equal(done.body.visit.client_created_at, `${yesterday}T18:30:00.123Z`);
      const { rows: [stored] } = await t.admin.query(`SELECT to_char(client_created_at AT TIME ZONE 'UTC', 'HH24:MI:SS.US') AS t FROM visits WHERE id = $1`, [v.id]);
      assert.equal(stored.t, '18:30:00.123456');

      // a phone whose clock was reset to 1970: the visit cannot have happened before it was scheduled
      const reset = await f.schedule(0);
      const { rows: [created] } = await t.admin.query(`SELECT created_at FROM visits WHERE id = $1`, [reset.id]);
      const g = await givenPointOfSale('T3B');
      const only = await g.schedule(0);
      const { rows: [onlyCreated] } = await t.admin.query(`SELECT created_at FROM visits WHERE id = $1`, [only.id]);
      assert.equal((await complete(only.id, { client_created_at: '1970-01-01T00:00:00Z' })).status, 200);
      assert.deepEqual(await g.lastVisit(), { last_visit_id: only.id, last_visit_at: onlyCreated.created_at });
      // and it does not replace yesterday's visit
      assert.equal((await complete(reset.id, { client_created_at: '1970-01-01T00:00:00Z' })).status, 200);
      assert.ok(created.created_at.getTime() > new Date(`${yesterday}T18:30:00.123456Z`).getTime());
      assert.equal((await f.lastVisit()).last_visit_id, reset.id, 'scheduled after yesterday evening, so it counts from then: the latest');
    });

    it('a device clock ahead counts as the arrival: it does not stay the last visit over the visits after it', async () => {
      const f = await givenPointOfSale('T4');
      const [ahead, next] = [await f.schedule(), await f.schedule()];
      const done = await complete(ahead.id, { client_created_at: '2999-01-01T00:00:00Z' });
      assert.equal(done.status, 200, JSON.stringify(done.body));
      assert.equal(done.body.visit.client_created_at, '2999-01-01T00:00:00.000Z', 'kept as sent');
      assert.deepEqual(await f.lastVisit(), { last_visit_id: ahead.id, last_visit_at: new Date(done.body.visit.completed_at) });
      await sleep(5);
      const after = await complete(next.id);
      assert.equal(after.status, 200);
      assert.deepEqual(await f.lastVisit(), { last_visit_id: next.id, last_visit_at: new Date(after.body.visit.completed_at) });
    });

    it('a time PostgreSQL cannot read, or outside the years 0001-9999, is a 400 at its field and writes nothing', async () => {
      const f = await givenPointOfSale('T5');
      const v = await f.schedule();
      const count = async (table: string) => (await t.admin.query(`SELECT count(*)::int AS n FROM ${table} WHERE tenant_id = $1`, [tenantId])).rows[0].n;
      const before = { operations: await count('operations'), events: await count('events'), ledger: await count('stock_ledger'), keys: await count('idempotency_keys') };
      const readByPostgres = ['9999-12-31T23:00:00-05:00', '0001-01-01T00:00:00+01:00'];
      for (const bad of ['yesterday evening', '2026-01-15', '2026-02-30T10:00:00Z', '0000-06-01T10:00:00Z', '2026-01-15T10:00:00+16:00', ...readByPostgres, 1_700_000_000, null]) {
        const refused = await complete(v.id, { client_created_at: bad }, [{ sku_id: f.soap.id, quantity: 1 }]);
        assert.equal(refused.status, 400, `${bad}: ${JSON.stringify(refused.body)}`);
        assert.equal(refused.headers.get('content-type')?.startsWith('application/problem+json'), true);
        assert.equal(refused.body.code, 'validation_failed');
        assert.ok(refused.body.errors.some((e: { path: string }) => e.path === '/body/client_created_at'), `${bad}: ${JSON.stringify(refused.body.errors)}`);
        // the schema's date-time format lets these through: PostgreSQL's reading (readClientMoment) refuses them
        if (readByPostgres.includes(bad as string)) assert.match(refused.body.detail, /client_created_at (cannot be read as a moment|is outside the years)/, String(bad));
      }
      assert.deepEqual({ operations: await count('operations'), events: await count('events'), ledger: await count('stock_ledger'), keys: await count('idempotency_keys') }, before);
      assert.equal((await owner.get(`/v1/visits/${v.id}`)).body.visit.status, 'scheduled');
      // the OpenAPI document describes the field, in and out
      const spec = (await owner.get('/openapi.json')).body;
      const route = spec.paths['/v1/visits/{id}/complete'].post;
      assert.equal(route.requestBody.content['application/json'].schema.properties.client_created_at.format, 'date-time');
      const visitSchema = route.responses['200'].content['application/json'].schema.properties.visit;
      assert.deepEqual(visitSchema.properties.client_created_at.anyOf.map((branch: { format?: string; type?: string }) => branch.format ?? branch.type), ['date-time', 'null']);
      assert.deepEqual(await f.lastVisit(), { last_visit_id: null, last_visit_at: null });
    });

    it('the completion sent again with another device time is the same completion: replayed, its first time stands', async () => {
      const f = await givenPointOfSale('T6');
      const v = await f.schedule();
      const first = iso(Date.now() - DAY);
      const k = key();
      const done = await owner.post(`/v1/visits/${v.id}/complete`, { ...SHOP, lines: [], client_created_at: first }, k);
      assert.equal(done.status, 200);
      for (const options of [k, key()]) {
        const again = await owner.post(`/v1/visits/${v.id}/complete`, { ...SHOP, lines: [], client_created_at: iso(Date.now()) }, options);
        assert.deepEqual([again.status, again.headers.get('idempotent-replayed'), again.body.visit.client_created_at], [200, 'true', first]);
      }
      assert.deepEqual(await f.lastVisit(), { last_visit_id: v.id, last_visit_at: new Date(first) });
    });

    it('two visits racing: the one made later stays the last visit, whichever commits last', async () => {
      for (const laterWaits of [true, false]) {
        const f = await givenPointOfSale(laterWaits ? 'T7A' : 'T7B');
        const waiting = await f.schedule();
        const quick = await f.schedule();
        const [waitingTime, quickTime] = laterWaits ? [iso(Date.now() - DAY), iso(Date.now() - 2 * DAY)] : [iso(Date.now() - 2 * DAY), iso(Date.now() - DAY)];
        const holder = await t.admin.connect();
        let first: Promise<{ status: number; body: any }>;
        try {
          await holder.query('BEGIN');
          await holder.query('SELECT quantity FROM stock_balances WHERE store_id = $1 AND sku_id = $2 FOR UPDATE', [f.store.id, f.soap.id]);
          // the visit with goods waits on the soap's balance; the other completes meanwhile
          first = complete(waiting.id, { client_created_at: waitingTime }, [{ sku_id: f.soap.id, quantity: 1 }]);
          await waitUntilBlocked();
          const second = await complete(quick.id, { client_created_at: quickTime });
          assert.equal(second.status, 200, JSON.stringify(second.body));
        } finally {
          await holder.query('COMMIT');
          holder.release();
        }
        const firstResponse = await first!;
        assert.equal(firstResponse.status, 200, JSON.stringify(firstResponse.body));
        const expected = laterWaits ? { id: waiting.id, at: waitingTime } : { id: quick.id, at: quickTime };
        assert.deepEqual(await f.lastVisit(), { last_visit_id: expected.id, last_visit_at: new Date(expected.at) }, `later visit waits: ${laterWaits}`);
      }
    });

    it('many visits of one point of sale synced at once: the last visit is the one made last', async () => {
      const f = await givenPointOfSale('T8');
      const visits: Array<{ id: string }> = [];
      for (let i = 0; i < 10; i++) visits.push(await f.schedule());
      // device times an hour apart, sent all at once in shuffled order, some leaving goods (they queue on the balance)
      const times = visits.map((_, i) => iso(Date.now() - (i + 1) * 3_600_000));
      const order = visits.map((_, i) => i).sort(() => Math.random() - 0.5);
      const responses = await Promise.all(
        order.map((i) => complete(visits[i]!.id, { client_created_at: times[i] }, i % 2 === 0 ? [{ sku_id: f.soap.id, quantity: 1 }] : [])),
      );
      for (const response of responses) assert.equal(response.status, 200, JSON.stringify(response.body));
      assert.deepEqual(await f.lastVisit(), { last_visit_id: visits[0]!.id, last_visit_at: new Date(times[0]!) });
      const { rows } = await t.admin.query(`SELECT count(*)::int AS n FROM visits WHERE point_of_sale_id = $1 AND status = 'completed'`, [f.pos.id]);
      assert.equal(rows[0].n, 10);
    });
  });
});
