import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { describeRole, PERMISSIONS, ROLES, roleHas, rolesWith } from './permissions.js';

const README = new URL('../../README.md', import.meta.url);

describe('the permission table', () => {
  it('the shop\'s daily figures (analytics.read) are for owner, admin, manager and auditor: not the cashier, not the field agent', () => {
    assert.deepEqual(rolesWith('analytics.read'), ['owner', 'admin', 'manager', 'auditor']);
  });

  it("a store's sales list (sales.history.read) is for owner, admin, manager and auditor: the cashier and the field agent read a sale by its id", () => {
    assert.deepEqual(rolesWith('sales.history.read'), ['owner', 'admin', 'manager', 'auditor']);
    assert.deepEqual(rolesWith('sales.read'), ['owner', 'admin', 'manager', 'cashier', 'field_agent', 'auditor']);
  });

  it('what a count should have found (settlements.expected.read) is for owner, admin, manager and auditor: the cashier counts blind', () => {
    assert.deepEqual(rolesWith('settlements.expected.read'), ['owner', 'admin', 'manager', 'auditor']);
  });

  it('the auditor reads everything and changes nothing', () => {
    for (const permission of PERMISSIONS) assert.equal(roleHas('auditor', permission), permission.endsWith('.read'), permission);
  });

  it('README\'s roles table lists each role\'s permissions as the table has them', () => {
    const readme = readFileSync(README, 'utf8');
    const section = readme.slice(readme.indexOf('### Roles'));
    for (const role of ROLES) {
      const row = section.split('\n').find((line) => line.startsWith(`| \`${role}\` |`));
      assert.ok(row, `README has a row for ${role}`);
      assert.equal(row.split(' | ')[1], describeRole(role), role);
    }
  });
});
