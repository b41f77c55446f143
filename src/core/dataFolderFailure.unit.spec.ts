import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { dataFolderFailure } from './embeddedPostgres.js';
import { StartupRefused } from './startupFailure.js';

/** An error shaped as Node's (code, syscall, path when a file failed). */
const systemError = (message: string, fields: { code: string; syscall: string; path?: string }) => Object.assign(new Error(message), fields);

describe('dataFolderFailure: which failures are the data folder\'s', () => {
  const root = '/srv/.storekeep';

  it('a file of the folder that may not be written (EACCES, EPERM) is the folder\'s, named with STOREKEEP_DATA_DIR', () => {
    for (const [code, file] of [['EACCES', `${root}/pg-owner`], ['EPERM', root], ['EACCES', `${root}/pg/server.log`]] as const) {
      const mapped = dataFolderFailure(systemError(`${code}: open`, { code, syscall: 'open', path: file }), root);
      assert.ok(mapped instanceof StartupRefused, `${code} ${file}`);
      assert.equal(mapped.message, `cannot use the data folder ${root} (STOREKEEP_DATA_DIR): this process may not write in it`);
    }
  });

  it('an EPERM or EACCES that is not a file of the folder — a signal refused (kill), a program that may not run (spawn), a file elsewhere — is not called the folder\'s: it said "may not write in it"', () => {
    for (const error of [
      systemError('kill EPERM', { code: 'EPERM', syscall: 'kill' }),
      systemError('spawn /opt/pg/bin/pg_ctl EACCES', { code: 'EACCES', syscall: 'spawn /opt/pg/bin/pg_ctl', path: '/opt/pg/bin/pg_ctl' }),
      systemError('EACCES: open', { code: 'EACCES', syscall: 'open', path: '/srv/.storekeep-other/pg-owner' }),
    ]) {
      assert.equal(dataFolderFailure(error, root), error, error.message);
    }
  });

  it('a full, over-quota or read-only disk is the folder\'s whatever failed on it', () => {
    const full = dataFolderFailure(systemError('ENOSPC: write', { code: 'ENOSPC', syscall: 'write' }), root);
    assert.ok(full instanceof StartupRefused);
    assert.equal(full.message, `cannot use the data folder ${root} (STOREKEEP_DATA_DIR): the disk is full`);
  });
});
