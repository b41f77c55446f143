import Fastify, { type RouteOptions } from 'fastify';
import { loadConfig } from '../../src/config.js';
import { Authenticator } from '../../src/core/auth.js';
import { createLogger } from '../../src/core/logger.js';
import type { Permission } from '../../src/core/permissions.js';
import type { App } from '../../src/http/app.js';
import { routeModules } from '../../src/http/routes.js';
import type { TestApp } from './app.js';

export interface CollectedRoute {
  method: string;
  url: string;
  auth: string;
  permission: Permission | undefined;
}

/**
 * Every route the route modules register (an `onRoute` hook), so a spec that
 * walks them walks an endpoint another part adds as soon as it is registered
 * in src/http/routes.ts — no list to keep up to date by hand.
 */
export async function collectRoutes(t: TestApp): Promise<CollectedRoute[]> {
  const routes: CollectedRoute[] = [];
  const collector = Fastify({ logger: false });
  // Only lists the routes: their schemas (with the app's own keywords) are compiled by the real app.
  collector.setValidatorCompiler(() => () => true);
  collector.addHook('onRoute', (route: RouteOptions) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const config = (route.config ?? {}) as { auth?: string; permission?: Permission };
    for (const method of methods) routes.push({ method, url: route.url, auth: config.auth ?? 'tenant', permission: config.permission });
  });
  const config = { ...loadConfig({ LOG_LEVEL: 'silent' }), port: 0 };
  const deps = { config, pool: t.appPool, db: t.db, logger: createLogger('silent'), authenticator: new Authenticator(t.db) };
  for (const register of routeModules) await collector.register(async (scoped) => register(scoped as unknown as App, deps));
  await collector.ready();
  await collector.close();
  return routes;
}
