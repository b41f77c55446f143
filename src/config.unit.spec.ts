import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from './config.js';

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
