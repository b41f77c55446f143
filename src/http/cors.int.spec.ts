import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { ApiClient, type ApiResponse } from '../../test/support/client.js';

const POS = 'https://pos.example.com';
const CONSOLE = 'http://localhost:5173';
const STRANGER = 'https://evil.example.net';

const corsHeadersOf = (response: ApiResponse) => [...response.headers.keys()].filter((name) => name.startsWith('access-control-'));
const listOf = (value: string | null) => (value ?? '').split(',').map((item) => item.trim().toLowerCase()).filter(Boolean);

/** A browser's preflight: OPTIONS with Origin and Access-Control-Request-Method (and the headers it will send). */
const preflight = (baseUrl: string, path: string, origin: string, method: string, headers?: string) =>
  new ApiClient(baseUrl, undefined).request('OPTIONS', path, undefined, {
    headers: { origin, 'access-control-request-method': method, ...(headers ? { 'access-control-request-headers': headers } : {}) },
  });

function assertMethodNotAllowed(response: ApiResponse, allow: string) {
  assert.equal(response.status, 405, JSON.stringify(response.body));
  assert.match(response.headers.get('content-type') ?? '', /^application\/problem\+json/);
  assert.equal(response.body.code, 'method_not_allowed');
  assert.equal(response.headers.get('allow'), allow);
}

describe('CORS off (CORS_ORIGINS unset): as before', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  it('a preflight is 405 with Allow, like any method a path does not serve, and no response carries Access-Control-* headers', async () => {
    const answered = await preflight(t.baseUrl, '/v1/stores', POS, 'POST', 'authorization, content-type');
    assertMethodNotAllowed(answered, 'GET, HEAD, POST');
    assert.deepEqual(corsHeadersOf(answered), []);
    const { owner } = await t.newTenant();
    const read = await owner.get('/v1/stores', { headers: { origin: POS } });
    assert.equal(read.status, 200);
    assert.deepEqual(corsHeadersOf(read), []);
    assert.equal((await new ApiClient(t.baseUrl, undefined).request('OPTIONS', '/v1/nothing-here')).status, 404);
  });
});

describe('CORS on (CORS_ORIGINS set)', () => {
  let t: TestApp;
  let tenantId: string;
  let owner: ApiClient;
  before(async () => {
    t = await startTestApp({ corsOrigins: [POS, CONSOLE] });
    ({ owner, tenantId } = await t.newTenant());
  });
  after(() => t.close());

  const written = async () =>
    (
      await t.admin.query(
        `SELECT (SELECT count(*) FROM operations WHERE tenant_id = $1)::int AS operations,
                (SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1)::int AS keys`,
        [tenantId],
      )
    ).rows[0];

  it('a preflight from a listed origin is 204, without a token, allowing the methods and the headers clients send, cached; nothing is written', async () => {
    const before = await written();
    const answered = await preflight(t.baseUrl, '/v1/tenant/settings', POS, 'PATCH', 'authorization, content-type, idempotency-key, if-match, x-correlation-id');
    assert.equal(answered.status, 204);
    assert.equal(answered.headers.get('access-control-allow-origin'), POS);
    assert.deepEqual(listOf(answered.headers.get('access-control-allow-methods')).sort(), ['delete', 'get', 'head', 'patch', 'post', 'put']);
    assert.deepEqual(listOf(answered.headers.get('access-control-allow-headers')).sort(), ['authorization', 'content-type', 'idempotency-key', 'if-match', 'x-correlation-id']);
    assert.ok(Number(answered.headers.get('access-control-max-age')) > 0);
    assert.equal(answered.headers.get('access-control-allow-credentials'), null, 'bearer tokens, not cookies: no credentials');
    assert.ok(listOf(answered.headers.get('vary')).includes('origin'), 'caches keep one answer per origin');
    assert.ok(answered.headers.get('x-correlation-id'));
    // the other listed origin, another path
    const other = await preflight(t.baseUrl, '/v1/sales', CONSOLE, 'POST', 'authorization, content-type, idempotency-key');
    assert.equal(other.status, 204);
    assert.equal(other.headers.get('access-control-allow-origin'), CONSOLE);
    assert.deepEqual(await written(), before);
  });

  it('answers to a listed origin (successes and refusals) allow it and expose the headers clients read; never *', async () => {
    const created = await owner.post('/v1/stores', { code: 'CORS', name: 'Cross origin' }, { idempotencyKey: 'cors-1', headers: { origin: POS } });
    assert.equal(created.status, 201);
    const replayed = await owner.post('/v1/stores', { code: 'CORS', name: 'Cross origin' }, { idempotencyKey: 'cors-1', headers: { origin: POS } });
    assert.equal(replayed.headers.get('idempotent-replayed'), 'true');
    const refused = await new ApiClient(t.baseUrl, undefined).get('/v1/stores', { headers: { origin: POS } });
    assert.equal(refused.status, 401);
    const missing = await owner.get('/v1/nothing-here', { headers: { origin: CONSOLE } });
    assert.equal(missing.status, 404);
    for (const [response, origin] of [[created, POS], [replayed, POS], [refused, POS], [missing, CONSOLE]] as const) {
      assert.equal(response.headers.get('access-control-allow-origin'), origin, `${response.status}`);
      assert.deepEqual(listOf(response.headers.get('access-control-expose-headers')).sort(), ['etag', 'idempotent-replayed', 'retry-after', 'x-correlation-id']);
      assert.ok(listOf(response.headers.get('vary')).includes('origin'));
      assert.equal(response.headers.get('access-control-allow-credentials'), null);
    }
  });

  it('an origin not listed gets what it got with CORS off: no Access-Control-* headers, its preflight 405 with Allow', async () => {
    const answered = await preflight(t.baseUrl, '/v1/stores', STRANGER, 'POST', 'authorization, content-type');
    assertMethodNotAllowed(answered, 'GET, HEAD, POST');
    assert.deepEqual(corsHeadersOf(answered), []);
    const read = await owner.get('/v1/stores', { headers: { origin: STRANGER } });
    assert.equal(read.status, 200);
    assert.deepEqual(corsHeadersOf(read), []);
    // an origin is compared exactly: not a prefix, not another scheme or port
    for (const near of [`${POS}.evil.net`, 'http://pos.example.com', 'http://localhost:5174']) {
      assert.deepEqual(corsHeadersOf(await owner.get('/v1/stores', { headers: { origin: near } })), [], near);
    }
  });

  it('every answer carries Vary: Origin while CORS_ORIGINS is set — to a listed origin, one not listed and a request without Origin (README, CORS)', async () => {
    for (const [who, headers] of [
      ['listed', { origin: POS }],
      ['not listed', { origin: STRANGER }],
      ['no Origin', {}],
    ] as const) {
      const read = await owner.get('/v1/stores', { headers });
      assert.equal(read.status, 200, who);
      assert.ok(listOf(read.headers.get('vary')).includes('origin'), `${who}: Vary ${read.headers.get('vary')}`);
      const refused = await new ApiClient(t.baseUrl, undefined).request('GET', '/v1/stores', undefined, { headers });
      assert.equal(refused.status, 401, who);
      assert.ok(listOf(refused.headers.get('vary')).includes('origin'), `${who} (401): Vary ${refused.headers.get('vary')}`);
    }
  });

  it('an OPTIONS that is no preflight (no Origin, or no Access-Control-Request-Method) is 405 with Allow as before, a problem — and an unknown path 404', async () => {
    const anonymous = new ApiClient(t.baseUrl, undefined);
    assertMethodNotAllowed(await anonymous.request('OPTIONS', '/v1/stores'), 'GET, HEAD, POST');
    const noMethod = await anonymous.request('OPTIONS', '/v1/stores', undefined, { headers: { origin: POS } });
    assertMethodNotAllowed(noMethod, 'GET, HEAD, POST');
    assert.equal(noMethod.headers.get('access-control-allow-origin'), POS, 'the browser may read the refusal');
    const unknown = await anonymous.request('OPTIONS', '/v1/nothing-here');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.code, 'not_found');
    // the catch-all that lets preflights through serves no path: Allow does not list OPTIONS
    assertMethodNotAllowed(await owner.put('/v1/stores', { code: 'PUT', name: 'Put' }), 'GET, HEAD, POST');
  });

  it('an OPTIONS that is no preflight is 405 (or 404) whatever body it carries: the body is not read', async () => {
    const anonymous = new ApiClient(t.baseUrl, undefined);
    const bodies: Array<[Record<string, string>, string]> = [
      [{ 'content-type': 'application/json' }, 'this is not json'],
      [{ 'content-type': 'application/json; charset=latin1' }, '{}'],
      [{ 'content-type': 'application/json' }, `"${'x'.repeat(2 * 1024 * 1024)}"`],
    ];
    for (const [headers, body] of bodies) {
      for (const origin of [{}, { origin: POS }] as Array<Record<string, string>>) {
        const known = await anonymous.request('OPTIONS', '/v1/stores', undefined, { headers: { ...headers, ...origin }, rawBody: body });
        assertMethodNotAllowed(known, 'GET, HEAD, POST');
        const unknown = await anonymous.request('OPTIONS', '/v1/nothing-here', undefined, { headers: { ...headers, ...origin }, rawBody: body });
        assert.equal(unknown.status, 404, JSON.stringify(unknown.body));
        assert.equal(unknown.body.code, 'not_found');
      }
    }
  });

  it('a 429 to a listed origin carries the CORS headers, so the page can read its Retry-After', async () => {
    const limited = await startTestApp({ corsOrigins: [POS], rateLimitPerMinute: 2 });
    try {
      const { owner: limitedOwner } = await limited.newTenant();
      let answer: ApiResponse | undefined;
      for (let i = 0; i < 5 && answer?.status !== 429; i++) answer = await limitedOwner.get('/v1/stores', { headers: { origin: POS } });
      assert.equal(answer?.status, 429);
      assert.equal(answer.headers.get('access-control-allow-origin'), POS);
      assert.ok(listOf(answer.headers.get('access-control-expose-headers')).includes('retry-after'));
      assert.ok(Number(answer.headers.get('retry-after')) > 0);
    } finally {
      await limited.close();
    }
  });

  it('the OpenAPI document describes no OPTIONS operation', async () => {
    const doc = (await new ApiClient(t.baseUrl, undefined).get('/openapi.json')).body as { paths: Record<string, Record<string, unknown>> };
    const options = Object.entries(doc.paths).filter(([, operations]) => 'options' in operations).map(([path]) => path);
    assert.deepEqual(options, []);
  });
});

describe('preflights and requests no route serves are rate-limited per client address', () => {
  const LIMIT = 5;
  let t: TestApp;
  before(async () => {
    t = await startTestApp({ corsOrigins: [POS], rateLimitPerMinute: LIMIT });
  });
  after(() => t.close());

  it('a flood of preflights from one address, sent at once: LIMIT answered 204, the rest 429 problem+json with Retry-After; a token\'s own requests keep their bucket', async () => {
    const { owner } = await t.newTenant();
    const answers = await Promise.all(Array.from({ length: LIMIT + 7 }, () => preflight(t.baseUrl, '/v1/sales', POS, 'POST', 'authorization, content-type')));
    const statuses = answers.map((answer) => answer.status);
    assert.equal(statuses.filter((status) => status === 204).length, LIMIT, `statuses: ${statuses}`);
    const refused = answers.filter((answer) => answer.status === 429);
    assert.equal(refused.length, 7, `statuses: ${statuses}`);
    for (const answer of refused) {
      assert.match(answer.headers.get('content-type') ?? '', /^application\/problem\+json/);
      assert.equal(answer.body.code, 'rate_limited');
      assert.ok(Number(answer.headers.get('retry-after')) > 0);
      assert.ok(answer.headers.get('x-correlation-id'));
    }
    // Counted by address, not by token: the owner's token still has its requests.
    assert.equal((await owner.get('/v1/stores', { headers: { origin: POS } })).status, 200);
  });

  it('requests no route serves (404, 405) count against the address too', async () => {
    const limited = await startTestApp({ rateLimitPerMinute: LIMIT });
    try {
      const anonymous = new ApiClient(limited.baseUrl, undefined);
      const answers = await Promise.all(
        Array.from({ length: LIMIT + 3 }, (_, i) => (i % 2 === 0 ? anonymous.get('/v1/nothing-here') : anonymous.request('OPTIONS', '/v1/stores'))),
      );
      const statuses = answers.map((answer) => answer.status);
      assert.equal(statuses.filter((status) => status === 429).length, 3, `statuses: ${statuses}`);
      assert.ok(statuses.every((status) => status === 404 || status === 405 || status === 429), `statuses: ${statuses}`);
      assert.ok(answers.filter((answer) => answer.status === 429).every((answer) => Number(answer.headers.get('retry-after')) > 0));
    } finally {
      await limited.close();
    }
  });
  it('with CORS on, a preflight from an origin not listed (405) counts once against the address: LIMIT of them answered, the next 429', async () => {
    const limited = await startTestApp({ corsOrigins: [POS], rateLimitPerMinute: LIMIT });
    try {
      const statuses: number[] = [];
      for (let i = 0; i <= LIMIT; i++) statuses.push((await preflight(limited.baseUrl, '/v1/stores', STRANGER, 'POST')).status);
      assert.deepEqual(statuses, [...Array.from({ length: LIMIT }, () => 405), 429]);
    } finally {
      await limited.close();
    }
  });

  it('with CORS on, an OPTIONS that is no preflight (405, 404) counts against the address too', async () => {
    const limited = await startTestApp({ corsOrigins: [POS], rateLimitPerMinute: LIMIT });
    try {
      const anonymous = new ApiClient(limited.baseUrl, undefined);
      const answers = await Promise.all(
        Array.from({ length: LIMIT + 3 }, (_, i) =>
          anonymous.request('OPTIONS', i % 2 === 0 ? '/v1/stores' : '/v1/nothing-here', undefined, i % 3 === 0 ? { headers: { origin: POS } } : {}),
        ),
      );
      const statuses = answers.map((answer) => answer.status);
      assert.equal(statuses.filter((status) => status === 429).length, 3, `statuses: ${statuses}`);
      assert.ok(statuses.every((status) => status === 404 || status === 405 || status === 429), `statuses: ${statuses}`);
      assert.ok(answers.filter((answer) => answer.status === 429).every((answer) => Number(answer.headers.get('retry-after')) > 0));
    } finally {
      await limited.close();
    }
  });
});
