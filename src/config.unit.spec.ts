import { readFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig, misspelledSettings, numberFlag, SETTINGS } from './config.js';

describe('loadConfig: database logins', () => {
  const owner = 'postgres://owner:secret@db.example:5432/storekeep';
  const app = 'postgres://storekeep_api:other@db.example:5432/storekeep';

  it('reads DATABASE_URL and DATABASE_APP_URL; without them the embedded server is used', () => {
    assert.deepEqual([loadConfig({}).databaseUrl, loadConfig({}).databaseAppUrl], [undefined, undefined]);
    const config = loadConfig({ DATABASE_URL: owner, DATABASE_APP_URL: app });
    assert.deepEqual([config.databaseUrl, config.databaseAppUrl], [owner, app]);
    assert.equal(loadConfig({ DATABASE_URL: owner }).databaseAppUrl, undefined);
  });

  it('refuses a DATABASE_APP_URL without DATABASE_URL, or one that is not a postgres:// URL, saying which', () => {
    const refusal = (env: Record<string, string>) => {
      try {
        loadConfig(env);
      } catch (error) {
        assert.ok(error instanceof ConfigError);
        return error.message;
      }
      return 'accepted';
    };
    assert.match(refusal({ DATABASE_APP_URL: app }), /DATABASE_APP_URL needs DATABASE_URL/);
    assert.match(refusal({ DATABASE_URL: owner, DATABASE_APP_URL: 'not a url' }), /DATABASE_APP_URL is not a valid URL/);
    assert.match(refusal({ DATABASE_URL: owner, DATABASE_APP_URL: 'mysql://x@y/z' }), /DATABASE_APP_URL must start with postgres:\/\//);
    assert.match(refusal({ DATABASE_URL: 'http://x' }), /DATABASE_URL must start with postgres:\/\//);
  });
});

describe('loadConfig: empty values', () => {
  it('reads an empty LOG_LEVEL as unset, like every other variable', () => {
    assert.equal(loadConfig({ LOG_LEVEL: '' }).logLevel, 'info');
    assert.throws(() => loadConfig({ LOG_LEVEL: 'loud' }), /LOG_LEVEL must be one of/);
  });
});

describe('loadConfig: the embedded server\'s log files', () => {
  it('keeps 10 files of 10 MB by default, takes whole numbers in range, and refuses others naming the variable', () => {
    assert.deepEqual([loadConfig({}).embeddedLogFileMb, loadConfig({}).embeddedLogFiles], [10, 10]);
    const config = loadConfig({ STOREKEEP_PG_LOG_FILE_MB: '50', STOREKEEP_PG_LOG_FILES: '4' });
    assert.deepEqual([config.embeddedLogFileMb, config.embeddedLogFiles], [50, 4]);
    assert.throws(() => loadConfig({ STOREKEEP_PG_LOG_FILE_MB: '0' }), /STOREKEEP_PG_LOG_FILE_MB must be between 1 and 1024, got 0/);
    assert.throws(() => loadConfig({ STOREKEEP_PG_LOG_FILE_MB: '1.5' }), /STOREKEEP_PG_LOG_FILE_MB must be a whole number/);
    assert.throws(() => loadConfig({ STOREKEEP_PG_LOG_FILES: '1' }), /STOREKEEP_PG_LOG_FILES must be between 2 and 1000, got 1/);
  });
});

describe('loadConfig: SENTRY_DSN', () => {
  it('takes a DSN and refuses what Sentry would silently ignore, naming the variable', () => {
    assert.equal(loadConfig({ SENTRY_DSN: 'https://abc123@o1.ingest.sentry.io/4505' }).sentryDsn, 'https://abc123@o1.ingest.sentry.io/4505');
    assert.equal(loadConfig({ SENTRY_DSN: 'http://key@sentry.internal:9000/sub/7' }).sentryDsn, 'http://key@sentry.internal:9000/sub/7');
    assert.equal(loadConfig({ SENTRY_DSN: '' }).sentryDsn, undefined);
    for (const dsn of ['notadsn', 'https://o1.ingest.sentry.io/4505', 'https://key@o1.ingest.sentry.io/', 'ftp://key@host/1']) {
      assert.throws(() => loadConfig({ SENTRY_DSN: dsn }), (error: unknown) => error instanceof ConfigError && /^SENTRY_DSN is not a Sentry DSN/.test(error.message), dsn);
    }
  });
});

describe('numberFlag (provider-sim flags)', () => {
  const flags = (values: Record<string, string>) => (name: string) => values[name];
  it('takes the fallback when absent and a number in range when given', () => {
    assert.equal(numberFlag(flags({}), 'fail-rate', 0, 0, 1, false), 0);
    assert.equal(numberFlag(flags({ 'fail-rate': '0.25' }), 'fail-rate', 0, 0, 1, false), 0.25);
    assert.equal(numberFlag(flags({ port: '9000' }), 'port', 8090, 0, 65535, true), 9000);
  });
  it('refuses what is not a number, out of range or not whole, naming the flag', () => {
    for (const [name, raw, whole, max] of [
      ['fail-rate', 'often', false, 1],
      ['fail-rate', '1.5', false, 1],
      ['fail-rate', '', false, 1],
      ['port', '80.5', true, 65535],
      ['port', '70000', true, 65535],
      ['latency-ms', '-1', true, 600_000],
    ] as const) {
      assert.throws(() => numberFlag(flags({ [name]: raw }), name, 0, 0, max, whole), (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.message, new RegExp(`^--${name} must be`));
        return true;
      });
    }
  });
});

describe('loadConfig: PORT', () => {
  it('takes a port from 1 to 65535 and refuses 0 (a random port no client, proxy or provider webhook could find), naming the variable', () => {
    assert.equal(loadConfig({}).port, 8080);
    assert.equal(loadConfig({ PORT: '1' }).port, 1);
    assert.equal(loadConfig({ PORT: '65535' }).port, 65535);
    for (const port of ['0', '70000', '-1', '80a', '8080.5']) {
      assert.throws(() => loadConfig({ PORT: port }), (error: unknown) => error instanceof ConfigError && /^PORT must be/.test(error.message), port);
    }
    // WORKER_METRICS_PORT keeps 0: no /metrics server (README)
    assert.equal(loadConfig({ WORKER_METRICS_PORT: '0' }).workerMetricsPort, 0);
  });
});

describe('loadConfig: job retries', () => {
  it('JOB_RETRY_BASE_MS above JOB_RETRY_MAX_MS is refused: the first retry would wait longer than the longest wait allowed', () => {
    assert.throws(
      () => loadConfig({ JOB_RETRY_BASE_MS: '600000', JOB_RETRY_MAX_MS: '300000' }),
      (error: unknown) => error instanceof ConfigError && /^JOB_RETRY_BASE_MS \(600000\) must not be above JOB_RETRY_MAX_MS \(300000\)/.test(error.message),
    );
    assert.throws(() => loadConfig({ JOB_RETRY_BASE_MS: '500000' }), /JOB_RETRY_MAX_MS \(300000\)/, 'against the default maximum too');
    const equal = loadConfig({ JOB_RETRY_BASE_MS: '5000', JOB_RETRY_MAX_MS: '5000' });
    assert.deepEqual([equal.jobRetryBaseMs, equal.jobRetryMaxMs], [5000, 5000]);
  });
});

describe('loadConfig: order claims outlast a call to the provider', () => {
  it('ORDERS_STUCK_AFTER_SECONDS or ORDERS_POLL_AFTER_SECONDS not above FULFILMENT_TIMEOUT_MS is refused, naming both', () => {
    assert.throws(
      () => loadConfig({ FULFILMENT_TIMEOUT_MS: '60000', ORDERS_STUCK_AFTER_SECONDS: '60' }),
      (error: unknown) => error instanceof ConfigError && /^ORDERS_STUCK_AFTER_SECONDS \(60\) must be above FULFILMENT_TIMEOUT_MS \(60000 ms\)/.test(error.message),
    );
    assert.throws(
      () => loadConfig({ FULFILMENT_TIMEOUT_MS: '30000', ORDERS_POLL_AFTER_SECONDS: '30' }),
      (error: unknown) => error instanceof ConfigError && /^ORDERS_POLL_AFTER_SECONDS \(30\) must be above FULFILMENT_TIMEOUT_MS \(30000 ms\)/.test(error.message),
    );
    assert.throws(() => loadConfig({ ORDERS_STUCK_AFTER_SECONDS: '10' }), /ORDERS_STUCK_AFTER_SECONDS \(10\) must be above FULFILMENT_TIMEOUT_MS \(10000 ms\)/, 'against the default timeout');
    const above = loadConfig({ FULFILMENT_TIMEOUT_MS: '1999', ORDERS_STUCK_AFTER_SECONDS: '2', ORDERS_POLL_AFTER_SECONDS: '2' });
    assert.deepEqual([above.fulfilmentTimeoutMs, above.ordersStuckAfterSeconds, above.ordersPollAfterSeconds], [1999, 2, 2]);
    const defaults = loadConfig({});
    assert.deepEqual([defaults.fulfilmentTimeoutMs, defaults.ordersStuckAfterSeconds, defaults.ordersPollAfterSeconds], [10_000, 120, 3600]);
  });
});

describe('loadConfig: CORS_ORIGINS', () => {
  const refusal = (value: string) => {
    try {
      loadConfig({ CORS_ORIGINS: value });
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      return error.message;
    }
    return 'accepted';
  };

  it('unset or empty: CORS is off (no origin allowed), as before', () => {
    assert.deepEqual(loadConfig({}).corsOrigins, []);
    assert.deepEqual(loadConfig({ CORS_ORIGINS: '' }).corsOrigins, []);
  });

  it('reads a comma-separated list of exact origins, as browsers send them (scheme and host lowercased, no default port), each once', () => {
    assert.deepEqual(loadConfig({ CORS_ORIGINS: 'https://pos.example.com, http://localhost:5173,HTTPS://Console.Example.com:443,https://pos.example.com' }).corsOrigins, [
      'https://pos.example.com',
      'http://localhost:5173',
      'https://console.example.com',
    ]);
  });

  it('refuses anything that is not an exact http(s) origin, naming the variable and the entry', () => {
    assert.match(refusal('*'), /^CORS_ORIGINS: "\*" is a wildcard.*list exact origins/);
    assert.match(refusal('https://pos.example.com, https://*.example.com'), /^CORS_ORIGINS: "https:\/\/\*\.example\.com" is a wildcard/);
    assert.match(refusal('null'), /^CORS_ORIGINS: "null" is not an origin/);
    assert.match(refusal('pos.example.com'), /^CORS_ORIGINS: "pos\.example\.com" is not/);
    assert.match(refusal('ftp://pos.example.com'), /^CORS_ORIGINS: "ftp:\/\/pos\.example\.com" is not an http/);
    assert.match(refusal('https://pos.example.com/'), /^CORS_ORIGINS: "https:\/\/pos\.example\.com\/" has a path/);
    assert.match(refusal('https://pos.example.com/till'), /^CORS_ORIGINS: .* has a path/);
    assert.match(refusal('https://pos.example.com?x=1'), /^CORS_ORIGINS: .* has a query/);
    assert.match(refusal('https://user@pos.example.com'), /^CORS_ORIGINS: .* has user info/);
    assert.match(refusal('https://a.example.com,,https://b.example.com'), /CORS_ORIGINS has an empty entry/);
  });
});

describe('loadConfig: tokens a client can present', () => {
  const refusal = (env: Record<string, string>) => {
    try {
      loadConfig(env);
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      return error.message;
    }
    return 'accepted';
  };

  it('STOREKEEP_ROOT_TOKEN, METRICS_TOKEN or FULFILMENT_API_KEY with a space, a tab or a line break (a secret file\'s trailing newline) is refused, naming the variable — such a token could never be sent in an Authorization header, and the operator was locked out with a bare 401', () => {
    for (const name of ['STOREKEEP_ROOT_TOKEN', 'METRICS_TOKEN', 'FULFILMENT_API_KEY']) {
      for (const value of ['operator-token-0123456789\n', ' operator-token-0123456789', 'operator-token-0123456789\r\n', 'operator\ttoken-0123456789']) {
        assert.match(refusal({ [name]: value }), new RegExp(`^${name} `), `${name}=${JSON.stringify(value)}`);
      }
    }
    // and the message never repeats the secret itself
    assert.doesNotMatch(refusal({ STOREKEEP_ROOT_TOKEN: 'operator-token-0123456789\n' }), /operator-token/);
    assert.equal(refusal({ STOREKEEP_ROOT_TOKEN: 'operator-token-0123456789', METRICS_TOKEN: 'metrics-token', FULFILMENT_API_KEY: 'key_123' }), 'accepted');
  });
});

describe('loadConfig: FULFILMENT_PROVIDER_URL', () => {
  const refusal = (env: Record<string, string>) => {
    try {
      loadConfig(env);
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      return error.message;
    }
    return 'accepted';
  };

  it('refuses user info (fetch refuses such a URL: every call to the provider would fail — FULFILMENT_API_KEY is the credential), a query or a fragment (the paths are appended after it), never repeating a password', () => {
    for (const value of ['http://user:s3cret-pw@provider.example', 'https://user@provider.example/api', 'https://provider.example/api?key=s3cret-pw', 'https://provider.example/api#x']) {
      const message = refusal({ FULFILMENT_PROVIDER_URL: value });
      assert.match(message, /^FULFILMENT_PROVIDER_URL /, value);
      assert.doesNotMatch(message, /s3cret-pw/, value);
    }
    // not a URL at all: the message does not repeat it either (it may hold a password)
    assert.doesNotMatch(refusal({ FULFILMENT_PROVIDER_URL: 'http://user:s3cret-pw@' }), /s3cret-pw/);
    assert.equal(loadConfig({ FULFILMENT_PROVIDER_URL: 'https://provider.example/api/' }).fulfilmentUrl, 'https://provider.example/api');
  });
});

describe('loadConfig: FULFILMENT_WEBHOOK_SECRET_PREVIOUS (rotating the webhook secret)', () => {
  it('is unset by default and read beside FULFILMENT_WEBHOOK_SECRET; empty reads as unset', () => {
    assert.deepEqual([loadConfig({}).fulfilmentWebhookSecret, loadConfig({}).fulfilmentWebhookSecretPrevious], [undefined, undefined]);
    const rotating = loadConfig({ FULFILMENT_WEBHOOK_SECRET: 'whsec_new', FULFILMENT_WEBHOOK_SECRET_PREVIOUS: 'whsec_old' });
    assert.deepEqual([rotating.fulfilmentWebhookSecret, rotating.fulfilmentWebhookSecretPrevious], ['whsec_new', 'whsec_old']);
    assert.equal(loadConfig({ FULFILMENT_WEBHOOK_SECRET: 'whsec_new', FULFILMENT_WEBHOOK_SECRET_PREVIOUS: '' }).fulfilmentWebhookSecretPrevious, undefined);
  });

  it('is refused without FULFILMENT_WEBHOOK_SECRET, or equal to it, naming the variables and never repeating a secret', () => {
    for (const [env, message] of [
      [{ FULFILMENT_WEBHOOK_SECRET_PREVIOUS: 'whsec_old' }, /^FULFILMENT_WEBHOOK_SECRET_PREVIOUS needs FULFILMENT_WEBHOOK_SECRET/],
      [{ FULFILMENT_WEBHOOK_SECRET: '', FULFILMENT_WEBHOOK_SECRET_PREVIOUS: 'whsec_old' }, /^FULFILMENT_WEBHOOK_SECRET_PREVIOUS needs FULFILMENT_WEBHOOK_SECRET/],
      [{ FULFILMENT_WEBHOOK_SECRET: 'whsec_old', FULFILMENT_WEBHOOK_SECRET_PREVIOUS: 'whsec_old' }, /^FULFILMENT_WEBHOOK_SECRET_PREVIOUS is the same as FULFILMENT_WEBHOOK_SECRET/],
    ] as const) {
      assert.throws(() => loadConfig(env), (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.message, message);
        assert.doesNotMatch(error.message, /whsec_/);
        return true;
      }, JSON.stringify(env));
    }
  });

  it('a secret that begins or ends with whitespace (a secret file\'s trailing newline) is refused, not used to fail every signature; inner spaces are kept', () => {
    for (const name of ['FULFILMENT_WEBHOOK_SECRET', 'FULFILMENT_WEBHOOK_SECRET_PREVIOUS'] as const) {
      for (const secret of ['whsec_abc\n', ' whsec_abc', 'whsec_abc\t', 'whsec_abc\r\n']) {
        const env = { FULFILMENT_WEBHOOK_SECRET: 'whsec_current', [name]: secret };
        assert.throws(() => loadConfig(env), (error: unknown) => {
          assert.ok(error instanceof ConfigError);
          assert.match(error.message, new RegExp(`^${name} begins or ends with whitespace`));
          assert.doesNotMatch(error.message, /whsec_/);
          return true;
        }, JSON.stringify(env));
      }
    }
    assert.equal(loadConfig({ FULFILMENT_WEBHOOK_SECRET: 'my shop secret' }).fulfilmentWebhookSecret, 'my shop secret');
  });
});

describe('misspelledSettings', () => {
  it('names a variable that looks like a setting but is none (FULFILLMENT_WEBHOOK_SECRET: every webhook refused, silently), and the setting meant', () => {
    assert.deepEqual(
      misspelledSettings({
        FULFILLMENT_WEBHOOK_SECRET: 's3cret',
        STOREKEEP_DATADIR: '/srv/storekeep',
        DATABASE_URI: 'postgres://x@y/z',
        log_level: 'debug',
        STOREKEEP_ROOT_TOKN: 'x'.repeat(20),
      }),
      [
        { name: 'FULFILLMENT_WEBHOOK_SECRET', meant: 'FULFILMENT_WEBHOOK_SECRET' },
        { name: 'STOREKEEP_DATADIR', meant: 'STOREKEEP_DATA_DIR' },
        { name: 'DATABASE_URI', meant: 'DATABASE_URL' },
        { name: 'log_level', meant: 'LOG_LEVEL' },
        { name: 'STOREKEEP_ROOT_TOKN', meant: 'STOREKEEP_ROOT_TOKEN' },
      ],
    );
  });

  it("knows every setting the README's Configuration table lists, and no other (a setting added to one and not the other would be warned about as a typo, or not at all)", () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const section = readme.slice(readme.indexOf('\n## Configuration\n'), readme.indexOf('\n## Architecture\n'));
    const listed = [...section.matchAll(/^\| `([A-Z_]+)` \|/gm)].map((match) => match[1]!);
    assert.ok(listed.length >= 20, `found ${listed.length} rows in the README's Configuration table`);
    assert.deepEqual([...SETTINGS].sort(), listed.sort());
  });

  it('leaves alone the settings themselves and the environment every machine has', () => {
    const settings = { PORT: '1', HOST: 'h', DATABASE_URL: 'postgres://x@y/z', FULFILMENT_WEBHOOK_SECRET: 's', FULFILMENT_WEBHOOK_SECRET_PREVIOUS: 'p', STOREKEEP_ROOT_TOKEN: 't', LOG_LEVEL: 'info' };
    const machine = { PATH: '/bin', HOME: '/root', HOSTNAME: 'vm', PWD: '/', NODE_ENV: 'production', TERM: 'xterm', LANG: 'C', npm_config_loglevel: 'warn', npm_lifecycle_event: 'start', STOREKEEP_TEST_TEMPLATE: 't', TMPDIR: '/tmp', USER: 'root', SHLVL: '1' };
    assert.deepEqual(misspelledSettings({ ...settings, ...machine }), []);
  });
});
