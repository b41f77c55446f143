import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { aWeekendLater } from '../../test/support/idempotency.js';
import { balanceAndLedger, givenMilkShop, saleRowCounts } from './testkit.js';

/**
 * A header as a client sends it in UTF-8 (curl, Go, Python…): its bytes on
 * the wire. fetch (and node:http) refuse a header value with characters
 * above U+00FF and send each character up to it as one byte, so the UTF-8
 * bytes go as one Latin-1 character each — exactly what those clients send.
 */
const utf8OnTheWire = (key: string) => Buffer.from(key, 'utf8').toString('latin1');

/**
 * A non-ASCII key in an Idempotency-Key header and the same key in a synced
 * sale's body are one key: a till that tried a sale online, got no answer and
 * synced it from its queue has it sold once.
 */
describe('POST /v1/sales and /v1/sync/sales: one key in UTF-8, in the header or in the body', () => {
  let t: TestApp;
  let owner: ApiClient;
  let cashier: ApiClient;
  let tenantId: string;
  let storeId: string;
  let milk: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, cashier, tenantId, storeId, milk } = await givenMilkShop(t));
  });
  after(() => t.close());

  const sale = (quantity = 1) => ({
    store_id: storeId,
    payment_method: 'cash',
    client_created_at: '2026-11-22T09:30:00.000Z',
    items: [{ sku_id: milk, quantity, unit_price: 120 }],
  });
  /** A key of the till's own making, not ASCII (the till's name, a cashier's, a receipt series…). */
  const tillKey = () => `ключ-касса-🔑-${randomUUID()}`;

  /** What one sale leaves: one sale row more, its quantity once out of stock, ledger = balance. */
  async function soldOnce(before: Record<string, number | string>, stock: { balance: number; ledger: number }, quantity: number) {
    assert.equal((await saleRowCounts(t, tenantId)).sales, Number(before.sales) + 1, 'one sale');
    assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, milk), { balance: stock.balance - quantity, ledger: stock.ledger - quantity }, 'stock taken once');
  }

  it('a sale sent online under a UTF-8 key, then synced under that key in its body, is one sale (the sync replays it)', async () => {
    const key = tillKey();
    const before = await saleRowCounts(t, tenantId);
    const stock = await balanceAndLedger(t, tenantId, storeId, milk);
    const online = await cashier.post('/v1/sales', sale(2), { idempotencyKey: utf8OnTheWire(key) });
    assert.equal(online.status, 201, JSON.stringify(online.body));
    const synced = await cashier.post('/v1/sync/sales', { sales: [{ idempotency_key: key, ...sale(2) }] });
    assert.equal(synced.status, 200, JSON.stringify(synced.body));
    const [result] = synced.body.results;
    assert.deepEqual([result.idempotency_key, result.status, result.replayed, result.body.id], [key, 201, true, online.body.id]);
    await soldOnce(before, stock, 2);
    // The key is kept as the text the client meant, the text a synced sale names.
    const kept = await t.admin.query('SELECT key FROM idempotency_keys WHERE tenant_id = $1 AND op_id = (SELECT op_id FROM sales WHERE tenant_id = $1 AND id = $2)', [tenantId, online.body.id]);
    assert.deepEqual(kept.rows.map((row) => row.key), [key]);
  });

  it('the reverse: synced first, then the same sale sent online under the key in UTF-8, is replayed', async () => {
    const key = tillKey();
    const before = await saleRowCounts(t, tenantId);
    const stock = await balanceAndLedger(t, tenantId, storeId, milk);
    const synced = await cashier.post('/v1/sync/sales', { sales: [{ idempotency_key: key, ...sale(3) }] });
    assert.deepEqual([synced.body.results[0].status, synced.body.results[0].replayed], [201, false], JSON.stringify(synced.body));

    const online = await cashier.post('/v1/sales', sale(3), { idempotencyKey: utf8OnTheWire(key) });
    assert.equal(online.status, 201, JSON.stringify(online.body));
    assert.equal(online.headers.get('idempotent-replayed'), 'true');
    assert.equal(online.body.id, synced.body.results[0].body.id);
    await soldOnce(before, stock, 3);
  });

  it('a header that is not UTF-8 is read as Latin-1, as before: café sent as the byte E9 is the key café of the body', async () => {
    const key = `café-${randomUUID()}`;
    const before = await saleRowCounts(t, tenantId);
    const stock = await balanceAndLedger(t, tenantId, storeId, milk);
    // fetch sends "é" (U+00E9) as the one byte E9: a Latin-1 header.
    const online = await cashier.post('/v1/sales', sale(1), { idempotencyKey: key });
    assert.equal(online.status, 201, JSON.stringify(online.body));
    const synced = await cashier.post('/v1/sync/sales', { sales: [{ idempotency_key: key, ...sale(1) }] });
    assert.deepEqual([synced.body.results[0].status, synced.body.results[0].replayed, synced.body.results[0].body.id], [201, true, online.body.id]);
    // The same key in UTF-8 is the same key too.
    const inUtf8 = await cashier.post('/v1/sales', sale(1), { idempotencyKey: utf8OnTheWire(key) });
    assert.deepEqual([inUtf8.status, inUtf8.headers.get('idempotent-replayed'), inUtf8.body.id], [201, 'true', online.body.id]);
    await soldOnce(before, stock, 1);
  });

  it('a sale stored under the key as it was read before (its UTF-8 bytes as Latin-1) still replays, online and synced, a weekend later; the key still names only that sale', async () => {
    const key = tillKey();
    const before = await saleRowCounts(t, tenantId);
    const stock = await balanceAndLedger(t, tenantId, storeId, milk);
    const first = await cashier.post('/v1/sales', sale(4), { idempotencyKey: utf8OnTheWire(key) });
    assert.equal(first.status, 201, JSON.stringify(first.body));
    // As a sale sent online before this change was stored: its record under the header's bytes read as Latin-1
    // (the operation row, immutable, keeps the key as read now; replays go by the record), not marked key_as_text (migration 1050).
    const oldForm = utf8OnTheWire(key);
    const moved = await t.admin.query('UPDATE idempotency_keys SET key = $3, key_as_text = false WHERE tenant_id = $1 AND key = $2', [tenantId, key, oldForm]);
    assert.equal(moved.rowCount, 1);
    // A sale's key is kept for good: past IDEMPOTENCY_TTL_HOURS it still answers.
    await aWeekendLater(t, tenantId, oldForm);
    const afterFirst = await saleRowCounts(t, tenantId);

    // The till's retry after the upgrade…
    const retried = await cashier.post('/v1/sales', sale(4), { idempotencyKey: utf8OnTheWire(key) });
    assert.deepEqual([retried.status, retried.headers.get('idempotent-replayed'), retried.body.id], [201, 'true', first.body.id], JSON.stringify(retried.body));
    // …and the same sale synced from its queue.
    const synced = await cashier.post('/v1/sync/sales', { sales: [{ idempotency_key: key, ...sale(4) }] });
    assert.deepEqual([synced.body.results[0].status, synced.body.results[0].replayed, synced.body.results[0].body.id], [201, true, first.body.id], JSON.stringify(synced.body));
    // Another request under the key is refused, online and synced: the key is still that sale's.
    const other = await cashier.post('/v1/sales', sale(5), { idempotencyKey: utf8OnTheWire(key) });
    assert.deepEqual([other.status, other.body.code], [422, 'idempotency_key_reused']);
    const otherSynced = await cashier.post('/v1/sync/sales', { sales: [{ idempotency_key: key, ...sale(5) }] });
    assert.deepEqual([otherSynced.body.results[0].status, otherSynced.body.results[0].body.code], [422, 'idempotency_key_reused']);
    assert.deepEqual(await saleRowCounts(t, tenantId), afterFirst, 'nothing new written');
    await soldOnce(before, stock, 4);
  });

  it('a key sold twice before this change (once under each form) is answered by the record under the key itself', async () => {
    const key = tillKey();
    // Synced under the key, and — the defect — sold again online under its bytes read as Latin-1
    // (recorded here through a synced sale that names that text: the same row an online sale left).
    const synced = await cashier.post('/v1/sync/sales', { sales: [{ idempotency_key: key, ...sale(1) }] });
    const mojibake = await cashier.post('/v1/sync/sales', { sales: [{ idempotency_key: utf8OnTheWire(key), ...sale(1) }] });
    assert.deepEqual([synced.body.results[0].status, mojibake.body.results[0].status, mojibake.body.results[0].replayed], [201, 201, false]);
    const before = await saleRowCounts(t, tenantId);
    const online = await cashier.post('/v1/sales', sale(1), { idempotencyKey: utf8OnTheWire(key) });
    assert.deepEqual([online.status, online.headers.get('idempotent-replayed'), online.body.id], [201, 'true', synced.body.results[0].body.id]);
    assert.deepEqual(await saleRowCounts(t, tenantId), before, 'nothing new written');
  });

  it("a key whose text is another key's UTF-8 read as Latin-1, used since, is a key of its own: the other key is not answered by its record", async () => {
    const key = tillKey();
    // A key that happens to be the text `key`'s bytes spell in Latin-1, sent since the upgrade (a synced sale's, or a header's in UTF-8).
    const lookalike = utf8OnTheWire(key);
    const synced = await cashier.post('/v1/sync/sales', { sales: [{ idempotency_key: lookalike, ...sale(1) }] });
    assert.deepEqual([synced.body.results[0].status, synced.body.results[0].replayed], [201, false], JSON.stringify(synced.body));
    const before = await saleRowCounts(t, tenantId);
    const stock = await balanceAndLedger(t, tenantId, storeId, milk);
    // `key` itself, new: its own sale, not a replay of the lookalike's (nor 422 for it).
    const online = await cashier.post('/v1/sales', sale(2), { idempotencyKey: utf8OnTheWire(key) });
    assert.deepEqual([online.status, online.headers.get('idempotent-replayed')], [201, null], JSON.stringify(online.body));
    assert.notEqual(online.body.id, synced.body.results[0].body.id);
    await soldOnce(before, stock, 2);
    // Synced, the same: its own sale replays (online's), not the lookalike's.
    const again = await cashier.post('/v1/sync/sales', { sales: [{ idempotency_key: key, ...sale(2) }] });
    assert.deepEqual([again.body.results[0].status, again.body.results[0].replayed, again.body.results[0].body.id], [201, true, online.body.id], JSON.stringify(again.body));
  });

  it("a sync batch's own key in UTF-8, stored as it was read before, still makes the same batch a replay and another batch 422", async () => {
    const batchKey = tillKey();
    const batch = { sales: [{ idempotency_key: tillKey(), ...sale(1) }] };
    const first = await cashier.post('/v1/sync/sales', batch, { idempotencyKey: utf8OnTheWire(batchKey) });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    // As the earlier release kept it: under its bytes read as Latin-1, not marked key_as_text (migration 1050).
    const moved = await t.admin.query('UPDATE idempotency_keys SET key = $3, key_as_text = false WHERE tenant_id = $1 AND key = $2', [tenantId, `sync-batch:${batchKey}`, `sync-batch:${utf8OnTheWire(batchKey)}`]);
    assert.equal(moved.rowCount, 1);
    const before = await saleRowCounts(t, tenantId);
    const again = await cashier.post('/v1/sync/sales', batch, { idempotencyKey: utf8OnTheWire(batchKey) });
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    const another = await cashier.post('/v1/sync/sales', { sales: [{ idempotency_key: tillKey(), ...sale(1) }] }, { idempotencyKey: utf8OnTheWire(batchKey) });
    assert.deepEqual([another.status, another.body.code], [422, 'idempotency_key_reused']);
    assert.deepEqual(await saleRowCounts(t, tenantId), before, 'nothing new written');
  });

  it('1 to 255 characters counts the characters of the key, not its bytes; reserved keys are refused in UTF-8 too', async () => {
    const before = await saleRowCounts(t, tenantId);
    // 255 Cyrillic letters are 510 bytes: a key of 255 characters, taken.
    const longest = `${'я'.repeat(218)}${randomUUID()}🔑`;
    assert.equal([...longest].length, 255);
    const taken = await cashier.post('/v1/sales', sale(1), { idempotencyKey: utf8OnTheWire(longest) });
    assert.equal(taken.status, 201, JSON.stringify(taken.body));
    const synced = await cashier.post('/v1/sync/sales', { sales: [{ idempotency_key: longest, ...sale(1) }] });
    assert.deepEqual([synced.body.results[0].status, synced.body.results[0].replayed, synced.body.results[0].body.id], [201, true, taken.body.id]);
    const afterTaken = await saleRowCounts(t, tenantId);
    assert.equal(afterTaken.sales, Number(before.sales) + 1);

    const tooLong = await cashier.post('/v1/sales', sale(1), { idempotencyKey: utf8OnTheWire(`${longest}я`) });
    assert.deepEqual([tooLong.status, tooLong.body.code], [400, 'validation_failed'], JSON.stringify(tooLong.body));
    assert.deepEqual(tooLong.body.errors.map((error: { path: string }) => error.path), ['/headers/idempotency-key']);
    // Refused before the route looks anything up, as the header's schema refused it: a void of no sale is 400 for its key first.
    const voidTooLong = await owner.post(`/v1/sales/${randomUUID()}/void`, { reason: 'x' }, { idempotencyKey: utf8OnTheWire(`${longest}я`) });
    assert.deepEqual([voidTooLong.status, voidTooLong.body.errors?.[0]?.path], [400, '/headers/idempotency-key'], JSON.stringify(voidTooLong.body));
    const reserved = await cashier.post('/v1/sales', sale(1), { idempotencyKey: utf8OnTheWire('sync-batch:ключ') });
    assert.deepEqual([reserved.status, reserved.body.code], [400, 'validation_failed']);
    assert.deepEqual(await saleRowCounts(t, tenantId), afterTaken, 'nothing written by the refusals');
  });
});
