import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { aWeekendLater as aWeekendPasses } from '../../test/support/idempotency.js';

/**
 * A manager's device that lost the answer to a settlement decision sends the
 * same decision again after its Idempotency-Key expired: the decision is
 * answered as already done (200, Idempotent-Replayed: true, its own answer,
 * nothing written, the key kept) — not a 412 or 409 that reads as "not
 * recorded". Another decision (reject an approved count), or the same one
 * with another note, was not recorded and is still refused.
 */
describe('a settlement decision repeated after its key expired', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let store: { id: string };
  let today: string;
  let day = 0;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    today = (await t.admin.query(`SELECT to_char((now() AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD') AS d`)).rows[0].d;
    store = (await owner.post('/v1/stores', { code: 'D1', name: 'Drawer one' })).body;
  });
  after(() => t.close());

  const submit = async () => {
    day += 1;
    const businessDate = new Date(Date.parse(`${today}T00:00:00Z`) - day * 86_400_000).toISOString().slice(0, 10);
    const submitted = await owner.post('/v1/settlements', { store_id: store.id, business_date: businessDate, declared_cash: 5_000 });
    assert.equal(submitted.status, 201, JSON.stringify(submitted.body));
    return submitted.body as { id: string };
  };
  async function aWeekendLater(key: string): Promise<void> {
    await aWeekendPasses(t, tenantId, key);
  }
  const rows = async () =>
    (
      await t.admin.query(
        `SELECT (SELECT count(*) FROM operations WHERE tenant_id = $1)::int AS operations,
                (SELECT count(*) FROM events WHERE tenant_id = $1)::int AS events,
                (SELECT string_agg(id || ':' || status || version || ':' || coalesce(decided_op::text, '-') || ':' || coalesce(decision_note, '-'), ',' ORDER BY id) FROM settlements WHERE tenant_id = $1) AS settlements`,
        [tenantId],
      )
    ).rows[0];
  const keyRecord = async (key: string) =>
    (await t.admin.query(`SELECT op_id, response_status FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND expires_at > now()`, [tenantId, key])).rows[0];
  const decidedOp = async (id: string) => (await t.admin.query(`SELECT decided_op FROM settlements WHERE id = $1`, [id])).rows[0].decided_op as string;

  for (const decision of ['approve', 'reject'] as const) {
    it(`a ${decision} repeated with the same If-Match and note is answered as done, the key kept`, async () => {
      const settlement = await submit();
      const key = randomUUID();
      const body = { note: 'counted twice' };
      const first = await owner.post(`/v1/settlements/${settlement.id}/${decision}`, body, { idempotencyKey: key, headers: { 'if-match': '"1"' } });
      assert.equal(first.status, 200, JSON.stringify(first.body));
      await aWeekendLater(key);
      assert.equal(await keyRecord(key), undefined);
      const snapshot = await rows();

      const again = await owner.post(`/v1/settlements/${settlement.id}/${decision}`, body, { idempotencyKey: key, headers: { 'if-match': '"1"' } });
      assert.equal(again.status, 200, JSON.stringify(again.body));
      assert.equal(again.headers.get('idempotent-replayed'), 'true');
      assert.equal(again.headers.get('etag'), '"2"');
      assert.deepEqual(again.body, first.body);
      assert.deepEqual(await rows(), snapshot, 'nothing written');
      assert.deepEqual(await keyRecord(key), { op_id: await decidedOp(settlement.id), response_status: 200 });
    });
  }

  it('another decision, or the same with another note, is refused and writes nothing', async () => {
    const settlement = await submit();
    assert.equal((await owner.post(`/v1/settlements/${settlement.id}/approve`, {}, { headers: { 'if-match': '"1"' } })).status, 200);
    const snapshot = await rows();
    const rejectCurrent = await owner.post(`/v1/settlements/${settlement.id}/reject`, {}, { headers: { 'if-match': '"2"' } });
    assert.deepEqual([rejectCurrent.status, rejectCurrent.body.code, rejectCurrent.body.current_status], [409, 'invalid_transition', 'approved']);
    // On the version the approval was made on, as before: that version is gone (412).
    const rejectStale = await owner.post(`/v1/settlements/${settlement.id}/reject`, {}, { headers: { 'if-match': '"1"' } });
    assert.deepEqual([rejectStale.status, rejectStale.body.code], [412, 'version_conflict']);
    const otherNote = await owner.post(`/v1/settlements/${settlement.id}/approve`, { note: 'not what was recorded' }, { headers: { 'if-match': '"1"' } });
    assert.deepEqual([otherNote.status, otherNote.body.code, otherNote.body.current_status], [409, 'invalid_transition', 'approved']);
    // An approval sent after seeing it approved (If-Match of the approved version) is no repeat: 409 as before.
    const seen = await owner.post(`/v1/settlements/${settlement.id}/approve`, {}, { headers: { 'if-match': '"2"' } });
    assert.deepEqual([seen.status, seen.body.code], [409, 'invalid_transition']);
    assert.deepEqual(await rows(), snapshot);
  });
});
