import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { planReceipt, transferTransition, type TransferAction, type TransferStatus } from './transferState.js';

describe('transfer state machine', () => {
  const statuses: TransferStatus[] = ['requested', 'approved', 'received', 'cancelled'];
  const actions: TransferAction[] = ['approve', 'receive', 'cancel'];
  const allowed: Record<string, TransferStatus> = {
    'requested/approve': 'approved',
    'requested/cancel': 'cancelled',
    'approved/receive': 'received',
  };

  for (const status of statuses) {
    for (const action of actions) {
      const expected = allowed[`${status}/${action}`];
      it(`${status} --${action}--> ${expected ?? 'refused'}`, () => {
        const result = transferTransition(status, action);
        if (expected) assert.deepEqual(result, { ok: true, from: status, to: expected });
        else assert.equal(result.ok, false);
      });
    }
  }

  it('explains a refusal', () => {
    assert.deepEqual(transferTransition('approved', 'cancel'), { ok: false, reason: 'cannot cancel a transfer that is approved (only one that is requested)' });
  });
});

describe('planReceipt', () => {
  const sent = [
    { sku_id: 'a', quantity: 10 },
    { sku_id: 'b', quantity: 5 },
  ];

  it('no lines: everything arrived', () => {
    assert.deepEqual(planReceipt(sent, undefined), {
      ok: true,
      lines: [
        { sku_id: 'a', sent: 10, received: 10, shortfall: 0 },
        { sku_id: 'b', sent: 5, received: 5, shortfall: 0 },
      ],
    });
  });

  it('partial: listed quantities arrived, unlisted SKUs arrived with 0', () => {
    assert.deepEqual(planReceipt(sent, [{ sku_id: 'a', quantity_received: 7 }]), {
      ok: true,
      lines: [
        { sku_id: 'a', sent: 10, received: 7, shortfall: 3 },
        { sku_id: 'b', sent: 5, received: 0, shortfall: 5 },
      ],
    });
  });

  it('refuses more than was sent, a SKU not sent, and a SKU listed twice', () => {
    const result = planReceipt(sent, [
      { sku_id: 'a', quantity_received: 11 },
      { sku_id: 'c', quantity_received: 1 },
      { sku_id: 'b', quantity_received: 1 },
      { sku_id: 'b', quantity_received: 1 },
    ]);
    assert.equal(result.ok, false);
    if (!result.ok) {
      assert.deepEqual(result.errors.map((e) => e.path).sort(), ['/body/items/0/quantity_received', '/body/items/1/sku_id', '/body/items/3/sku_id']);
    }
  });
});
