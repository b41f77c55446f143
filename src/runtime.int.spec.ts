import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { loadConfig } from './config.js';
import { hashToken } from './core/auth.js';
import { createLogger } from './core/logger.js';
import { operatorTokenHashes } from './runtime.js';
import { createTestDatabase } from '../test/support/database.js';

describe('operatorTokenHashes: the first start against a database', () => {
  it('two API processes starting at once on a fresh database (replicas behind a load balancer) agree on one operator token — each made its own, accepted only by itself, and the second overwrote the first\'s root-token file', { timeout: 60_000 }, async () => {
    const t = await createTestDatabase();
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'storekeep-operator-'));
    try {
      // Given a database no process has started on yet
      await t.admin.query('DELETE FROM operator_tokens');
      const config = { ...loadConfig({}), dataDir };
      const logger = createLogger('silent');

      // When two processes start on it at once
      const [first, second] = await Promise.all([operatorTokenHashes(config, t.url, logger), operatorTokenHashes(config, t.url, logger)]);

      // Then one token was made, both processes accept it, and it is the one in the file
      const { rows } = await t.admin.query<{ token_hash: Buffer }>('SELECT token_hash FROM operator_tokens');
      assert.equal(rows.length, 1, 'one operator token');
      const generated = [first.generated, second.generated].filter((token) => token !== undefined);
      assert.equal(generated.length, 1, 'made by one of them');
      const token = readFileSync(path.join(dataDir, 'root-token'), 'utf8').trim();
      assert.equal(token, generated[0]);
      for (const each of [first, second]) assert.deepEqual(each.hashes.map((hash) => hash.toString('hex')), [hashToken(token).toString('hex')]);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
      await t.drop();
    }
  });
});
