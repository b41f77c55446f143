import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ROLES, roleHas, type Role } from '../core/permissions.js';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { collectRoutes, type CollectedRoute } from '../../test/support/routes.js';

/**
 * Every write endpoint × every role, against the one role → permission table.
 * The routes are collected from the route modules themselves (collectRoutes),
 * so an endpoint another part adds is walked as soon as it is registered.
 */
const WRITE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const SOME_ID = '01900000-0000-7000-8000-000000000000';

describe('role × write endpoint matrix', () => {
  let t: TestApp;
  let owner: ApiClient;
  let routes: CollectedRoute[];
  let reads: CollectedRoute[];
  const clients = new Map<Role, ApiClient>();

  before(async () => {
    t = await startTestApp();
    ({ owner } = await t.newTenant());
    for (const role of ROLES) {
      const response = await owner.post('/v1/tokens', { name: `matrix-${role}`, role });
      assert.equal(response.status, 201);
      clients.set(role, t.client(response.body.token));
    }
    const collected = await collectRoutes(t);
    routes = collected.filter((route) => WRITE_METHODS.has(route.method));
    reads = collected.filter((route) => route.method === 'GET' && route.auth === 'tenant');
  });
  after(() => t.close());

  it('collects the write endpoints of every part, and each tenant one names a permission', () => {
    const urls = routes.map((route) => `${route.method} ${route.url}`);
    for (const expected of ['POST /v1/stores', 'POST /v1/payments', 'POST /v1/transfers/:id/approve', 'POST /v1/settlements/:id/approve', 'POST /v1/parties', 'PUT /v1/stores/:store_id/stock/:sku_id/reorder-level']) {
      assert.ok(urls.includes(expected), `${expected} is collected`);
    }
    const withoutPermission = routes.filter((route) => route.auth === 'tenant' && route.permission === undefined);
    assert.deepEqual(withoutPermission, [], 'every tenant write endpoint declares config.permission');
  });

  it('every role gets 403 exactly when it lacks the route\'s permission (before any body is read)', async () => {
    const mismatches: string[] = [];
    let checked = 0;
    for (const route of routes) {
      const path = route.url.replace(/:[a-z_]+/g, SOME_ID);
      if (route.auth === 'none') continue;
      for (const role of ROLES) {
        const response = await clients.get(role)!.request(route.method, path, {});
        const forbidden = response.status === 403;
        const expectForbidden = route.auth === 'operator' || (route.auth === 'tenant' && !roleHas(role, route.permission!));
        checked++;
        if (forbidden !== expectForbidden) {
          mismatches.push(`${role} ${route.method} ${route.url}: got ${response.status}, expected ${expectForbidden ? '403' : 'not 403'}`);
        }
        if (forbidden) assert.equal(response.body.code, 'forbidden');
      }
    }
    assert.deepEqual(mismatches, []);
    assert.equal(checked, routes.filter((route) => route.auth !== 'none').length * ROLES.length);
    assert.ok(routes.length >= 20, `walked ${routes.length} write endpoints`);
  });

  it('read endpoints too: 403 exactly when the role lacks the route\'s permission', async () => {
    const mismatches: string[] = [];
    for (const route of reads) {
      const path = route.url.replace(/:[a-z_]+/g, SOME_ID);
      for (const role of ROLES) {
        const response = await clients.get(role)!.get(path);
        const expectForbidden = route.permission !== undefined && !roleHas(role, route.permission);
        if ((response.status === 403) !== expectForbidden) mismatches.push(`${role} GET ${route.url}: got ${response.status}`);
      }
    }
    assert.deepEqual(mismatches, []);
    assert.ok(reads.length >= 20, `walked ${reads.length} read endpoints`);
    assert.ok(reads.some((route) => route.url === '/v1/stores/:store_id/stock/low'), 'the low-stock list is walked');
  });
});
