import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import { signWebhook, verifyWebhookSignature } from './webhookSignature.js';

describe('webhook signature', () => {
  const body = '{"id":"evt_1"}';
  const now = 1_800_000_000;
  const mac = (secret: string, timestamp: number, text = body) => createHmac('sha256', secret).update(`${timestamp}.${text}`).digest('hex');

  it('accepts its own signature within the tolerance', () => {
    assert.deepEqual(verifyWebhookSignature(['s3cret'], signWebhook('s3cret', now - 10, body), body, now, 300), { ok: true });
  });

  it('refuses another secret, a changed body, an old timestamp, a malformed or missing header, no secret', () => {
    const header = signWebhook('s3cret', now, body);
    assert.equal(verifyWebhookSignature(['other'], header, body, now, 300).ok, false);
    assert.equal(verifyWebhookSignature(['s3cret'], header, body.replace('1', '2'), now, 300).ok, false);
    assert.equal(verifyWebhookSignature(['s3cret'], signWebhook('s3cret', now - 301, body), body, now, 300).ok, false);
    assert.equal(verifyWebhookSignature(['s3cret'], 't=abc,v1=zz', body, now, 300).ok, false);
    assert.equal(verifyWebhookSignature(['s3cret'], undefined, body, now, 300).ok, false);
    assert.equal(verifyWebhookSignature([], header, body, now, 300).ok, false);
  });

  it('a header with several v1 signatures (the provider signing with its old and new secret during a rotation) is valid if any of them matches, wherever it stands', () => {
    const other = mac('old-secret', now);
    for (const header of [`t=${now},v1=${other},v1=${mac('s3cret', now)}`, `t=${now},v1=${mac('s3cret', now)},v1=${other}`, `v1=${other}, t=${now}, v1=${mac('s3cret', now)}`]) {
      assert.deepEqual(verifyWebhookSignature(['s3cret'], header, body, now, 300), { ok: true }, header);
    }
    // none of them matches
    assert.deepEqual(verifyWebhookSignature(['s3cret'], `t=${now},v1=${other},v1=${mac('third', now)}`, body, now, 300), { ok: false, reason: 'signature does not match' });
    // schemes other than v1 are not ours to check, as before
    assert.deepEqual(verifyWebhookSignature(['s3cret'], `t=${now},v0=abc,v1=${mac('s3cret', now)}`, body, now, 300), { ok: true });
  });

  it('a delivery signed with the current or the previous secret is accepted during a rotation; one signed with neither is not', () => {
    const secrets = ['new-secret', 'old-secret'];
    assert.deepEqual(verifyWebhookSignature(secrets, signWebhook('new-secret', now, body), body, now, 300), { ok: true });
    assert.deepEqual(verifyWebhookSignature(secrets, signWebhook('old-secret', now, body), body, now, 300), { ok: true });
    assert.deepEqual(verifyWebhookSignature(secrets, signWebhook('other-secret', now, body), body, now, 300), { ok: false, reason: 'signature does not match' });
    // the rest is checked as with one secret: the timestamp (inside the MAC), the body
    assert.equal(verifyWebhookSignature(secrets, signWebhook('old-secret', now - 301, body), body, now, 300).ok, false);
    assert.equal(verifyWebhookSignature(secrets, signWebhook('old-secret', now, body), body.replace('1', '2'), now, 300).ok, false);
    assert.equal(verifyWebhookSignature(secrets, `t=${now + 1},v1=${mac('old-secret', now)}`, body, now, 300).ok, false);
  });

  it('the timestamp is signed as the header carries it: a t written with leading zeros is verified over those digits, not over its number', () => {
    const padded = `000${now}`;
    const signed = createHmac('sha256', 's3cret').update(`${padded}.${body}`).digest('hex');
    assert.deepEqual(verifyWebhookSignature(['s3cret'], `t=${padded},v1=${signed}`, body, now, 300), { ok: true });
    // the number's own digits are another signed text: not a signature of this header
    assert.deepEqual(verifyWebhookSignature(['s3cret'], `t=${padded},v1=${mac('s3cret', now)}`, body, now, 300), { ok: false, reason: 'signature does not match' });
  });

  it('a header is malformed — refused whatever the secrets — without one timestamp, without a v1 signature, or with any v1 that is not 64 lowercase hex digits', () => {
    const good = mac('s3cret', now);
    for (const header of [
      `v1=${good}`,
      `t=${now}`,
      `t=${now},v0=${good}`,
      `t=${now},t=${now},v1=${good}`,
      `t=${now},v1=${good},v1=zz`,
      `t=${now},v1=${good},v1=`,
      `t=${now},v1=${good.toUpperCase()}`,
      `t=${now},v1=${good}0`,
      `t=${now}.5,v1=${good}`,
    ]) {
      assert.deepEqual(verifyWebhookSignature(['s3cret'], header, body, now, 300), { ok: false, reason: 'malformed signature header' }, header);
    }
  });
});
