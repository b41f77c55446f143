import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { one } from '../core/db.js';
import { AppError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { PG, pgCode } from '../core/pgErrors.js';
import type { StoreRow } from './inventory.table.js';

export async function createStore(cmd: Command, input: { code: string; name: string }): Promise<StoreRow> {
  const id = newId();
  try {
    const store = await one(
      cmd.tx,
      sql<StoreRow>`
        INSERT INTO stores (tenant_id, id, code, name, op_id) VALUES (${cmd.tenantId}, ${id}, ${input.code}, ${input.name}, ${cmd.opId})
        RETURNING id, code, name, op_id, created_at`,
    );
    cmd.storeId = id;
    cmd.touch('stores', id);
    cmd.audit({ subjectType: 'store', subjectId: id, after: store });
    return store;
  } catch (error) {
    if (pgCode(error) === PG.UNIQUE_VIOLATION) {
      throw new AppError('already_exists', `a store with code "${input.code}" already exists`, { cause: error });
    }
    throw error;
  }
}
