import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { ApiClient } from '../../test/support/client.js';
import { capturingLogger } from '../../test/support/logs.js';

describe('rate limits', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp({ rateLimitPerMinute: 5 });
  });
  after(() => t.close());

  it('past the limit a token gets 429 problem+json with Retry-After, and nothing is written', async () => {
    const { owner, tenantId } = await t.newTenant();
    const responses = [];
    for (let i = 0; i < 8; i++) responses.push(await owner.post('/v1/stores', { code: `RL-${i}`, name: 'Rate limited' }));
    const limited = responses.filter((r) => r.status === 429);
    assert.ok(limited.length >= 3, `statuses: ${responses.map((r) => r.status)}`);
    const first = limited[0]!;
    assert.match(first.headers.get('content-type') ?? '', /application\/problem\+json/);
    assert.equal(first.body.code, 'rate_limited');
    assert.ok(Number(first.headers.get('retry-after')) > 0);
    const stores = await t.admin.query('SELECT count(*)::int AS n FROM stores WHERE tenant_id = $1', [tenantId]);
    assert.equal(stores.rows[0].n, responses.filter((r) => r.status === 201).length);
  });

  it('failed authentications from one address are limited: past the limit, requests from it with a token not known good here are 429 with Retry-After until the window ends', async () => {
    const guarded = await startTestApp({ authFailuresPerMinute: 3 });
    try {
      const { owner } = await guarded.newTenant();
      assert.equal((await owner.get('/v1/stores')).status, 200, 'a till that has been working');
      const guesser = guarded.client('sk_guess_0000000000000000000000');
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) statuses.push((await guesser.get('/v1/stores')).status);
      assert.deepEqual(statuses, [401, 401, 401, 429, 429]);
      const limited = await guesser.get('/v1/stores');
      assert.equal(limited.body.code, 'rate_limited');
      assert.ok(Number(limited.headers.get('retry-after')) > 0);
      // a token that authenticated here before still gets through (tills behind the same address keep working)…
      assert.equal((await owner.get('/v1/stores')).status, 200);
      // …while a token never seen here waits for the window, like any guess
      const fresh = guarded.client((await owner.post('/v1/tokens', { name: 'new till', role: 'cashier' })).body.token);
      assert.equal((await fresh.get('/v1/stores')).status, 429);
    } finally {
      await guarded.close();
    }
  });

  it('with METRICS_TOKEN set, /metrics needs it as a bearer token (401 otherwise, tenant tokens included)', async () => {
    const guarded = await startTestApp({ metricsToken: 'scrape-me-0123456789' });
    try {
      const { owner } = await guarded.newTenant();
      assert.equal((await new ApiClient(guarded.baseUrl, undefined).get('/metrics')).status, 401);
      assert.equal((await owner.get('/metrics')).status, 401);
      const scraper = guarded.client('scrape-me-0123456789');
      const metrics = await scraper.get('/metrics');
      assert.equal(metrics.status, 200);
      assert.match(metrics.body, /http_request_duration_seconds_bucket/);
      assert.equal((await new ApiClient(guarded.baseUrl, undefined).get('/healthz')).status, 200, 'health stays open');
    } finally {
      await guarded.close();
    }
  });

  it('the METRICS_TOKEN is read from Authorization as the API reads a token: the scheme in any letter case, any spacing after it', async () => {
    const guarded = await startTestApp({ metricsToken: 'scrape-me-0123456789' });
    try {
      const anonymous = new ApiClient(guarded.baseUrl, undefined);
      for (const authorization of ['bearer scrape-me-0123456789', 'BEARER scrape-me-0123456789', 'Bearer  scrape-me-0123456789', 'Bearer\tscrape-me-0123456789']) {
        assert.equal((await anonymous.get('/metrics', { headers: { authorization } })).status, 200, authorization);
      }
      for (const authorization of ['Bearer scrape-me-012345678', 'Basic scrape-me-0123456789', 'scrape-me-0123456789', 'Bearer scrape-me-0123456789 x']) {
        assert.equal((await anonymous.get('/metrics', { headers: { authorization } })).status, 401, authorization);
      }
      // and an API token is read the same way: the forms /metrics takes, the API takes; the ones it refuses, the API refuses
      const { token } = await guarded.newTenant();
      for (const authorization of [`bearer ${token}`, `BEARER ${token}`, `Bearer  ${token}`, `Bearer\t${token}`]) {
        assert.equal((await anonymous.get('/v1/stores', { headers: { authorization } })).status, 200, authorization);
      }
      for (const authorization of [`Basic ${token}`, token, `Bearer ${token} x`, `Bearer ${token}\tx`]) {
        assert.equal((await anonymous.get('/v1/stores', { headers: { authorization } })).status, 401, authorization);
      }
    } finally {
      await guarded.close();
    }
  });

  it('a wrong METRICS_TOKEN is a failed authentication like a wrong API token: past the limit its address is 429 on /metrics (guessing it is capped) — the right one still scrapes', async () => {
    const guarded = await startTestApp({ metricsToken: 'scrape-me-0123456789', authFailuresPerMinute: 3 });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) statuses.push((await guarded.client(`guess-${i}-0000000000`).get('/metrics')).status);
      assert.deepEqual(statuses, [401, 401, 401, 429, 429]);
      const limited = await new ApiClient(guarded.baseUrl, undefined).get('/metrics');
      assert.equal(limited.status, 429);
      assert.equal(limited.body.code, 'rate_limited');
      assert.ok(Number(limited.headers.get('retry-after')) > 0);
      // the guesses count against the address on the API's routes too
      assert.equal((await guarded.client('sk_guess_0000000000000000000000').get('/v1/stores')).status, 429);
      // a scraper with the token is never held back by a guesser at its address
      assert.equal((await guarded.client('scrape-me-0123456789').get('/metrics')).status, 200);
    } finally {
      await guarded.close();
    }
  });

  it('a request without a token is limited by its address: an Authorization header that is no token (random each time) does not buy a bucket of its own', async () => {
    const limited = await startTestApp({ rateLimitPerMinute: 3 });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) {
        // The provider's webhook takes no token; an unsigned delivery is 401 invalid_signature.
        const response = await new ApiClient(limited.baseUrl, `made-up-${randomUUID()}`).post('/v1/webhooks/fulfilment', { id: `evt-${i}` });
        statuses.push(response.status);
      }
      assert.deepEqual(statuses, [401, 401, 401, 429, 429]);
    } finally {
      await limited.close();
    }
  });

  it('each token has its own bucket: a till past its limit does not hold back another token at the same address', async () => {
    const limited = await startTestApp({ rateLimitPerMinute: 3 });
    try {
      const { owner } = await limited.newTenant();
      const till = limited.client((await owner.post('/v1/tokens', { name: 'till', role: 'cashier' })).body.token);
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++) statuses.push((await till.get('/v1/stores')).status);
      assert.deepEqual(statuses, [200, 200, 200, 429]);
      assert.equal((await owner.get('/v1/stores')).status, 200, 'the owner has used 1 of its 3');
    } finally {
      await limited.close();
    }
  });

  // An IPv6 client holds a whole /64 (2^64 addresses): counted per address, it
  // would take a fresh address for every guess or request and never be limited.
  const sameSlash64 = (i: number) => `2001:db8:7:9:${(i + 1).toString(16)}:${(i * 7 + 3).toString(16)}::${(i + 11).toString(16)}`;

  it('failed authentications from one IPv6 client are counted by its /64, not per address: a guesser rotating addresses within its prefix is 429 past the limit (another prefix is not)', async () => {
    const guarded = await startTestApp({ authFailuresPerMinute: 3 });
    try {
      const guess = (remoteAddress: string) =>
        guarded.app.inject({ method: 'GET', url: '/v1/stores', remoteAddress, headers: { authorization: `Bearer sk_guess_${randomUUID()}` } });
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) statuses.push((await guess(sameSlash64(i))).statusCode);
      assert.deepEqual(statuses, [401, 401, 401, 429, 429]);
      const limited = await guess(sameSlash64(9));
      assert.equal(limited.json().code, 'rate_limited');
      assert.ok(Number(limited.headers['retry-after']) > 0);
      assert.equal((await guess('2001:db8:7:a::1')).statusCode, 401, 'the next /64 is another client');
    } finally {
      await guarded.close();
    }
  });

  it('a request without a token from an IPv6 client is rate limited by its /64, however many of its addresses it sends from', async () => {
    const limited = await startTestApp({ rateLimitPerMinute: 3 });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) {
        const response = await limited.app.inject({ method: 'POST', url: '/v1/webhooks/fulfilment', remoteAddress: sameSlash64(i), payload: { id: `evt-${i}` } });
        statuses.push(response.statusCode);
      }
      assert.deepEqual(statuses, [401, 401, 401, 429, 429]);
    } finally {
      await limited.close();
    }
  });

  it('health and readiness are never rate limited', async () => {
    for (let i = 0; i < 10; i++) assert.equal((await t.operator.get('/healthz')).status, 200);
  });
});

describe('correlation ids in logs', () => {
  const { logger, lines } = capturingLogger('info');
  let t: TestApp;
  before(async () => {
    t = await startTestApp({}, { logger });
  });
  after(() => t.close());

  it('every log line of a request carries its correlation id', async () => {
    await t.operator.post('/v1/tenants', { name: 'logged' }, { headers: { 'x-correlation-id': 'corr-log-1' } });
    const mine = lines.filter((line) => line.correlation_id === 'corr-log-1');
    assert.ok(mine.some((line) => line.msg === 'incoming request'));
    assert.ok(mine.some((line) => line.msg === 'request completed'));
    const requestLines = lines.filter((line) => (line.req as { url?: string } | undefined)?.url === '/v1/tenants');
    assert.ok(requestLines.every((line) => line.correlation_id === 'corr-log-1'));
  });

  /** A request sent with each of `correlationIds` as a header line of its own (fetch joins them into one line). */
  const withCorrelationLines = (method: string, path: string, correlationIds: string[], body?: unknown, token = t.operatorToken) =>
    new Promise<{ status: number; correlationId: string | undefined; body: Record<string, unknown> }>((resolve, reject) => {
      const request = http.request(`${t.baseUrl}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          'x-correlation-id': correlationIds,
          ...(body === undefined ? {} : { 'content-type': 'application/json', 'idempotency-key': randomUUID() }),
        },
      });
      request.on('error', reject);
      request.on('response', (response) => {
        let text = '';
        response.on('data', (chunk: Buffer) => (text += chunk.toString()));
        response.on('end', () => resolve({ status: response.statusCode!, correlationId: response.headers['x-correlation-id'] as string | undefined, body: JSON.parse(text || '{}') }));
      });
      request.end(body === undefined ? undefined : JSON.stringify(body));
    });

  it('several X-Correlation-ID lines: the first usable one is the request\'s id — in the answer, every log line and the audit trail (Node joined them into "a, b", an id nobody sent)', async () => {
    const { tenantId, token } = await t.newTenant();
    const created = await withCorrelationLines('POST', '/v1/stores', ['client-trace-1', 'proxy-trace-2'], { code: 'TWO-IDS', name: 'Two ids' }, token);
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.correlationId, 'client-trace-1');
    assert.ok(lines.some((line) => line.correlation_id === 'client-trace-1' && line.msg === 'incoming request'));
    assert.ok(lines.some((line) => line.correlation_id === 'client-trace-1' && line.msg === 'request completed'));
    assert.deepEqual(lines.filter((line) => String(line.correlation_id).includes('proxy-trace-2')), [], 'no log line under the second id or the joined one');
    const recorded = await t.admin.query(
      `SELECT (SELECT array_agg(DISTINCT correlation_id) FROM operations WHERE tenant_id = $1 AND id = $2) AS operations,
              (SELECT array_agg(DISTINCT correlation_id) FROM events WHERE tenant_id = $1 AND op_id = $2) AS events`,
      [tenantId, created.body.op_id],
    );
    assert.deepEqual(recorded.rows[0], { operations: ['client-trace-1'], events: ['client-trace-1'] });

    // A first line that is no usable id (over 200 characters) gives way to the next; with none usable, one is generated
    const skipped = await withCorrelationLines('GET', '/v1/tenants/not-a-uuid', ['x'.repeat(201), 'second-usable']);
    assert.deepEqual([skipped.correlationId, skipped.body.correlation_id], ['second-usable', 'second-usable']);
    const none = await withCorrelationLines('GET', '/healthz', ['x'.repeat(201), 'caf\u00e9']);
    assert.match(none.correlationId ?? '', /^[0-9a-f-]{36}$/);
    // Three lines, and one line that itself holds ", " (kept whole: it is one id as sent)
    assert.equal((await withCorrelationLines('GET', '/healthz', ['a-1', 'b-2', 'c-3'])).correlationId, 'a-1');
    assert.equal((await withCorrelationLines('GET', '/healthz', ['till 7, req 42'])).correlationId, 'till 7, req 42');
  });
});

describe('the browsable API docs', () => {
  it('are served without a token (a browser sends none), page and assets alike, and never count as failed authentications', async () => {
    const t = await startTestApp({ authFailuresPerMinute: 2 });
    try {
      const browser = new ApiClient(t.baseUrl, undefined);
      for (let round = 0; round < 2; round++) {
        const page = await browser.get('/docs/');
        assert.equal(page.status, 200, `got ${page.status}`);
        assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
        for (const asset of ['/docs/static/swagger-ui.css', '/docs/static/swagger-ui-bundle.js', '/docs/static/swagger-initializer.js', '/docs/json']) {
          assert.equal((await browser.get(asset)).status, 200, asset);
        }
      }
      // A bad token sent along is ignored there too.
      assert.equal((await t.client('sk_not_a_token_000000000000000000').get('/docs/')).status, 200);
      // None of those counted: this address still has its 2 failures before the limit.
      const statuses = [];
      for (let i = 0; i < 3; i++) statuses.push((await browser.get('/v1/stores')).status);
      assert.deepEqual(statuses, [401, 401, 429]);
    } finally {
      await t.close();
    }
  });
});

describe('methods a path does not serve', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  const cases: Array<[string, string, string]> = [
    ['PUT', '/v1/sales', 'POST'],
    ['DELETE', '/v1/sales/00000000-0000-4000-8000-000000000001', 'GET, HEAD'],
    ['GET', '/v1/sales/00000000-0000-4000-8000-000000000001/void', 'POST'],
    ['PATCH', '/v1/stores/', 'GET, HEAD, POST'],
  ];
  for (const [method, path, allow] of cases) {
    it(`${method} ${path} → 405 method_not_allowed with Allow: ${allow}`, async () => {
      const { owner } = await t.newTenant();
      const response = await owner.request(method, path, method === 'GET' || method === 'DELETE' ? undefined : {});
      assert.equal(response.status, 405, `got ${response.status} ${JSON.stringify(response.body)}`);
      assert.match(response.headers.get('content-type') ?? '', /^application\/problem\+json/);
      assert.equal(response.body.code, 'method_not_allowed');
      assert.equal(response.headers.get('allow'), allow);
      assert.equal(response.body.correlation_id, response.headers.get('x-correlation-id'));
    });
  }

  it('an unknown path is still 404 not_found, whatever the method', async () => {
    const { owner } = await t.newTenant();
    for (const method of ['GET', 'PUT']) {
      const response = await owner.request(method, '/v1/nothing-here', method === 'PUT' ? {} : undefined);
      assert.equal(response.status, 404);
      assert.equal(response.body.code, 'not_found');
      assert.equal(response.headers.get('allow'), null);
    }
  });

  // No route: the body is never read, so what it holds does not change the
  // answer. It was parsed first: malformed JSON was 400, a member named twice
  // 400 validation_failed, a charset other than UTF-8 415, a body past the
  // limit 413 — and QUERY without a Content-Type 400 — for a URL or method
  // that does not exist at all.
  const bodies: Array<[string, Record<string, string>, string]> = [
    ['malformed JSON', { 'content-type': 'application/json' }, 'this is not json'],
    ['a member named twice', { 'content-type': 'application/json' }, '{"a": 1, "a": 2}'],
    ['JSON in latin1', { 'content-type': 'application/json; charset=latin1' }, '{}'],
    ['a body past the limit', { 'content-type': 'application/json' }, `"${'x'.repeat(2 * 1024 * 1024)}"`],
  ];
  for (const [name, headers, body] of bodies) {
    it(`with ${name}: an unknown path is 404 and a method the path does not serve 405 (the body is not read)`, async () => {
      const { owner } = await t.newTenant();
      const unknown = await owner.request('POST', '/v1/nothing-here', undefined, { headers, rawBody: body });
      assert.equal(unknown.status, 404, `got ${unknown.status} ${JSON.stringify(unknown.body)}`);
      assert.equal(unknown.body.code, 'not_found');
      assert.equal(unknown.body.correlation_id, unknown.headers.get('x-correlation-id'));
      const unserved = await owner.request('PUT', '/v1/stores', undefined, { headers, rawBody: body });
      assert.equal(unserved.status, 405, `got ${unserved.status} ${JSON.stringify(unserved.body)}`);
      assert.equal(unserved.body.code, 'method_not_allowed');
      assert.equal(unserved.headers.get('allow'), 'GET, HEAD, POST');
      assert.match(unserved.headers.get('content-type') ?? '', /^application\/problem\+json/);
    });
  }

  it('QUERY, a method no route serves, is 405 on a known path and 404 on an unknown one, with or without a Content-Type', async () => {
    const { token } = await t.newTenant();
    for (const contentType of [undefined, 'application/json']) {
      const head = `Host: x\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n${contentType ? `Content-Type: ${contentType}\r\nContent-Length: 2\r\n` : ''}\r\n${contentType ? '{}' : ''}`;
      const known = await rawExchange(t.baseUrl, `QUERY /v1/stores HTTP/1.1\r\n${head}`);
      assert.equal(known.status, 405, `got ${known.status} ${JSON.stringify(known.body)}`);
      assert.equal(known.body.code, 'method_not_allowed');
      assert.equal(known.headers.allow, 'GET, HEAD, POST');
      const unknown = await rawExchange(t.baseUrl, `QUERY /v1/nothing-here HTTP/1.1\r\n${head}`);
      assert.equal(unknown.status, 404, `got ${unknown.status} ${JSON.stringify(unknown.body)}`);
      assert.equal(unknown.body.code, 'not_found');
    }
  });

  it('a path one method names word for word is not another method\'s parameter: GET …/stock/receipts is 405 Allow POST, not a SKU id refused', async () => {
    const { owner } = await t.newTenant();
    const store = (await owner.post('/v1/stores', { code: 'W1', name: 'Words' })).body;
    const sku = (await owner.post('/v1/skus', { code: 'W-SKU', name: 'Word', unit: 'piece', price: 100 })).body;
    for (const word of ['receipts', 'adjustments']) {
      for (const method of ['GET', 'HEAD', 'DELETE']) {
        const response = await owner.request(method, `/v1/stores/${store.id}/stock/${word}`);
        assert.equal(response.status, 405, `${method} ${word}: got ${response.status} ${JSON.stringify(response.body)}`);
        assert.equal(response.headers.get('allow'), 'POST');
        if (method !== 'HEAD') assert.equal(response.body.code, 'method_not_allowed');
      }
    }
    // The parameter route still serves what is not another route's word, and its own refusals stand.
    assert.equal((await owner.get(`/v1/stores/${store.id}/stock/${sku.id}`)).status, 200);
    const notId = await owner.get(`/v1/stores/${store.id}/stock/receipt`);
    assert.deepEqual([notId.status, notId.body.errors?.[0]?.path], [400, '/params/sku_id']);
    const posted = await owner.post(`/v1/stores/${store.id}/stock/${sku.id}`, {});
    assert.deepEqual([posted.status, posted.headers.get('allow')], [405, 'GET, HEAD']);
  });
});

/** What a raw HTTP/1.1 exchange returned: status, lower-cased headers, parsed body. */
async function rawExchange(baseUrl: string, request: string): Promise<{ status: number; headers: Record<string, string>; body: any }> {
  const { hostname, port } = new URL(baseUrl);
  const text = await new Promise<string>((resolve, reject) => {
    const socket = net.connect(Number(port), hostname, () => socket.end(request));
    let received = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (received += chunk));
    socket.on('error', reject);
    socket.on('close', () => resolve(received));
  });
  const [head = '', body = ''] = text.split('\r\n\r\n');
  const [statusLine = '', ...headerLines] = head.split('\r\n');
  const headers = Object.fromEntries(headerLines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]));
  return { status: Number(statusLine.split(' ')[1]), headers, body: body.length > 0 ? JSON.parse(body) : undefined };
}

describe('requests refused before they reach a route still get problem+json', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  it('a path that is not valid percent-encoding keeps the given X-Correlation-ID', async () => {
    const { owner } = await t.newTenant();
    const response = await owner.get('/v1/sales/%E0%A4%A', { headers: { 'x-correlation-id': 'till-3-bad-url' } });
    assert.equal(response.status, 400);
    assert.match(response.headers.get('content-type') ?? '', /^application\/problem\+json/);
    assert.equal(response.headers.get('x-correlation-id'), 'till-3-bad-url');
    assert.deepEqual([response.body.code, response.body.correlation_id, response.body.errors], ['validation_failed', 'till-3-bad-url', [{ path: '/url', message: 'is not valid percent-encoding' }]]);
  });

  const clientErrors: Array<[string, string, number, string]> = [
    ['a request Node cannot parse', 'GET /v1/stores HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n', 400, 'validation_failed'],
    ['headers larger than Node accepts', `GET /v1/stores HTTP/1.1\r\nHost: x\r\nX-Filler: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'headers_too_large'],
  ];
  for (const [name, request, status, code] of clientErrors) {
    it(`${name} → ${status} ${code} as problem+json with a correlation id, and the connection closed`, async () => {
      const response = await rawExchange(t.baseUrl, request);
      assert.equal(response.status, status);
      assert.match(response.headers['content-type'] ?? '', /^application\/problem\+json/);
      assert.equal(response.headers.connection, 'close');
      assert.deepEqual([response.body.code, response.body.status], [code, status]);
      assert.equal(typeof response.body.title, 'string');
      assert.equal(typeof response.body.detail, 'string');
      assert.match(response.headers['x-correlation-id'] ?? '', /^[0-9a-f-]{36}$/);
      assert.equal(response.body.correlation_id, response.headers['x-correlation-id']);
    });
  }

  // CONNECT (a proxy's tunnel) is a method no route serves; Node hands it to
  // a `connect` listener, and without one closed the connection unanswered.
  const connects: Array<[string, number, string, string | undefined]> = [
    ['/v1/stores', 405, 'method_not_allowed', 'GET, HEAD, POST'],
    ['/v1/nothing-here', 404, 'not_found', undefined],
    ['shop.example:443', 404, 'not_found', undefined],
    ['/v1/sales/%E0%A4%A', 400, 'validation_failed', undefined],
  ];
  for (const [target, status, code, allow] of connects) {
    it(`CONNECT ${target} → ${status} ${code} as problem+json (not a connection closed unanswered)`, async () => {
      const response = await rawExchange(t.baseUrl, `CONNECT ${target} HTTP/1.1\r\nHost: x\r\nX-Correlation-ID: till-9-tunnel\r\n\r\n`);
      assert.equal(response.status, status, JSON.stringify(response));
      assert.match(response.headers['content-type'] ?? '', /^application\/problem\+json/);
      assert.equal(response.headers.connection, 'close');
      assert.equal(response.headers.allow, allow);
      assert.deepEqual([response.body.code, response.body.status, response.body.correlation_id], [code, status, 'till-9-tunnel']);
      assert.equal(response.headers['x-correlation-id'], 'till-9-tunnel');
    });
  }

  it('a CONNECT whose client resets the connection leaves the server answering', async () => {
    const { hostname, port } = new URL(t.baseUrl);
    await Promise.all(
      Array.from({ length: 20 }, () =>
        new Promise<void>((resolve) => {
          const socket = net.connect(Number(port), hostname, () => {
            socket.write('CONNECT /v1/stores HTTP/1.1\r\nHost: x\r\n\r\n');
            socket.resetAndDestroy();
          });
          socket.on('error', () => undefined);
          socket.on('close', () => resolve());
        }),
      ),
    );
    const { owner } = await t.newTenant();
    assert.equal((await owner.get('/v1/stores')).status, 200);
  });
});

describe('a CONNECT client that never closes its side of the connection', () => {
  it('has the connection closed after its answer: the server\'s shutdown does not wait for it', async () => {
    const t = await startTestApp();
    const { hostname, port } = new URL(t.baseUrl);
    // allowHalfOpen: the client does not answer the server's end with its own (as a stuck or hostile client would not)
    const socket = net.connect({ port: Number(port), host: hostname, allowHalfOpen: true });
    let closing: Promise<void> | undefined;
    try {
      let received = '';
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => (received += chunk));
      socket.on('error', () => undefined);
      socket.write('CONNECT /v1/stores HTTP/1.1\r\nHost: x\r\n\r\n');
      const until = Date.now() + 10_000;
      while (!received.endsWith('}') && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 20));
      assert.match(received, /^HTTP\/1\.1 405 /);
      // The server closes its side for good (its socket destroyed, not left half-open for the client to end)…
      const connections = () => new Promise<number>((resolve, reject) => t.app.server.getConnections((error, count) => (error ? reject(error) : resolve(count))));
      const deadline = Date.now() + 3_000;
      while ((await connections()) > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(await connections(), 0, 'the server kept the CONNECT connection after answering');
      // …so closing the app does not wait for the client.
      closing = t.close();
      const within = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 5_000).unref());
      assert.equal(await Promise.race([closing.then(() => 'closed' as const), within]), 'closed', 'the shutdown waited for the CONNECT client');
    } finally {
      socket.destroy();
      await (closing ?? t.close());
    }
  });
});

describe('keep-alive connections', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  it('an idle connection stays open past Node\'s default 5 s (72 s, announced in Keep-Alive): a client or proxy reusing it after a pause is not reset', async () => {
    const { port } = new URL(t.baseUrl);
    const socket = net.connect(Number(port), '127.0.0.1');
    let received = '';
    let closed = false;
    socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
    socket.on('close', () => (closed = true));
    socket.on('error', () => (closed = true));
    const exchange = async () => {
      received = '';
      socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
      const until = Date.now() + 10_000;
      while (!/\r\n\r\n[\s\S]*\}/.test(received) && !closed && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 20));
      return received;
    };
    try {
      await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
      const first = await exchange();
      assert.match(first, /^HTTP\/1\.1 200 /);
      assert.match(first, /\r\nKeep-Alive: timeout=72\r\n/i);
      // idle for longer than Node's default keepAliveTimeout (5 s; a server on that default closes it at ~6 s)
      await new Promise((resolve) => setTimeout(resolve, 7_000));
      assert.equal(closed, false, 'the server closed the idle connection');
      const second = await exchange();
      assert.match(second, /^HTTP\/1\.1 200 /, `the same connection after the pause: ${JSON.stringify(second)}`);
    } finally {
      socket.destroy();
    }
  });
});
