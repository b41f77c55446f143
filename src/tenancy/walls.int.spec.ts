import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient, ApiResponse } from '../../test/support/client.js';
import { collectRoutes, type CollectedRoute } from '../../test/support/routes.js';

/**
 * DESIGN principle 8, walked over every route: a record outside the caller's
 * stores — or of another tenant — is answered exactly like one that does not
 * exist (the same status and problem, but for the id it names), and nothing
 * is written. The routes are collected from the route modules, so a route a
 * part adds is walked as soon as it is registered; one this spec does not
 * know how to name a record for fails it.
 */
const SHOP = { latitude: -1.286389, longitude: 36.817223 };

/** Routes whose records are the tenant's, not a store's: a store-limited token sees them. */
const TENANT_WIDE = new Set(['/v1/skus/:id', '/v1/parties/:id', '/v1/parties/:id/postings']);

type Ids = Record<string, string>;

describe('tenants and stores are walls, on every route', () => {
  let t: TestApp;
  let tenantA: string;
  let owner: ApiClient;
  /** An admin (every permission) limited to store S1 of tenant A. */
  let scoped: ApiClient;
  /** Tenant B's owner. */
  let outsider: ApiClient;
  let routes: CollectedRoute[];
  /** Records of tenant A's stores S2 and S3, out of the scoped admin's reach. */
  const foreign: Ids = {};
  /** Tenant-wide records of tenant A. */
  const tenantWide: Ids = {};

  const ok = (response: ApiResponse, status = 201) => {
    assert.equal(response.status, status, JSON.stringify(response.body));
    return response.body;
  };

  before(async () => {
    t = await startTestApp();
    const a = await t.newTenant('Walls A');
    tenantA = a.tenantId;
    owner = a.owner;
    outsider = (await t.newTenant('Walls B')).owner;
    const s1 = ok(await owner.post('/v1/stores', { code: 'S1', name: 'Mine' })).id;
    foreign.store = ok(await owner.post('/v1/stores', { code: 'S2', name: 'Theirs' })).id;
    foreign.otherStore = ok(await owner.post('/v1/stores', { code: 'S3', name: 'Also theirs' })).id;
    tenantWide.sku = ok(await owner.post('/v1/skus', { code: 'SOAP', name: 'Soap', unit: 'piece', price: 120 })).id;
    tenantWide.cloth = ok(await owner.post('/v1/skus', { code: 'CLOTH', name: 'Cloth', unit: 'metre', price: 900, tracks_pieces: true })).id;
    tenantWide.party = ok(await owner.post('/v1/parties', { kind: 'supplier', name: 'Supplier' })).id;
    for (const store of [s1, foreign.store, foreign.otherStore]) {
      ok(await owner.post(`/v1/stores/${store}/stock/receipts`, { items: [{ sku_id: tenantWide.sku, quantity: 100 }] }));
    }
    const sale = ok(await owner.post('/v1/sales', { store_id: foreign.store, payment_method: 'cash', items: [{ sku_id: tenantWide.sku, quantity: 1, unit_price: 120 }] }));
    foreign.sale = sale.id;
    foreign.stockCount = ok(await owner.post(`/v1/stores/${foreign.store}/stock/counts`, { items: [{ sku_id: tenantWide.sku, counted_quantity: 99 }] })).id;
    // A level above the store's stock: its low-stock list is not empty.
    ok(await owner.put(`/v1/stores/${foreign.store}/stock/${tenantWide.sku}/reorder-level`, { quantity: 1000 }), 200);
    foreign.saleOp = sale.op_id;
    foreign.payment = ok(await owner.post('/v1/payments', { party_id: tenantWide.party, store_id: foreign.store, method: 'cash', amount: 50 })).id;
    // from a supplier of its own: the party's postings below are the payment's alone
    const wholesaler = ok(await owner.post('/v1/parties', { kind: 'supplier', name: 'Wholesaler' })).id;
    foreign.purchase = ok(
      await owner.post(`/v1/stores/${foreign.store}/stock/receipts`, { supplier_id: wholesaler, items: [{ sku_id: tenantWide.sku, quantity: 10, unit_cost: 60 }] }),
    ).purchase.id;
    const received = ok(await owner.post('/v1/pieces', { store_id: foreign.store, sku_id: tenantWide.cloth, pieces: [{ kind: 'roll', quantity: 5000 }, { kind: 'roll', quantity: 3000 }] }));
    foreign.piece = received.pieces[0].id;
    foreign.reservation = ok(await owner.post('/v1/pieces/reservations', { piece_ids: [received.pieces[1].id], expires_in_seconds: 3600 })).op_id;
    const shortTransfer = ok(await owner.post('/v1/transfers', { source_store_id: foreign.store, destination_store_id: foreign.otherStore, items: [{ sku_id: tenantWide.sku, quantity: 5 }] })).id;
    ok(await owner.post(`/v1/transfers/${shortTransfer}/approve`), 200);
    ok(await owner.post(`/v1/transfers/${shortTransfer}/receive`, { items: [{ sku_id: tenantWide.sku, quantity_received: 3 }] }), 200);
    foreign.transfer = ok(await owner.post('/v1/transfers', { source_store_id: foreign.store, destination_store_id: foreign.otherStore, items: [{ sku_id: tenantWide.sku, quantity: 1 }] })).id;
    foreign.reviewItem = (await t.admin.query(`SELECT id FROM review_items WHERE tenant_id = $1 AND kind = 'transfer_shortfall'`, [tenantA])).rows[0].id;
    foreign.settlement = ok(await owner.post('/v1/settlements', { store_id: foreign.store, business_date: new Date().toISOString().slice(0, 10), declared_cash: 0 })).id;
    foreign.pointOfSale = ok(await owner.post('/v1/points-of-sale', { name: 'Kiosk', store_id: foreign.store, ...SHOP })).id;
    const agent = ok(await owner.post('/v1/tokens', { name: 'their agent', role: 'field_agent', store_ids: [foreign.store] }));
    foreign.token = agent.id;
    const visitBody = () => ({ point_of_sale_id: foreign.pointOfSale, agent_token_id: agent.id, scheduled_for: new Date().toISOString() });
    const done = ok(await owner.post('/v1/visits', visitBody())).id;
    const completion = ok(await owner.post(`/v1/visits/${done}/complete`, { ...SHOP, lines: [{ sku_id: tenantWide.sku, quantity: 2 }] }), 200);
    foreign.consignment = completion.consignment.id;
    foreign.visit = ok(await owner.post('/v1/visits', visitBody())).id;
    foreign.order = ok(
      await owner.post('/v1/orders', {
        store_id: foreign.store,
        lines: [{ sku_id: tenantWide.sku, quantity: 1 }],
        shipping_address: { name: 'Ada', line1: '1 Quay St', city: 'Lisbon', postal_code: '1100-001', country: 'PT' },
        payment_reference: 'pay-walls',
      }),
    ).id;
    scoped = t.client(ok(await owner.post('/v1/tokens', { name: 'S1 admin', role: 'admin', store_ids: [s1] })).token);
    routes = await collectRoutes(t);
  });
  after(() => t.close());

  /** The ids a route's path names, for one world: foreign records, or made-up ids. */
  function pathOf(url: string, ids: Ids): string | undefined {
    const byRoute: Record<string, Record<string, string | undefined>> = {
      '/v1/stores/:id': { id: ids.store },
      '/v1/stores/:store_id/stock': { store_id: ids.store },
      '/v1/stores/:store_id/stock/:sku_id': { store_id: ids.store, sku_id: ids.sku },
      '/v1/stores/:store_id/stock/:sku_id/ledger': { store_id: ids.store, sku_id: ids.sku },
      '/v1/stores/:store_id/stock/:sku_id/reorder-level': { store_id: ids.store, sku_id: ids.sku },
      '/v1/stores/:store_id/stock/low': { store_id: ids.store },
      '/v1/stores/:store_id/stock/receipts': { store_id: ids.store },
      '/v1/stores/:store_id/stock/adjustments': { store_id: ids.store },
      '/v1/stores/:store_id/stock/counts': { store_id: ids.store },
      '/v1/stores/:store_id/stock/counts/:id': { store_id: ids.store, id: ids.stockCount },
      '/v1/stores/:store_id/sales': { store_id: ids.store },
      '/v1/stores/:store_id/accounts': { store_id: ids.store },
      '/v1/stores/:store_id/accounts/:kind/postings': { store_id: ids.store, kind: 'cash_drawer' },
      '/v1/skus/:id': { id: ids.sku },
      '/v1/parties/:id': { id: ids.party },
      '/v1/parties/:id/postings': { id: ids.party },
      '/v1/payments/:id': { id: ids.payment },
      '/v1/purchases/:id': { id: ids.purchase },
      '/v1/purchases/:id/returns': { id: ids.purchase },
      '/v1/ledger/operations/:op_id': { op_id: ids.saleOp },
      '/v1/operations/:op_id': { op_id: ids.saleOp },
      '/v1/operations/:op_id/revert': { op_id: ids.saleOp },
      '/v1/orders/:id': { id: ids.order },
      '/v1/orders/:id/complete': { id: ids.order },
      '/v1/orders/:id/cancel': { id: ids.order },
      '/v1/pieces/:id': { id: ids.piece },
      '/v1/pieces/:id/history': { id: ids.piece },
      '/v1/pieces/reservations/:op_id/release': { op_id: ids.reservation },
      '/v1/sales/:id': { id: ids.sale },
      '/v1/sales/:id/void': { id: ids.sale },
      '/v1/sales/:id/returnable': { id: ids.sale },
      '/v1/sales/:id/returns': { id: ids.sale },
      '/v1/settlements/:id': { id: ids.settlement },
      '/v1/settlements/:id/approve': { id: ids.settlement },
      '/v1/settlements/:id/reject': { id: ids.settlement },
      '/v1/transfers/:id': { id: ids.transfer },
      '/v1/transfers/:id/approve': { id: ids.transfer },
      '/v1/transfers/:id/receive': { id: ids.transfer },
      '/v1/transfers/:id/cancel': { id: ids.transfer },
      '/v1/points-of-sale/:id': { id: ids.pointOfSale },
      '/v1/points-of-sale/:id/consignments': { id: ids.pointOfSale },
      '/v1/visits/:id': { id: ids.visit },
      '/v1/visits/:id/complete': { id: ids.visit },
      '/v1/review-items/:id': { id: ids.reviewItem },
      '/v1/review-items/:id/resolve': { id: ids.reviewItem },
      '/v1/tokens/:id/revoke': { id: ids.token },
    };
    const params = byRoute[url];
    if (params === undefined) return undefined;
    return url.replace(/:([a-z_]+)/g, (_, name: string) => params[name]!);
  }

  /** Made-up ids for every record pathOf and bodyOf name. */
  const madeUp = (): Ids => Object.fromEntries([...Object.keys(foreign), ...Object.keys(tenantWide)].map((name) => [name, randomUUID()]));

  /** A body the route's schema takes, naming the world's records (undefined: the route takes none). */
  function bodyOf(method: string, url: string, ids: Ids): unknown {
    const address = { name: 'Ada', line1: '1 Quay St', city: 'Lisbon', postal_code: '1100-001', country: 'PT' };
    const bodies: Record<string, unknown> = {
      'PATCH /v1/stores/:id': { time_zone: 'UTC' },
      'PATCH /v1/skus/:id': { name: 'Probe' },
      'POST /v1/stores/:store_id/stock/receipts': { items: [{ sku_id: ids.sku, quantity: 1 }] },
      'POST /v1/stores/:store_id/stock/adjustments': { sku_id: ids.sku, quantity_change: -1, reason: 'probe' },
      'POST /v1/stores/:store_id/stock/counts': { items: [{ sku_id: ids.sku, counted_quantity: 1 }] },
      'PUT /v1/stores/:store_id/stock/:sku_id/reorder-level': { quantity: 1 },
      'POST /v1/sales/:id/void': { reason: 'probe' },
      'POST /v1/sales/:id/returns': { items: [{ sku_id: ids.sku, quantity: 1 }], reason: 'probe' },
      'POST /v1/purchases/:id/returns': { items: [{ sku_id: ids.sku, quantity: 1 }], reason: 'probe' },
      'POST /v1/review-items/:id/resolve': { note: 'probe' },
      'POST /v1/visits/:id/complete': { ...SHOP, lines: [] },
      'POST /v1/sales': { store_id: ids.store, payment_method: 'cash', items: [{ sku_id: ids.sku, quantity: 1, unit_price: 120 }] },
      'POST /v1/sync/sales': { sales: [{ idempotency_key: `probe-${randomUUID()}`, store_id: ids.store, payment_method: 'cash', items: [{ sku_id: ids.sku, quantity: 1, unit_price: 120 }] }] },
      'POST /v1/payments': { party_id: ids.party, store_id: ids.store, method: 'cash', amount: 1 },
      'POST /v1/settlements': { store_id: ids.store, business_date: new Date().toISOString().slice(0, 10), declared_cash: 1 },
      'POST /v1/orders': { store_id: ids.store, lines: [{ sku_id: ids.sku, quantity: 1 }], shipping_address: address, payment_reference: 'probe' },
      'POST /v1/pieces': { store_id: ids.store, sku_id: ids.cloth, pieces: [{ kind: 'roll', quantity: 10 }] },
      'POST /v1/pieces/cut': { piece_id: ids.piece, parts: [10] },
      'POST /v1/pieces/combine': { piece_ids: [ids.piece], bundle_size: 1, bundle_count: 1 },
      'POST /v1/pieces/reservations': { piece_ids: [ids.piece], expires_in_seconds: 60 },
      'POST /v1/points-of-sale': { name: 'Probe', store_id: ids.store, ...SHOP },
      'POST /v1/visits': { point_of_sale_id: ids.pointOfSale, agent_token_id: ids.token, scheduled_for: new Date().toISOString() },
      'POST /v1/transfers': { source_store_id: ids.store, destination_store_id: ids.otherStore, items: [{ sku_id: ids.sku, quantity: 1 }] },
    };
    return bodies[`${method} ${url}`];
  }

  /** A problem as compared between two worlds: without its correlation id, each world's ids read as `<id>`. */
  function comparable(response: ApiResponse, ids: Ids): string {
    const { correlation_id: _correlation, ...problem } = response.body as Record<string, unknown>;
    let text = JSON.stringify(problem);
    for (const id of Object.values(ids)) text = text.split(id).join('<id>');
    return text;
  }

  async function sameAsMadeUp(client: ApiClient, method: string, url: string, real: Ids, mismatches: string[]): Promise<boolean> {
    const made = { ...real, ...madeUp() };
    const realPath = pathOf(url, real);
    const madePath = pathOf(url, made);
    if (realPath === undefined || madePath === undefined) {
      mismatches.push(`${method} ${url}: the spec names no record for it`);
      return false;
    }
    const send = (path: string, ids: Ids) => client.request(method, path, bodyOf(method, url, ids));
    const seen = await send(realPath, real);
    const missing = await send(madePath, made);
    if (seen.status !== 404 || missing.status !== 404 || comparable(seen, real) !== comparable(missing, made)) {
      mismatches.push(`${method} ${url}: ${seen.status} ${JSON.stringify(seen.body)} — made-up ids: ${missing.status} ${JSON.stringify(missing.body)}`);
      return false;
    }
    return true;
  }

  const writeCounts = async () =>
    (
      await t.admin.query(
        `SELECT (SELECT count(*) FROM operations WHERE tenant_id = $1)::int AS operations,
                (SELECT count(*) FROM events WHERE tenant_id = $1)::int AS events,
                (SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1)::int AS keys`,
        [tenantA],
      )
    ).rows[0];

  const withPathIds = (route: CollectedRoute) => route.url.includes(':') && route.auth === 'tenant';

  it("a store-limited token: every GET naming another store's record is 404, the same problem as for a made-up id", async () => {
    const mismatches: string[] = [];
    const walked = routes.filter((route) => route.method === 'GET' && withPathIds(route) && !TENANT_WIDE.has(route.url));
    for (const route of walked) await sameAsMadeUp(scoped, 'GET', route.url, { ...foreign, ...tenantWide }, mismatches);
    assert.deepEqual(mismatches, []);
    assert.ok(walked.length >= 15, `walked ${walked.length} routes`);
  });

  it("another tenant's token: every GET naming tenant A's record is 404, the same problem as for a made-up id", async () => {
    const mismatches: string[] = [];
    const walked = routes.filter((route) => route.method === 'GET' && withPathIds(route));
    for (const route of walked) await sameAsMadeUp(outsider, 'GET', route.url, { ...foreign, ...tenantWide }, mismatches);
    assert.deepEqual(mismatches, []);
  });

  it("a store-limited token and another tenant's: every write naming such a record is 404 like a made-up id, and writes nothing", async () => {
    const mismatches: string[] = [];
    const before = await writeCounts();
    const walked = routes.filter((route) => route.method !== 'GET' && route.method !== 'HEAD' && route.auth === 'tenant' && (withPathIds(route) || bodyOf(route.method, route.url, foreign) !== undefined));
    for (const route of walked) {
      for (const [who, client] of [['store-limited', scoped], ['other tenant', outsider]] as const) {
        if (route.url === '/v1/sync/sales') continue; // answered per sale, below
        if (who === 'store-limited' && route.url === '/v1/transfers') continue; // neither store in scope: 404; one of them: allowed by design
        const before = mismatches.length;
        if (who === 'store-limited' && route.url === '/v1/skus/:id') {
          // A SKU is tenant-wide (the store-limited token reads it): changing one is refused to any token limited
          // to some stores, 403 before the SKU is looked for — the same answer for a made-up id, telling nothing.
          const seen = await client.request(route.method, `/v1/skus/${tenantWide.sku}`, bodyOf(route.method, route.url, tenantWide));
          const made = madeUp();
          const missing = await client.request(route.method, `/v1/skus/${made.sku}`, bodyOf(route.method, route.url, made));
          if (seen.status !== 403 || missing.status !== 403 || comparable(seen, tenantWide) !== comparable(missing, made)) {
            mismatches.push(`${route.method} ${route.url}: ${seen.status} ${JSON.stringify(seen.body)} — made-up id: ${missing.status} ${JSON.stringify(missing.body)}`);
          }
        } else if (route.url.includes(':')) await sameAsMadeUp(client, route.method, route.url, { ...foreign, ...tenantWide }, mismatches);
        else {
          const seen = await client.request(route.method, route.url, bodyOf(route.method, route.url, { ...foreign, ...tenantWide }));
          const made = { ...foreign, ...tenantWide, ...madeUp() };
          const missing = await client.request(route.method, route.url, bodyOf(route.method, route.url, made));
          if (seen.status !== missing.status || comparable(seen, { ...foreign, ...tenantWide }) !== comparable(missing, made)) {
            mismatches.push(`${route.method} ${route.url}: ${seen.status} ${JSON.stringify(seen.body)} — made-up ids: ${missing.status} ${JSON.stringify(missing.body)}`);
          }
        }
        if (mismatches.length > before) mismatches[mismatches.length - 1] = `${who}: ${mismatches[mismatches.length - 1]}`;
      }
    }
    assert.deepEqual(mismatches, []);
    assert.deepEqual(await writeCounts(), before, 'nothing written in tenant A');
    assert.ok(walked.length >= 25, `walked ${walked.length} routes`);
  });

  it('every list, to a store-limited token or another tenant, names none of the records out of its reach', async () => {
    const leaks: string[] = [];
    const lists = routes.filter((route) => route.method === 'GET' && route.auth === 'tenant' && !route.url.includes(':'));
    const outOfReach = Object.values(foreign);
    const tenantAIds = [...outOfReach, ...Object.values(tenantWide)];
    for (const route of lists) {
      for (const [client, ids] of [[scoped, outOfReach], [outsider, tenantAIds]] as const) {
        const response = await client.get(route.url);
        const text = JSON.stringify(response.body);
        for (const id of ids) if (text.includes(id)) leaks.push(`${route.url} names ${id} (${response.status})`);
      }
    }
    assert.deepEqual(leaks, []);
    assert.ok(lists.length >= 12, `walked ${lists.length} lists`);
  });

  it("a list filtered by another store (?store_id=) is 404, as for a made-up store", async () => {
    const mismatches: string[] = [];
    const lists = ['/v1/pieces', '/v1/points-of-sale', '/v1/settlements', '/v1/transfers', '/v1/analytics/daily-sales'];
    for (const url of lists) {
      for (const client of [scoped, outsider]) {
        const made = randomUUID();
        const days = url === '/v1/analytics/daily-sales' ? `&from=2026-01-01&to=2026-12-31` : '';
        const seen = await client.get(`${url}?store_id=${foreign.store}${days}`);
        const missing = await client.get(`${url}?store_id=${made}${days}`);
        if (seen.status !== 404 || comparable(seen, { id: foreign.store! }) !== comparable(missing, { id: made })) {
          mismatches.push(`${url}: ${seen.status} ${JSON.stringify(seen.body)} — made-up: ${missing.status} ${JSON.stringify(missing.body)}`);
        }
      }
    }
    assert.deepEqual(mismatches, []);
  });

  it("a tenant-wide record to a store-limited token: a party's postings hold its stores' only", async () => {
    const postings = ok(await scoped.get(`/v1/parties/${tenantWide.party}/postings`), 200);
    assert.deepEqual(postings.items, []);
    assert.equal(ok(await owner.get(`/v1/parties/${tenantWide.party}/postings`), 200).items.length, 1);
  });

  it("ids of records out of reach inside a body (a piece, a reservation, a consignment, an agent, a party, a SKU) are refused as made-up ones, nothing written", async () => {
    const s1 = (await owner.get('/v1/stores')).body.items.find((store: { code: string }) => store.code === 'S1').id as string;
    const mine = ok(await owner.post('/v1/pieces', { store_id: s1, sku_id: tenantWide.cloth, pieces: [{ kind: 'roll', quantity: 4000 }] })).pieces[0].id as string;
    // held by a reservation of its own store: a foreign reservation named with it unlocks it no more than a made-up one
    ok(await owner.post('/v1/pieces/reservations', { piece_ids: [mine], expires_in_seconds: 3600 }));
    const pointOfSale = ok(await owner.post('/v1/points-of-sale', { name: 'My kiosk', store_id: s1, ...SHOP })).id as string;
    const agent = ok(await owner.post('/v1/tokens', { name: 'my agent', role: 'field_agent', store_ids: [s1] })).id as string;
    const visit = ok(await owner.post('/v1/visits', { point_of_sale_id: pointOfSale, agent_token_id: agent, scheduled_for: new Date().toISOString() })).id as string;
    const b = await outsiderShop();
    const cases: Array<[string, ApiClient, string, string, (ids: Ids) => unknown]> = [
      ['a foreign piece sold', scoped, 'POST', '/v1/sales', (ids) => ({ store_id: s1, payment_method: 'cash', items: [{ sku_id: tenantWide.cloth, piece_ids: [ids.piece], unit_price: 1 }] })],
      ['a foreign reservation named by a sale', scoped, 'POST', '/v1/sales', (ids) => ({ store_id: s1, payment_method: 'cash', reservation_op_id: ids.reservation, items: [{ sku_id: tenantWide.cloth, piece_ids: [mine], unit_price: 1 }] })],
      ['a foreign reservation named by a cut', scoped, 'POST', '/v1/pieces/cut', (ids) => ({ piece_id: mine, parts: [10], reservation_op_id: ids.reservation })],
      ['a foreign reservation named by a combine', scoped, 'POST', '/v1/pieces/combine', (ids) => ({ piece_ids: [mine], bundle_size: 1, bundle_count: 1, reservation_op_id: ids.reservation })],
      ['a foreign piece combined with one of mine', scoped, 'POST', '/v1/pieces/combine', (ids) => ({ piece_ids: [mine, ids.piece], bundle_size: 1, bundle_count: 1 })],
      ['a foreign piece reserved with one of mine', scoped, 'POST', '/v1/pieces/reservations', (ids) => ({ piece_ids: [mine, ids.piece], expires_in_seconds: 60 })],
      ['a foreign consignment settled', scoped, 'POST', `/v1/visits/${visit}/complete`, (ids) => ({ ...SHOP, lines: [], settlement: { consignment_id: ids.consignment, lines: [{ sku_id: tenantWide.sku, sold_quantity: 1, returned_quantity: 1 }] } })],
      ['a foreign agent', scoped, 'POST', '/v1/visits', (ids) => ({ point_of_sale_id: pointOfSale, agent_token_id: ids.token, scheduled_for: new Date().toISOString() })],
      ['a token for a foreign store', scoped, 'POST', '/v1/tokens', (ids) => ({ name: 'probe', role: 'cashier', store_ids: [s1, ids.store] })],
      ['a transfer between two foreign stores', scoped, 'POST', '/v1/transfers', (ids) => ({ source_store_id: ids.store, destination_store_id: ids.otherStore, items: [{ sku_id: tenantWide.sku, quantity: 1 }] })],
      ["tenant A's SKU sold", b.client, 'POST', '/v1/sales', (ids) => ({ store_id: b.store, payment_method: 'cash', items: [{ sku_id: ids.sku, quantity: 1, unit_price: 1 }] })],
      ["tenant A's party as a customer", b.client, 'POST', '/v1/sales', (ids) => ({ store_id: b.store, payment_method: 'credit', customer_id: ids.party, items: [{ sku_id: b.sku, quantity: 1, unit_price: 1 }] })],
      ["tenant A's party paid", b.client, 'POST', '/v1/payments', (ids) => ({ party_id: ids.party, store_id: b.store, method: 'cash', amount: 1 })],
      ["tenant A's party for a point of sale", b.client, 'POST', '/v1/points-of-sale', (ids) => ({ name: 'Probe', store_id: b.store, party_id: ids.party, ...SHOP })],
      ["tenant A's store in a token", b.client, 'POST', '/v1/tokens', (ids) => ({ name: 'probe', role: 'cashier', store_ids: [ids.store] })],
      ["tenant A's store as a transfer's end", b.client, 'POST', '/v1/transfers', (ids) => ({ source_store_id: b.store, destination_store_id: ids.store, items: [{ sku_id: b.sku, quantity: 1 }] })],
      ["tenant A's SKU received", b.client, 'POST', `/v1/stores/${b.store}/stock/receipts`, (ids) => ({ items: [{ sku_id: ids.sku, quantity: 1 }] })],
      ["tenant A's piece SKU received as pieces", b.client, 'POST', '/v1/pieces', (ids) => ({ store_id: b.store, sku_id: ids.cloth, pieces: [{ kind: 'roll', quantity: 1 }] })],
    ];
    const mismatches: string[] = [];
    const before = await writeCounts();
    const beforeB = await b.counts();
    for (const [name, client, method, url, body] of cases) {
      const real = { ...foreign, ...tenantWide };
      const made = { ...real, ...madeUp() };
      const seen = await client.request(method, url, body(real));
      const missing = await client.request(method, url, body(made));
      if (seen.status < 400 || seen.status !== missing.status || comparable(seen, real) !== comparable(missing, made)) {
        mismatches.push(`${name}: ${seen.status} ${JSON.stringify(seen.body)} — made-up ids: ${missing.status} ${JSON.stringify(missing.body)}`);
      }
    }
    assert.deepEqual(mismatches, []);
    assert.deepEqual(await writeCounts(), before, 'nothing written in tenant A');
    assert.deepEqual(await b.counts(), beforeB, 'nothing written in tenant B');
  });

  /** Tenant B's own store and SKU (with stock), its owner, and its write counts. */
  async function outsiderShop() {
    const store = ok(await outsider.post('/v1/stores', { code: 'B1', name: 'B shop' })).id as string;
    const sku = ok(await outsider.post('/v1/skus', { code: 'B-SOAP', name: 'Soap', unit: 'piece', price: 1 })).id as string;
    ok(await outsider.post(`/v1/stores/${store}/stock/receipts`, { items: [{ sku_id: sku, quantity: 10 }] }));
    const tenant = (await t.admin.query('SELECT tenant_id FROM stores WHERE id = $1', [store])).rows[0].tenant_id as string;
    const counts = async () =>
      (await t.admin.query(`SELECT (SELECT count(*) FROM operations WHERE tenant_id = $1)::int AS operations, (SELECT count(*) FROM events WHERE tenant_id = $1)::int AS events`, [tenant])).rows[0];
    return { client: outsider, store, sku, counts };
  }
});
