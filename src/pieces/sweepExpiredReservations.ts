import { sql } from 'kysely';
import type { Principal } from '../core/auth.js';
import { runCommand } from '../core/command.js';
import { all, type Db } from '../core/db.js';
import { newId } from '../core/ids.js';
import { lockPiecesForUpdate, releaseExpiredReservations } from './pieceRows.js';
import { forEachTenant } from '../jobs/eachTenant.js';

/**
 * Releases every expired piece reservation, one command per tenant (so each
 * release is an audited operation with a `piece.reservation_expired` event per
 * piece). Safe to run concurrently with commands and with itself: pieces are
 * locked in id order and only still-expired reservations are released.
 * For the jobs part to schedule (e.g. every minute). Returns how many pieces
 * were released.
 */
export async function sweepExpiredPieceReservations(db: Db, options: { batchSize?: number; principal?: Principal; correlationId?: string } = {}): Promise<number> {
  const batchSize = options.batchSize ?? 1000;
  const tenants = await all(db, sql<{ tenant_id: string }>`SELECT tenants_with_expired_piece_reservations() AS tenant_id`);
  const counts = await forEachTenant(tenants, (tenant) => tenant.tenant_id, async ({ tenant_id: tenantId }) => {
    const outcome = await runCommand(
      db,
      {
        tenantId,
        principal: options.principal ?? { kind: 'operator', name: 'sweep' },
        correlationId: options.correlationId ?? `sweep-piece-reservations-${newId()}`,
        fingerprint: 'sweep-piece-reservations',
      },
      { type: 'piece.reservations.expire' },
      async (cmd) => {
        const expired = await all(
          cmd.tx,
          sql<{ id: string }>`
            SELECT id FROM pieces WHERE tenant_id = ${tenantId} AND status = 'reserved' AND reserved_until <= now() ORDER BY id LIMIT ${batchSize}`,
        );
        const locked = await lockPiecesForUpdate(cmd.tx, tenantId, expired.map((row) => row.id));
        const after = await releaseExpiredReservations(cmd, locked);
        const count = after.filter((piece, index) => piece.status === 'in_stock' && locked[index]?.status === 'reserved').length;
        return { status: 200, body: { released: count } };
      },
    );
    return (outcome.body as { released: number }).released;
  });
  return counts.reduce((sum, count) => sum + count, 0);
}
