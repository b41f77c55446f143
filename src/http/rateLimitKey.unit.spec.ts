import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { clientOf, rateLimitKeyOf } from './rateLimitKey.js';

describe('rateLimitKeyOf', () => {
  const token = 'sk_Qi3stfUSW66BqCAozzOC6X34n7XwCK16o78VUD9AJTI';
  const operatorToken = 'short-root-token';

  it('counts an authenticated token by its id: no part of the secret becomes a key (keys are kept in Redis when REDIS_URL is set)', () => {
    const key = rateLimitKeyOf({
      ip: '10.0.0.7',
      headers: { authorization: `Bearer ${token}` },
      principal: { kind: 'token', tokenId: '0190c0de-0000-7000-8000-000000000001', tenantId: '0190c0de-0000-7000-8000-0000000000aa', name: 'till', role: 'cashier', storeIds: null },
    });
    assert.equal(key, 'token:0190c0de-0000-7000-8000-000000000001');
    for (let length = 6; length <= token.length; length++) assert.ok(!key.includes(token.slice(-length)), `holds the token's last ${length} characters`);
  });

  it('counts the operator as one caller, without its token', () => {
    const key = rateLimitKeyOf({ ip: '10.0.0.7', headers: { authorization: `Bearer ${operatorToken}` }, principal: { kind: 'operator', name: 'operator' } });
    assert.equal(key, 'operator');
  });

  it('counts a request without an authenticated token by its address, whatever Authorization header it sends', () => {
    for (const authorization of [undefined, 'Bearer made-up-0000000000000000000000', 'Basic dXNlcjpwYXNzd29yZA==']) {
      assert.equal(rateLimitKeyOf({ ip: '10.0.0.7', headers: authorization === undefined ? {} : { authorization }, principal: null }), 'ip:10.0.0.7');
    }
  });
});

describe('clientOf', () => {
  it('an IPv4 address is its own client, also when it arrives IPv4-mapped on a dual-stack socket', () => {
    assert.equal(clientOf('10.0.0.7'), '10.0.0.7');
    assert.equal(clientOf('::ffff:10.0.0.7'), '10.0.0.7');
  });

  it('an IPv6 address is counted by its /64: every address of the prefix is one client, the next prefix another', () => {
    const first = clientOf('2001:db8:7:9::1');
    for (const address of ['2001:db8:7:9:ffff:ffff:ffff:ffff', '2001:DB8:7:9:1:2:3:4', '2001:0db8:0007:0009:0000:0000:0000:0042']) assert.equal(clientOf(address), first, address);
    assert.notEqual(clientOf('2001:db8:7:a::1'), first);
    assert.equal(rateLimitKeyOf({ ip: '2001:db8:7:9:abcd::1', headers: {}, principal: null }), `ip:${first}`);
  });
});
