import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient, ApiResponse } from '../../test/support/client.js';
import { assertFieldBooksConsistent, fieldRowCounts, givenFieldDepot } from './testkit.js';

const SHOP = { latitude: -33.868820, longitude: 151.209296 };

/**
 * A second adversarial pass over field sales: offline completions of two
 * visits racing for one consignment and the last units, money of a
 * settlement against a counted day, a completion replayed after its key
 * expired, coordinates at the poles, the antimeridian and as strings.
 * Every scenario ends with the rows checked (stock = ledger, balanced
 * entries, the integrity checks clean).
 */
describe('field sales: a second adversarial pass', () => {
  let t: TestApp;
  let tenantId: string;
  let owner: ApiClient;
  let manager: ApiClient;
  let agent: ApiClient;
  let otherAgent: ApiClient;
  let agentId: string;
  let otherAgentId: string;
  let storeId: string;
  let soap: string;
  let tea: string;

  before(async () => {
    t = await startTestApp();
    const depot = await givenFieldDepot(t, { stock: 100_000 });
    ({ owner, tenantId, storeId, manager } = depot);
    ({ soap, tea } = depot.goods!);
    ({ client: agent, id: agentId } = depot.agent);
    ({ client: otherAgent, id: otherAgentId } = depot.otherAgent);
  });
  after(() => t.close());

  const k = () => ({ idempotencyKey: randomUUID() });
  const newPointOfSale = async (where: { latitude: number; longitude: number } = SHOP) => {
    const created = await manager.post('/v1/points-of-sale', { name: `Kiosk ${randomUUID().slice(0, 6)}`, store_id: storeId, ...where }, k());
    assert.equal(created.status, 201, JSON.stringify(created.body));
    return created.body as { id: string; party_id: string; latitude: number; longitude: number };
  };
  const schedule = async (pointOfSale: string, agentTokenId = agentId) => {
    const response = await manager.post('/v1/visits', { point_of_sale_id: pointOfSale, agent_token_id: agentTokenId, scheduled_for: new Date().toISOString() }, k());
    assert.equal(response.status, 201, JSON.stringify(response.body));
    return response.body.id as string;
  };
  const stockOf = async (skuId: string) =>
    Number((await t.admin.query('SELECT coalesce(sum(quantity), 0) AS q FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3', [tenantId, storeId, skuId])).rows[0].q);
  const setStock = async (skuId: string, quantity: number) => {
    const change = quantity - (await stockOf(skuId));
    if (change === 0) return;
    const adjusted = await owner.post(`/v1/stores/${storeId}/stock/adjustments`, { sku_id: skuId, quantity_change: change, reason: 'test' }, k());
    assert.equal(adjusted.status, 201, JSON.stringify(adjusted.body));
  };
  const count = async (sqlText: string, params: unknown[]) => Number((await t.admin.query(sqlText, params)).rows[0].count);
  const hoursAgo = (hours: number) => new Date(Date.now() - hours * 3_600_000).toISOString();
  const assertProblem = (response: ApiResponse, status: number, code: string) => {
    assert.equal(response.status, status, JSON.stringify(response.body));
    assert.equal(response.headers.get('content-type')?.startsWith('application/problem+json'), true);
    assert.equal(response.body.code, code, JSON.stringify(response.body));
  };

  it("two agents' offline completions at one point of sale at once, both settling its consignment and both leaving more than the store has: settled once, the other kept for review, every good counted once", async () => {
    for (let round = 0; round < 6; round++) {
      await setStock(soap, 1000);
      const pos = await newPointOfSale();
      const first = await schedule(pos.id);
      const left = await agent.post(`/v1/visits/${first}/complete`, { ...SHOP, lines: [{ sku_id: soap, quantity: 10 }] }, k());
      assert.equal(left.status, 200, JSON.stringify(left.body));
      const consignmentId = left.body.consignment.id as string;
      const [a, b] = [await schedule(pos.id), await schedule(pos.id, otherAgentId)];
      await setStock(soap, 3);
      await setStock(tea, 1);
      const before = await fieldRowCounts(t, tenantId);
      const body = (sold: number) => ({
        ...SHOP,
        lines: [
          { sku_id: soap, quantity: 8 },
          { sku_id: tea, quantity: 4 },
        ],
        settlement: { consignment_id: consignmentId, lines: [{ sku_id: soap, sold_quantity: sold, returned_quantity: 10 - sold }] },
        client_created_at: hoursAgo(2),
      });
      const [ra, rb] = await Promise.all([agent.post(`/v1/visits/${a}/complete`, body(6), k()), otherAgent.post(`/v1/visits/${b}/complete`, body(2), k())]);
      assert.equal(ra.status, 200, JSON.stringify(ra.body));
      assert.equal(rb.status, 200, JSON.stringify(rb.body));
      const [winner, loser] = ra.body.settlement ? [ra, rb] : [rb, ra];
      assert.notEqual(winner.body.settlement, null, JSON.stringify([ra.body, rb.body]));
      assert.equal(loser.body.settlement, null);
      assert.equal(loser.body.settlement_conflict.settlement_id, winner.body.settlement.id);
      const returned = winner.body.settlement.lines[0].returned_quantity as number;
      // The winner had 3 + what it returned of soap, 1 tea; the loser what was left after it.
      const winnerSoapTaken = Math.min(8, 3 + returned);
      assert.deepEqual(
        winner.body.consignment.lines.map((line: { quantity: number; shortfall_quantity: number }) => [line.quantity, line.shortfall_quantity]).sort(),
        [[4, 3], [8, 8 - winnerSoapTaken]].sort(),
      );
      const loserSoapTaken = Math.min(8, 3 + returned - winnerSoapTaken);
      assert.deepEqual(
        loser.body.consignment.lines.map((line: { quantity: number; shortfall_quantity: number }) => [line.quantity, line.shortfall_quantity]).sort(),
        [[4, 4], [8, 8 - loserSoapTaken]].sort(),
      );
      assert.equal(await stockOf(soap), 3 + returned - winnerSoapTaken - loserSoapTaken);
      assert.equal(await stockOf(tea), 0);
      assert.equal(await count('SELECT count(*) FROM consignment_settlements WHERE tenant_id = $1 AND consignment_id = $2', [tenantId, consignmentId]), 1);
      assert.equal(
        await count(`SELECT count(*) FROM journal_entries WHERE tenant_id = $1 AND kind = 'consignment_settlement' AND memo = $2`, [tenantId, `consignment ${consignmentId}`]),
        1,
      );
      const after = await fieldRowCounts(t, tenantId);
      assert.equal(after.completed_visits - before.completed_visits, 2);
      assert.equal(after.consignments - before.consignments, 2);
      assert.equal(after.settlements - before.settlements, 1);
      // Two shortage items (one per short consignment), one conflict item.
      assert.equal(after.review_items - before.review_items, 3);
      await assertFieldBooksConsistent(t, tenantId);
    }
    await setStock(soap, 100_000);
    await setStock(tea, 100_000);
  });

  it("a settlement's money never lands on a counted day: today counted, the entry is booked on the next day; an offline completion of a counted day is booked the same way", async () => {
    const today = (await t.admin.query(`SELECT to_char(store_day(coalesce((SELECT time_zone FROM stores WHERE id = $1), 'UTC'), clock_timestamp()), 'YYYY-MM-DD') AS d`, [storeId])).rows[0]
      .d as string;
    const pos = await newPointOfSale();
    const first = await schedule(pos.id);
    const left = await agent.post(`/v1/visits/${first}/complete`, { ...SHOP, lines: [{ sku_id: soap, quantity: 10 }, { sku_id: tea, quantity: 4 }] }, k());
    assert.equal(left.status, 200, JSON.stringify(left.body));
    const counted = await owner.post('/v1/settlements', { store_id: storeId, business_date: today, declared_cash: 0 }, k());
    assert.equal(counted.status, 201, JSON.stringify(counted.body));
    const expectedBefore = counted.body.expected_cash;
    const second = await schedule(pos.id);
    const settled = await agent.post(
      `/v1/visits/${second}/complete`,
      {
        ...SHOP,
        lines: [],
        settlement: { consignment_id: left.body.consignment.id, lines: [{ sku_id: soap, sold_quantity: 7, returned_quantity: 3 }, { sku_id: tea, sold_quantity: 4, returned_quantity: 0 }] },
        client_created_at: hoursAgo(1),
      },
      k(),
    );
    assert.equal(settled.status, 200, JSON.stringify(settled.body));
    assert.equal(settled.body.settlement.amount_owed, 7 * 120 + 4 * 300);
    const entry = (
      await t.admin.query(`SELECT to_char(business_date, 'YYYY-MM-DD') AS d FROM journal_entries WHERE tenant_id = $1 AND id = $2`, [tenantId, settled.body.settlement.journal_entry_id])
    ).rows[0].d as string;
    assert.ok(entry > today, `booked on ${entry}, after the counted ${today}`);
    const recount = await owner.get(`/v1/settlements/${counted.body.id}`);
    assert.equal(recount.body.expected_cash, expectedBefore);
    await assertFieldBooksConsistent(t, tenantId);
  });

  it('a completion replayed after its key expired: the same goods replay the first answer, other goods are 409; nothing new written either way', async () => {
    const pos = await newPointOfSale();
    const visit = await schedule(pos.id);
    const key = randomUUID();
    const body = { ...SHOP, lines: [{ sku_id: tea, quantity: 2 }, { sku_id: soap, quantity: 3 }], client_created_at: hoursAgo(30) };
    const done = await agent.post(`/v1/visits/${visit}/complete`, body, { idempotencyKey: key });
    assert.equal(done.status, 200, JSON.stringify(done.body));
    await t.admin.query(`UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE tenant_id = $1 AND key = $2`, [tenantId, key]);
    const before = await fieldRowCounts(t, tenantId);
    const replay = await agent.post(`/v1/visits/${visit}/complete`, { ...body, lines: [...body.lines].reverse(), client_created_at: hoursAgo(1) }, { idempotencyKey: key });
    assert.equal(replay.status, 200, JSON.stringify(replay.body));
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(replay.body, done.body);
    const other = await agent.post(`/v1/visits/${visit}/complete`, { ...body, lines: [{ sku_id: tea, quantity: 1 }] }, k());
    assertProblem(other, 409, 'invalid_transition');
    const after = await fieldRowCounts(t, tenantId);
    // The expired key's record is written again with the first answer (the same one row); no operation, no event, nothing else.
    assert.deepEqual(after, before);
    const kept = (await t.admin.query(`SELECT op_id, expires_at > now() AS live FROM idempotency_keys WHERE tenant_id = $1 AND key = $2`, [tenantId, key])).rows;
    assert.deepEqual(kept, [{ op_id: done.body.visit.completed_by_op, live: true }]);
    await assertFieldBooksConsistent(t, tenantId);
  });

  it('geofence at the poles and across the antimeridian, by HTTP: the distance is the great circle, not the degrees', async () => {
    // At the North Pole every longitude is the same point.
    const pole = await newPointOfSale({ latitude: 90, longitude: 0 });
    const atPole = await agent.post(`/v1/visits/${await schedule(pole.id)}/complete`, { latitude: 90, longitude: 179.5, lines: [] }, k());
    assert.equal(atPole.status, 200, JSON.stringify(atPole.body));
    assert.equal(atPole.body.visit.completed_distance_m, 0);
    // Near the South Pole, 180° of longitude apart is 2 × 0.0009° of latitude: about 200 m.
    const south = await newPointOfSale({ latitude: -89.9991, longitude: 0 });
    const acrossPole = await agent.post(`/v1/visits/${await schedule(south.id)}/complete`, { latitude: -89.9991, longitude: 180, lines: [] }, k());
    assert.equal(acrossPole.status, 200, JSON.stringify(acrossPole.body));
    assert.equal(acrossPole.body.visit.completed_distance_m, 200);
    // Across the antimeridian at the equator: 0.001° apart, about 111 m, not 359.999°.
    const dateline = await newPointOfSale({ latitude: 0, longitude: 179.9995 });
    const across = await agent.post(`/v1/visits/${await schedule(dateline.id)}/complete`, { latitude: 0, longitude: -179.9995, lines: [] }, k());
    assert.equal(across.status, 200, JSON.stringify(across.body));
    assert.equal(across.body.visit.completed_distance_m, 111);
    await assertFieldBooksConsistent(t, tenantId);
  });

  it('coordinates as strings, null, out of range or missing, and a settlement accounting for more than was left: 400 problem+json at the field, nothing written', async () => {
    const pos = await newPointOfSale();
    const first = await schedule(pos.id);
    const left = await agent.post(`/v1/visits/${first}/complete`, { ...SHOP, lines: [{ sku_id: soap, quantity: 10 }] }, k());
    assert.equal(left.status, 200);
    const visit = await schedule(pos.id);
    const settlement = { consignment_id: left.body.consignment.id, lines: [{ sku_id: soap, sold_quantity: 10, returned_quantity: 0 }] };
    const before = await fieldRowCounts(t, tenantId);
    const cases: Array<[string, Record<string, unknown>, string]> = [
      ['latitude as a string', { latitude: String(SHOP.latitude), longitude: SHOP.longitude, lines: [] }, '/body/latitude'],
      ['longitude as a string', { latitude: SHOP.latitude, longitude: String(SHOP.longitude), lines: [] }, '/body/longitude'],
      ['latitude null', { latitude: null, longitude: SHOP.longitude, lines: [] }, '/body/latitude'],
      ['latitude past the pole', { latitude: 90.000001, longitude: SHOP.longitude, lines: [] }, '/body/latitude'],
      ['longitude past the antimeridian', { latitude: SHOP.latitude, longitude: -180.000001, lines: [] }, '/body/longitude'],
      ['no longitude', { latitude: SHOP.latitude, lines: [] }, '/body/longitude'],
      [
        'sold + returned above what was left',
        { ...SHOP, lines: [], settlement: { ...settlement, lines: [{ sku_id: soap, sold_quantity: 10, returned_quantity: 1 }] }, client_created_at: hoursAgo(1) },
        '/body/settlement/lines/0',
      ],
      ['sold + returned below what was left', { ...SHOP, lines: [], settlement: { ...settlement, lines: [{ sku_id: soap, sold_quantity: 4, returned_quantity: 5 }] } }, '/body/settlement/lines/0'],
    ];
    for (const [name, body, path] of cases) {
      const response = await agent.post(`/v1/visits/${visit}/complete`, body, k());
      assertProblem(response, 400, 'validation_failed');
      assert.ok(
        (response.body.errors as Array<{ path: string }>).some((error) => error.path === path || error.path.startsWith(path)),
        `${name}: ${JSON.stringify(response.body.errors)}`,
      );
    }
    assert.deepEqual(await fieldRowCounts(t, tenantId), before);
    // And the right settlement is still accepted.
    assert.equal((await agent.post(`/v1/visits/${visit}/complete`, { ...SHOP, lines: [], settlement }, k())).status, 200);
    await assertFieldBooksConsistent(t, tenantId);
  });
  it('a random mix at three points of sale — offline and online completions settling the open consignment, their retries under the same and another key, cash sales of the same goods — leaves one settlement per consignment, every conflict reviewed, stock = ledger, integrity clean', async (context) => {
    await setStock(soap, 12);
    await setStock(tea, 5);
    const conflictsBefore = await count('SELECT count(*) FROM consignment_settlement_conflicts WHERE tenant_id = $1', [tenantId]);
    const shortBefore = await count('SELECT count(*) FROM consignment_lines WHERE tenant_id = $1 AND shortfall_quantity > 0', [tenantId]);
    const points = [await newPointOfSale(), await newPointOfSale(), await newPointOfSale()];
    // What each point of sale's phones last saw open there (a phone settles only a consignment it knew).
    const known = new Map<string, { id: string; lines: Array<{ sku_id: string; quantity: number }> } | null>(points.map((point) => [point.id, null]));
    let seed = 7;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    const statuses: number[] = [];
    for (let round = 0; round < 8; round++) {
      const requests: Array<Promise<ApiResponse>> = [];
      for (const point of points) {
        const open = known.get(point.id) ?? null;
        for (const [client, tokenId] of [[agent, agentId], [otherAgent, otherAgentId]] as const) {
          const visit = await schedule(point.id, tokenId);
          const offline = random(2) === 0;
          const sold = (quantity: number) => random(quantity + 1);
          const body = {
            ...SHOP,
            lines: [
              { sku_id: soap, quantity: 1 + random(6) },
              ...(random(2) === 0 ? [{ sku_id: tea, quantity: 1 + random(4) }] : []),
            ],
            ...(open
              ? {
                  settlement: {
                    consignment_id: open.id,
                    lines: open.lines.map((line) => {
                      const s = sold(line.quantity);
                      return { sku_id: line.sku_id, sold_quantity: s, returned_quantity: line.quantity - s };
                    }),
                  },
                }
              : {}),
            ...(offline ? { client_created_at: hoursAgo(1 + random(5)) } : {}),
          };
          const key = randomUUID();
          requests.push(client.post(`/v1/visits/${visit}/complete`, body, { idempotencyKey: key }));
          if (random(3) === 0) requests.push(client.post(`/v1/visits/${visit}/complete`, body, { idempotencyKey: key }));
          if (random(3) === 0) requests.push(client.post(`/v1/visits/${visit}/complete`, { ...body, latitude: SHOP.latitude + 0.0001 }, k()));
        }
      }
      for (let sale = 0; sale < 3; sale++) {
        requests.push(owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: random(2) === 0 ? soap : tea, quantity: 1 + random(3), unit_price: 100 }] }, k()));
      }
      const answers = await Promise.all(requests);
      for (const answer of answers) {
        statuses.push(answer.status);
        assert.ok([200, 201, 409].includes(answer.status), JSON.stringify(answer.body));
        if (answer.status === 409) assert.ok(['invalid_transition', 'insufficient_stock', 'idempotency_key_in_flight'].includes(answer.body.code), JSON.stringify(answer.body));
      }
      for (const point of points) {
        const open = await manager.get(`/v1/points-of-sale/${point.id}/consignments?limit=1`);
        assert.equal(open.status, 200);
        const first = open.body.items[0];
        known.set(point.id, first ? { id: first.id, lines: first.lines.map((line: { sku_id: string; quantity: number }) => ({ sku_id: line.sku_id, quantity: line.quantity })) } : null);
      }
      await setStock(soap, 12);
      await setStock(tea, 5);
    }
    // One settlement per consignment, and settled exactly when it has one.
    assert.deepEqual(
      (
        await t.admin.query(
          `SELECT c.id FROM consignments c LEFT JOIN consignment_settlements s ON s.tenant_id = c.tenant_id AND s.consignment_id = c.id
           WHERE c.tenant_id = $1 GROUP BY c.id, c.status HAVING count(s.id) > 1 OR (c.status = 'settled') <> (count(s.id) = 1)`,
          [tenantId],
        )
      ).rows,
      [],
    );
    // One journal entry per settlement that owes money, one conflict item per conflict, one shortage item per short consignment.
    assert.equal(
      await count(`SELECT count(*) FROM consignment_settlements s WHERE s.tenant_id = $1 AND s.amount_owed > 0 AND NOT EXISTS (SELECT 1 FROM journal_entries e WHERE e.tenant_id = s.tenant_id AND e.id = s.journal_entry_id)`, [tenantId]),
      0,
    );
    assert.equal(
      await count(`SELECT count(*) FROM consignment_settlement_conflicts x WHERE x.tenant_id = $1 AND NOT EXISTS (SELECT 1 FROM review_items r WHERE r.tenant_id = x.tenant_id AND r.id = x.review_item_id AND r.kind = 'consignment_settled_twice')`, [tenantId]),
      0,
    );
    // A visit completes once: one completion operation that wrote per completed visit.
    assert.equal(
      await count(`SELECT count(*) FROM visits v WHERE v.tenant_id = $1 AND v.status = 'completed' AND (SELECT count(*) FROM consignments c WHERE c.tenant_id = v.tenant_id AND c.visit_id = v.id) > 1`, [tenantId]),
      0,
    );
    // The mix did meet what it is about: settlements kept for review, goods left short, refusals.
    const conflicts = (await count('SELECT count(*) FROM consignment_settlement_conflicts WHERE tenant_id = $1', [tenantId])) - conflictsBefore;
    const short = (await count('SELECT count(*) FROM consignment_lines WHERE tenant_id = $1 AND shortfall_quantity > 0', [tenantId])) - shortBefore;
    context.diagnostic(`conflicts ${conflicts}, short lines ${short}, 409s ${statuses.filter((status) => status === 409).length} of ${statuses.length}`);
    assert.ok(conflicts > 0 && short > 0, `conflicts ${conflicts}, short lines ${short}`);
    await assertFieldBooksConsistent(t, tenantId);
  });
});
