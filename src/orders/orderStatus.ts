/**
 * The order state machine, as a pure function. Every caller (API, worker,
 * webhook, recovery) asks `decide` what an event does to the current status,
 * then applies the answer with a conditional UPDATE (`WHERE status = current`),
 * so two racing callers cannot both move the same order.
 *
 *   pending ──► submitting ──► submitted ──► processing ──► completed
 *      │            │              │              │
 *      │            └──► failed    └──────────────┴──► failed (provider)
 *      └──► cancelled   (manual cancel also from submitted / processing;
 *                        the provider's own cancel from any status before completed)
 */
export const ORDER_STATUSES = ['pending', 'submitting', 'submitted', 'processing', 'completed', 'failed', 'cancelled'] as const;
export type OrderStatus = (typeof ORDER_STATUSES)[number];

/** What the provider says about an order (its own words mapped to ours: accepted → submitted). */
export type ProviderStatus = 'submitted' | 'processing' | 'completed' | 'failed' | 'cancelled';

export type OrderEvent =
  /** The worker is about to call the provider (again). */
  | { type: 'submit' }
  /** The provider acknowledged or reported a status (create response, webhook, recovery lookup). */
  | { type: 'provider_status'; status: ProviderStatus }
  /** The provider refused the order (4xx): no retry can fix it. */
  | { type: 'provider_rejected' }
  /** Retries and recoveries are exhausted without the provider knowing the order. */
  | { type: 'give_up' }
  | { type: 'complete' }
  | { type: 'cancel' };

export type Decision =
  | { kind: 'move'; to: OrderStatus }
  /** Nothing to do: a duplicate or stale event, or the work is already done. */
  | { kind: 'stay'; reason: string }
  | { kind: 'refuse'; reason: string };

export const FINAL_STATUSES: ReadonlySet<OrderStatus> = new Set(['completed', 'failed', 'cancelled']);

// How far along the provider's side an order is; a provider event can only move it forward.
const PROGRESS: Record<OrderStatus, number> = {
  pending: 0,
  submitting: 1,
  submitted: 2,
  processing: 3,
  completed: 4,
  failed: 4,
  cancelled: 4,
};

export function decide(current: OrderStatus, event: OrderEvent): Decision {
  switch (event.type) {
    case 'submit':
      if (current === 'pending') return { kind: 'move', to: 'submitting' };
      if (current === 'submitting') return { kind: 'stay', reason: 'already submitting' };
      return { kind: 'refuse', reason: `an order that is ${current} is not submitted again` };
    case 'provider_status': {
      if (FINAL_STATUSES.has(current)) return { kind: 'stay', reason: `the order is already ${current}` };
      if (PROGRESS[event.status] <= PROGRESS[current]) return { kind: 'stay', reason: `stale: the order is already ${current}` };
      return { kind: 'move', to: event.status };
    }
    case 'provider_rejected':
      if (current === 'submitting') return { kind: 'move', to: 'failed' };
      return { kind: 'stay', reason: `the order is ${current}` };
    case 'give_up':
      if (current === 'pending' || current === 'submitting') return { kind: 'move', to: 'failed' };
      return { kind: 'stay', reason: `the order is ${current}` };
    case 'complete':
      if (current === 'submitted' || current === 'processing') return { kind: 'move', to: 'completed' };
      return { kind: 'refuse', reason: `an order that is ${current} cannot be completed` };
    case 'cancel':
      // Not while submitting: the provider may be creating it this instant.
      if (current === 'pending' || current === 'submitted' || current === 'processing') return { kind: 'move', to: 'cancelled' };
      return { kind: 'refuse', reason: `an order that is ${current} cannot be cancelled` };
  }
}

/** What the provider may say of an order that means nothing ships (the order failed or was cancelled there). */
const NOTHING_SHIPS: ReadonlySet<string> = new Set(['cancelled', 'failed']);

/**
 * Whether what the provider reports about an order contradicts the order's
 * final status, so that someone must look:
 * - alive or shipped (accepted, processing, completed) an order we gave up on
 *   or cancelled: it may ship anyway. Its own `failed` or `cancelled` agrees
 *   with both. Where we asked it to cancel the order (`cancellation`):
 *   - `requested`: until it answers, the order is in progress there, so
 *     `accepted`/`processing` is no news (its answer will say how it ended);
 *   - `confirmed`: it said nothing ships, so `accepted`/`processing` is an
 *     event it sent before our cancel, delivered late (providers do not
 *     revive a cancelled order) — no news either;
 *   - `refused`: it said it had shipped, in the order_cancel_refused item,
 *     so its `completed` is no news;
 *   `completed` otherwise still is: it shipped an order it had to cancel.
 * - `failed` or `cancelled` an order that is completed (most often by a
 *   manager, by hand, on a courier's word): the goods may never have reached
 *   the customer. The order stays completed — a provider event never moves a
 *   final order — and the item says what the provider said.
 */
export function providerContradicts(status: OrderStatus, providerStatus: ProviderStatus, cancellation: ProviderCancellation | null = null): boolean {
  if (status === 'failed' || status === 'cancelled') {
    if (NOTHING_SHIPS.has(providerStatus)) return false;
    if (providerStatus === 'completed') return cancellation !== 'refused';
    return cancellation !== 'requested' && cancellation !== 'confirmed';
  }
  if (status === 'completed') return NOTHING_SHIPS.has(providerStatus);
  return false;
}

/** Where asking the provider to cancel an order stands (orders.provider_cancellation). */
export type ProviderCancellation = 'requested' | 'confirmed' | 'refused' | 'not_found';

/**
 * The provider's answer to our cancel, as recorded: cancelled, or refused
 * with the order failed or cancelled there (nothing ships) → `confirmed`; no
 * order under our key → `not_found`; any other refusal (it shipped, or it
 * does not say) → `refused`, for review.
 */
export function providerCancellationOf(
  answer: { outcome: 'cancelled' } | { outcome: 'not_found' } | { outcome: 'refused'; providerStatus: string | null },
): Exclude<ProviderCancellation, 'requested'> {
  if (answer.outcome === 'cancelled') return 'confirmed';
  if (answer.outcome === 'not_found') return 'not_found';
  return answer.providerStatus !== null && NOTHING_SHIPS.has(answer.providerStatus) ? 'confirmed' : 'refused';
}

/** The provider's status words → ours. */
export function providerStatusOf(word: string): ProviderStatus | undefined {
  switch (word) {
    case 'accepted':
      return 'submitted';
    case 'processing':
    case 'completed':
    case 'failed':
    case 'cancelled':
      return word;
    default:
      return undefined;
  }
}
