import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { waitFor } from '../../test/support/wait.js';
import type { KyselyPlugin } from 'kysely';
import type { TenantPrincipal } from '../core/auth.js';
import { Command, runCommand } from '../core/command.js';
import { receiveTransfer } from './receiveTransfer.js';

describe('stock transfers between stores', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let north: { id: string };
  let south: { id: string };
  let flour: { id: string };
  let rice: { id: string };

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    north = (await owner.post('/v1/stores', { code: 'N', name: 'North' })).body;
    south = (await owner.post('/v1/stores', { code: 'S', name: 'South' })).body;
    flour = (await owner.post('/v1/skus', { code: 'FLOUR', name: 'Flour', unit: 'kg', price: 120 })).body;
    rice = (await owner.post('/v1/skus', { code: 'RICE', name: 'Rice', unit: 'kg', price: 200 })).body;
    await owner.post(`/v1/stores/${north.id}/stock/receipts`, { items: [{ sku_id: flour.id, quantity: 100_000 }, { sku_id: rice.id, quantity: 50_000 }] });
  });
  after(() => t.close());

  const stock = async (storeId: string, skuId: string) =>
    Number((await t.admin.query(`SELECT quantity FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3`, [tenantId, storeId, skuId])).rows[0]?.quantity ?? 0);
  const ledgerSum = async (storeId: string, skuId: string) =>
    Number((await t.admin.query(`SELECT coalesce(sum(quantity_change), 0) AS s FROM stock_ledger WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3`, [tenantId, storeId, skuId])).rows[0].s);
  const counts = async () =>
    (
      await t.admin.query(
        `SELECT (SELECT count(*) FROM operations WHERE tenant_id = $1)::int AS operations,
                (SELECT count(*) FROM stock_transfers WHERE tenant_id = $1)::int AS transfers,
                (SELECT count(*) FROM stock_transfer_items WHERE tenant_id = $1)::int AS items,
                (SELECT count(*) FROM stock_ledger WHERE tenant_id = $1)::int AS ledger,
                (SELECT count(*) FROM review_items WHERE tenant_id = $1)::int AS reviews,
                (SELECT coalesce(sum(quantity), 0) FROM stock_balances WHERE tenant_id = $1)::bigint AS stock,
                (SELECT string_agg(status || version, ',' ORDER BY id) FROM stock_transfers WHERE tenant_id = $1) AS statuses`,
        [tenantId],
      )
    ).rows[0];
  const request = (items: Array<{ sku_id: string; quantity: number }>, from = north, to = south, client = owner) =>
    client.post('/v1/transfers', { source_store_id: from.id, destination_store_id: to.id, items });

  it('request moves nothing; approve takes stock out of the source into transit; receive brings it in — each one transaction', async () => {
    const before = { north: await stock(north.id, flour.id), south: await stock(south.id, flour.id) };
    const requested = await request([{ sku_id: flour.id, quantity: 3_000 }, { sku_id: flour.id, quantity: 2_000 }, { sku_id: rice.id, quantity: 1_000 }]);
    assert.equal(requested.status, 201, JSON.stringify(requested.body));
    assert.equal(requested.body.status, 'requested');
    assert.deepEqual(requested.body.items.find((i: { sku_id: string }) => i.sku_id === flour.id).quantity, 5_000, 'lines of one SKU are summed');
    assert.equal(await stock(north.id, flour.id), before.north);

    const approved = await owner.post(`/v1/transfers/${requested.body.id}/approve`, {}, { idempotencyKey: randomUUID() });
    assert.equal(approved.status, 200, JSON.stringify(approved.body));
    assert.equal(approved.body.status, 'approved');
    assert.equal(approved.body.version, 2);
    assert.deepEqual(approved.body.items.map((i: { quantity_in_transit: number }) => i.quantity_in_transit).sort(), [1_000, 5_000]);
    assert.equal(await stock(north.id, flour.id), before.north - 5_000);
    assert.equal(await stock(south.id, flour.id), before.south);

    const received = await owner.post(`/v1/transfers/${requested.body.id}/receive`);
    assert.equal(received.status, 200, JSON.stringify(received.body));
    assert.equal(received.body.status, 'received');
    assert.deepEqual(received.body.items.map((i: { quantity_in_transit: number }) => i.quantity_in_transit), [0, 0]);
    assert.equal(await stock(south.id, flour.id), before.south + 5_000);
    for (const store of [north, south]) for (const sku of [flour, rice]) assert.equal(await stock(store.id, sku.id), await ledgerSum(store.id, sku.id));
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('the version is the ETag; a stale If-Match is 412 version_conflict and writes nothing', async () => {
    const requested = await request([{ sku_id: flour.id, quantity: 100 }]);
    const fetched = await owner.get(`/v1/transfers/${requested.body.id}`);
    assert.equal(fetched.headers.get('etag'), '"1"');
    const approved = await owner.post(`/v1/transfers/${requested.body.id}/approve`, {}, { headers: { 'if-match': '"1"' } });
    assert.equal(approved.status, 200, JSON.stringify(approved.body));
    assert.equal(approved.headers.get('etag'), '"2"');
    const before = await counts();
    const stale = await owner.post(`/v1/transfers/${requested.body.id}/receive`, {}, { headers: { 'if-match': '"1"' } });
    assert.equal(stale.status, 412, JSON.stringify(stale.body));
    assert.equal(stale.body.code, 'version_conflict');
    const garbage = await owner.post(`/v1/transfers/${requested.body.id}/receive`, {}, { headers: { 'if-match': 'yesterday' } });
    assert.equal(garbage.status, 412);
    // If-Match is a list (RFC 9110): none of these is the current version.
    const staleList = await owner.post(`/v1/transfers/${requested.body.id}/receive`, {}, { headers: { 'if-match': '"1", "7"' } });
    assert.equal(staleList.status, 412, JSON.stringify(staleList.body));
    assert.equal(staleList.body.current_version, 2);
    assert.match(staleList.body.detail, /not 1 or 7/);
    assert.deepEqual(await counts(), before);
    // One of them is: the action goes through.
    const received = await owner.post(`/v1/transfers/${requested.body.id}/receive`, {}, { headers: { 'if-match': '"7", "2"' } });
    assert.equal(received.status, 200, JSON.stringify(received.body));
    assert.equal(received.headers.get('etag'), '"3"');
  });

  it('creation returns the version as the ETag, like every action; so does its replay', async () => {
    const body = { source_store_id: north.id, destination_store_id: south.id, items: [{ sku_id: flour.id, quantity: 100 }] };
    const requested = await owner.post('/v1/transfers', body, { idempotencyKey: 'transfer-etag-1' });
    assert.equal(requested.status, 201, JSON.stringify(requested.body));
    assert.equal(requested.body.version, 1);
    assert.equal(requested.headers.get('etag'), '"1"');
    const replay = await owner.post('/v1/transfers', body, { idempotencyKey: 'transfer-etag-1' });
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
    assert.equal(replay.headers.get('etag'), '"1"');
  });

  it('a replayed action is not handed to a token that cannot see the transfer', async () => {
    const requested = await request([{ sku_id: flour.id, quantity: 100 }]);
    const key = randomUUID();
    assert.equal((await owner.post(`/v1/transfers/${requested.body.id}/approve`, {}, { idempotencyKey: key })).status, 200);
    const elsewhere = (await owner.post('/v1/stores', { code: `E-${key.slice(0, 6)}`, name: 'Elsewhere' })).body;
    const outsider = t.client((await owner.post('/v1/tokens', { name: 'outsider', role: 'manager', store_ids: [elsewhere.id] })).body.token);
    const replay = await outsider.post(`/v1/transfers/${requested.body.id}/approve`, {}, { idempotencyKey: key });
    assert.equal(replay.status, 404, JSON.stringify(replay.body));
    assert.equal(replay.headers.get('idempotent-replayed'), null);
  });

  it('an action retried under its key with no body, {} or null is the same request: replayed, never 422, the stock moved once', async () => {
    const requested = await request([{ sku_id: rice.id, quantity: 700 }]);
    const id = requested.body.id;
    const approveKey = randomUUID();
    const receiveKey = randomUUID();
    const approved = await owner.post(`/v1/transfers/${id}/approve`, {}, { idempotencyKey: approveKey });
    assert.equal(approved.status, 200, JSON.stringify(approved.body));
    const before = await counts();
    for (const body of [undefined, null, {}]) {
      const again = await owner.post(`/v1/transfers/${id}/approve`, body, { idempotencyKey: approveKey });
      assert.equal(again.status, 200, `${JSON.stringify(body)}: ${JSON.stringify(again.body)}`);
      assert.equal(again.headers.get('idempotent-replayed'), 'true');
      assert.deepEqual(again.body, approved.body);
    }
    assert.deepEqual(await counts(), before, 'the replays wrote nothing');
    // "everything arrived": no body first, then {} and null
    const received = await owner.post(`/v1/transfers/${id}/receive`, undefined, { idempotencyKey: receiveKey });
    assert.equal(received.status, 200, JSON.stringify(received.body));
    const afterReceipt = await counts();
    for (const body of [{}, null]) {
      const again = await owner.post(`/v1/transfers/${id}/receive`, body, { idempotencyKey: receiveKey });
      assert.equal(again.status, 200, `${JSON.stringify(body)}: ${JSON.stringify(again.body)}`);
      assert.equal(again.headers.get('idempotent-replayed'), 'true');
    }
    assert.deepEqual(await counts(), afterReceipt);
    // A request with content is still another request
    const other = await owner.post(`/v1/transfers/${id}/receive`, { items: [] }, { idempotencyKey: receiveKey });
    assert.equal(other.status, 422, JSON.stringify(other.body));
    assert.equal(other.body.code, 'idempotency_key_reused');
    const ledgerRows = (await t.admin.query(`SELECT kind, quantity_change::int AS q FROM stock_ledger WHERE tenant_id = $1 AND reason = $2 ORDER BY id`, [tenantId, `transfer ${id}`])).rows;
    assert.deepEqual(ledgerRows, [{ kind: 'transfer_out', q: -700 }, { kind: 'transfer_in', q: 700 }]);
  });

  it('a receipt that read the transfer just before its approval committed: its audit event\'s before is the state it moved from', async () => {
    const requested = await request([{ sku_id: rice.id, quantity: 50 }]);
    const id = requested.body.id;
    const ownerToken = (await t.admin.query(`SELECT id FROM api_tokens WHERE tenant_id = $1 AND role = 'owner' LIMIT 1`, [tenantId])).rows[0].id;
    const principal: TenantPrincipal = { kind: 'token', tokenId: ownerToken, tenantId, name: 'owner', role: 'owner', storeIds: null };
    // The receipt is held right after its first statement (the read of the transfer) …
    let readTransfer!: () => void;
    const transferRead = new Promise<void>((resolve) => (readTransfer = resolve));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let first = true;
    const holdAfterFirstStatement: KyselyPlugin = {
      transformQuery: (args) => args.node,
      async transformResult(args) {
        if (first) {
          first = false;
          readTransfer();
          await released;
        }
        return args.result;
      },
    };
    const receipt = runCommand(t.db, { tenantId, principal, correlationId: randomUUID(), fingerprint: randomUUID() }, { type: 'transfer.receive' }, async (cmd) => {
      const held = new Command(cmd.tx.withPlugin(holdAfterFirstStatement), cmd.opId, cmd.input, cmd.type);
      const row = await receiveTransfer(held, principal, id, undefined);
      cmd.storeId = held.storeId;
      cmd.events.push(...held.events);
      cmd.effects.push(...held.effects);
      return { status: 200, body: row };
    }).then(
      (outcome) => ({ ok: true as const, opId: outcome.opId }),
      (error: { code?: string }) => ({ ok: false as const, code: error.code }),
    );
    await transferRead;
    // … while the approval goes through (or waits for the receipt's lock on the transfer)
    let approvalDone = false;
    const approval = owner.post(`/v1/transfers/${id}/approve`).then((response) => {
      approvalDone = true;
      return response;
    });
    await waitFor('the approval to commit or to wait for a lock', async () =>
      approvalDone ||
      (await t.admin.query(`SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()`)).rows.length > 0);
    release();
    const [received, approved] = await Promise.all([receipt, approval]);
    assert.equal(approved.status, 200, JSON.stringify(approved.body));
    const row = (await t.admin.query(`SELECT status, version FROM stock_transfers WHERE tenant_id = $1 AND id = $2`, [tenantId, id])).rows[0];
    if (received.ok) {
      // A receipt that went through moved the transfer from approved (version 2) — and says so.
      assert.deepEqual(row, { status: 'received', version: 3 });
      const event = (
        await t.admin.query(`SELECT before, after FROM events WHERE tenant_id = $1 AND op_id = $2 AND subject_type = 'stock_transfer'`, [tenantId, received.opId])
      ).rows[0];
      assert.equal(event.before.status, 'approved', JSON.stringify(event.before));
      assert.equal(event.before.version, 2);
      assert.deepEqual(event.before.items.map((i: { quantity_in_transit: number }) => i.quantity_in_transit), [50]);
      assert.equal(event.after.status, 'received');
    } else {
      // One that was refused (it found the transfer still requested) left it approved, nothing received.
      assert.equal(received.code, 'invalid_transition');
      assert.deepEqual(row, { status: 'approved', version: 2 });
    }
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a receipt whose transaction began before the approval it then waited for is stamped after it: received_at ≥ approved_at, as its ledger rows are', async () => {
    const requested = await request([{ sku_id: rice.id, quantity: 40 }]);
    const id = requested.body.id;
    const ownerToken = (await t.admin.query(`SELECT id FROM api_tokens WHERE tenant_id = $1 AND role = 'owner' LIMIT 1`, [tenantId])).rows[0].id;
    const principal: TenantPrincipal = { kind: 'token', tokenId: ownerToken, tenantId, name: 'owner', role: 'owner', storeIds: null };
    // The receipt's transaction has begun (a device sent it as the source's manager pressed approve) …
    let begun!: () => void;
    const receiptBegun = new Promise<void>((resolve) => (begun = resolve));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const receipt = runCommand(t.db, { tenantId, principal, correlationId: randomUUID(), fingerprint: randomUUID() }, { type: 'transfer.receive' }, async (cmd) => {
      begun();
      await released;
      return { status: 200, body: await receiveTransfer(cmd, principal, id, undefined) };
    });
    await receiptBegun;
    await new Promise((resolve) => setTimeout(resolve, 20));
    // … the approval goes through first, and the receipt then receives what it sent.
    const approved = await owner.post(`/v1/transfers/${id}/approve`);
    assert.equal(approved.status, 200, JSON.stringify(approved.body));
    release();
    const received = await receipt;
    assert.equal(received.status, 200);
    const row = (
      await t.admin.query(
        `SELECT t.status, t.approved_at, t.received_at, t.updated_at,
                (SELECT created_at FROM stock_ledger l WHERE l.tenant_id = t.tenant_id AND l.op_id = t.approved_op) AS sent_at,
                (SELECT created_at FROM stock_ledger l WHERE l.tenant_id = t.tenant_id AND l.op_id = t.received_op) AS arrived_at
         FROM stock_transfers t WHERE t.tenant_id = $1 AND t.id = $2`,
        [tenantId, id],
      )
    ).rows[0];
    assert.equal(row.status, 'received');
    assert.ok(row.arrived_at >= row.sent_at, 'the ledger rows are stamped in the order they were written');
    assert.ok(row.received_at >= row.approved_at, `received at ${row.received_at.toISOString()}, before it was approved at ${row.approved_at.toISOString()}`);
    assert.ok(row.updated_at >= row.received_at);
    const body = (await owner.get(`/v1/transfers/${id}`)).body;
    assert.ok(Date.parse(body.received_at) >= Date.parse(body.approved_at), JSON.stringify(body));
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a partial receipt brings in what arrived and opens a review item for the shortfall', async () => {
    const requested = await request([{ sku_id: flour.id, quantity: 1_000 }, { sku_id: rice.id, quantity: 400 }]);
    assert.equal((await owner.post(`/v1/transfers/${requested.body.id}/approve`)).status, 200);
    const southFlour = await stock(south.id, flour.id);
    const received = await owner.post(`/v1/transfers/${requested.body.id}/receive`, { items: [{ sku_id: flour.id, quantity_received: 900 }] });
    assert.equal(received.status, 200, JSON.stringify(received.body));
    assert.equal(await stock(south.id, flour.id), southFlour + 900);
    const review = await t.admin.query(`SELECT kind, store_id, detail FROM review_items WHERE tenant_id = $1 AND subject_id = $2`, [tenantId, requested.body.id]);
    assert.equal(review.rows.length, 1);
    assert.equal(review.rows[0].kind, 'transfer_shortfall');
    assert.equal(review.rows[0].store_id, south.id);
    assert.deepEqual(
      review.rows[0].detail.lines.map((l: { sku_id: string; shortfall: number }) => [l.sku_id, l.shortfall]).sort(),
      [[flour.id, 100], [rice.id, 400]].sort(),
    );
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a shortfall is the source store\'s review item too: its own staff see it, read it and may resolve it; a third store\'s do not', async () => {
    const east = (await owner.post('/v1/stores', { code: `E${randomUUID().slice(0, 4)}`, name: 'East' })).body;
    const token = async (name: string, storeId: string) => t.client((await owner.post('/v1/tokens', { name, role: 'manager', store_ids: [storeId] })).body.token);
    const [sender, receiver, bystander] = [await token('sender', north.id), await token('receiver', south.id), await token('bystander', east.id)];
    const requested = await request([{ sku_id: flour.id, quantity: 50 }]);
    assert.equal((await owner.post(`/v1/transfers/${requested.body.id}/approve`)).status, 200);
    assert.equal((await receiver.post(`/v1/transfers/${requested.body.id}/receive`, { items: [{ sku_id: flour.id, quantity_received: 45 }] })).status, 200);
    const listed = async (client: ApiClient) =>
      ((await client.get('/v1/review-items?kind=transfer_shortfall&status=open&limit=500')).body.items as Array<{ id: string; subject_id: string; store_id: string; other_store_id: string }>).filter(
        (item) => item.subject_id === requested.body.id,
      );
    // Both ends see it, named with both stores; a third store does not
    const [bySender] = await listed(sender);
    assert.ok(bySender, 'the source store lists the shortfall');
    assert.deepEqual([bySender.store_id, bySender.other_store_id], [south.id, north.id]);
    assert.equal((await listed(receiver)).length, 1);
    assert.deepEqual(await listed(bystander), []);
    assert.equal((await sender.get(`/v1/review-items/${bySender.id}`)).status, 200);
    assert.equal((await bystander.get(`/v1/review-items/${bySender.id}`)).status, 404);
    const before = await counts();
    assert.equal((await bystander.post(`/v1/review-items/${bySender.id}/resolve`, { note: 'not mine' })).status, 404);
    assert.deepEqual(await counts(), before);
    // The sender resolves it, acting in its own store (its replay and the operation are its to see)
    const key = randomUUID();
    const resolved = await sender.post(`/v1/review-items/${bySender.id}/resolve`, { note: 'five bags left on the truck; found' }, { idempotencyKey: key });
    assert.equal(resolved.status, 200, JSON.stringify(resolved.body));
    assert.equal(resolved.body.status, 'resolved');
    const replay = await sender.post(`/v1/review-items/${bySender.id}/resolve`, { note: 'five bags left on the truck; found' }, { idempotencyKey: key });
    assert.equal(replay.status, 200, JSON.stringify(replay.body));
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
    const op = (await t.admin.query(`SELECT store_id FROM operations WHERE id = $1`, [resolved.body.resolved_by_op])).rows[0];
    assert.equal(op.store_id, north.id);
    assert.equal((await sender.get(`/v1/operations/${resolved.body.resolved_by_op}`)).status, 200);
  });

  it("a shortfall resolved under a key by one end: the other end's staff, who see the item, get the replay (not 404); a third store's do not", async () => {
    const west = (await owner.post('/v1/stores', { code: `W${randomUUID().slice(0, 4)}`, name: 'West' })).body;
    const token = async (name: string, storeId: string) => t.client((await owner.post('/v1/tokens', { name, role: 'manager', store_ids: [storeId] })).body.token);
    const [sender, receiver, bystander] = [await token('sender-r', north.id), await token('receiver-r', south.id), await token('bystander-r', west.id)];
    const requested = await request([{ sku_id: rice.id, quantity: 30 }]);
    assert.equal((await owner.post(`/v1/transfers/${requested.body.id}/approve`)).status, 200);
    assert.equal((await receiver.post(`/v1/transfers/${requested.body.id}/receive`, { items: [{ sku_id: rice.id, quantity_received: 20 }] })).status, 200);
    const item = (await t.admin.query(`SELECT id FROM review_items WHERE tenant_id = $1 AND subject_id = $2`, [tenantId, requested.body.id])).rows[0].id as string;
    // The source's staff resolve it, acting in their store; the destination's staff see the item (its store).
    const key = randomUUID();
    const body = { note: 'ten kilos found on the truck' };
    const resolved = await sender.post(`/v1/review-items/${item}/resolve`, body, { idempotencyKey: key });
    assert.equal(resolved.status, 200, JSON.stringify(resolved.body));
    assert.equal((await receiver.get(`/v1/review-items/${item}`)).status, 200, 'the destination sees the item');
    const before = await counts();
    const replay = await receiver.post(`/v1/review-items/${item}/resolve`, body, { idempotencyKey: key });
    assert.equal(replay.status, 200, JSON.stringify(replay.body));
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(replay.body, resolved.body);
    const outsider = await bystander.post(`/v1/review-items/${item}/resolve`, body, { idempotencyKey: key });
    assert.equal(outsider.status, 404, JSON.stringify(outsider.body));
    assert.equal(outsider.headers.get('idempotent-replayed'), null);
    assert.deepEqual(await counts(), before, 'the replays wrote nothing');
    // and the resolution's operation is theirs to read too, as the item is (it was 404: filed under the source store)
    const op = resolved.body.resolved_by_op as string;
    assert.equal((await receiver.get(`/v1/operations/${op}`)).status, 200);
    assert.equal((await receiver.get(`/v1/ledger/operations/${op}`)).status, 200);
    assert.equal((await bystander.get(`/v1/operations/${op}`)).status, 404);
    assert.equal((await bystander.get(`/v1/ledger/operations/${op}`)).status, 404);
  });

  it('a SKU sent above the largest line quantity (lines of one SKU summed) can be received in part, by what arrived', async () => {
    const grain = (await owner.post('/v1/skus', { code: 'GRAIN', name: 'Grain', unit: 'kg', price: 1 })).body;
    for (let i = 0; i < 2; i++) {
      assert.equal((await owner.post(`/v1/stores/${north.id}/stock/receipts`, { items: [{ sku_id: grain.id, quantity: 1_000_000_000_000 }] })).status, 201);
    }
    const requested = await request([{ sku_id: grain.id, quantity: 1_000_000_000_000 }, { sku_id: grain.id, quantity: 1_000_000_000_000 }]);
    assert.equal(requested.status, 201, JSON.stringify(requested.body));
    assert.equal(requested.body.items[0].quantity, 2_000_000_000_000);
    assert.equal((await owner.post(`/v1/transfers/${requested.body.id}/approve`)).status, 200);
    const received = await owner.post(`/v1/transfers/${requested.body.id}/receive`, { items: [{ sku_id: grain.id, quantity_received: 1_500_000_000_000 }] });
    assert.equal(received.status, 200, JSON.stringify(received.body));
    assert.equal(await stock(south.id, grain.id), 1_500_000_000_000);
    const review = await t.admin.query(`SELECT detail FROM review_items WHERE tenant_id = $1 AND subject_id = $2`, [tenantId, requested.body.id]);
    assert.deepEqual(review.rows[0].detail.lines.map((l: { shortfall: number }) => l.shortfall), [500_000_000_000]);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('invalid transitions are 409 invalid_transition and change nothing', async () => {
    const requested = await request([{ sku_id: flour.id, quantity: 10 }]);
    const before = await counts();
    const early = await owner.post(`/v1/transfers/${requested.body.id}/receive`);
    assert.equal(early.status, 409);
    assert.equal(early.body.code, 'invalid_transition');
    assert.deepEqual(await counts(), before);

    assert.equal((await owner.post(`/v1/transfers/${requested.body.id}/cancel`)).status, 200);
    // (Cancelling it again is the same action: answered as already done, see lateRepeats.int.spec.ts.)
    for (const action of ['approve', 'receive']) {
      const snapshot = await counts();
      const response = await owner.post(`/v1/transfers/${requested.body.id}/${action}`);
      assert.equal(response.status, 409, action);
      assert.equal(response.body.code, 'invalid_transition');
      assert.equal(response.body.status, 409);
      assert.deepEqual(await counts(), snapshot);
    }
    // Receiving a cancelled transfer is 409 whatever lines are sent (not 400 for lines it would never take).
    const withBadLines = await owner.post(`/v1/transfers/${requested.body.id}/receive`, { items: [{ sku_id: flour.id, quantity_received: 999 }] });
    assert.equal(withBadLines.status, 409, JSON.stringify(withBadLines.body));
    assert.equal(withBadLines.body.code, 'invalid_transition');

    const approvedOne = await request([{ sku_id: flour.id, quantity: 10 }]);
    assert.equal((await owner.post(`/v1/transfers/${approvedOne.body.id}/approve`)).status, 200);
    const snapshot = await counts();
    assert.equal((await owner.post(`/v1/transfers/${approvedOne.body.id}/cancel`)).body.code, 'invalid_transition');
    // Approving it again is the same action: answered as already done (200, replayed), nothing written.
    const again = await owner.post(`/v1/transfers/${approvedOne.body.id}/approve`);
    assert.deepEqual([again.status, again.headers.get('idempotent-replayed')], [200, 'true']);
    assert.deepEqual(await counts(), snapshot);
  });

  it('approval with short source stock is refused with insufficient_stock and writes nothing', async () => {
    const available = await stock(north.id, rice.id);
    const requested = await request([{ sku_id: flour.id, quantity: 1 }, { sku_id: rice.id, quantity: available + 1 }]);
    const before = await counts();
    const response = await owner.post(`/v1/transfers/${requested.body.id}/approve`, {}, { idempotencyKey: randomUUID() });
    assert.equal(response.status, 409);
    assert.equal(response.body.code, 'insufficient_stock');
    assert.deepEqual(response.body.shortages, [{ sku_id: rice.id, requested: available + 1, available }]);
    assert.deepEqual(await counts(), before);
  });

  it('with require_second_approver on, the token that requested a transfer cannot approve it (403, nothing written); another token can', async () => {
    const manager = t.client((await owner.post('/v1/tokens', { name: 'mira', role: 'manager' })).body.token);
    assert.equal((await owner.patch('/v1/tenant/settings', { require_second_approver: true })).status, 200);
    try {
      const requested = await request([{ sku_id: flour.id, quantity: 5 }], north, south, manager);
      assert.equal(requested.status, 201, JSON.stringify(requested.body));
      const before = await counts();
      const own = await manager.post(`/v1/transfers/${requested.body.id}/approve`, {}, { idempotencyKey: randomUUID() });
      assert.equal(own.status, 403, JSON.stringify(own.body));
      assert.match(own.headers.get('content-type') ?? '', /^application\/problem\+json/);
      assert.equal(own.body.reason, 'second_approver_required');
      assert.deepEqual(await counts(), before);
      const northBefore = await stock(north.id, flour.id);
      const approved = await owner.post(`/v1/transfers/${requested.body.id}/approve`, {}, { idempotencyKey: randomUUID() });
      assert.equal(approved.status, 200, JSON.stringify(approved.body));
      assert.equal(await stock(north.id, flour.id), northBefore - 5);
    } finally {
      assert.equal((await owner.patch('/v1/tenant/settings', { require_second_approver: null })).status, 200);
    }
    // Off (the default): the requester approves
    const alone = await request([{ sku_id: flour.id, quantity: 1 }], north, south, manager);
    assert.equal((await manager.post(`/v1/transfers/${alone.body.id}/approve`, {}, { idempotencyKey: randomUUID() })).status, 200);
  });

  it('four approvals of one transfer at once: one approves, the others wait for it and are answered with its approval; stock moved once', async () => {
    const requested = await request([{ sku_id: flour.id, quantity: 7 }]);
    const northBefore = await stock(north.id, flour.id);
    const operations = (await counts()).operations;
    const responses = await Promise.all([0, 1, 2, 3].map(() => owner.post(`/v1/transfers/${requested.body.id}/approve`)));
    assert.deepEqual(responses.map((r) => r.status), [200, 200, 200, 200]);
    assert.deepEqual(responses.map((r) => r.headers.get('idempotent-replayed')).sort(), [null, 'true', 'true', 'true']);
    for (const response of responses) assert.deepEqual(response.body, responses[0]!.body);
    assert.equal(await stock(north.id, flour.id), northBefore - 7);
    assert.equal((await counts()).operations, operations + 1, 'one approval operation');
  });

  it('approve, cancel and receive of the same transfers at once: each transfer ends in one state, and the stock and ledger say exactly that', async () => {
    const northBefore = await stock(north.id, flour.id);
    const southBefore = await stock(south.id, flour.id);
    const transfers = [];
    for (let i = 1; i <= 8; i++) transfers.push((await request([{ sku_id: flour.id, quantity: 10 * i }])).body as { id: string });
    const results = await Promise.all(
      transfers.map(async (transfer) => {
        const [approve, cancel, receive] = await Promise.all([
          owner.post(`/v1/transfers/${transfer.id}/approve`),
          owner.post(`/v1/transfers/${transfer.id}/cancel`),
          owner.post(`/v1/transfers/${transfer.id}/receive`),
        ]);
        return { id: transfer.id, approve: approve.status, cancel: cancel.status, receive: receive.status };
      }),
    );
    let left = 0;
    let arrived = 0;
    for (const [index, result] of results.entries()) {
      const quantity = 10 * (index + 1);
      const row = (await t.admin.query(`SELECT status FROM stock_transfers WHERE tenant_id = $1 AND id = $2`, [tenantId, result.id])).rows[0];
      // approve and cancel exclude each other; a receipt can only follow an approval
      assert.equal([result.approve, result.cancel].filter((status) => status === 200).length, 1, JSON.stringify(result));
      for (const status of [result.approve, result.cancel, result.receive]) assert.ok(status === 200 || status === 409, JSON.stringify(result));
      const expected = result.cancel === 200 ? 'cancelled' : result.receive === 200 ? 'received' : 'approved';
      assert.equal(row.status, expected, JSON.stringify(result));
      if (result.approve === 200) left += quantity;
      if (result.receive === 200) arrived += quantity;
    }
    assert.equal(await stock(north.id, flour.id), northBefore - left);
    assert.equal(await stock(south.id, flour.id), southBefore + arrived);
    for (const store of [north, south]) assert.equal(await stock(store.id, flour.id), await ledgerSum(store.id, flour.id));
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('three receipts of one transfer at once: one receives, the same receipts are answered with it, another quantity is 409; the stock arrives once', async () => {
    const requested = await request([{ sku_id: rice.id, quantity: 9 }]);
    assert.equal((await owner.post(`/v1/transfers/${requested.body.id}/approve`)).status, 200);
    const southBefore = await stock(south.id, rice.id);
    const operations = (await counts()).operations;
    const responses = await Promise.all([0, 1, 2].map(() => owner.post(`/v1/transfers/${requested.body.id}/receive`)));
    assert.deepEqual(responses.map((r) => r.status), [200, 200, 200]);
    assert.deepEqual(responses.map((r) => r.headers.get('idempotent-replayed')).sort(), [null, 'true', 'true']);
    assert.equal((await counts()).operations, operations + 1, 'one receipt operation');
    const other = await owner.post(`/v1/transfers/${requested.body.id}/receive`, { items: [{ sku_id: rice.id, quantity_received: 8 }] });
    assert.deepEqual([other.status, other.body.code], [409, 'invalid_transition']);
    assert.equal(await stock(south.id, rice.id), southBefore + 9);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('approve needs the source store in scope, receive the destination: the other end, which sees the transfer, is 403; outside scope is 404', async () => {
    const northManager = t.client((await owner.post('/v1/tokens', { name: 'north', role: 'manager', store_ids: [north.id] })).body.token);
    const southManager = t.client((await owner.post('/v1/tokens', { name: 'south', role: 'manager', store_ids: [south.id] })).body.token);
    const requested = await request([{ sku_id: flour.id, quantity: 5 }], north, south, southManager);
    assert.equal(requested.status, 201, 'a destination manager may ask a source for goods');
    const before = await counts();
    const foreignApprove = await southManager.post(`/v1/transfers/${requested.body.id}/approve`);
    assert.equal(foreignApprove.status, 403);
    assert.equal(foreignApprove.body.code, 'forbidden');
    assert.deepEqual(await counts(), before);
    assert.equal((await northManager.post(`/v1/transfers/${requested.body.id}/approve`)).status, 200);
    const snapshot = await counts();
    assert.equal((await northManager.post(`/v1/transfers/${requested.body.id}/receive`)).status, 403);
    assert.deepEqual(await counts(), snapshot);
    assert.equal((await southManager.post(`/v1/transfers/${requested.body.id}/receive`)).status, 200);

    const east = (await owner.post('/v1/stores', { code: 'E', name: 'East' })).body;
    const unrelated = await request([{ sku_id: flour.id, quantity: 1 }], north, east);
    assert.equal((await southManager.get(`/v1/transfers/${unrelated.body.id}`)).status, 404);
    assert.equal((await southManager.post(`/v1/transfers/${unrelated.body.id}/cancel`)).status, 404);
    assert.equal((await request([{ sku_id: flour.id, quantity: 1 }], north, east, southManager)).status, 404);
    const listed = await southManager.get('/v1/transfers?limit=500');
    assert.ok(listed.body.items.every((x: { source_store_id: string; destination_store_id: string }) => x.source_store_id === south.id || x.destination_store_id === south.id));
  });

  it("either end's staff can read each operation of a transfer they are party to (GET /v1/operations/{id}); a third store's cannot", async () => {
    const northManager = t.client((await owner.post('/v1/tokens', { name: 'north-ops', role: 'manager', store_ids: [north.id] })).body.token);
    const southManager = t.client((await owner.post('/v1/tokens', { name: 'south-ops', role: 'manager', store_ids: [south.id] })).body.token);
    const west = (await owner.post('/v1/stores', { code: 'W-OPS', name: 'West' })).body;
    const westManager = t.client((await owner.post('/v1/tokens', { name: 'west-ops', role: 'manager', store_ids: [west.id] })).body.token);
    // Requested by the destination, approved by the source, received by the destination.
    const requested = await request([{ sku_id: flour.id, quantity: 7 }], north, south, southManager);
    assert.equal(requested.status, 201);
    const approved = await northManager.post(`/v1/transfers/${requested.body.id}/approve`);
    const received = await southManager.post(`/v1/transfers/${requested.body.id}/receive`);
    assert.equal(received.status, 200);
    // Requested by the destination and cancelled by it.
    const dropped = await request([{ sku_id: flour.id, quantity: 1 }], north, south, southManager);
    const cancelled = await southManager.post(`/v1/transfers/${dropped.body.id}/cancel`);
    assert.equal(cancelled.status, 200);
    assert.equal(approved.status, 200);
    const opsOf = async (id: string) =>
      (await t.admin.query(`SELECT op_id, approved_op, received_op, cancelled_op FROM stock_transfers WHERE tenant_id = $1 AND id = $2`, [tenantId, id])).rows[0];
    const [moved, withdrawn] = [await opsOf(requested.body.id), await opsOf(dropped.body.id)];
    const ops = { request: moved.op_id, approve: moved.approved_op, receive: moved.received_op, cancelledRequest: withdrawn.op_id, cancel: withdrawn.cancelled_op };
    for (const [name, opId] of Object.entries(ops)) {
      assert.match(String(opId), /^[0-9a-f-]{36}$/, name);
      for (const [who, client] of [['north', northManager], ['south', southManager]] as const) {
        const operation = await client.get(`/v1/operations/${opId}`);
        assert.equal(operation.status, 200, `${who} reads the ${name} operation: ${JSON.stringify(operation.body)}`);
        assert.equal(operation.body.id, opId);
      }
      assert.equal((await westManager.get(`/v1/operations/${opId}`)).status, 404, `west does not see the ${name} operation`);
      // Its journal entries (none: stock moves carry no money) read alike: the same ends see them, the third store gets 404.
      for (const [who, client] of [['north', northManager], ['south', southManager]] as const) {
        const entries = await client.get(`/v1/ledger/operations/${opId}`);
        assert.equal(entries.status, 200, `${who} reads the ${name} operation's entries: ${JSON.stringify(entries.body)}`);
        assert.deepEqual(entries.body.items, []);
      }
      assert.equal((await westManager.get(`/v1/ledger/operations/${opId}`)).status, 404, `west does not see the ${name} operation's entries`);
    }
  });

  it("a transfer's operations cannot be reverted: 422 at either end, whose staff read them; 404 for a third store's; nothing written", async () => {
    const northManager = t.client((await owner.post('/v1/tokens', { name: 'north-rv', role: 'manager', store_ids: [north.id] })).body.token);
    const southManager = t.client((await owner.post('/v1/tokens', { name: 'south-rv', role: 'manager', store_ids: [south.id] })).body.token);
    const west = (await owner.post('/v1/stores', { code: 'W-RV', name: 'West' })).body;
    const westManager = t.client((await owner.post('/v1/tokens', { name: 'west-rv', role: 'manager', store_ids: [west.id] })).body.token);
    const requested = await request([{ sku_id: flour.id, quantity: 3 }]);
    assert.equal((await owner.post(`/v1/transfers/${requested.body.id}/approve`)).status, 200);
    const approveOp = (await t.admin.query(`SELECT approved_op FROM stock_transfers WHERE tenant_id = $1 AND id = $2`, [tenantId, requested.body.id])).rows[0].approved_op;
    const before = await counts();
    for (const [who, client] of [['north', northManager], ['south', southManager]] as const) {
      assert.equal((await client.get(`/v1/operations/${approveOp}`)).status, 200, `${who} reads it`);
      const revert = await client.post(`/v1/operations/${approveOp}/revert`, undefined, { idempotencyKey: randomUUID() });
      assert.equal(revert.status, 422, `${who}: ${JSON.stringify(revert.body)}`);
      assert.equal(revert.body.code, 'unprocessable');
    }
    const hidden = await westManager.post(`/v1/operations/${approveOp}/revert`);
    assert.equal(hidden.status, 404, JSON.stringify(hidden.body));
    assert.equal(hidden.body.operation_type, undefined, 'the type is not named');
    assert.deepEqual(await counts(), before);
  });

  it('a transfer approval racing another consumer of the last units: never negative, exactly one wins', async () => {
    for (let round = 0; round < 10; round++) {
      const sku = (await owner.post('/v1/skus', { code: `LAST-${round}`, name: 'Last', unit: 'piece', price: 10 })).body;
      await owner.post(`/v1/stores/${north.id}/stock/receipts`, { items: [{ sku_id: sku.id, quantity: 3 }] });
      const first = await request([{ sku_id: sku.id, quantity: 3 }]);
      const second = await request([{ sku_id: sku.id, quantity: 2 }]);
      const [a, b, c] = await Promise.all([
        owner.post(`/v1/transfers/${first.body.id}/approve`),
        owner.post(`/v1/transfers/${second.body.id}/approve`),
        owner.post(`/v1/stores/${north.id}/stock/adjustments`, { sku_id: sku.id, quantity_change: -2, reason: 'damaged' }),
      ]);
      const won = [a, b, c].filter((r) => r.status === 200 || r.status === 201);
      assert.equal(won.length, 1, [a, b, c].map((r) => r.status).join(','));
      for (const lost of [a, b, c].filter((r) => r.status >= 300)) assert.equal(lost.body.code, 'insufficient_stock');
      const left = await stock(north.id, sku.id);
      assert.ok(left >= 0);
      assert.equal(left, await ledgerSum(north.id, sku.id));
    }
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  describe('bad input: problem+json and nothing written', () => {
    const cases: Array<[string, () => Promise<{ status: number; body: { code: string } }>, number, string]> = [
      ['same store twice', () => request([{ sku_id: flour.id, quantity: 1 }], north, north), 400, 'validation_failed'],
      ['unknown SKU', () => request([{ sku_id: randomUUID(), quantity: 1 }]), 400, 'validation_failed'],
      ['zero quantity', () => request([{ sku_id: flour.id, quantity: 0 }]), 400, 'validation_failed'],
      ['no items', () => request([]), 400, 'validation_failed'],
      ['unknown store', () => owner.post('/v1/transfers', { source_store_id: randomUUID(), destination_store_id: south.id, items: [{ sku_id: flour.id, quantity: 1 }] }), 404, 'not_found'],
      ['unknown transfer', () => owner.post(`/v1/transfers/${randomUUID()}/approve`), 404, 'not_found'],
      ['unknown field on approve', () => owner.post(`/v1/transfers/${randomUUID()}/approve`, { force: true }), 400, 'validation_failed'],
    ];
    for (const [name, send, status, code] of cases) {
      it(`${name} → ${status} ${code}`, async () => {
        const before = await counts();
        const response = await send();
        assert.equal(response.status, status, JSON.stringify(response.body));
        assert.equal(response.body.code, code);
        assert.deepEqual(await counts(), before);
      });
    }

    it("a store that is not the tenant's (another tenant's, or none) at either end → 404 naming that end at its field, nothing written", async () => {
      const elsewhere = await t.newTenant();
      const theirStore = (await elsewhere.owner.post('/v1/stores', { code: 'X', name: 'Theirs' })).body.id as string;
      const northStaff = t.client((await owner.post('/v1/tokens', { name: 'north-404', role: 'manager', store_ids: [north.id] })).body.token);
      const before = await counts();
      const cases: Array<[ApiClient, string, string, Array<{ path: string; message: string }>]> = [
        [owner, theirStore, south.id, [{ path: '/body/source_store_id', message: 'is not a store of this tenant' }]],
        [owner, north.id, theirStore, [{ path: '/body/destination_store_id', message: 'is not a store of this tenant' }]],
        [northStaff, north.id, randomUUID(), [{ path: '/body/destination_store_id', message: 'is not a store of this tenant' }]],
        [owner, randomUUID(), theirStore, [{ path: '/body/source_store_id', message: 'is not a store of this tenant' }, { path: '/body/destination_store_id', message: 'is not a store of this tenant' }]],
      ];
      for (const [client, source, destination, errors] of cases) {
        const response = await client.post('/v1/transfers', { source_store_id: source, destination_store_id: destination, items: [{ sku_id: flour.id, quantity: 1 }] });
        assert.equal(response.status, 404, JSON.stringify(response.body));
        assert.match(response.headers.get('content-type') ?? '', /^application\/problem\+json/);
        assert.equal(response.body.code, 'not_found');
        assert.deepEqual(response.body.errors, errors, JSON.stringify(response.body));
      }
      // A token that has neither store learns nothing about either (as before): no field named.
      const hidden = await northStaff.post('/v1/transfers', { source_store_id: south.id, destination_store_id: theirStore, items: [{ sku_id: flour.id, quantity: 1 }] });
      assert.equal(hidden.status, 404);
      assert.equal(hidden.body.errors, undefined);
      assert.deepEqual(await counts(), before);
    });

    it('a piece-tracked SKU (stock = its workshop pieces) → 400, nothing written', async () => {
      const roll = (await owner.post('/v1/skus', { code: 'ROLL-T', name: 'Roll', unit: 'metre', price: 10, tracks_pieces: true })).body;
      const before = await counts();
      const response = await request([{ sku_id: flour.id, quantity: 1 }, { sku_id: roll.id, quantity: 1 }]);
      assert.equal(response.status, 400);
      assert.deepEqual(response.body.errors, [{ path: '/body/items/1/sku_id', message: 'is piece-tracked' }]);
      assert.deepEqual(await counts(), before);
    });

    it('receiving more than was sent, or a SKU not sent → 400, nothing written', async () => {
      const requested = await request([{ sku_id: flour.id, quantity: 10 }]);
      await owner.post(`/v1/transfers/${requested.body.id}/approve`);
      const before = await counts();
      for (const items of [[{ sku_id: flour.id, quantity_received: 11 }], [{ sku_id: rice.id, quantity_received: 1 }]]) {
        const response = await owner.post(`/v1/transfers/${requested.body.id}/receive`, { items });
        assert.equal(response.status, 400);
        assert.equal(response.body.code, 'validation_failed');
      }
      assert.deepEqual(await counts(), before);
    });
  });
});
