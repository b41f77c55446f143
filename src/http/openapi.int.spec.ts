import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { ApiClient } from '../../test/support/client.js';
import { givenSku, givenStock, givenStore } from '../sales/testkit.js';
import { ERROR_STATUS } from '../core/errors.js';

type Schema = { $ref?: string; properties?: Record<string, Schema>; items?: Schema };
type Operation = { parameters?: Array<{ in: string; name: string }>; responses: Record<string, { headers?: Record<string, unknown>; content?: Record<string, { schema?: Schema }> }> };

describe('the OpenAPI document (GET /openapi.json)', () => {
  let t: TestApp;
  let doc: { paths: Record<string, Record<string, Operation>>; components: { schemas: Record<string, { required?: string[] }> } };
  before(async () => {
    t = await startTestApp();
    doc = (await new ApiClient(t.baseUrl, undefined).get('/openapi.json')).body;
  });
  after(() => t.close());

  it('documents the status each command answers: 201 where it creates, as the API does', async () => {
    const { owner } = await t.newTenant();
    const store = await givenStore(owner, 'MAIN');
    const sku = await givenSku(owner, 'SOAP', 'piece', 120);
    const answered = {
      'post /v1/tenants': (await t.operator.post('/v1/tenants', { name: 'documented' })).status,
      'post /v1/tokens': (await owner.post('/v1/tokens', { name: 'till', role: 'cashier' })).status,
      'post /v1/stores/{store_id}/stock/adjustments': (await owner.post(`/v1/stores/${store}/stock/adjustments`, { sku_id: sku, quantity_change: 5, reason: 'count' })).status,
    };
    for (const [operation, status] of Object.entries(answered)) {
      const [method, path] = operation.split(' ') as [string, string];
      assert.deepEqual(Object.keys(doc.paths[path]![method]!.responses).filter((code) => code.startsWith('2')), [String(status)], operation);
    }
  });

  it('says that a replay of a tenant\'s or a token\'s creation answers token: null (the secret is shown once)', () => {
    const operations = doc.paths as unknown as Record<string, Record<string, { summary?: string }>>;
    for (const path of ['/v1/tenants', '/v1/tokens']) assert.match(operations[path]!.post!.summary ?? '', /replay[^.]*`token: null`/, path);
  });

  it('documents the problem+json refusals of every operation', () => {
    assert.deepEqual(doc.components.schemas.Problem?.required?.slice().sort(), ['code', 'correlation_id', 'detail', 'status', 'title', 'type']);
    for (const [path, operations] of Object.entries(doc.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        for (const range of ['4XX', '5XX']) {
          const schema = operation.responses[range]?.content?.['application/problem+json']?.schema;
          assert.equal(schema?.$ref, '#/components/schemas/Problem', `${method} ${path} ${range}`);
        }
      }
    }
  });
  it('names every problem code with its status, so a client generated from the document knows them', () => {
    const code = (doc.components.schemas.Problem as { properties?: Record<string, { description?: string }> }).properties?.code;
    for (const [name, status] of Object.entries(ERROR_STATUS)) assert.ok(code?.description?.includes(`${name} (${status})`), `${name} (${status}) in ${JSON.stringify(code)}`);
  });
  it('writes a choice of strings as one string enum (not anyOf one-value enums), which client generators turn into an enum type', () => {
    const literalUnions: string[] = [];
    const walk = (value: unknown, at: string): void => {
      if (Array.isArray(value)) return value.forEach((member, index) => walk(member, `${at}/${index}`));
      if (value === null || typeof value !== 'object') return;
      const anyOf = (value as { anyOf?: unknown[] }).anyOf;
      if (anyOf?.length && anyOf.every((branch) => (branch as { enum?: unknown[] }).enum?.length === 1)) literalUnions.push(at);
      for (const [key, member] of Object.entries(value)) walk(member, `${at}/${key}`);
    };
    walk(doc, '#');
    assert.deepEqual(literalUnions, []);
    const sale = (doc.paths['/v1/sales']!.post as unknown as { requestBody: { content: Record<string, { schema: { properties: Record<string, unknown> } }> } }).requestBody.content['application/json']!.schema;
    assert.deepEqual(sale.properties.payment_method, { type: 'string', enum: ['cash', 'card', 'mobile', 'credit'] });
  });
  it('documents the body of an action that takes none (no body, {} or null) as optional, as the API reads it', async () => {
    type Body = { required?: boolean; content?: Record<string, { schema?: { anyOf?: Array<{ type?: string }> } }> };
    const optional: string[] = [];
    for (const [path, operations] of Object.entries(doc.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        const body = (operation as { requestBody?: Body }).requestBody;
        const acceptsNull = body?.content?.['application/json']?.schema?.anyOf?.some((branch) => branch.type === 'null') ?? false;
        if (!acceptsNull) continue;
        assert.notEqual(body?.required, true, `${method} ${path} documents its body as required, but the API takes the action without one`);
        optional.push(`${method} ${path}`);
      }
    }
    for (const operation of ['post /v1/transfers/{id}/approve', 'post /v1/transfers/{id}/cancel', 'post /v1/tokens/{id}/revoke', 'post /v1/operations/{op_id}/revert']) {
      assert.ok(optional.includes(operation), `${operation} in ${JSON.stringify(optional)}`);
    }
    const { owner } = await t.newTenant();
    const till = (await owner.post('/v1/tokens', { name: 'till', role: 'cashier' })).body;
    assert.equal((await owner.post(`/v1/tokens/${till.id}/revoke`)).status, 200, 'revoked without a body');
  });
  it('documents the If-Match header on every action that honours it (a stale one is 412 there)', async () => {
    const { owner } = await t.newTenant();
    const store = await givenStore(owner, 'MAIN');
    const other = await givenStore(owner, 'OTHER');
    const sku = await givenSku(owner, 'SOAP', 'piece', 120);
    const transfer = (await owner.post('/v1/transfers', { source_store_id: store, destination_store_id: other, items: [{ sku_id: sku, quantity: 1 }] })).body;
    const order = (await owner.post('/v1/orders', { store_id: store, lines: [{ sku_id: sku, quantity: 1 }], shipping_address: { name: 'A', line1: 'B', city: 'C', postal_code: '1', country: 'KE' }, payment_reference: 'p1' })).body;
    const stale = { headers: { 'if-match': '"99"' } };
    const honoured = {
      'post /v1/transfers/{id}/approve': await owner.post(`/v1/transfers/${transfer.id}/approve`, undefined, stale),
      'post /v1/transfers/{id}/receive': await owner.post(`/v1/transfers/${transfer.id}/receive`, {}, stale),
      'post /v1/transfers/{id}/cancel': await owner.post(`/v1/transfers/${transfer.id}/cancel`, undefined, stale),
      'post /v1/orders/{id}/complete': await owner.post(`/v1/orders/${order.id}/complete`, {}, stale),
      'post /v1/orders/{id}/cancel': await owner.post(`/v1/orders/${order.id}/cancel`, {}, stale),
      'patch /v1/tenant/settings': await owner.patch('/v1/tenant/settings', { settlement_float: 1 }, stale),
    };
    for (const [operation, response] of Object.entries(honoured)) {
      assert.equal(response.status, 412, `${operation}: ${JSON.stringify(response.body)}`);
      const [method, path] = operation.split(' ') as [string, string];
      const headers = (doc.paths[path]![method]!.parameters ?? []).filter((p) => p.in === 'header').map((p) => p.name);
      assert.ok(headers.includes('if-match'), `${operation} documents headers ${JSON.stringify(headers)}`);
    }
  });
  it('documents the response headers the API sends (ETag, Idempotent-Replayed, X-Correlation-ID), where it sends them', async () => {
    const { owner } = await t.newTenant();
    const store = await givenStore(owner, 'MAIN');
    const other = await givenStore(owner, 'OTHER');
    const sku = await givenSku(owner, 'SOAP', 'piece', 120);
    await givenStock(owner, store, [{ sku_id: sku, quantity: 10 }]);
    const cloth = (await owner.post('/v1/skus', { code: 'CLOTH', name: 'Cloth', unit: 'metre', price: 500, tracks_pieces: true })).body;
    const roll = (await owner.post('/v1/pieces', { store_id: store, sku_id: cloth.id, pieces: [{ kind: 'roll', quantity: 1000 }] })).body.pieces[0];
    const transferBody = { source_store_id: store, destination_store_id: other, items: [{ sku_id: sku, quantity: 1 }] };
    const transfer = await owner.post('/v1/transfers', transferBody, { idempotencyKey: 'documented-headers' });
    const settlement = await owner.post('/v1/settlements', { store_id: store, business_date: '2026-01-02', declared_cash: 0 });
    const order = await owner.post('/v1/orders', { store_id: store, lines: [{ sku_id: sku, quantity: 1 }], shipping_address: { name: 'A', line1: 'B', city: 'C', postal_code: '1', country: 'KE' }, payment_reference: 'p1' });
    const answers: Array<[string, string, { status: number; headers: Headers }]> = [
      ['post', '/v1/transfers', transfer],
      ['post', '/v1/transfers', await owner.post('/v1/transfers', transferBody, { idempotencyKey: 'documented-headers' })],
      ['get', '/v1/transfers/{id}', await owner.get(`/v1/transfers/${transfer.body.id}`)],
      ['post', '/v1/transfers/{id}/approve', await owner.post(`/v1/transfers/${transfer.body.id}/approve`)],
      ['post', '/v1/settlements', settlement],
      ['get', '/v1/settlements/{id}', await owner.get(`/v1/settlements/${settlement.body.id}`)],
      ['post', '/v1/orders', order],
      ['get', '/v1/orders/{id}', await owner.get(`/v1/orders/${order.body.id}`)],
      ['get', '/v1/pieces/{id}', await owner.get(`/v1/pieces/${roll.id}`)],
      ['get', '/v1/tenant/settings', await owner.get('/v1/tenant/settings')],
      ['patch', '/v1/tenant/settings', await owner.patch('/v1/tenant/settings', { settlement_float: 1 })],
      ['post', '/v1/stores', await owner.post('/v1/stores', { code: 'THIRD', name: 'Third' })],
      ['get', '/v1/stores', await owner.get('/v1/stores')],
    ];
    let replayed = 0;
    for (const [method, path, response] of answers) {
      const status = String(response.status);
      const documented = Object.keys(doc.paths[path]![method]!.responses[status]?.headers ?? {}).map((name) => name.toLowerCase());
      for (const name of ['etag', 'idempotent-replayed', 'x-correlation-id']) {
        if (response.headers.get(name) === null) continue;
        if (name === 'idempotent-replayed') replayed += 1;
        assert.ok(documented.includes(name), `${method} ${path} ${status} sends ${name} but documents ${JSON.stringify(documented)}`);
      }
    }
    assert.equal(replayed, 1, 'the replayed transfer request was answered with Idempotent-Replayed');
    for (const name of ['etag']) assert.ok(answers.filter(([, , r]) => r.headers.get(name) !== null).length >= 8, `${name} sent where expected`);
    const refused = await owner.get(`/v1/transfers/00000000-0000-4000-8000-000000000000`);
    assert.equal(refused.status, 404);
    assert.ok(refused.headers.get('x-correlation-id'));
    const refusalHeaders = Object.keys(doc.paths['/v1/transfers/{id}']!.get!.responses['4XX']?.headers ?? {}).map((name) => name.toLowerCase());
    assert.ok(refusalHeaders.includes('x-correlation-id') && refusalHeaders.includes('retry-after'), JSON.stringify(refusalHeaders));
  });
  it("documents API.md's health and metrics endpoints, open to callers without a token, with what they answer", async () => {
    const anonymous = new ApiClient(t.baseUrl, undefined);
    for (const path of ['/healthz', '/readyz', '/metrics']) {
      const operation = doc.paths[path]?.get as (Operation & { security?: unknown[] }) | undefined;
      assert.ok(operation, `${path} is documented`);
      assert.deepEqual(operation.security, [], `${path} needs no token`);
    }
    const fieldsOf = (path: string, status: string) => Object.keys(doc.paths[path]!.get!.responses[status]!.content!['application/json']!.schema!.properties ?? {}).sort();
    assert.deepEqual(Object.keys((await anonymous.get('/healthz')).body).sort(), fieldsOf('/healthz', '200'));
    assert.deepEqual(Object.keys((await anonymous.get('/readyz')).body).sort(), fieldsOf('/readyz', '200'));
    assert.ok(fieldsOf('/readyz', '503').includes('pending_migrations'));
    const metrics = await anonymous.get('/metrics');
    assert.equal(metrics.status, 200);
    assert.match(metrics.headers.get('content-type') ?? '', /^text\/plain/);
    assert.match(String(metrics.body), /^# HELP /m, 'the text format, not a JSON string');
  });

  it('documents the body of every success, with the fields the API answers', async () => {
    for (const [path, operations] of Object.entries(doc.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        for (const [status, response] of Object.entries(operation.responses).filter(([code]) => code.startsWith('2'))) {
          // JSON, except the Prometheus text of /metrics
          const media = path === '/metrics' ? 'text/plain' : 'application/json';
          assert.ok(response.content?.[media]?.schema, `${method} ${path} ${status} documents no ${media} body`);
        }
      }
    }
    const { owner } = await t.newTenant();
    const store = await givenStore(owner, 'MAIN');
    const till = (await owner.post('/v1/tokens', { name: 'till', role: 'cashier', store_ids: [store] })).body;
    const fieldsOf = (method: string, path: string) => Object.keys(doc.paths[path]![method]!.responses['200']!.content!['application/json']!.schema!.properties ?? {}).sort();
    const revoked = await owner.post(`/v1/tokens/${till.id}/revoke`);
    assert.deepEqual(Object.keys(revoked.body).sort(), fieldsOf('post', '/v1/tokens/{id}/revoke'));
    const patched = await owner.patch('/v1/tenant/settings', { settlement_float: 100, geofence_radius_m: 150, bulk_sale_threshold: 1000, require_second_approver: false, require_second_approver_for_reversals: false });
    assert.deepEqual(Object.keys(patched.body).sort(), fieldsOf('patch', '/v1/tenant/settings'));
    assert.deepEqual(Object.keys((await owner.get('/v1/tenant/settings')).body).sort(), fieldsOf('get', '/v1/tenant/settings'));
    const created = (await owner.post('/v1/stores', { code: 'SECOND', name: 'Second' })).body;
    const operation = await owner.get(`/v1/operations/${created.op_id}`);
    assert.equal(operation.status, 200, JSON.stringify(operation.body));
    assert.deepEqual(Object.keys(operation.body).sort(), fieldsOf('get', '/v1/operations/{op_id}'));
    const operationSchema = doc.paths['/v1/operations/{op_id}']!.get!.responses['200']!.content!['application/json']!.schema!;
    assert.deepEqual(Object.keys(operation.body.effects[0]).sort(), Object.keys(operationSchema.properties!.effects!.items!.properties!).sort());
    assert.deepEqual(Object.keys(operation.body.events[0]).sort(), Object.keys(operationSchema.properties!.events!.items!.properties!).sort());
  });
});
