import path from 'node:path';

/**
 * Configuration comes only from environment variables (README lists them all).
 * It is parsed once, at start, and a bad value stops the process with a message
 * that names the variable, instead of failing later in some unrelated place.
 */
export interface Config {
  port: number;
  host: string;
  /** Unset: the embedded PostgreSQL under `dataDir` is used. */
  databaseUrl: string | undefined;
  /** The login request pools use with DATABASE_URL: a role granted storekeep_app and nothing else (unset: DATABASE_URL's login, switched to storekeep_app). */
  databaseAppUrl: string | undefined;
  dataDir: string;
  /** The embedded server's log: a new file past this size (or each day) under `<dataDir>/pg/log`. */
  embeddedLogFileMb: number;
  /** The embedded server's log files kept, the newest. */
  embeddedLogFiles: number;
  rootToken: string | undefined;
  redisUrl: string | undefined;
  sentryDsn: string | undefined;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Requests per minute per token (or per IP without a token). */
  rateLimitPerMinute: number;
  /** When set, /metrics (API and worker) requires `Authorization: Bearer <metricsToken>`. */
  metricsToken: string | undefined;
  /** Failed authentications per client IP per minute before it gets 429 (per API process). */
  authFailuresPerMinute: number;
  idempotencyTtlHours: number;
  /** Largest accepted request body. */
  bodyLimitBytes: number;
  /** Connections in this process's pool. */
  databasePoolSize: number;
  /** /readyz answers 503 when the database has not answered its check within this. */
  readinessTimeoutMs: number;
  /** lock_timeout of a start's migrations (ms; 0: none): past it the start fails, naming the lock and its holder. */
  startupLockTimeoutMs: number;
  /** Jobs one worker process runs at once. */
  workerConcurrency: number;
  /** Port of the worker's own /metrics endpoint (0: none). */
  workerMetricsPort: number;
  /** Retry backoff of a failed job: base · 2^(attempt-1), capped, with full jitter. */
  jobRetryBaseMs: number;
  jobRetryMaxMs: number;
  /** Attempts of a job before it lands in the review queue. */
  jobMaxAttempts: number;
  /** The outside fulfilment provider's API. */
  fulfilmentUrl: string;
  /** Sent as `Authorization: Bearer …` to the provider when set. */
  fulfilmentApiKey: string | undefined;
  /** HMAC-SHA256 secret of the provider's webhooks; unset: every webhook is refused. */
  fulfilmentWebhookSecret: string | undefined;
  /** During a rotation, the secret being retired: a webhook signed with it is accepted too. Set only beside a different fulfilmentWebhookSecret. */
  fulfilmentWebhookSecretPrevious: string | undefined;
  /** Timeout of one call to the provider. */
  fulfilmentTimeoutMs: number;
  /** A webhook whose timestamp is further than this from now is refused (replay protection). */
  fulfilmentWebhookToleranceSeconds: number;
  /** An order in `pending`/`submitting` longer than this is recovered by the worker. */
  ordersStuckAfterSeconds: number;
  /** An order in `submitted`/`processing` unchanged this long is looked up at the provider (its webhooks may be lost). */
  ordersPollAfterSeconds: number;
  /** Browser origins allowed to call the API cross-origin (CORS), exactly as browsers send them; empty: CORS off. */
  corsOrigins: string[];
}

export class ConfigError extends Error {}

type Env = Record<string, string | undefined>;

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(`${name} must be a whole number, got "${raw}"`);
  const value = Number(raw);
  if (value < min || value > max) throw new ConfigError(`${name} must be between ${min} and ${max}, got ${value}`);
  return value;
}

function optional(env: Env, name: string): string | undefined {
  const raw = env[name];
  return raw === undefined || raw === '' ? undefined : raw;
}

/**
 * An optional bearer token (RFC 6750: no whitespace). One with a space or a
 * line break — a secret file's trailing newline, read into the variable —
 * could never be sent in an `Authorization` header (clients and proxies trim
 * it; the API reads `Bearer <token>` as one word): accepted, it locked the
 * operator or the scraper out with a bare 401, or made every call to the
 * provider fail. The message does not repeat the secret.
 */
function bearerToken(env: Env, name: string): string | undefined {
  const raw = optional(env, name);
  if (raw !== undefined && /[\s\x00-\x1f\x7f]/.test(raw)) {
    throw new ConfigError(`${name} has a space, a tab, a line break or another control character (a trailing newline from a secret file?): a bearer token has none, and no client could send this one`);
  }
  return raw;
}

/**
 * An optional HMAC secret. Whitespace at either end — a secret file's
 * trailing newline, read into the variable — is refused: no provider signs
 * with it, so every webhook would fail its signature (401) with nothing in
 * the log saying why. Spaces inside are kept (a merchant may type a phrase).
 * The message never repeats the value.
 */
function hmacSecret(env: Env, name: string): string | undefined {
  const raw = optional(env, name);
  if (raw !== undefined && raw !== raw.trim()) {
    throw new ConfigError(`${name} begins or ends with whitespace (a trailing newline from a secret file?): the provider signs with the secret without it, so every webhook would be refused`);
  }
  return raw;
}

/**
 * A base URL the API's paths are appended to. Refused: user info (fetch
 * refuses a URL with credentials, so every call would fail — the credential
 * is FULFILMENT_API_KEY), a query or a fragment (the paths would land after
 * them). The messages never repeat the value: it may hold a password.
 */
function httpUrl(env: Env, name: string, fallback: string): string {
  const raw = optional(env, name) ?? fallback;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`${name} is not a valid URL (expected http(s)://host[:port][/path])`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError(`${name} must start with http:// or https://`);
  if (url.username !== '' || url.password !== '') throw new ConfigError(`${name} must not hold a user name or password (the provider's credential is FULFILMENT_API_KEY)`);
  if (url.search !== '' || url.hash !== '' || /[?#]/.test(raw)) throw new ConfigError(`${name} must not have a query or fragment: it is a base URL the API's paths are appended to`);
  return raw.replace(/\/+$/, '');
}

/** An optional postgres:// connection string. */
function postgresUrl(env: Env, name: string): string | undefined {
  const raw = optional(env, name);
  if (raw === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`${name} is not a valid URL (expected postgres://user:password@host:port/database)`);
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new ConfigError(`${name} must start with postgres:// or postgresql://, got "${url.protocol}"`);
  }
  return raw;
}

/** A numeric command-line flag: absent → fallback; anything but a number in [min, max] is refused. */
export function numberFlag(
  flag: (name: string) => string | undefined,
  name: string,
  fallback: number,
  min: number,
  max: number,
  whole: boolean,
): number {
  const raw = flag(name);
  if (raw === undefined) return fallback;
  const value = raw.trim() === '' ? Number.NaN : Number(raw);
  if (!Number.isFinite(value) || (whole && !Number.isInteger(value)) || value < min || value > max) {
    throw new ConfigError(`--${name} must be ${whole ? 'a whole number' : 'a number'} from ${min} to ${max}, got "${raw}"`);
  }
  return value;
}

/**
 * An optional Sentry DSN (`https://<public key>@<host>/<project id>`). Sentry
 * itself takes a malformed one by printing a line and reporting nothing, so an
 * operator's typo would silently switch error reporting off.
 */
function sentryDsn(env: Env, name: string): string | undefined {
  const raw = optional(env, name);
  if (raw === undefined) return undefined;
  let url: URL | undefined;
  try {
    url = new URL(raw);
  } catch {
    url = undefined;
  }
  const projectId = url?.pathname.split('/').pop() ?? '';
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.username === '' || !/^\d+$/.test(projectId)) {
    throw new ConfigError(`${name} is not a Sentry DSN (expected https://<public key>@<host>/<project id>)`);
  }
  return raw;
}

/**
 * CORS_ORIGINS: a comma-separated list of exact origins (`https://pos.example.com`),
 * read as browsers send them in `Origin` (scheme and host lowercased, no
 * default port). Anything that would allow more than one named origin — `*`,
 * a wildcard host, `null` (sandboxed frames and files send it) — or that is
 * no origin at all (a path, even `/`, a query, user info) is refused: the
 * plugin compares strings, so `https://pos.example.com/` would silently
 * allow nobody.
 */
function corsOrigins(env: Env, name: string): string[] {
  const raw = optional(env, name);
  if (raw === undefined) return [];
  const origins = new Set<string>();
  for (const entry of raw.split(',').map((item) => item.trim())) {
    if (entry === '') throw new ConfigError(`${name} has an empty entry (a doubled or trailing comma) in "${raw}"`);
    const refuse = (why: string) => new ConfigError(`${name}: "${entry}" ${why}; list exact origins such as https://pos.example.com, separated by commas`);
    if (entry.includes('*')) throw refuse('is a wildcard, not an exact origin');
    let url: URL;
    try {
      url = new URL(entry);
    } catch {
      throw refuse('is not an origin');
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw refuse('is not an http:// or https:// origin');
    if (url.username !== '' || url.password !== '') throw refuse('has user info, which no origin has');
    if (url.search !== '' || url.hash !== '' || entry.endsWith('?') || entry.endsWith('#')) throw refuse('has a query or fragment, which no origin has');
    // An origin has no path; `new URL` gives every http(s) URL at least "/".
    if (!/^[a-z][a-z0-9+.-]*:\/\/[^/?#]+$/i.test(entry)) throw refuse('has a path (even a trailing "/"), which no origin has');
    origins.add(url.origin);
  }
  return [...origins];
}

/** Every setting loadConfig reads (the README's Configuration table: config.unit.spec.ts holds them equal). */
export const SETTINGS = [
  'PORT', 'HOST', 'DATABASE_URL', 'DATABASE_APP_URL', 'STOREKEEP_DATA_DIR', 'STOREKEEP_PG_LOG_FILE_MB', 'STOREKEEP_PG_LOG_FILES', 'STOREKEEP_ROOT_TOKEN', 'REDIS_URL', 'READINESS_TIMEOUT_MS',
  'STARTUP_LOCK_TIMEOUT_MS', 'SENTRY_DSN', 'LOG_LEVEL', 'RATE_LIMIT_PER_MINUTE', 'METRICS_TOKEN', 'AUTH_FAILURES_PER_MINUTE', 'IDEMPOTENCY_TTL_HOURS', 'CORS_ORIGINS',
  'BODY_LIMIT_BYTES', 'DATABASE_POOL_SIZE', 'WORKER_CONCURRENCY', 'WORKER_METRICS_PORT', 'JOB_RETRY_BASE_MS', 'JOB_RETRY_MAX_MS',
  'JOB_MAX_ATTEMPTS', 'FULFILMENT_PROVIDER_URL', 'FULFILMENT_API_KEY', 'FULFILMENT_WEBHOOK_SECRET', 'FULFILMENT_WEBHOOK_SECRET_PREVIOUS',
  'FULFILMENT_TIMEOUT_MS', 'FULFILMENT_WEBHOOK_TOLERANCE_SECONDS', 'ORDERS_STUCK_AFTER_SECONDS', 'ORDERS_POLL_AFTER_SECONDS',
] as const;

/** The same name however it is cased, separated or spelt (FULFILLMENT is the American spelling of FULFILMENT). */
const normalName = (name: string) => name.toUpperCase().replace(/[_\-.]/g, '').replace(/FULFILL/g, 'FULFIL');

/** Edits (insert, delete, replace) from a to b. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = current;
  }
  return previous[b.length]!;
}

/**
 * Variables that look like a setting but are none — a typo in a name
 * (`FULFILLMENT_WEBHOOK_SECRET`, `STOREKEEP_DATADIR`, `log_level`) — and the
 * setting meant. Nothing read them: the setting kept its default, silently
 * (every webhook refused, the database in ./.storekeep). The CLI warns of
 * each at start; names too far from any setting are the machine's own.
 */
export function misspelledSettings(env: Env): Array<{ name: string; meant: string }> {
  const found: Array<{ name: string; meant: string }> = [];
  for (const name of Object.keys(env)) {
    if ((SETTINGS as readonly string[]).includes(name) || name.startsWith('npm_') || name.startsWith('STOREKEEP_TEST_')) continue;
    const normal = normalName(name);
    let meant: string | undefined = SETTINGS.find((setting) => normalName(setting) === normal);
    if (meant === undefined && name.length >= 8) {
      let best = 3;
      for (const setting of SETTINGS) {
        const distance = editDistance(name.toUpperCase(), setting);
        if (distance < best) [best, meant] = [distance, setting];
      }
    }
    if (meant !== undefined) found.push({ name, meant });
  }
  return found;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export function loadConfig(env: Env = process.env): Config {
  const logLevel = (optional(env, 'LOG_LEVEL') ?? 'info').toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new ConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got "${env.LOG_LEVEL}"`);
  }
  const databaseUrl = postgresUrl(env, 'DATABASE_URL');
  const databaseAppUrl = postgresUrl(env, 'DATABASE_APP_URL');
  if (databaseAppUrl !== undefined && databaseUrl === undefined) {
    throw new ConfigError('DATABASE_APP_URL needs DATABASE_URL (the embedded PostgreSQL makes its own app login)');
  }
  const rootToken = bearerToken(env, 'STOREKEEP_ROOT_TOKEN');
  if (rootToken !== undefined && rootToken.length < 16) {
    throw new ConfigError('STOREKEEP_ROOT_TOKEN must be at least 16 characters long');
  }
  const redisUrl = optional(env, 'REDIS_URL');
  if (redisUrl !== undefined && !/^rediss?:\/\//.test(redisUrl)) {
    throw new ConfigError('REDIS_URL must start with redis:// or rediss://');
  }
  const jobRetryBaseMs = integer(env, 'JOB_RETRY_BASE_MS', 1000, 1, 3_600_000);
  const jobRetryMaxMs = integer(env, 'JOB_RETRY_MAX_MS', 300_000, 1, 86_400_000);
  if (jobRetryBaseMs > jobRetryMaxMs) {
    throw new ConfigError(`JOB_RETRY_BASE_MS (${jobRetryBaseMs}) must not be above JOB_RETRY_MAX_MS (${jobRetryMaxMs}): the first retry's wait would be longer than the longest`);
  }
  const fulfilmentWebhookSecret = hmacSecret(env, 'FULFILMENT_WEBHOOK_SECRET');
  const fulfilmentWebhookSecretPrevious = hmacSecret(env, 'FULFILMENT_WEBHOOK_SECRET_PREVIOUS');
  // The messages never repeat a secret.
  if (fulfilmentWebhookSecretPrevious !== undefined && fulfilmentWebhookSecret === undefined) {
    throw new ConfigError(
      'FULFILMENT_WEBHOOK_SECRET_PREVIOUS needs FULFILMENT_WEBHOOK_SECRET: it is the secret being retired in a rotation, beside the new one (with no secret, every webhook is refused)',
    );
  }
  if (fulfilmentWebhookSecretPrevious !== undefined && fulfilmentWebhookSecretPrevious === fulfilmentWebhookSecret) {
    throw new ConfigError(
      'FULFILMENT_WEBHOOK_SECRET_PREVIOUS is the same as FULFILMENT_WEBHOOK_SECRET: during a rotation it holds the old secret and FULFILMENT_WEBHOOK_SECRET the new one (as it is, webhooks signed with the other secret would be refused)',
    );
  }
  const fulfilmentTimeoutMs = integer(env, 'FULFILMENT_TIMEOUT_MS', 10_000, 10, 600_000);
  const ordersStuckAfterSeconds = integer(env, 'ORDERS_STUCK_AFTER_SECONDS', 120, 1, 86_400);
  const ordersPollAfterSeconds = integer(env, 'ORDERS_POLL_AFTER_SECONDS', 3600, 1, 30 * 86_400);
  // A worker claims an order for one of these periods before it calls the
  // provider (a lookup, a recovery, a cancellation): a claim that ran out
  // while its call could still be running would let the next sweep start a
  // second call about the same order beside it.
  for (const [name, seconds] of [
    ['ORDERS_STUCK_AFTER_SECONDS', ordersStuckAfterSeconds],
    ['ORDERS_POLL_AFTER_SECONDS', ordersPollAfterSeconds],
  ] as const) {
    if (seconds * 1000 <= fulfilmentTimeoutMs) {
      throw new ConfigError(
        `${name} (${seconds}) must be above FULFILMENT_TIMEOUT_MS (${fulfilmentTimeoutMs} ms): a worker's claim on an order lasts ${name}, and a claim that runs out while its call to the provider may still be running lets a second call about the order start beside it`,
      );
    }
  }
  return {
    // Not 0: a port picked at random, which no client, proxy or provider webhook could find.
    port: integer(env, 'PORT', 8080, 1, 65535),
    host: optional(env, 'HOST') ?? '127.0.0.1',
    databaseUrl,
    databaseAppUrl,
    dataDir: path.resolve(optional(env, 'STOREKEEP_DATA_DIR') ?? '.storekeep'),
    embeddedLogFileMb: integer(env, 'STOREKEEP_PG_LOG_FILE_MB', 10, 1, 1024),
    embeddedLogFiles: integer(env, 'STOREKEEP_PG_LOG_FILES', 10, 2, 1000),
    rootToken,
    redisUrl,
    sentryDsn: sentryDsn(env, 'SENTRY_DSN'),
    logLevel: logLevel as Config['logLevel'],
    rateLimitPerMinute: integer(env, 'RATE_LIMIT_PER_MINUTE', 60_000, 1, 10_000_000),
    authFailuresPerMinute: integer(env, 'AUTH_FAILURES_PER_MINUTE', 600, 1, 1_000_000),
    metricsToken: bearerToken(env, 'METRICS_TOKEN'),
    idempotencyTtlHours: integer(env, 'IDEMPOTENCY_TTL_HOURS', 24, 24, 24 * 365),
    bodyLimitBytes: integer(env, 'BODY_LIMIT_BYTES', 1_048_576, 1024, 100 * 1_048_576),
    databasePoolSize: integer(env, 'DATABASE_POOL_SIZE', 20, 2, 500),
    readinessTimeoutMs: integer(env, 'READINESS_TIMEOUT_MS', 5_000, 10, 600_000),
    startupLockTimeoutMs: integer(env, 'STARTUP_LOCK_TIMEOUT_MS', 60_000, 0, 86_400_000),
    workerConcurrency: integer(env, 'WORKER_CONCURRENCY', 4, 1, 100),
    workerMetricsPort: integer(env, 'WORKER_METRICS_PORT', 9464, 0, 65535),
    jobRetryBaseMs,
    jobRetryMaxMs,
    jobMaxAttempts: integer(env, 'JOB_MAX_ATTEMPTS', 8, 1, 100),
    fulfilmentUrl: httpUrl(env, 'FULFILMENT_PROVIDER_URL', 'http://127.0.0.1:8090'),
    fulfilmentApiKey: bearerToken(env, 'FULFILMENT_API_KEY'),
    fulfilmentWebhookSecret,
    fulfilmentWebhookSecretPrevious,
    fulfilmentTimeoutMs,
    fulfilmentWebhookToleranceSeconds: integer(env, 'FULFILMENT_WEBHOOK_TOLERANCE_SECONDS', 300, 1, 86_400),
    ordersStuckAfterSeconds,
    ordersPollAfterSeconds,
    corsOrigins: corsOrigins(env, 'CORS_ORIGINS'),
  };
}
