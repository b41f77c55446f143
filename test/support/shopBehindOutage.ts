import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { loadConfig } from '../../src/config.js';
import { Authenticator } from '../../src/core/auth.js';
import { createDb, createPool } from '../../src/core/db.js';
import type { Logger } from '../../src/core/logger.js';
import { buildApp, type App } from '../../src/http/app.js';
import { ApiClient } from './client.js';
import type { TestDatabase } from './database.js';
import { Outage } from './outage.js';

export interface ShopBehindOutage {
  app: App;
  /** The app's pool, whose connections go through `outage`. */
  pool: pg.Pool;
  outage: Outage;
  /** The tenant's owner, a store `MAIN` holding 10 kg of the SKU `RICE`. */
  owner: ApiClient;
  storeId: string;
  skuId: string;
}

/**
 * An in-process API whose database connections go through an Outage proxy
 * (to cut, freeze or silence them), with one tenant, store and stocked SKU.
 * `tokenCacheMs`: how long tokens stay cached (the Authenticator's default
 * when unset); `answerTimeoutMs`: the pool's (createPool's default when unset).
 */
export async function shopBehindOutage(
  t: TestDatabase,
  options: { logger: Logger; tenantName: string; poolSize: number; answerTimeoutMs?: number; tokenCacheMs?: number },
): Promise<ShopBehindOutage> {
  const outage = await Outage.inFrontOf(t.appUrl);
  const pool = createPool(outage.through(t.appUrl), {
    max: options.poolSize,
    asAppRole: true,
    ...(options.answerTimeoutMs === undefined ? {} : { answerTimeoutMs: options.answerTimeoutMs }),
  });
  const db = createDb(pool);
  const operatorToken = `test-operator-${randomUUID()}`;
  const authenticator = options.tokenCacheMs === undefined ? new Authenticator(db) : new Authenticator(db, options.tokenCacheMs);
  authenticator.setOperatorTokens([operatorToken]);
  const config = { ...loadConfig({ LOG_LEVEL: 'silent' }), port: 0, rateLimitPerMinute: 1_000_000, readinessTimeoutMs: 500 };
  const app = await buildApp({ config, pool, db, logger: options.logger, authenticator });
  const baseUrl = await app.listen({ port: 0, host: '127.0.0.1' });
  const created = await new ApiClient(baseUrl, operatorToken).post('/v1/tenants', { name: options.tenantName });
  const owner = new ApiClient(baseUrl, created.body.token);
  const storeId = (await owner.post('/v1/stores', { code: 'MAIN', name: 'Main' })).body.id;
  const skuId = (await owner.post('/v1/skus', { code: 'RICE', name: 'Rice', unit: 'kg', price: 250 })).body.id;
  assert.equal((await owner.post(`/v1/stores/${storeId}/stock/receipts`, { items: [{ sku_id: skuId, quantity: 10_000 }] })).status, 201);
  return { app, pool, outage, owner, storeId, skuId };
}
