import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { ApiClient, type ApiResponse } from '../../test/support/client.js';

type Parameter = { in: string; name: string; schema?: { enum?: unknown[]; format?: string; type?: string } };
type Document = { paths: Record<string, Record<string, { parameters?: Parameter[] }>> };

/** A value a path parameter accepts: its first enum value, a fresh UUID, or a word. */
function valueOf(parameter: Parameter | undefined): string {
  if (parameter?.schema?.enum?.length) return String(parameter.schema.enum[0]);
  if (parameter?.schema?.format === 'uuid') return randomUUID();
  return 'x';
}

function assertUnknownParameter(response: ApiResponse, name: string, what: string) {
  assert.equal(response.status, 400, `${what}: ${response.status} ${JSON.stringify(response.body)}`);
  assert.match(response.headers.get('content-type') ?? '', /^application\/problem\+json/, what);
  assert.equal(response.body.code, 'validation_failed', what);
  // Named among the refusals (a route whose own parameters are required also names those missing).
  assert.ok(
    (response.body.errors as Array<{ path: string; message: string }>).some((error) => error.path === `/querystring/${name}` && error.message === 'is not a known field'),
    `${what}: ${JSON.stringify(response.body.errors)}`,
  );
  assert.match(response.body.detail, new RegExp(`/querystring/${name} is not a known field`), what);
}

describe('unknown query parameters are refused on every route, as the lists refuse them', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let doc: Document;
  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    doc = (await new ApiClient(t.baseUrl, undefined).get('/openapi.json')).body;
  });
  after(() => t.close());

  it('every GET in the OpenAPI document (and the document itself) answers ?bogus=1 with 400 validation_failed at /querystring/bogus', async () => {
    const anonymous = new ApiClient(t.baseUrl, undefined);
    const gets = Object.entries(doc.paths).filter(([, operations]) => operations.get !== undefined);
    assert.ok(gets.length >= 30, `only ${gets.length} GET routes documented`);
    const checked: string[] = [];
    for (const [template, operations] of [...gets, ['/openapi.json', { get: {} }] as [string, Record<string, { parameters?: Parameter[] }>]]) {
      const parameters = operations.get!.parameters ?? [];
      const path = template.replace(/\{([^}]+)\}/g, (_, name: string) => valueOf(parameters.find((p) => p.in === 'path' && p.name === name)));
      const url = `${path}?bogus=1`;
      // Tenant routes with the owner's token; a route for the operator only (403 to a tenant token) with the operator's.
      let response = await owner.get(url);
      if (response.status === 403 && /operator token/.test(response.body.detail ?? '')) response = await t.operator.get(url);
      // Routes that take no token (health, metrics, the document) answer anyone.
      if (response.status === 401) response = await anonymous.get(url);
      assertUnknownParameter(response, 'bogus', `GET ${url}`);
      checked.push(template);
    }
    for (const expected of ['/v1/sales/{id}', '/v1/operations/{op_id}', '/v1/skus/{id}', '/v1/tenant/settings', '/healthz', '/openapi.json']) {
      assert.ok(checked.includes(expected), `${expected} was checked`);
    }
  });

  it('a parameter a list does take, misspelt on a record\'s GET, is refused too (as_of on a SKU)', async () => {
    const sku = await owner.post('/v1/skus', { code: 'SOAP', name: 'Soap', unit: 'piece', price: 120 });
    assert.equal(sku.status, 201);
    assert.equal((await owner.get(`/v1/skus/${sku.body.id}`)).status, 200);
    assertUnknownParameter(await owner.get(`/v1/skus/${sku.body.id}?as_of=2020-01-01T00:00:00Z`), 'as_of', 'GET sku ?as_of');
    // HEAD (which every GET serves) refuses it too; its answer has no body to name it.
    assert.equal((await owner.request('HEAD', `/v1/skus/${sku.body.id}?as_of=2020-01-01T00:00:00Z`)).status, 400);
    assert.equal((await owner.request('HEAD', `/v1/skus/${sku.body.id}`)).status, 200);
  });

  it('a command with an unknown query parameter is refused and writes nothing', async () => {
    const counts = async () =>
      (
        await t.admin.query(
          `SELECT (SELECT count(*) FROM stores WHERE tenant_id = $1)::int AS stores, (SELECT count(*) FROM operations WHERE tenant_id = $1)::int AS operations`,
          [tenantId],
        )
      ).rows[0];
    const before = await counts();
    assertUnknownParameter(await owner.post('/v1/stores?dry_run=1', { code: 'MAIN', name: 'Main' }, { idempotencyKey: 'dry-run' }), 'dry_run', 'POST /v1/stores?dry_run');
    assert.deepEqual(await counts(), before);
    assert.equal((await owner.post('/v1/stores', { code: 'MAIN', name: 'Main' }, { idempotencyKey: 'dry-run' })).status, 201, 'the key was not used by the refusal');
  });

  it('the browsable docs (a page and its assets, not the API) keep taking whatever a browser adds', async () => {
    const anonymous = new ApiClient(t.baseUrl, undefined);
    assert.equal((await anonymous.get('/docs/json?v=2')).status, 200);
  });
});
