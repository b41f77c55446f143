import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { freePort } from '../core/embeddedPostgres.js';
import { startTestApp } from '../../test/support/app.js';
import { capturingLogger } from '../../test/support/logs.js';

describe('REDIS_URL: Redis unreachable', () => {
  it('requests are let through, and the outage is one warning in the log — not an "[ioredis] Unhandled error event" stack on stderr at every reconnect, outside the log', { timeout: 60_000 }, async () => {
    // Given an API whose REDIS_URL names a port nobody listens on
    const { logger, lines } = capturingLogger('warn');
    const printed: string[] = [];
    const consoleError = console.error;
    console.error = (...args: unknown[]) => void printed.push(args.map(String).join(' '));
    try {
      const t = await startTestApp({ redisUrl: `redis://:redis-s3cret@127.0.0.1:${await freePort()}/0` }, { logger });
      try {
        const { owner } = await t.newTenant();
        // When requests come in while it stays down (ioredis reconnects every few hundred ms)
        for (let i = 0; i < 3; i++) assert.equal((await owner.get('/v1/stores')).status, 200);
        await new Promise((resolve) => setTimeout(resolve, 1500));

        // Then nothing was printed outside the log, and the log says it once, without the password
        assert.deepEqual(printed.filter((line) => line.includes('ioredis')), []);
        const redisLines = lines.filter((line) => /redis/i.test(String(line.msg)));
        assert.equal(redisLines.length, 1, JSON.stringify(redisLines));
        assert.doesNotMatch(JSON.stringify(lines), /redis-s3cret/);
      } finally {
        await t.close();
      }
    } finally {
      console.error = consoleError;
    }
  });
});
