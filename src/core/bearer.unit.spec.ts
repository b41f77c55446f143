import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bearerCredential } from './auth.js';

describe('bearerCredential: the one reading of Authorization for API tokens and METRICS_TOKEN', () => {
  it('takes the credential after the scheme in any letter case and any run of spaces or tabs', () => {
    for (const header of ['Bearer sk_abc', 'bearer sk_abc', 'BEARER sk_abc', 'Bearer  sk_abc', 'Bearer\tsk_abc', 'Bearer \t sk_abc']) {
      assert.equal(bearerCredential(header), 'sk_abc', JSON.stringify(header));
    }
  });

  it('carries none for another scheme, no scheme, no credential, or a credential with a space in it', () => {
    for (const header of [undefined, '', 'Bearer', 'Bearer ', 'Basic sk_abc', 'sk_abc', 'Bearersk_abc', 'Bearer sk_abc x', 'Bearer sk_abc\tx', 'Token sk_abc']) {
      assert.equal(bearerCredential(header), undefined, JSON.stringify(header));
    }
  });
});
