/** The transfer state machine, as data and one pure function. */
export type TransferStatus = 'requested' | 'approved' | 'received' | 'cancelled';
export type TransferAction = 'approve' | 'receive' | 'cancel';

export const TRANSFER_TRANSITIONS: Record<TransferAction, { from: TransferStatus; to: TransferStatus }> = {
  approve: { from: 'requested', to: 'approved' },
  receive: { from: 'approved', to: 'received' },
  cancel: { from: 'requested', to: 'cancelled' },
};

export type TransitionResult = { ok: true; from: TransferStatus; to: TransferStatus } | { ok: false; reason: string };

export function transferTransition(status: TransferStatus, action: TransferAction): TransitionResult {
  const transition = TRANSFER_TRANSITIONS[action];
  if (status !== transition.from) {
    return { ok: false, reason: `cannot ${action} a transfer that is ${status} (only one that is ${transition.from})` };
  }
  return { ok: true, from: transition.from, to: transition.to };
}

export interface ReceiptLine {
  sku_id: string;
  quantity_received: number;
}

export type ReceiptPlan =
  | { ok: true; lines: Array<{ sku_id: string; sent: number; received: number; shortfall: number }> }
  | { ok: false; errors: Array<{ path: string; message: string }> };

/**
 * What arrived against what was sent. No lines given: everything arrived.
 * Otherwise the lines list what arrived: a SKU sent but not listed arrived
 * with 0. A line for a SKU that was not sent, listed twice, or with more than
 * was sent, is an error.
 */
export function planReceipt(sent: Array<{ sku_id: string; quantity: number }>, received: ReceiptLine[] | undefined): ReceiptPlan {
  if (received === undefined) {
    return { ok: true, lines: sent.map((item) => ({ sku_id: item.sku_id, sent: item.quantity, received: item.quantity, shortfall: 0 })) };
  }
  const errors: Array<{ path: string; message: string }> = [];
  const arrived = new Map<string, number>();
  const sentBySku = new Map(sent.map((item) => [item.sku_id, item.quantity]));
  received.forEach((line, index) => {
    if (!sentBySku.has(line.sku_id)) errors.push({ path: `/body/items/${index}/sku_id`, message: 'was not sent in this transfer' });
    else if (arrived.has(line.sku_id)) errors.push({ path: `/body/items/${index}/sku_id`, message: 'is listed twice' });
    arrived.set(line.sku_id, line.quantity_received);
  });
  received.forEach((line, index) => {
    const quantity = sentBySku.get(line.sku_id);
    if (quantity !== undefined && line.quantity_received > quantity) {
      errors.push({ path: `/body/items/${index}/quantity_received`, message: `is more than the ${quantity} sent` });
    }
  });
  if (errors.length > 0) return { ok: false, errors };
  return {
    ok: true,
    lines: sent.map((item) => {
      const got = arrived.get(item.sku_id) ?? 0;
      return { sku_id: item.sku_id, sent: item.quantity, received: got, shortfall: item.quantity - got };
    }),
  };
}
