import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { all, type Tx } from '../core/db.js';
import { AppError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { postJournal } from './postJournal.js';
import type { PurchaseLine } from './purchasePlan.js';
import { findParty } from './queries.js';

/** What a purchase's answer says (the receipt's `purchase`). */
export interface PurchaseView {
  id: string;
  supplier_id: string;
  total: number;
  /** The `purchase` journal entry; null for a total of 0 (no money moves). */
  entry_id: string | null;
  /** The day the entry is booked on; null without an entry. */
  business_date: string | null;
  lines: Array<Omit<PurchaseLine, 'line_number'>>;
}

/**
 * Refuses a `supplier_id` that is no supplier of the tenant — unknown, or a
 * customer — at `/body/supplier_id`, before anything is written.
 */
export async function assertSupplier(tx: Tx, tenantId: string, supplierId: string): Promise<void> {
  const party = await findParty(tx, tenantId, supplierId);
  if (!party) {
    throw new AppError('validation_failed', `supplier ${supplierId} does not exist`, {
      errors: [{ path: '/body/supplier_id', message: 'is not a known supplier' }],
    });
  }
  if (party.kind !== 'supplier') {
    throw new AppError('validation_failed', `party ${supplierId} is a ${party.kind}, not a supplier`, {
      errors: [{ path: '/body/supplier_id', message: `is a ${party.kind}, not a supplier` }],
    });
  }
}

/**
 * The money side of a costed receipt, in the receipt's command (its one
 * transaction), after its stock moved: the purchase row and its lines and,
 * for a total above 0, its journal entry (kind `purchase`, subject the
 * purchase) — debit the store's `inventory` account (the goods' cost),
 * credit the supplier's `payable` account (what we owe). Dated like every
 * store entry (postJournal: today, or the first day after it with no count).
 * The supplier was checked by assertSupplier.
 */
export async function recordPurchase(
  cmd: Command,
  input: { storeId: string; supplierId: string; reference: string | null; lines: PurchaseLine[]; total: number },
): Promise<PurchaseView> {
  const id = newId();
  const entry =
    input.total === 0
      ? null
      : await postJournal(cmd.tx, cmd, {
          kind: 'purchase',
          storeId: input.storeId,
          subjectType: 'purchase',
          subjectId: id,
          ...(input.reference === null ? {} : { memo: input.reference }),
          postings: [
            { account: { storeId: input.storeId, kind: 'inventory' }, amount: input.total },
            { account: { partyId: input.supplierId }, amount: -input.total },
          ],
        });
  await all(
    cmd.tx,
    sql`
      WITH purchase AS (
        INSERT INTO purchases (tenant_id, id, store_id, supplier_id, total, entry_id, reference, op_id)
        VALUES (${cmd.tenantId}, ${id}, ${input.storeId}, ${input.supplierId}, ${input.total}, ${entry?.entryId ?? null}, ${input.reference}, ${cmd.opId})
        RETURNING id
      )
      INSERT INTO purchase_lines (tenant_id, purchase_id, line_number, sku_id, quantity, unit_cost, line_total, op_id)
      SELECT ${cmd.tenantId}, purchase.id, l.line_number, l.sku_id, l.quantity, l.unit_cost, l.line_total, ${cmd.opId}
      FROM purchase, jsonb_to_recordset(${JSON.stringify(input.lines)}::jsonb)
        AS l(line_number integer, sku_id uuid, quantity bigint, unit_cost bigint, line_total bigint)
      ORDER BY l.line_number`,
  );
  cmd.touch('purchases', id);
  for (const line of input.lines) cmd.touch('purchase_lines', `${id}/${line.line_number}`);
  if (entry) cmd.touch('journal_entries', entry.entryId);
  return {
    id,
    supplier_id: input.supplierId,
    total: input.total,
    entry_id: entry?.entryId ?? null,
    business_date: entry?.businessDate ?? null,
    lines: input.lines.map(({ sku_id, quantity, unit_cost, line_total }) => ({ sku_id, quantity, unit_cost, line_total })),
  };
}
