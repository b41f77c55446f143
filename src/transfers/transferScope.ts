import { inStoreScope, type TenantPrincipal } from '../core/auth.js';
import { AppError, notFound } from '../core/errors.js';

/** Which end of a transfer an action belongs to: approve the source's, receive the destination's, cancel either's. */
export type TransferSide = 'source' | 'destination' | 'either';

/**
 * The store-scope check of a transfer action (API.md): a transfer neither of
 * whose stores is the token's is `404`, exactly as if it did not exist; one
 * the token sees (one end is its store) but whose action belongs to the other
 * end is `403 forbidden` — the token may not take that action on a record it can see.
 */
export function assertTransferAction<T extends { source_store_id: string; destination_store_id: string }>(
  principal: TenantPrincipal,
  transfer: T | undefined,
  side: TransferSide,
): asserts transfer is T {
  const source = transfer !== undefined && inStoreScope(principal, transfer.source_store_id);
  const destination = transfer !== undefined && inStoreScope(principal, transfer.destination_store_id);
  if (!source && !destination) throw notFound('transfer');
  if (side === 'source' && !source) {
    throw new AppError('forbidden', "only the source store's staff may approve a transfer: the source store is not in this token's stores");
  }
  if (side === 'destination' && !destination) {
    throw new AppError('forbidden', "only the destination store's staff may receive a transfer: the destination store is not in this token's stores");
  }
}
