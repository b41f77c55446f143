import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decide, ORDER_STATUSES, providerCancellationOf, providerContradicts, providerStatusOf, type OrderEvent, type OrderStatus, type ProviderStatus } from './orderStatus.js';

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

  it('knows which provider reports contradict a final order (review items), and that none contradicts one in flight', () => {
    const contradicted = (providerStatus: ProviderStatus) => ORDER_STATUSES.filter((status) => providerContradicts(status, providerStatus));
    assert.deepEqual(contradicted('submitted'), ['failed', 'cancelled']);
    assert.deepEqual(contradicted('processing'), ['failed', 'cancelled']);
    assert.deepEqual(contradicted('completed'), ['failed', 'cancelled']);
    // the provider's own failure agrees with a failed or cancelled order, not with a completed one
    assert.deepEqual(contradicted('failed'), ['completed']);
  });

  it("the provider's own cancellation cancels an order it holds or is being given, and contradicts only a completed one", () => {
    assert.deepEqual(moves({ type: 'provider_status', status: 'cancelled' }), {
      pending: 'cancelled',
      submitting: 'cancelled',
      submitted: 'cancelled',
      processing: 'cancelled',
      completed: 'stay',
      failed: 'stay',
      cancelled: 'stay',
    });
    assert.deepEqual(ORDER_STATUSES.filter((status) => providerContradicts(status, 'cancelled')), ['completed']);
  });

  it('a provider still reporting an order in progress after it confirmed our cancel is late news, not a contradiction; its "completed" is', () => {
    assert.equal(providerContradicts('cancelled', 'processing', 'confirmed'), false);
    assert.equal(providerContradicts('cancelled', 'submitted', 'confirmed'), false);
    assert.equal(providerContradicts('cancelled', 'completed', 'confirmed'), true);
    assert.equal(providerContradicts('cancelled', 'processing', 'requested'), false);
    assert.equal(providerContradicts('cancelled', 'completed', 'requested'), true);
    assert.equal(providerContradicts('cancelled', 'completed', 'refused'), false, 'the refusal said it shipped (order_cancel_refused)');
    assert.equal(providerContradicts('cancelled', 'processing', 'not_found'), true, 'it said it held no order');
    assert.equal(providerContradicts('cancelled', 'processing', null), true);
  });

  it('records a cancel the provider answered: refused only when something may ship', () => {
    assert.equal(providerCancellationOf({ outcome: 'cancelled' }), 'confirmed');
    assert.equal(providerCancellationOf({ outcome: 'not_found' }), 'not_found');
    assert.equal(providerCancellationOf({ outcome: 'refused', providerStatus: 'completed' }), 'refused');
    assert.equal(providerCancellationOf({ outcome: 'refused', providerStatus: null }), 'refused');
    assert.equal(providerCancellationOf({ outcome: 'refused', providerStatus: 'failed' }), 'confirmed');
    assert.equal(providerCancellationOf({ outcome: 'refused', providerStatus: 'cancelled' }), 'confirmed');
  });

  it('maps the provider\'s words', () => {
    assert.equal(providerStatusOf('accepted'), 'submitted');
    assert.equal(providerStatusOf('completed'), 'completed');
    assert.equal(providerStatusOf('cancelled'), 'cancelled');
    assert.equal(providerStatusOf('teleported'), undefined);
  });
});
