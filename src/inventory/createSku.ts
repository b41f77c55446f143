import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { one } from '../core/db.js';
import { AppError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { PG, pgCode } from '../core/pgErrors.js';
import type { SkuRow, Unit } from './inventory.table.js';

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
        RETURNING id, code, name, unit, price, tracks_pieces, op_id, created_at`,
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
