import type { TestDatabase } from './database.js';

/**
 * A weekend passes for one Idempotency-Key: its record is moved 72 hours into
 * the past (created_at and expires_at alike, so a record kept for good —
 * expires_at 'infinity' — stays so) and the hourly purge runs. A record past
 * IDEMPOTENCY_TTL_HOURS is gone after it; a device sending the request again
 * now is the late repeat under test.
 */
export async function aWeekendLater(t: Pick<TestDatabase, 'admin' | 'appPool'>, tenantId: string, key: string): Promise<void> {
  await t.admin.query(
    `UPDATE idempotency_keys SET created_at = created_at - interval '72 hours', expires_at = expires_at - interval '72 hours' WHERE tenant_id = $1 AND key = $2`,
    [tenantId, key],
  );
  await t.appPool.query('SELECT purge_expired_idempotency_keys()');
}
