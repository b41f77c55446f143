import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decide, ORDER_STATUSES, providerStatusOf, type OrderEvent, type OrderStatus } from './orderStatus.js';

const moves = (event: OrderEvent) =>
  Object.fromEntries(ORDER_STATUSES.map((status) => [status, decide(status, event).kind === 'move' ? (decide(status, event) as { to: OrderStatus }).to : decide(status, event).kind]));

describe('order state machine', () => {
  it('submits only pending orders; a retry while submitting stays', () => {
    assert.deepEqual(moves({ type: 'submit' }), {
      pending: 'submitting',
      submitting: 'stay',
      submitted: 'refuse',
      processing: 'refuse',
      completed: 'refuse',
      failed: 'refuse',
      cancelled: 'refuse',
    });
  });

  it('moves forward on provider events and ignores stale or duplicate ones', () => {
    assert.deepEqual(moves({ type: 'provider_status', status: 'processing' }), {
      pending: 'processing',
      submitting: 'processing',
      submitted: 'processing',
      processing: 'stay',
      completed: 'stay',
      failed: 'stay',
      cancelled: 'stay',
    });
    assert.deepEqual(decide('submitting', { type: 'provider_status', status: 'submitted' }), { kind: 'move', to: 'submitted' });
    assert.deepEqual(decide('submitting', { type: 'provider_status', status: 'completed' }), { kind: 'move', to: 'completed' });
    assert.equal(decide('processing', { type: 'provider_status', status: 'submitted' }).kind, 'stay');
    assert.equal(decide('processing', { type: 'provider_status', status: 'failed' }).kind, 'move');
  });

  it('any order of the same events ends in the same final state', () => {
    const events: OrderEvent[] = [
      { type: 'provider_status', status: 'submitted' },
      { type: 'provider_status', status: 'processing' },
      { type: 'provider_status', status: 'completed' },
    ];
    const permutations = (list: OrderEvent[]): OrderEvent[][] =>
      list.length <= 1 ? [list] : list.flatMap((item, i) => permutations([...list.slice(0, i), ...list.slice(i + 1)]).map((rest) => [item, ...rest]));
    for (const order of permutations([...events, ...events])) {
      let status: OrderStatus = 'submitting';
      for (const event of order) {
        const decision = decide(status, event);
        if (decision.kind === 'move') status = decision.to;
      }
      assert.equal(status, 'completed');
    }
  });

  it('lets managers complete and cancel only where it is safe', () => {
    assert.deepEqual(moves({ type: 'complete' }), {
      pending: 'refuse',
      submitting: 'refuse',
      submitted: 'completed',
      processing: 'completed',
      completed: 'refuse',
      failed: 'refuse',
      cancelled: 'refuse',
    });
    assert.deepEqual(moves({ type: 'cancel' }), {
      pending: 'cancelled',
      submitting: 'refuse',
      submitted: 'cancelled',
      processing: 'cancelled',
      completed: 'refuse',
      failed: 'refuse',
      cancelled: 'refuse',
    });
  });

  it('fails only orders not yet at the provider, on rejection or when giving up', () => {
    assert.deepEqual(decide('submitting', { type: 'provider_rejected' }), { kind: 'move', to: 'failed' });
    assert.equal(decide('submitted', { type: 'provider_rejected' }).kind, 'stay');
    assert.deepEqual(decide('pending', { type: 'give_up' }), { kind: 'move', to: 'failed' });
    assert.equal(decide('completed', { type: 'give_up' }).kind, 'stay');
  });

  it('maps the provider\'s words', () => {
    assert.equal(providerStatusOf('accepted'), 'submitted');
    assert.equal(providerStatusOf('completed'), 'completed');
    assert.equal(providerStatusOf('teleported'), undefined);
  });
});
