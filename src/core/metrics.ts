import { createHash, timingSafeEqual } from 'node:crypto';
import client from 'prom-client';
import { bearerCredential } from './auth.js';

/**
 * One Prometheus registry per process. Modules add their own metrics here
 * (jobs, integrity findings…); /metrics serves it.
 */
export const registry = new client.Registry();
client.collectDefaultMetrics({ register: registry });

export const httpRequestDuration = new client.Histogram({
  name: 'http_request_duration_seconds',
  help: 'HTTP request duration by route and status',
  labelNames: ['method', 'route', 'status_code'] as const,
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  registers: [registry],
});

export const commandRetries = new client.Counter({
  name: 'storekeep_transaction_retries_total',
  help: 'Transactions run again after a serialization failure or deadlock',
  registers: [registry],
});

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
