import { sql } from 'kysely';
import { inStoreScope, recordInScope, type TenantPrincipal } from '../core/auth.js';
import { all, maybeOne, type Tx } from '../core/db.js';
import type { Effect } from '../core/command.js';
import { transferEnds } from '../transfers/queries.js';

export interface OperationView {
  id: string;
  type: string;
  actor: string;
  correlation_id: string;
  store_id: string | null;
  created_at: Date;
  reverted_by: string | null;
  effects: Effect[];
  events: Array<{
    id: number;
    type: string;
    subject_type: string | null;
    subject_id: string | null;
    before: unknown;
    after: unknown;
    created_at: Date;
  }>;
}

/** An operation with the rows it touched (from its command event) and its audit events. */
export async function getOperation(tx: Tx, tenantId: string, opId: string): Promise<OperationView | undefined> {
  const operation = await maybeOne(
    tx,
    sql<Omit<OperationView, 'effects' | 'events'>>`
      SELECT id, type, actor, correlation_id, store_id, created_at, reverted_by
      FROM operations WHERE tenant_id = ${tenantId} AND id = ${opId}`,
  );
  if (!operation) return undefined;
  const events = await all(
    tx,
    sql<OperationView['events'][number] & { effects: Effect[] | null }>`
      SELECT id, type, subject_type, subject_id, before, after, effects, created_at
      FROM events WHERE tenant_id = ${tenantId} AND op_id = ${opId} ORDER BY id`,
  );
  const recorded = events.flatMap((event) => event.effects ?? []);
  const effects = [...recorded, ...(await rowsFoundByOperation(tx, tenantId, opId, recorded))];
  return {
    ...operation,
    reverted_by: operation.reverted_by ?? null,
    effects,
    events: events
      .filter((event) => event.subject_type !== null)
      .map(({ effects: _effects, ...event }) => event),
  };
}

/**
 * The rows an operation wrote that its commands do not name one by one, found
 * by the operation's id (every row carries it, immutable, in append-only
 * tables): the postings of its journal entries (by number, as stock ledger
 * rows are) and the accounts they moved, the account of a party it created,
 * and the lines and status history rows it wrote for the orders it names.
 * Those its command event already names are not repeated.
 */
async function rowsFoundByOperation(tx: Tx, tenantId: string, opId: string, recorded: readonly Effect[]): Promise<Effect[]> {
  const idsOf = (table: string) => [...new Set(recorded.filter((effect) => effect.table === table).map((effect) => effect.id))];
  const parties = idsOf('parties');
  const orders = idsOf('orders');
  const entries = await all(tx, sql<{ id: string }>`SELECT id FROM journal_entries WHERE tenant_id = ${tenantId} AND op_id = ${opId} ORDER BY created_at, id`);
  const found: Effect[] = entries.map((entry) => ({ table: 'journal_entries', id: entry.id, action: 'created' }));
  if (entries.length > 0 || parties.length > 0) {
    const postings = await all(
      tx,
      sql<{ id: string; account_id: string }>`
        SELECT id::text, account_id FROM postings
        WHERE tenant_id = ${tenantId} AND entry_id = ANY(${entries.map((entry) => entry.id)}::uuid[]) AND op_id = ${opId} ORDER BY id`,
    );
    found.push(...postings.map((posting): Effect => ({ table: 'postings', id: posting.id, action: 'created' })));
    const accounts = await all(
      tx,
      sql<{ id: string; created: boolean }>`
        SELECT id, op_id = ${opId} AS created FROM accounts
        WHERE tenant_id = ${tenantId}
          AND (id = ANY(${[...new Set(postings.map((posting) => posting.account_id))]}::uuid[]) OR (party_id = ANY(${parties}::uuid[]) AND op_id = ${opId}))
        ORDER BY key`,
    );
    found.push(...accounts.map((account): Effect => ({ table: 'accounts', id: account.id, action: account.created ? 'created' : 'updated' })));
  }
  if (orders.length > 0) {
    const lines = await all(
      tx,
      sql<{ id: string }>`SELECT id FROM order_lines WHERE tenant_id = ${tenantId} AND order_id = ANY(${orders}::uuid[]) AND op_id = ${opId} ORDER BY order_id, line_no`,
    );
    const history = await all(
      tx,
      sql<{ id: string }>`SELECT id::text FROM order_status_history WHERE tenant_id = ${tenantId} AND order_id = ANY(${orders}::uuid[]) AND op_id = ${opId} ORDER BY id`,
    );
    found.push(...lines.map((line): Effect => ({ table: 'order_lines', id: line.id, action: 'created' })));
    found.push(...history.map((row): Effect => ({ table: 'order_status_history', id: row.id, action: 'created' })));
  }
  const named = new Set(recorded.map((effect) => `${effect.table}/${effect.id}`));
  return found.filter((effect) => !named.has(`${effect.table}/${effect.id}`));
}

/**
 * The stores of two-store records an operation touched, whose staff are
 * party to it whichever store it is filed under: a transfer's two ends, and
 * a review item's two stores (a transfer's shortfall is the destination's
 * and the source's item; its resolution is filed under the store of the
 * staff who resolved it).
 */
const PARTIES_OF: Record<string, { table: string; stores: (tx: Tx, tenantId: string, ids: readonly string[]) => Promise<string[]> }> = {
  transfer: { table: 'stock_transfers', stores: transferEnds },
  review_item: { table: 'review_items', stores: reviewItemStores },
};

async function reviewItemStores(tx: Tx, tenantId: string, ids: readonly string[]): Promise<string[]> {
  const rows = await all(
    tx,
    sql<{ store_id: string | null }>`
      SELECT unnest(ARRAY[store_id, other_store_id]) AS store_id
      FROM review_items WHERE tenant_id = ${tenantId} AND id = ANY(${ids}::uuid[])`,
  );
  return rows.flatMap((row) => (row.store_id === null ? [] : [row.store_id]));
}

/**
 * Whether a principal may see an operation: one filed under a store needs
 * that store in scope; one without a store (catalogue changes, sweeps across
 * stores) is tenant-wide, for tokens not limited to some stores. A transfer's
 * operations are filed under one end, and a review item's resolution under
 * one of its stores: the staff of the other are party to them too
 * (PARTIES_OF). `effects`: the operation's, when already read.
 */
export async function operationInScope(
  tx: Tx,
  principal: TenantPrincipal,
  operation: { id: string; type: string; store_id: string | null },
  effects?: readonly Effect[],
): Promise<boolean> {
  if (recordInScope(principal, operation.store_id)) return true;
  const parties = PARTIES_OF[operation.type.split('.')[0]!];
  if (!parties) return false;
  const touched =
    effects ??
    (await all(tx, sql<{ effects: Effect[] | null }>`SELECT effects FROM events WHERE tenant_id = ${principal.tenantId} AND op_id = ${operation.id}`)).flatMap(
      (row) => row.effects ?? [],
    );
  const ids = touched.filter((effect) => effect.table === parties.table).map((effect) => effect.id);
  if (ids.length === 0) return false;
  return (await parties.stores(tx, principal.tenantId, ids)).some((storeId) => inStoreScope(principal, storeId));
}
