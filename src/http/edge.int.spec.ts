import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { ApiClient } from '../../test/support/client.js';
import { createLogger } from '../core/logger.js';

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

  it('health and readiness are never rate limited', async () => {
    for (let i = 0; i < 10; i++) assert.equal((await t.operator.get('/healthz')).status, 200);
  });
});

describe('correlation ids in logs', () => {
  const lines: Array<Record<string, unknown>> = [];
  let t: TestApp;
  before(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line));
        done();
      },
    });
    const logger = createLogger('info', 'test', sink);
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
});
