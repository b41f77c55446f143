import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { embeddedAppPassword } from './runtime.js';

describe('the embedded app login password', () => {
  it('processes starting together on one data folder agree on one password, kept 0600, with no drafts left behind', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'storekeep-app-password-'));
    try {
      const passwords = await Promise.all(Array.from({ length: 20 }, () => embeddedAppPassword(dataDir)));
      assert.equal(new Set(passwords).size, 1);
      assert.ok(passwords[0]!.length >= 20, 'a real password');
      assert.deepEqual(readdirSync(dataDir), ['pg-app-password']);
      assert.equal(statSync(path.join(dataDir, 'pg-app-password')).mode & 0o777, 0o600);
      assert.equal(await embeddedAppPassword(dataDir), passwords[0], 'and later starts read it');
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('a password file emptied by hand is refused with what to do, not used as an empty password', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'storekeep-app-password-'));
    try {
      writeFileSync(path.join(dataDir, 'pg-app-password'), '\n', { mode: 0o600 });
      await assert.rejects(embeddedAppPassword(dataDir), /pg-app-password is empty: delete it and start again/);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
