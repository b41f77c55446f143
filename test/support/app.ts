import { randomUUID } from 'node:crypto';
import { loadConfig, type Config } from '../../src/config.js';
import { Authenticator } from '../../src/core/auth.js';
import { createDb, createPool } from '../../src/core/db.js';
import { createLogger, type Logger } from '../../src/core/logger.js';
import { buildApp, type App, type UndeclaredRefusal } from '../../src/http/app.js';
import { ApiClient } from './client.js';
import { createTestDatabase, type TestDatabase } from './database.js';

export interface TestApp extends TestDatabase {
  app: App;
  baseUrl: string;
  operatorToken: string;
  operator: ApiClient;
  authenticator: Authenticator;
  /** Creates a tenant through the API; returns its id and an owner client. */
  newTenant(name?: string): Promise<{ tenantId: string; token: string; owner: ApiClient }>;
  client(token: string): ApiClient;
  /**
   * Problems the app answered that their route does not declare (src/http/refusals.ts):
   * close() fails the test file when there is any, so every spec guards the OpenAPI document's refusals.
   */
  undeclaredRefusals: UndeclaredRefusal[];
  close(): Promise<void>;
}

/** The refusals the app answered but does not document, as an error naming each (once), or undefined. */
export function undeclaredRefusalsError(found: readonly UndeclaredRefusal[]): Error | undefined {
  if (found.length === 0) return undefined;
  const distinct = [...new Set(found.map(({ method, route, status, code }) => `${method} ${route} answered ${status} ${code}`))];
  return new Error(`refusals not declared by their route (config.refusals, src/http/refusals.ts), so missing from the OpenAPI document:\n  ${distinct.join('\n  ')}`);
}

/**
 * The real HTTP app on a loopback port, on this test file's own database.
 * `lockTimeoutMs`: its pool's lock_timeout (createPool's default, 15 s, when unset).
 */
export async function startTestApp(overrides: Partial<Config> = {}, options: { logger?: Logger; reportError?: (error: unknown) => void; lockTimeoutMs?: number } = {}): Promise<TestApp> {
  const database = await createTestDatabase({ lockTimeoutMs: options.lockTimeoutMs });
  const operatorToken = `test-operator-${randomUUID()}`;
  const config: Config = { ...loadConfig({ LOG_LEVEL: process.env.LOG_LEVEL ?? 'silent' }), port: 0, rateLimitPerMinute: 1_000_000, ...overrides };
  const logger = options.logger ?? createLogger(config.logLevel);
  const authenticator = new Authenticator(database.db);
  authenticator.setOperatorTokens([operatorToken]);
  const undeclaredRefusals: UndeclaredRefusal[] = [];
  const app = await buildApp({
    config,
    pool: database.appPool,
    db: database.db,
    logger,
    authenticator,
    onUndeclaredRefusal: (refusal) => undeclaredRefusals.push(refusal),
    ...(options.reportError ? { reportError: options.reportError } : {}),
  });
  const baseUrl = await app.listen({ port: 0, host: '127.0.0.1' });
  const client = (token: string) => new ApiClient(baseUrl, token);
  const operator = client(operatorToken);
  return {
    ...database,
    app,
    baseUrl,
    operatorToken,
    operator,
    authenticator,
    client,
    undeclaredRefusals,
    async newTenant(name = `tenant-${randomUUID().slice(0, 8)}`) {
      const response = await operator.post('/v1/tenants', { name });
      if (response.status !== 201) throw new Error(`tenant creation failed: ${response.status} ${JSON.stringify(response.body)}`);
      const body = response.body as { tenant: { id: string }; token: string };
      return { tenantId: body.tenant.id, token: body.token, owner: client(body.token) };
    },
    async close() {
      await app.close();
      await database.drop();
      const undeclared = undeclaredRefusalsError(undeclaredRefusals);
      if (undeclared) throw undeclared;
    },
  };
}

/**
 * A second API process on the same database, as two instances behind a load
 * balancer are: its own app-role pool, token cache and group committer.
 */
export async function startSecondApi(t: TestApp): Promise<{ url: string; client(token: string): ApiClient; close(): Promise<void> }> {
  const undeclaredRefusals: UndeclaredRefusal[] = [];
  const pool = createPool(t.appUrl, { max: 30, asAppRole: true });
  const db = createDb(pool);
  const app = await buildApp({
    config: { ...loadConfig({ LOG_LEVEL: 'silent' }), port: 0, rateLimitPerMinute: 1_000_000 },
    pool,
    db,
    logger: createLogger('silent'),
    authenticator: new Authenticator(db),
    onUndeclaredRefusal: (refusal) => undeclaredRefusals.push(refusal),
  });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return {
    url,
    client: (token: string) => new ApiClient(url, token),
    async close() {
      await app.close();
      await db.destroy();
      const undeclared = undeclaredRefusalsError(undeclaredRefusals);
      if (undeclared) throw undeclared;
    },
  };
}
