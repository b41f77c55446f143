import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';

/** One raw HTTP/1.1 request (keep-alive) as text. */
function rawRequest(host: string, token: string, key: string, body: unknown): string {
  const text = JSON.stringify(body);
  return (
    `POST /v1/sales HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\n` +
    `Idempotency-Key: ${key}\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: keep-alive\r\n\r\n${text}`
  );
}

/** The responses in `raw` (each with a Content-Length): status, lowercased headers, body text. */
function parseResponses(raw: string): { status: number; headers: Record<string, string>; body: string }[] {
  const responses = [];
  let rest = raw;
  while (rest.startsWith('HTTP/1.1 ')) {
    const end = rest.indexOf('\r\n\r\n');
    const [statusLine, ...lines] = rest.slice(0, end).split('\r\n');
    const headers = Object.fromEntries(lines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]));
    const length = Number(headers['content-length']);
    responses.push({ status: Number(statusLine!.split(' ')[1]), headers, body: rest.slice(end + 4, end + 4 + length) });
    rest = rest.slice(end + 4 + length);
  }
  return responses;
}

describe('shutdown: a request that arrives while the server drains', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  it('is refused as a 503 service_unavailable problem with Retry-After and a correlation id, and writes nothing, while the request in flight completes', async () => {
    // Given a sale in flight on a kept-alive connection (held by a lock on its stock row)
    const { owner, token } = await t.newTenant();
    const store = (await owner.post('/v1/stores', { code: 'MAIN', name: 'Main' })).body.id;
    const sku = (await owner.post('/v1/skus', { code: 'RICE', name: 'Rice', unit: 'kg', price: 250 })).body.id;
    await owner.post(`/v1/stores/${store}/stock/receipts`, { items: [{ sku_id: sku, quantity: 1000 }] });
    const sale = { store_id: store, payment_method: 'cash', items: [{ sku_id: sku, quantity: 100, unit_price: 250 }] };
    const holder = await t.admin.connect();
    await holder.query('BEGIN');
    await holder.query('SELECT 1 FROM stock_balances WHERE store_id = $1 FOR UPDATE', [store]);
    const url = new URL(t.baseUrl);
    const socket = net.connect(Number(url.port), url.hostname);
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
    const ended = new Promise((resolve) => socket.on('close', resolve));
    socket.write(rawRequest(url.host, token, 'in-flight', sale));
    for (let waited = 0; waited < 5000; waited += 50) {
      const waiting = await t.admin.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()`);
      if (waiting.rows[0].n > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }

    // When the server starts closing and another request arrives on that connection
    const closed = t.app.close();
    await new Promise((resolve) => setTimeout(resolve, 100));
    socket.write(rawRequest(url.host, token, 'while-closing', sale));
    await new Promise((resolve) => setTimeout(resolve, 100));
    await holder.query('COMMIT');
    holder.release();
    await closed;
    await ended;

    // Then the sale in flight completed, and the late one is a problem like any other refusal
    const [first, second] = parseResponses(received);
    assert.equal(first?.status, 201, received);
    assert.equal(second?.status, 503, received);
    assert.match(second!.headers['content-type'] ?? '', /^application\/problem\+json/);
    const problem = JSON.parse(second!.body);
    assert.equal(problem.code, 'service_unavailable');
    assert.equal(problem.correlation_id, second!.headers['x-correlation-id']);
    assert.ok(Number(second!.headers['retry-after']) > 0);
    assert.equal(second!.headers.connection, 'close');
    const keys = await t.admin.query(`SELECT key FROM idempotency_keys WHERE key IN ('in-flight', 'while-closing') ORDER BY key`);
    assert.deepEqual(keys.rows, [{ key: 'in-flight' }]);
  });
});
