import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { allChecks } from './registry.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');

function specFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const full = path.join(dir, entry);
    if (entry === 'node_modules' || entry.startsWith('.')) return [];
    if (statSync(full).isDirectory()) return specFiles(full);
    return entry.endsWith('.spec.ts') && !full.endsWith('registry.unit.spec.ts') ? [full] : [];
  });
}

describe('integrity check registry', () => {
  it('names every check uniquely, in snake_case, with SQL scoped by $1', () => {
    const names = allChecks.map((check) => check.name);
    assert.equal(new Set(names).size, names.length, 'duplicate check names');
    for (const check of allChecks) {
      assert.match(check.name, /^[a-z][a-z0-9_]*$/);
      assert.match(check.sql, /\$1::uuid IS NULL/, `${check.name} must filter by tenant ($1::uuid IS NULL OR tenant_id = $1)`);
      assert.ok(check.description.length > 10, `${check.name} needs a description`);
    }
  });

  it('has, for every check, a test that corrupts data and names it', () => {
    const specs = [...specFiles(path.join(root, 'src')), ...specFiles(path.join(root, 'test'))].map((file) => readFileSync(file, 'utf8'));
    const untested = allChecks.filter((check) => !specs.some((text) => text.includes(check.name))).map((check) => check.name);
    assert.deepEqual(untested, []);
  });
});
