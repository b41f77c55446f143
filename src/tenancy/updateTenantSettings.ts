import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { one, type Executor } from '../core/db.js';
import { assertExpectedVersion, type ExpectedVersions } from '../core/expectedVersions.js';

/** Settings a tenant can change; each module documents and defaults its own keys. */
export interface TenantSettings {
  /** A sale line at or above this quantity (base units) is a bulk sale. */
  bulk_sale_threshold?: number;
  /** Geofence radius for visit completion, metres. */
  geofence_radius_m?: number;
  /** Opening cash float per store per day, minor units. */
  settlement_float?: number;
  /** Four-eyes rule: a settlement or transfer is approved by another token than the one that made it (default off). */
  require_second_approver?: boolean;
  /** Four-eyes rule for undoing: a sale is voided or taken back from, an operation reverted, by another token than the one that made it (default off). */
  require_second_approver_for_reversals?: boolean;
}

export async function getTenantSettings(db: Executor, tenantId: string): Promise<TenantSettings> {
  return (await getVersionedTenantSettings(db, tenantId)).settings;
}

/** The settings with their version (sent as the ETag). */
export async function getVersionedTenantSettings(db: Executor, tenantId: string): Promise<{ settings: TenantSettings; version: number }> {
  return one(db, sql<{ settings: TenantSettings; version: number }>`SELECT settings, settings_version AS version FROM tenants WHERE id = ${tenantId}`);
}

/** A change to the settings: a key set to null is removed (the setting goes back to its default). */
export type TenantSettingsChange = { [K in keyof TenantSettings]?: TenantSettings[K] | null };

/** Merges the changes into the settings; with `expected` (If-Match), only while the settings are at one of those versions. */
export async function updateTenantSettings(
  cmd: Command,
  changes: TenantSettingsChange,
  expected?: ExpectedVersions,
): Promise<{ settings: TenantSettings; version: number }> {
  // FOR NO KEY UPDATE, not FOR UPDATE: this command's own operation row (like
  // every command's) already holds FOR KEY SHARE on the tenant row through
  // its foreign key, and FOR UPDATE conflicts with KEY SHARE — two changes at
  // once each held one and waited for the other's (a deadlock, retried into
  // 500s), and a change waited for every command of the tenant in flight.
  // NO KEY UPDATE (what the UPDATE below takes anyway: it changes no key)
  // still makes changes take turns, and the later one reads the earlier's.
  const before = await one(
    cmd.tx,
    sql<{ settings: TenantSettings; version: number }>`SELECT settings, settings_version AS version FROM tenants WHERE id = ${cmd.tenantId} FOR NO KEY UPDATE`,
  );
  assertExpectedVersion(expected, before.version, 'settings');
  const entries = Object.entries(changes);
  const set = Object.fromEntries(entries.filter(([, value]) => value !== null));
  const removed = entries.filter(([, value]) => value === null).map(([key]) => key);
  const after = await one(
    cmd.tx,
    sql<{ settings: TenantSettings; version: number }>`
      UPDATE tenants SET settings = (settings || ${JSON.stringify(set)}::jsonb) - ${removed}::text[], settings_version = settings_version + 1
      WHERE id = ${cmd.tenantId} RETURNING settings, settings_version AS version`,
  );
  cmd.touch('tenants', cmd.tenantId, 'updated');
  cmd.audit({ subjectType: 'tenant', subjectId: cmd.tenantId, before: before.settings, after: after.settings });
  return after;
}
