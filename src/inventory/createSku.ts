import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { maybeOne, one } from '../core/db.js';
import { AppError, notFound } from '../core/errors.js';
import { assertExpectedVersion, type ExpectedVersions } from '../core/expectedVersions.js';
import { newId } from '../core/ids.js';
import { PG, pgCode } from '../core/pgErrors.js';
import type { SkuRow, Unit } from './inventory.table.js';
import { SKU_COLUMNS } from './queries.js';

export interface CreateSkuInput {
  code: string;
  name: string;
  unit: Unit;
  price: number;
  tracks_pieces?: boolean | undefined;
}

export async function createSku(cmd: Command, input: CreateSkuInput): Promise<SkuRow> {
  // Workshop pieces are rolls and cut pieces (metre) or spare pieces and
  // bundles (piece); a kg SKU that tracks pieces could never hold stock.
  if (input.tracks_pieces && input.unit === 'kg') {
    throw new AppError('validation_failed', 'a kg SKU cannot track workshop pieces', {
      errors: [{ path: '/body/tracks_pieces', message: 'only metre and piece SKUs track pieces' }],
    });
  }
  const id = newId();
  try {
    const sku = await one(
      cmd.tx,
      sql<SkuRow>`
        INSERT INTO skus (tenant_id, id, code, name, unit, price, tracks_pieces, op_id)
        VALUES (${cmd.tenantId}, ${id}, ${input.code}, ${input.name}, ${input.unit}, ${input.price}, ${input.tracks_pieces ?? false}, ${cmd.opId})
        RETURNING ${SKU_COLUMNS}`,
    );
    cmd.touch('skus', id);
    cmd.audit({ subjectType: 'sku', subjectId: id, after: sku });
    return sku;
  } catch (error) {
    if (pgCode(error) === PG.UNIQUE_VIOLATION) {
      throw new AppError('already_exists', `a SKU with code "${input.code}" already exists`, { cause: error });
    }
    throw error;
  }
}

export interface UpdateSkuInput {
  code?: string | undefined;
  name?: string | undefined;
  price?: number | undefined;
}

/**
 * Changes a SKU's code, name or default price (a merge patch: what is sent
 * changes, the rest stays). Its unit and whether it tracks pieces never
 * change (the database refuses it: the sale path caches them). What is
 * recorded keeps what it was recorded with: a sale line its unit_price, a
 * consignment line the price agreed then. The row is locked, so two changes
 * of one SKU take turns (the later one applies to what the earlier left, or
 * is refused when it names the version the earlier one moved on from:
 * `expected`, the If-Match, 412 version_conflict). Nothing changed (the same
 * values, or an empty patch): answered as it is, no event, the version
 * unchanged. A code another SKU has: 409 already_exists.
 */
export async function updateSku(cmd: Command, skuId: string, input: UpdateSkuInput, expected?: ExpectedVersions): Promise<SkuRow> {
  const before = await maybeOne(cmd.tx, sql<SkuRow>`SELECT ${SKU_COLUMNS} FROM skus WHERE tenant_id = ${cmd.tenantId} AND id = ${skuId} FOR NO KEY UPDATE`);
  if (!before) throw notFound('SKU');
  assertExpectedVersion(expected, before.version, 'SKU');
  const after = { code: input.code ?? before.code, name: input.name ?? before.name, price: input.price ?? before.price };
  if (after.code === before.code && after.name === before.name && after.price === before.price) return before;
  try {
    const sku = await one(
      cmd.tx,
      sql<SkuRow>`
        UPDATE skus SET code = ${after.code}, name = ${after.name}, price = ${after.price}, version = version + 1
        WHERE tenant_id = ${cmd.tenantId} AND id = ${skuId}
        RETURNING ${SKU_COLUMNS}`,
    );
    cmd.touch('skus', skuId, 'updated');
    cmd.audit({ subjectType: 'sku', subjectId: skuId, before, after: sku });
    return sku;
  } catch (error) {
    if (pgCode(error) === PG.UNIQUE_VIOLATION) {
      throw new AppError('already_exists', `a SKU with code "${after.code}" already exists`, { cause: error });
    }
    throw error;
  }
}
