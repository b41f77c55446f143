import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';

/**
 * Resolutions of one review item sent at once, by several people: one wins;
 * another note is 409 and recorded nothing; the same note is the same
 * resolution (200 replayed, nothing written).
 */
describe('concurrent resolutions of one review item', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
  });
  after(() => t.close());

  async function seedItem(): Promise<string> {
    const opId = randomUUID();
    const id = randomUUID();
    await t.admin.query(`INSERT INTO operations (tenant_id, id, type, actor, correlation_id) VALUES ($1, $2, 'test.seed', 'test', 'c')`, [tenantId, opId]);
    await t.admin.query(`INSERT INTO events (tenant_id, op_id, type, actor, correlation_id) VALUES ($1, $2, 'test.seed', 'test', 'c')`, [tenantId, opId]);
    await t.admin.query(`INSERT INTO review_items (tenant_id, id, kind, detail, op_id) VALUES ($1, $2, 'job_failed', '{}', $3)`, [tenantId, id, opId]);
    return id;
  }

  async function managers(n: number): Promise<ApiClient[]> {
    const clients: ApiClient[] = [];
    for (let i = 0; i < n; i++) {
      const issued = await owner.post('/v1/tokens', { name: `manager ${i}`, role: 'manager' });
      assert.equal(issued.status, 201, JSON.stringify(issued.body));
      clients.push(t.client(issued.body.token));
    }
    return clients;
  }

  const written = async (item: string) =>
    (
      await t.admin.query(
        `SELECT (SELECT count(*) FROM operations WHERE tenant_id = $1 AND type = 'review_item.resolve')::int AS operations,
                (SELECT count(*) FROM events e JOIN operations o ON o.tenant_id = e.tenant_id AND o.id = e.op_id WHERE e.tenant_id = $1 AND o.type = 'review_item.resolve' AND e.subject_id = $2)::int AS events`,
        [tenantId, item],
      )
    ).rows[0];

  it('different notes at once: one 200, the others 409, one resolution written', async () => {
    const item = await seedItem();
    const people = await managers(6);
    const before = await written(item);
    const answers = await Promise.all(people.map((person, i) => person.post(`/v1/review-items/${item}/resolve`, { note: `note ${i}` }, { idempotencyKey: randomUUID() })));
    const statuses = answers.map((answer) => answer.status).sort();
    assert.deepEqual(statuses, [200, 409, 409, 409, 409, 409], JSON.stringify(answers.map((a) => a.body)));
    for (const answer of answers.filter((a) => a.status === 409)) assert.equal(answer.body.code, 'invalid_transition');
    const winner = answers.find((answer) => answer.status === 200)!;
    const row = (await t.admin.query(`SELECT status, resolution_note, resolved_by_op FROM review_items WHERE tenant_id = $1 AND id = $2`, [tenantId, item])).rows[0];
    assert.equal(row.status, 'resolved');
    assert.equal(row.resolution_note, winner.body.resolution_note);
    const after = await written(item);
    assert.equal(after.operations - before.operations, 1);
  });

  it('the same note at once: every answer 200 with the one resolution, one written', async () => {
    const item = await seedItem();
    const people = await managers(6);
    const before = await written(item);
    const answers = await Promise.all(people.map((person) => person.post(`/v1/review-items/${item}/resolve`, { note: 'counted again' }, { idempotencyKey: randomUUID() })));
    assert.deepEqual(answers.map((answer) => answer.status), [200, 200, 200, 200, 200, 200], JSON.stringify(answers.map((a) => a.body)));
    const row = (await t.admin.query(`SELECT resolved_by_op FROM review_items WHERE tenant_id = $1 AND id = $2`, [tenantId, item])).rows[0];
    for (const answer of answers) assert.equal(answer.body.resolved_by_op, row.resolved_by_op);
    assert.equal(answers.filter((answer) => answer.headers.get('idempotent-replayed') === 'true').length, 5);
    const after = await written(item);
    assert.equal(after.operations - before.operations, 1);
  });
});
