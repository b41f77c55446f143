import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient, ApiResponse } from '../../test/support/client.js';

describe('bad input gets a clear problem+json and changes nothing', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let store: { id: string };
  let sku: { id: string };

  before(async () => {
    t = await startTestApp({ bodyLimitBytes: 4096 });
    ({ owner, tenantId } = await t.newTenant());
    store = (await owner.post('/v1/stores', { code: 'BAD', name: 'Bad inputs' })).body;
    sku = (await owner.post('/v1/skus', { code: 'BAD-1', name: 'Thing', unit: 'kg', price: 100 })).body;
  });
  after(() => t.close());

  const snapshot = async () =>
    (
      await t.admin.query(
        `SELECT (SELECT count(*) FROM operations WHERE tenant_id = $1)::int AS operations,
                (SELECT count(*) FROM events WHERE tenant_id = $1)::int AS events,
                (SELECT count(*) FROM stores WHERE tenant_id = $1)::int AS stores,
                (SELECT count(*) FROM skus WHERE tenant_id = $1)::int AS skus,
                (SELECT count(*) FROM stock_ledger WHERE tenant_id = $1)::int AS ledger,
                (SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1)::int AS keys`,
        [tenantId],
      )
    ).rows[0];

  function assertProblem(response: ApiResponse, status: number, code: string) {
    assert.equal(response.status, status, JSON.stringify(response.body));
    assert.match(response.headers.get('content-type') ?? '', /^application\/problem\+json/);
    assert.equal(response.body.code, code);
    assert.equal(response.body.status, status);
    assert.equal(typeof response.body.title, 'string');
    assert.equal(typeof response.body.detail, 'string');
    assert.equal(response.body.correlation_id, response.headers.get('x-correlation-id'));
    assert.ok(!/at .*\.ts:\d+|SELECT|INSERT/i.test(JSON.stringify(response.body)), 'no stack trace or SQL leaks');
  }

  const cases: Array<[string, () => Promise<ApiResponse>, number, string]> = [
    ['malformed JSON', () => owner.post('/v1/stores', undefined, { rawBody: '{"code": "X", ' , idempotencyKey: 'bad-1' }), 400, 'malformed_json'],
    ['empty JSON body', () => owner.post('/v1/stores', undefined, { rawBody: '', headers: { 'content-type': 'application/json' } }), 400, 'malformed_json'],
    ['wrong type', () => owner.post('/v1/skus', { code: 'W', name: 'W', unit: 'kg', price: '100' }, { idempotencyKey: 'bad-2' }), 400, 'validation_failed'],
    ['float money', () => owner.post('/v1/skus', { code: 'F', name: 'F', unit: 'kg', price: 1.5 }), 400, 'validation_failed'],
    ['unknown unit', () => owner.post('/v1/skus', { code: 'U', name: 'U', unit: 'litre', price: 1 }), 400, 'validation_failed'],
    ['missing field', () => owner.post('/v1/stores', { code: 'M' }), 400, 'validation_failed'],
    ['unknown field', () => owner.post('/v1/stores', { code: 'N', name: 'N', colour: 'red' }), 400, 'validation_failed'],
    ['negative receipt', () => owner.post(`/v1/stores/${store.id}/stock/receipts`, { items: [{ sku_id: sku.id, quantity: -1 }] }), 400, 'validation_failed'],
    ['fractional grams', () => owner.post(`/v1/stores/${store.id}/stock/receipts`, { items: [{ sku_id: sku.id, quantity: 0.5 }] }), 400, 'validation_failed'],
    ['empty item list', () => owner.post(`/v1/stores/${store.id}/stock/receipts`, { items: [] }), 400, 'validation_failed'],
    ['unknown SKU', () => owner.post(`/v1/stores/${store.id}/stock/receipts`, { items: [{ sku_id: '00000000-0000-4000-8000-000000000001', quantity: 1 }] }), 400, 'validation_failed'],
    ['bad uuid in path', () => owner.post('/v1/stores/not-a-uuid/stock/receipts', { items: [{ sku_id: sku.id, quantity: 1 }] }), 400, 'validation_failed'],
    ['oversized body', () => owner.post('/v1/stores', { code: 'BIG', name: 'x'.repeat(10_000) }), 413, 'payload_too_large'],
    ['not JSON', () => owner.post('/v1/stores', undefined, { rawBody: 'code=X', headers: { 'content-type': 'text/plain' } }), 415, 'unsupported_media_type'],
    // JSON between systems is UTF-8 (RFC 8259); a body declared in another charset is not read as if it were.
    ['JSON declared UTF-16', () => owner.post('/v1/stores', undefined, { rawBody: '{"code":"U16","name":"Sixteen"}', headers: { 'content-type': 'application/json; charset=utf-16' } }), 415, 'unsupported_media_type'],
    ['JSON declared Latin-1', () => owner.post('/v1/stores', undefined, { rawBody: '{"code":"L1","name":"Latin"}', headers: { 'content-type': 'application/json;charset="ISO-8859-1"' } }), 415, 'unsupported_media_type'],
    ['a NUL character in text', () => owner.post('/v1/stores', { code: 'NUL', name: 'a\u0000b' }), 400, 'validation_failed'],
    ['a NUL character in a query', () => owner.get('/v1/review-items?kind=%00'), 400, 'validation_failed'],
    ['a cursor that only looks like a uuid', () => owner.get(`/v1/transfers?cursor=${Buffer.from(JSON.stringify({ id: '-'.repeat(36) })).toString('base64url')}`), 400, 'validation_failed'],
    ['a date in year 0', () => owner.get('/v1/settlements?business_date=0000-01-01'), 400, 'validation_failed'],
    ['February 30', () => owner.get(`/v1/analytics/daily-sales?store_id=${store.id}&from=2024-02-30&to=2024-03-02`), 400, 'validation_failed'],
    ['a settlement float beyond the largest amount', () => owner.patch('/v1/tenant/settings', { settlement_float: 10_000_000_000_000_000 }), 400, 'validation_failed'],
    ['a kg SKU that tracks pieces', () => owner.post('/v1/skus', { code: 'KGP', name: 'Kg pieces', unit: 'kg', price: 1, tracks_pieces: true }), 400, 'validation_failed'],
    ['zero adjustment', () => owner.post(`/v1/stores/${store.id}/stock/adjustments`, { sku_id: sku.id, quantity_change: 0, reason: 'x' }), 400, 'validation_failed'],
    ['unknown route', () => owner.post('/v1/nothing-here', {}), 404, 'not_found'],
    ['a path that is not valid percent-encoding', () => owner.get('/v1/sales/%E0%A4%A'), 400, 'validation_failed'],
    ['a method the path does not serve', () => owner.put('/v1/stores', { code: 'PUT', name: 'Put' }), 405, 'method_not_allowed'],
    ['a path parameter longer than any id', () => owner.get(`/v1/sales/${'a'.repeat(101)}`), 400, 'validation_failed'],
    ['duplicate store code', () => owner.post('/v1/stores', { code: 'BAD', name: 'Again' }), 409, 'already_exists'],
    // RFC 8259 leaves a repeated member name to each reader: a proxy that reads the first and this server the last would disagree on what was asked.
    ['a repeated member name', () => owner.post('/v1/tokens', undefined, { rawBody: '{"name":"dup","role":"cashier","role":"owner"}' }), 400, 'validation_failed'],
  ];

  for (const [name, send, status, code] of cases) {
    it(`${name} → ${status} ${code}, nothing written`, async () => {
      const before = await snapshot();
      const response = await send();
      assertProblem(response, status, code);
      assert.deepEqual(await snapshot(), before);
    });
  }

  it('a date in year 0 in a body is refused at its own field, before the database sees it', async () => {
    for (const [send, path] of [
      [() => owner.post('/v1/stock/snapshots', { through: '0000-12-31' }), '/body/through'],
      [() => owner.post('/v1/settlements', { store_id: store.id, business_date: '0000-01-01', declared_cash: 0 }), '/body/business_date'],
    ] as const) {
      const before = await snapshot();
      const response = await send();
      assertProblem(response, 400, 'validation_failed');
      assert.deepEqual(
        response.body.errors.map((error: { path: string }) => error.path),
        [path],
        JSON.stringify(response.body),
      );
      assert.deepEqual(await snapshot(), before);
    }
  });

  it('a date-time PostgreSQL cannot read as written (year 0, an offset past ±15:59) is refused at its own field', async () => {
    for (const moment of ['0000-01-01T00:00:00Z', '0000-06-01T12:00:00+01:00', '2026-01-15T10:00:00+16:00', '2026-01-15T10:00:00-23:59', '2026-01-15T10:00:00+20']) {
      const before = await snapshot();
      const response = await owner.post('/v1/sales', { store_id: store.id, payment_method: 'cash', items: [{ sku_id: sku.id, quantity: 1, unit_price: 100 }], client_created_at: moment });
      assertProblem(response, 400, 'validation_failed');
      assert.deepEqual(response.body.errors.map((error: { path: string }) => error.path), ['/body/client_created_at'], `${moment}: ${JSON.stringify(response.body)}`);
      assert.deepEqual(await snapshot(), before);
    }
    // The edges PostgreSQL does read are still taken by the schema (the sale's own check then judges them in UTC).
    for (const moment of ['0001-01-02T00:00:00Z', '2026-01-15T10:00:00+15:59', '2026-01-15T10:00:00-15', '9999-12-31T23:59:59Z']) {
      const response = await owner.post('/v1/sales', { store_id: store.id, payment_method: 'cash', items: [{ sku_id: sku.id, quantity: 999_999_999, unit_price: 100 }], client_created_at: moment });
      assertProblem(response, 409, 'insufficient_stock');
    }
  });

  it('text the database cannot store (a NUL, an unpaired surrogate, also in a field name) is refused at its field, before the database sees it', async () => {
    for (const [body, path] of [
      ['{"code":"NUL","name":"a\\u0000b"}', '/body/name'],
      ['{"code":"SUR","name":"a\\ud800b"}', '/body/name'],
      ['{"code":"\\udfff","name":"Low"}', '/body/code'],
      ['{"code":"OK","name":"Fine","a\\u0000b":1}', '/body/a\u0000b'],
    ] as const) {
      const before = await snapshot();
      const response = await owner.post('/v1/stores', undefined, { rawBody: body });
      assertProblem(response, 400, 'validation_failed');
      assert.deepEqual(response.body.errors.map((error: { path: string }) => error.path), [path], JSON.stringify(response.body));
      assert.deepEqual(await snapshot(), before);
    }
    const receipt = await owner.post(`/v1/stores/${store.id}/stock/receipts`, { items: [{ sku_id: sku.id, quantity: 1 }], reference: 'ok\ud83d' });
    assertProblem(receipt, 400, 'validation_failed');
    assert.deepEqual(receipt.body.errors.map((error: { path: string }) => error.path), ['/body/reference']);
  });

  it('a NUL or an unpaired surrogate in a query parameter is refused at the parameter', async () => {
    for (const query of ['kind=%00', 'kind=a%00b', 'status=open&kind=%00x']) {
      const response = await owner.get(`/v1/review-items?${query}`);
      assertProblem(response, 400, 'validation_failed');
      assert.deepEqual(response.body.errors.map((error: { path: string }) => error.path), ['/querystring/kind'], `${query}: ${JSON.stringify(response.body)}`);
    }
  });

  it('a body that is not UTF-8 is malformed_json, not read with U+FFFD in place of its bytes', async () => {
    const before = await snapshot();
    const response = await fetch(`${owner.baseUrl}/v1/stores`, {
      method: 'POST',
      headers: { authorization: `Bearer ${owner.token}`, 'content-type': 'application/json' },
      body: Buffer.concat([Buffer.from('{"code":"LATIN","name":"Caf'), Buffer.from([0xe9]), Buffer.from('"}')]),
    });
    const body = await response.json();
    assertProblem({ status: response.status, headers: response.headers, body }, 400, 'malformed_json');
    assert.deepEqual(await snapshot(), before);
  });

  it('every mutating endpoint declares its body in the OpenAPI document, and it refuses unknown fields (actions without input: none, {} or null)', async () => {
    const paths = (await owner.get('/openapi.json')).body.paths as Record<string, Record<string, { requestBody?: { content: Record<string, { schema: any }> } }>>;
    const open: string[] = [];
    for (const [path, operations] of Object.entries(paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        if (!['post', 'put', 'patch', 'delete'].includes(method)) continue;
        const schema = operation.requestBody?.content['application/json']?.schema;
        const forms: any[] = schema?.anyOf ?? [schema];
        if (!forms.every((form) => form?.type === 'null' || (form?.type === 'object' && form.additionalProperties === false))) open.push(`${method} ${path}`);
      }
    }
    // The provider's payload is not ours: fields it adds later are kept.
    assert.deepEqual(open, ['post /v1/webhooks/fulfilment']);
  });

  it('JSON declared UTF-8 in any spelling of the parameter is read', async () => {
    for (const [index, contentType] of ['application/json; charset=utf-8', 'application/json;charset="UTF-8"', 'Application/JSON; Charset=utf8'].entries()) {
      const created = await owner.post('/v1/stores', undefined, { rawBody: JSON.stringify({ code: `U8-${index}`, name: 'Eight' }), headers: { 'content-type': contentType } });
      assert.equal(created.status, 201, `${contentType}: ${JSON.stringify(created.body)}`);
    }
  });

  it('a repeated member name is refused at its path, however it is spelled and however deep it is', async () => {
    const before = await snapshot();
    for (const [raw, path] of [
      ['{"code":"DUP","name":"a","n\\u0061me":"b"}', '/body/name'],
      [`{"items":[{"sku_id":"${sku.id}","quantity":1},{"sku_id":"${sku.id}","quantity":1,"quantity":2}]}`, '/body/items/1/quantity'],
      ['{"code":"DUP","name":"a/b","a/b":1,"a/b":2}', '/body/a~1b'],
    ] as const) {
      const target = path.startsWith('/body/items') ? `/v1/stores/${store.id}/stock/receipts` : '/v1/stores';
      const response = await owner.post(target, undefined, { rawBody: raw });
      assertProblem(response, 400, 'validation_failed');
      assert.deepEqual(response.body.errors.map((error: { path: string }) => error.path), [path], raw);
    }
    // The same name in different objects, or as a value, is no repetition.
    const fine = await owner.post(`/v1/stores/${store.id}/stock/receipts`, undefined, { rawBody: `{"items":[{"sku_id":"${sku.id}","quantity":1},{"sku_id":"${sku.id}","quantity":2}],"reference":"quantity"}` });
    assert.equal(fine.status, 201, JSON.stringify(fine.body));
    const after = await snapshot();
    assert.equal(after.operations, before.operations + 1, 'only the receipt without a repeated name was written');
  });

  it('validation errors carry the path of each bad field', async () => {
    const response = await owner.post('/v1/skus', { code: 'P', unit: 'kg', price: 'x', extra: 1 });
    assertProblem(response, 400, 'validation_failed');
    const paths = response.body.errors.map((e: { path: string }) => e.path).sort();
    assert.deepEqual(paths, ['/body/extra', '/body/name', '/body/price']);
  });

  it('a value outside a closed list is one error at its field naming the allowed values (not one "must be equal to constant" per value); a zero adjustment says it must not be 0', async () => {
    const before = await snapshot();
    const cases: Array<[() => Promise<ApiResponse>, string, string]> = [
      [
        () => owner.post('/v1/sales', { store_id: store.id, payment_method: 'bitcoin', items: [{ sku_id: sku.id, quantity: 1, unit_price: 1 }] }),
        '/body/payment_method',
        'must be one of "cash", "card", "mobile", "credit"',
      ],
      [() => owner.post('/v1/tokens', { name: 'x', role: 'superuser' }), '/body/role', 'must be one of "owner", "admin", "manager", "cashier", "field_agent", "auditor"'],
      [() => owner.post('/v1/skus', { code: 'L', name: 'Litre', unit: 'litre', price: 1 }), '/body/unit', 'must be one of "kg", "piece", "metre"'],
      [() => owner.get('/v1/parties?kind=vendor'), '/querystring/kind', 'must be one of "supplier", "customer"'],
      [() => owner.get(`/v1/stores/${store.id}/accounts/safe/postings`), '/params/kind', 'must be one of "cash_drawer", "bank", "card_clearing", "mobile_clearing", "sales_revenue", "inventory"'],
      [() => owner.post(`/v1/stores/${store.id}/stock/adjustments`, { sku_id: sku.id, quantity_change: 0, reason: 'x' }), '/body/quantity_change', 'must not be 0'],
    ];
    for (const [send, path, message] of cases) {
      const response = await send();
      assertProblem(response, 400, 'validation_failed');
      assert.deepEqual(response.body.errors, [{ path, message }]);
      assert.equal(response.body.detail, `${path} ${message}`);
    }
    // A synced sale's own result says the same.
    const synced = await owner.post('/v1/sync/sales', {
      sales: [{ idempotency_key: 'enum-1', store_id: store.id, payment_method: 'cheque', items: [{ sku_id: sku.id, quantity: 1, unit_price: 1 }] }],
    });
    assert.equal(synced.status, 200);
    assert.deepEqual(synced.body.results[0].body.errors, [{ path: '/body/sales/0/payment_method', message: 'must be one of "cash", "card", "mobile", "credit"' }]);
    assert.deepEqual(await snapshot(), before);
  });

  it('a name that is only whitespace (a tenant, token, store, SKU, party, point of sale) is refused at /body/name, nothing written; a code that breaks its pattern says what the pattern asks, not the regular expression', async () => {
    const before = await snapshot();
    const tenantsBefore = (await t.admin.query('SELECT count(*)::int AS n FROM tenants')).rows[0].n;
    const blank = 'must contain a character other than whitespace';
    const cases: Array<[() => Promise<ApiResponse>, string, string]> = [
      [() => t.operator.post('/v1/tenants', { name: '   ' }), '/body/name', blank],
      [() => owner.post('/v1/tokens', { name: ' ', role: 'cashier' }), '/body/name', blank],
      [() => owner.post('/v1/stores', { code: 'BLANK', name: '\u00a0\u00a0' }), '/body/name', blank],
      [() => owner.post('/v1/skus', { code: 'BLANK', name: '\t', unit: 'piece', price: 1 }), '/body/name', blank],
      [() => owner.post('/v1/parties', { kind: 'supplier', name: '  \n ' }), '/body/name', blank],
      [() => owner.post('/v1/points-of-sale', { name: '\u2003', store_id: store.id, latitude: 1, longitude: 1 }), '/body/name', blank],
      [() => owner.post('/v1/stores', { code: 'MAIN ', name: 'Main' }), '/body/code', 'must have no whitespace at its ends and no control or invisible characters'],
    ];
    for (const [send, path, message] of cases) {
      const response = await send();
      assertProblem(response, 400, 'validation_failed');
      assert.deepEqual(response.body.errors, [{ path, message }]);
    }
    assert.deepEqual(await snapshot(), before);
    assert.equal((await t.admin.query('SELECT count(*)::int AS n FROM tenants')).rows[0].n, tenantsBefore);
    // Spaces inside a name, and a name with spaces around it, are still names.
    assert.equal((await owner.post('/v1/stores', { code: 'SPACED', name: ' Main street ' })).status, 201);
  });

  it('a 401 unauthorized names the scheme it wants (WWW-Authenticate: Bearer, RFC 9110 §11.6.1), with no token and with a bad one', async () => {
    for (const token of [undefined, 'sk_not-a-real-token']) {
      const response = await t.client(token as string).get('/v1/stores');
      assertProblem(response, 401, 'unauthorized');
      assert.equal(response.headers.get('www-authenticate'), 'Bearer realm="storekeep"');
    }
    // Other refusals do not ask for credentials.
    assert.equal((await owner.get('/v1/stores/not-a-uuid')).headers.get('www-authenticate'), null);
  });

  it('keeps a given X-Correlation-ID and generates one otherwise', async () => {
    const kept = await owner.get('/v1/stores', { headers: { 'x-correlation-id': 'till-7-req-42' } });
    assert.equal(kept.headers.get('x-correlation-id'), 'till-7-req-42');
    const generated = await owner.get('/v1/stores');
    assert.match(generated.headers.get('x-correlation-id') ?? '', /^[0-9a-f-]{36}$/);
  });

  it('keeps a given X-Correlation-ID of any printable ASCII (trace ids of load balancers and APM agents), in the answer and the audit trail; only an unusable one (over 200 characters, not ASCII) is replaced', async () => {
    for (const given of ['Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1', '|4bf92f3577b34da6a3ce929d0e0e4736.00f067aa0ba902b7.', 'till 7 / req #42', 'x'.repeat(200)]) {
      const created = await owner.post('/v1/parties', { kind: 'customer', name: `correlated ${given.length}` }, { headers: { 'x-correlation-id': given } });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      assert.equal(created.headers.get('x-correlation-id'), given);
      assert.equal((await owner.get(`/v1/operations/${created.body.op_id}`)).body.correlation_id, given);
      const refused = await owner.get('/v1/sales/not-a-uuid', { headers: { 'x-correlation-id': given } });
      assert.equal(refused.body.correlation_id, given);
    }
    for (const unusable of ['x'.repeat(201), 'caf\u00e9-1']) {
      const response = await owner.get('/v1/stores', { headers: { 'x-correlation-id': unusable } });
      assert.match(response.headers.get('x-correlation-id') ?? '', /^[0-9a-f-]{36}$/);
    }
  });

  it('serves health, readiness, metrics and the OpenAPI document', async () => {
    assert.equal((await owner.get('/healthz')).status, 200);
    const ready = await owner.get('/readyz');
    assert.equal(ready.status, 200);
    assert.equal(ready.body.status, 'ready');
    const metrics = await owner.get('/metrics');
    assert.equal(metrics.status, 200);
    assert.match(metrics.body, /http_request_duration_seconds_bucket/);
    assert.match(metrics.body, /process_cpu_user_seconds_total/);
    const openapi = await owner.get('/openapi.json');
    assert.equal(openapi.status, 200);
    assert.ok(openapi.body.paths['/v1/stores']);
    assert.ok(openapi.body.paths['/v1/stores/{store_id}/stock/receipts']);
    assert.equal((await owner.get('/docs')).status === 200 || (await owner.get('/docs/')).status === 200, true);
  });
});
