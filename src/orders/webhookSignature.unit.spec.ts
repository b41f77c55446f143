import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { signWebhook, verifyWebhookSignature } from './webhookSignature.js';

describe('webhook signature', () => {
  const body = '{"id":"evt_1"}';
  const now = 1_800_000_000;

  it('accepts its own signature within the tolerance', () => {
    assert.deepEqual(verifyWebhookSignature('s3cret', signWebhook('s3cret', now - 10, body), body, now, 300), { ok: true });
  });

  it('refuses another secret, a changed body, an old timestamp, a malformed or missing header, no secret', () => {
    const header = signWebhook('s3cret', now, body);
    assert.equal(verifyWebhookSignature('other', header, body, now, 300).ok, false);
    assert.equal(verifyWebhookSignature('s3cret', header, body.replace('1', '2'), now, 300).ok, false);
    assert.equal(verifyWebhookSignature('s3cret', signWebhook('s3cret', now - 301, body), body, now, 300).ok, false);
    assert.equal(verifyWebhookSignature('s3cret', 't=abc,v1=zz', body, now, 300).ok, false);
    assert.equal(verifyWebhookSignature('s3cret', undefined, body, now, 300).ok, false);
    assert.equal(verifyWebhookSignature(undefined, header, body, now, 300).ok, false);
  });
});
