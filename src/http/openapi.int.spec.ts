import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { ApiClient } from '../../test/support/client.js';
import { givenSku, givenStore } from '../sales/testkit.js';

type Operation = { parameters?: Array<{ in: string; name: string }>; responses: Record<string, { content?: Record<string, { schema?: { $ref?: string } }> }> };

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
});
