import type { TenantPrincipal } from '../core/auth.js';
import { assertStoreInScope } from '../core/auth.js';
import { inTenantTransaction } from '../core/command.js';
import type { Db, Tx } from '../core/db.js';
import { decodeCursor, isUuidIdCursor, pageOf } from '../http/schemas.js';
import { assertStoreExists } from './receiveStock.js';


/** The query of a list a client may narrow to one store. */
export interface StoreFilteredQuery {
  store_id?: string | undefined;
  limit?: number | undefined;
  cursor?: string | undefined;
}

/**
 * One page of a list of records with uuid ids that a client may narrow to one
 * store (`?store_id=`), as every such list answers it:
 * - a store outside the token's stores is 404 before anything is read;
 * - a store that is not the tenant's is 404 for every token, in the read's
 *   own transaction (as the store's own GET; never an empty list);
 * - then `limit` (default 50) rows after the cursor's id, as `fetch` reads
 *   them (asked for one more, to know whether a next page exists), the
 *   cursor being of `list` (listOf: this route).
 */
export async function storeFilteredPage<Row extends { id: string }>(
  db: Db,
  principal: TenantPrincipal,
  query: StoreFilteredQuery,
  fetch: (tx: Tx, afterId: string | undefined, limitPlusOne: number) => Promise<Row[]>,
  list: string,
): Promise<{ items: Row[]; next_cursor: string | null }> {
  const storeId = query.store_id;
  if (storeId !== undefined) assertStoreInScope(principal, storeId);
  const limit = query.limit ?? 50;
  const afterId = decodeCursor(query.cursor, isUuidIdCursor, list)?.id;
  const rows = await inTenantTransaction(db, principal.tenantId, async (tx) => {
    if (storeId !== undefined) await assertStoreExists(tx, principal.tenantId, storeId);
    return fetch(tx, afterId, limit + 1);
  });
  return pageOf(rows, limit, (last) => ({ id: last.id }), list);
}
