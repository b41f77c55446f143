import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { loadConfig } from './config.js';
import { hashToken } from './core/auth.js';
import { EmbeddedDatabaseInUse, startEmbeddedPostgres } from './core/embeddedPostgres.js';
import { createLogger } from './core/logger.js';
import { openDatabase, operatorTokenHashes } from './runtime.js';
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

describe('openDatabase for a worker or a check next to a starting npm start (attach)', () => {
  // The wait is a minute; these take it as 12 s (ATTACH_TRY_MS, one look's limit, is 5 s: the wait's end still cuts a look short).
  const attachWaitMs = 12_000;

  it('waits for the owner\'s embedded PostgreSQL at most its minute, even when the server takes connections and never answers them — it waited for ever', { timeout: 150_000 }, async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'storekeep-attach-wait-'));
    const server = await startEmbeddedPostgres({ dataDir });
    const pgData = path.join(dataDir, 'pg');
    const postmaster = Number(readFileSync(path.join(pgData, 'postmaster.pid'), 'utf8').split('\n')[0]);
    // Given another live storekeep process owning the folder (a stand-in: a node process), whose server hangs (stopped)
    const owner = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    writeFileSync(path.join(dataDir, 'pg-owner'), `${owner.pid}\n`);
    process.kill(postmaster, 'SIGSTOP');
    let timer: NodeJS.Timeout | undefined;
    try {
      // When a worker opens the database, attaching
      const started = Date.now();
      const opened = await Promise.race([
        openDatabase({ ...loadConfig({}), dataDir }, createLogger('silent'), { attach: true, attachWaitMs }),
        new Promise<'no answer'>((resolve) => (timer = setTimeout(() => resolve('no answer'), 60_000))),
      ]);
      // Then it stops waiting after its minute and attaches to the server there is, as it did before it waited
      if (opened === 'no answer') assert.fail('openDatabase waited for more than 60 s');
      assert.equal(opened.embedded, true);
      assert.equal(new URL(opened.url).port, String(server.port));
      const waited = Date.now() - started;
      assert.ok(waited >= attachWaitMs - 1_000 && waited < attachWaitMs + 6_000, `it waited its time, and no look ran past it (${waited} ms)`);
    } finally {
      clearTimeout(timer);
      process.kill(postmaster, 'SIGCONT');
      owner.kill();
      writeFileSync(path.join(dataDir, 'pg-owner'), `${process.pid}\n`);
      await server.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('an owner that is alive and has not started its server a minute later: refused saying so — not told to run as the worker or check it is', { timeout: 150_000 }, async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'storekeep-attach-never-'));
    // Given another live storekeep process claiming the folder (a stand-in: a node process) that never starts its server
    const owner = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    writeFileSync(path.join(dataDir, 'pg-owner'), `${owner.pid}\n`);
    try {
      // When a worker opens the database, attaching, then it is refused after its minute with what happened
      // (taken as 2 s here: with no server to look at, nothing happens in the wait but its end)
      await assert.rejects(openDatabase({ ...loadConfig({}), dataDir }, createLogger('silent'), { attach: true, attachWaitMs: 2_000 }), (error: Error) => {
        assert.ok(error instanceof EmbeddedDatabaseInUse, String(error));
        assert.match(error.message, new RegExp(`storekeep process ${owner.pid} .*has not started it`));
        assert.doesNotMatch(error.message, /run next to it/);
        return true;
      });
      assert.equal(readFileSync(path.join(dataDir, 'pg-owner'), 'utf8').trim(), String(owner.pid), 'the owner keeps its claim');
    } finally {
      owner.kill();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
