import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { one, type Executor } from '../core/db.js';

/** Settings a tenant can change; each module documents and defaults its own keys. */
export interface TenantSettings {
  /** A sale line at or above this quantity (base units) is a bulk sale. */
  bulk_sale_threshold?: number;
  /** Geofence radius for visit completion, metres. */
  geofence_radius_m?: number;
  /** Opening cash float per store per day, minor units. */
  settlement_float?: number;
}

export async function getTenantSettings(db: Executor, tenantId: string): Promise<TenantSettings> {
  const row = await one(db, sql<{ settings: TenantSettings }>`SELECT settings FROM tenants WHERE id = ${tenantId}`);
  return row.settings;
}

export async function updateTenantSettings(cmd: Command, changes: TenantSettings): Promise<TenantSettings> {
  const before = await one(cmd.tx, sql<{ settings: TenantSettings }>`SELECT settings FROM tenants WHERE id = ${cmd.tenantId} FOR UPDATE`);
  const after = await one(
    cmd.tx,
    sql<{ settings: TenantSettings }>`
      UPDATE tenants SET settings = settings || ${JSON.stringify(changes)}::jsonb WHERE id = ${cmd.tenantId} RETURNING settings`,
  );
  cmd.touch('tenants', cmd.tenantId, 'updated');
  cmd.audit({ subjectType: 'tenant', subjectId: cmd.tenantId, before: before.settings, after: after.settings });
  return after.settings;
}
