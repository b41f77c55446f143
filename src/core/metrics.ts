import { createHash, timingSafeEqual } from 'node:crypto';
import client from 'prom-client';
import { bearerCredential } from './auth.js';

/**
 * The metrics every process serves on /metrics (the runtime's defaults,
 * transaction retries, open integrity findings). Modules add their own
 * here, or to the registry of the one process that moves them (below).
 */
export const registry = new client.Registry();
client.collectDefaultMetrics({ register: registry });

/**
 * The API's own metrics (HTTP requests, sale batches) and the worker's own
 * (jobs, all-tenant integrity runs): each process serves `registry` with its
 * own, not the other's — the API listed the job families with no values and
 * `storekeep_integrity_last_run_timestamp_seconds 0`, which reads as "never
 * ran" to an alert scraping it.
 */
export const apiRegistry = new client.Registry();
export const workerRegistry = new client.Registry();

/** What the API's /metrics serves. */
export const apiMetrics = (): client.Registry => client.Registry.merge([registry, apiRegistry]);
/** What the worker's /metrics serves. */
export const workerMetrics = (): client.Registry => client.Registry.merge([registry, workerRegistry]);

export const httpRequestDuration = new client.Histogram({
  name: 'http_request_duration_seconds',
  help: 'HTTP request duration by route and status',
  labelNames: ['method', 'route', 'status_code'] as const,
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  registers: [apiRegistry],
});

export const commandRetries = new client.Counter({
  name: 'storekeep_transaction_retries_total',
  help: 'Transactions run again after a serialization failure or deadlock',
  registers: [registry],
});

/**
 * Requests, and synced sales, answered 503 because of a database wait:
 * `row_held` — a row the request needs was held by another transaction and
 * it was refused at once, without waiting (group commit's sales, while a
 * count or a receipt holds a balance: expected, not reported to Sentry);
 * `lock_timeout` / `statement_timeout` — PostgreSQL gave up waiting (reported,
 * at most once per kind and relation a minute: src/http/problem.ts).
 */
export const databaseWaitRefusals = new client.Counter({
  name: 'storekeep_database_wait_refusals_total',
  help: 'Requests and synced sales answered 503 because of a database wait, by kind: row_held (refused at once, a row held elsewhere), lock_timeout, statement_timeout',
  labelNames: ['kind'] as const,
  registers: [apiRegistry],
});
// Served at 0 before the first one: an alert on the rate finds the series.
for (const kind of ['row_held', 'lock_timeout', 'statement_timeout']) databaseWaitRefusals.inc({ kind }, 0);

export { client as prometheus };

/**
 * Whether a request may read /metrics: anyone when no METRICS_TOKEN is set
 * (the server binds 127.0.0.1 by default), else only with that token as a
 * bearer token (compared in constant time).
 */
export function metricsAllowed(metricsToken: string | undefined, authorization: string | undefined): boolean {
  if (metricsToken === undefined) return true;
  // Compared as digests of equal length, so the time taken tells nothing of
  // the token (not even its length, as comparing the lengths first did).
  const digest = (text: string) => createHash('sha256').update(text).digest();
  const credential = bearerCredential(authorization);
  return timingSafeEqual(digest(credential ?? ''), digest(metricsToken)) && credential !== undefined;
}
