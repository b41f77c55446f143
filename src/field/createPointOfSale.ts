import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { one } from '../core/db.js';
import { newId } from '../core/ids.js';
import { assertStoreExists } from '../inventory/receiveStock.js';
import type { PointOfSaleRow } from './field.table.js';

export interface PointOfSaleInput {
  name: string;
  store_id: string;
  latitude: number;
  longitude: number;
}

export async function createPointOfSale(cmd: Command, input: PointOfSaleInput): Promise<PointOfSaleRow> {
  await assertStoreExists(cmd.tx, cmd.tenantId, input.store_id);
  const id = newId();
  const row = await one(
    cmd.tx,
    sql<PointOfSaleRow>`
      INSERT INTO points_of_sale (tenant_id, id, name, store_id, latitude, longitude, op_id)
      VALUES (${cmd.tenantId}, ${id}, ${input.name}, ${input.store_id}, ${input.latitude}, ${input.longitude}, ${cmd.opId})
      RETURNING id, name, store_id, latitude::float8 AS latitude, longitude::float8 AS longitude, last_visit_at, last_visit_id, op_id, created_at`,
  );
  cmd.storeId = input.store_id;
  cmd.touch('points_of_sale', id);
  cmd.audit({ subjectType: 'point_of_sale', subjectId: id, after: row });
  return row;
}
