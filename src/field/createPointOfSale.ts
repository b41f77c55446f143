import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { maybeOne, one } from '../core/db.js';
import { AppError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { createParty } from '../money/createParty.js';
import { assertStoreExists } from '../inventory/receiveStock.js';
import type { PointOfSaleRow } from './field.table.js';

export interface PointOfSaleInput {
  name: string;
  store_id: string;
  latitude: number;
  longitude: number;
  /** An existing customer party; default: a new one named after the point of sale. */
  party_id?: string | undefined;
}

export async function createPointOfSale(cmd: Command, input: PointOfSaleInput): Promise<PointOfSaleRow> {
  await assertStoreExists(cmd.tx, cmd.tenantId, input.store_id);
  let partyId = input.party_id;
  if (partyId !== undefined) {
    const party = await maybeOne(cmd.tx, sql<{ kind: string }>`SELECT kind FROM parties WHERE tenant_id = ${cmd.tenantId} AND id = ${partyId}`);
    if (party?.kind !== 'customer') {
      throw new AppError('validation_failed', 'party_id must be an existing customer', { errors: [{ path: '/body/party_id', message: 'is not a customer party' }] });
    }
  } else {
    partyId = (await createParty(cmd, { kind: 'customer', name: input.name })).id;
  }
  const id = newId();
  const row = await one(
    cmd.tx,
    sql<PointOfSaleRow>`
      INSERT INTO points_of_sale (tenant_id, id, name, store_id, party_id, latitude, longitude, op_id)
      VALUES (${cmd.tenantId}, ${id}, ${input.name}, ${input.store_id}, ${partyId}, ${input.latitude}, ${input.longitude}, ${cmd.opId})
      RETURNING id, name, store_id, party_id, latitude::float8 AS latitude, longitude::float8 AS longitude, last_visit_at, last_visit_id, op_id, created_at`,
  );
  cmd.storeId = input.store_id;
  cmd.touch('points_of_sale', id);
  cmd.audit({ subjectType: 'point_of_sale', subjectId: id, after: row });
  return row;
}
