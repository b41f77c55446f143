import type { RawBuilder } from 'kysely';
import { inTenantTransaction } from '../core/command.js';
import { maybeOne } from '../core/db.js';
import type { JobContext } from '../jobs/task.js';

/**
 * Claims an order for one try of one of its jobs (a lookup, a recovery, a
 * cancellation at the provider): `claim` is one conditional UPDATE of that
 * job's claim column on the order — a lease, the time a try last took the
 * order — returning a row when it matched. It runs in a transaction of its
 * own, committed before the provider is called: a second job of the order,
 * however the two interleave, finds it claimed (its UPDATE waits for the
 * row and reads it again).
 *
 * Not a command: no operation, no audit event. The claim changes nothing a
 * client sees (not the order's version, status_changed_at or updated_at) and
 * each try overwrites it, so a try that changes nothing leaves that one
 * timestamp and nothing else; what a try does change is one command of its
 * own (see jobCommandIfChanged). Claims used to be commands, and an order a
 * slow provider held for days wrote an operation and an audit event per try.
 * A worker killed after claiming leaves the lease, which runs out after the
 * job's period: the sweep then queues the order again.
 *
 * False when the UPDATE matched nothing: the order is not due (another job
 * has it) or has moved on.
 */
export async function claimOrder(ctx: JobContext, tenantId: string, orderId: string, claim: RawBuilder<unknown>): Promise<boolean> {
  const claimed = (await inTenantTransaction(ctx.db, tenantId, (tx) => maybeOne(tx, claim))) !== undefined;
  if (!claimed) ctx.logger.info({ order_id: orderId }, 'order not due for this job: another job has it, or it moved on');
  return claimed;
}
