import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../config.js';
import { Authenticator } from '../core/auth.js';
import { AppError, ERROR_STATUS, type ErrorCode } from '../core/errors.js';
import { createLogger } from '../core/logger.js';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { ApiClient } from '../../test/support/client.js';
import { givenSku, givenStock, givenStore, givenToken } from '../sales/testkit.js';
import { buildApp, type UndeclaredRefusal } from './app.js';
import { BEFORE_ROUTING } from './refusals.js';

type Response = { description?: string; content?: Record<string, { schema?: { $ref?: string } }> };
type Document = { paths: Record<string, Record<string, { responses: Record<string, Response> }>> };

/**
 * The codes of the README's table of statuses (## Errors): the backquoted
 * words of its rows that are codes (the rows also quote fields: `as_of`…).
 */
function readmeCodes(): string[] {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const table = readme.slice(readme.indexOf('| status | codes |'));
  const rows = table.slice(0, table.indexOf('\n\n')).split('\n').slice(2);
  return [...new Set(rows.flatMap((row) => [...row.matchAll(/`([a-z]+(?:_[a-z]+)*)`/g)].map((match) => match[1]!)))].filter((word) => word in ERROR_STATUS);
}

/** The codes a response's description names (`code` — when; …). */
const codesIn = (description: string | undefined) => [...(description ?? '').matchAll(/`([a-z_]+)` —/g)].map((match) => match[1]!);

describe('the refusals each operation documents (src/http/refusals.ts)', () => {
  let t: TestApp;
  let doc: Document;
  before(async () => {
    t = await startTestApp();
    doc = (await new ApiClient(t.baseUrl, undefined).get('/openapi.json')).body;
  });
  after(() => t.close());

  const operations = () => Object.entries(doc.paths).flatMap(([path, methods]) => Object.entries(methods).map(([method, operation]) => ({ name: `${method} ${path}`, ...operation })));

  it('lists, per operation, each refusal status it answers as a problem document naming its codes — those codes have that status — and keeps 4XX/5XX as the catch-all', () => {
    assert.ok(operations().length > 50, `${operations().length} operations`);
    for (const operation of operations()) {
      const refusals = Object.entries(operation.responses).filter(([status]) => /^[45]\d\d$/.test(status));
      // /readyz answers its own 503 body (not a problem): its other refusals are still listed.
      assert.ok(refusals.some(([status]) => status === '400'), `${operation.name} lists 400`);
      for (const [status, response] of refusals) {
        if (operation.name === 'get /readyz' && status === '503') continue;
        const codes = codesIn(response.description);
        assert.ok(codes.length > 0, `${operation.name} ${status}: ${response.description}`);
        for (const code of codes) assert.equal(ERROR_STATUS[code as ErrorCode], Number(status), `${operation.name} ${status} names ${code}`);
        assert.doesNotMatch(response.description!, /— (;|$)/, `${operation.name} ${status}: every code says when`);
        assert.equal(response.content?.['application/problem+json']?.schema?.$ref, '#/components/schemas/Problem', `${operation.name} ${status}`);
      }
      for (const range of ['4XX', '5XX']) assert.ok(operation.responses[range], `${operation.name} keeps ${range}`);
    }
  });

  it("names every code of the README's table in some operation (those answered before any route in every 4XX)", () => {
    const codes = readmeCodes();
    assert.deepEqual(codes.slice().sort(), Object.keys(ERROR_STATUS).sort(), 'the README table names every code');
    const named = new Set(operations().flatMap((operation) => Object.entries(operation.responses).filter(([status]) => /^\d+$/.test(status)).flatMap(([, response]) => codesIn(response.description))));
    for (const code of codes) {
      if ((BEFORE_ROUTING as readonly string[]).includes(code)) {
        for (const operation of operations()) assert.match(operation.responses['4XX']!.description ?? '', new RegExp(`\`${code}\` \\(${ERROR_STATUS[code as ErrorCode]}\\)`), `${operation.name} 4XX`);
      } else {
        assert.ok(named.has(code), `no operation documents ${code}`);
      }
    }
  });

  it('documents the refusals of a sale where a client generator sees them', () => {
    const sale = doc.paths['/v1/sales']!.post!.responses;
    assert.match(sale['409']!.description!, /`insufficient_stock` — every short line in `shortages`/);
    assert.match(sale['409']!.description!, /`idempotency_key_in_flight` —/);
    assert.match(sale['409']!.description!, /`piece_unavailable` —/);
    assert.match(sale['403']!.description!, /`sales\.create`/);
    assert.match(sale['403']!.description!, /without `sales\.bulk`/);
    assert.match(sale['422']!.description!, /`idempotency_key_reused` —/);
    assert.match(sale['429']!.description!, /`rate_limited` —/);
    assert.match(sale['503']!.description!, /`service_unavailable` —/);
    assert.equal(sale['412'], undefined, 'a sale takes no If-Match');
    // A named piece that is not there (or of another store or SKU) is 400 at its path (README), never 404.
    assert.doesNotMatch(sale['404']!.description!, /piece/, sale['404']!.description);
    assert.match(doc.paths['/v1/tenant/settings']!.patch!.responses['412']!.description!, /`version_conflict` —/);
    assert.match(doc.paths['/v1/settlements/{id}/approve']!.post!.responses['428']!.description!, /`precondition_required` —/);
    assert.match(doc.paths['/v1/settlements/{id}/approve']!.post!.responses['409']!.description!, /`conflict` —/);
    assert.equal(codesIn(doc.paths['/v1/settlements/{id}/reject']!.post!.responses['409']!.description).includes('conflict'), false, 'only an approval can clash with an approved day');
    assert.match(doc.paths['/v1/sales/{id}']!.get!.responses['404']!.description!, /`not_found` —/);
    assert.equal(doc.paths['/v1/sales/{id}']!.get!.responses['422'], undefined, 'a read takes no Idempotency-Key');
    assert.match(doc.paths['/v1/webhooks/fulfilment']!.post!.responses['401']!.description!, /`invalid_signature` —/);
    assert.equal(codesIn(doc.paths['/v1/webhooks/fulfilment']!.post!.responses['401']!.description).includes('unauthorized'), false, 'the webhook takes no token');
    assert.equal(doc.paths['/healthz']!.get!.responses['429'], undefined, 'the liveness probe is never rate limited');
  });

  it('answers the refusals it documents: a sale refused each way, every answer declared', async () => {
    const { owner } = await t.newTenant();
    const store = await givenStore(owner, 'MAIN');
    const sku = await givenSku(owner, 'SOAP', 'piece', 100);
    await givenStock(owner, store, [{ sku_id: sku, quantity: 5 }]);
    const cashier = await givenToken(t, owner, 'cashier');
    const line = (quantity: number) => ({ store_id: store, payment_method: 'cash', items: [{ sku_id: sku, quantity, unit_price: 100 }] });
    const refused = {
      insufficient_stock: await owner.post('/v1/sales', line(6)),
      forbidden: await cashier.post('/v1/sales', { ...line(1), sale_type: 'bulk' }),
      validation_failed: await owner.post('/v1/sales', { ...line(1), payment_method: 'barter' }),
      unauthorized: await new ApiClient(t.baseUrl, 'nope').post('/v1/sales', line(1)),
      not_found: await owner.get('/v1/sales/00000000-0000-4000-8000-000000000000'),
      malformed_json: await owner.post('/v1/sales', undefined, { rawBody: '{"store_id":' }),
    };
    const cloth = (await owner.post('/v1/skus', { code: 'CLOTH', name: 'Cloth', unit: 'metre', price: 500, tracks_pieces: true })).body.id;
    const noSuchPiece = await owner.post('/v1/sales', { store_id: store, payment_method: 'cash', items: [{ sku_id: cloth, piece_ids: ['00000000-0000-4000-8000-000000000000'], unit_price: 500 }] });
    assert.deepEqual([noSuchPiece.status, noSuchPiece.body.errors?.[0]?.path], [400, '/body/items/0/piece_ids/0'], JSON.stringify(noSuchPiece.body));
    assert.equal((await owner.post('/v1/sales', line(1), { idempotencyKey: 'sale-1' })).status, 201);
    const reused = await owner.post('/v1/sales', line(2), { idempotencyKey: 'sale-1' });
    for (const [code, response] of [...Object.entries(refused), ['idempotency_key_reused', reused] as const]) {
      assert.equal(response.body.code, code, JSON.stringify(response.body));
      assert.equal(response.status, ERROR_STATUS[code as ErrorCode]);
    }
    assert.deepEqual(refused.insufficient_stock.body.shortages, [{ sku_id: sku, requested: 6, available: 5 }]);
    assert.deepEqual(t.undeclaredRefusals, []);
  });

  it('records a problem a route answers without declaring it (the guard every spec runs under)', async () => {
    const found: UndeclaredRefusal[] = [];
    const config = { ...loadConfig({ LOG_LEVEL: 'silent' }), port: 0, rateLimitPerMinute: 1_000_000 };
    const app = await buildApp({ config, pool: t.appPool, db: t.db, logger: createLogger('silent'), authenticator: new Authenticator(t.db), onUndeclaredRefusal: (refusal) => found.push(refusal) });
    try {
      app.get('/v1/guarded', { config: { auth: 'none', refusals: { conflict: 'declared' } }, schema: { querystring: { type: 'object', properties: { code: { type: 'string' } } } } }, async (request) => {
        throw new AppError((request.query as { code: ErrorCode }).code, 'refused');
      });
      assert.equal((await app.inject({ method: 'GET', url: '/v1/guarded?code=conflict' })).statusCode, 409);
      assert.equal((await app.inject({ method: 'GET', url: '/v1/guarded?code=validation_failed' })).statusCode, 400);
      assert.deepEqual(found, [], 'declared and derived refusals pass');
      assert.equal((await app.inject({ method: 'GET', url: '/v1/guarded?code=insufficient_stock' })).statusCode, 409);
      assert.equal((await app.inject({ method: 'GET', url: '/v1/nowhere' })).statusCode, 404, 'no route: not an operation of the document');
      assert.deepEqual(found, [{ method: 'GET', route: '/v1/guarded', status: 409, code: 'insufficient_stock' }]);
    } finally {
      await app.close();
    }
  });
});
