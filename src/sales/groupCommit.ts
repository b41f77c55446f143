import { sql } from 'kysely';
import { CommandRefused, executeCommand, setTenant, type CommandFn, type CommandInput, type CommandOutcome, type CommandSpec } from '../core/command.js';
import type { Db } from '../core/db.js';
import { AppError } from '../core/errors.js';
import { commandRetries, prometheus, registry } from '../core/metrics.js';
import { isRetryableTransactionError, pgCode } from '../core/pgErrors.js';

/**
 * Group commit for the sale path.
 *
 * Problem. One transaction per sale holds the hot SKU's balance row lock
 * across its COMMIT, i.e. across a WAL flush to disk. On this machine that
 * caps a hot SKU at ~1,000–1,500 sales/s however many tills are selling, and
 * every additional client only waits longer for the same lock.
 *
 * Overview. Commands are queued per *lane* (tenant + store: everything a sale
 * locks — its store's balances and receipt counter — belongs to one lane). A
 * lane runs at most one batch at a time. A batch is ONE transaction; each
 * command in it runs under its own SAVEPOINT through `executeCommand`, exactly
 * the code path of a lone command (idempotency check and record, operation
 * row, audit events, the business function). One COMMIT, one disk flush, for
 * the whole batch; then every caller gets its own outcome.
 *
 *   BEGIN; SET LOCAL app.tenant_id
 *     SAVEPOINT c;                  sale 1 …            ok
 *     RELEASE c; SAVEPOINT c;       sale 2 … 409        ROLLBACK TO c  (sale 2 alone is undone)
 *     RELEASE c; SAVEPOINT c;       sale 3 …            ok
 *   COMMIT                          → 201, 409, 201
 *
 * Decisions and why:
 * - No timer. A batch is flushed as soon as the lane is idle: the first sale
 *   after a quiet period runs alone, immediately (no added latency at low
 *   load); while a batch commits, new arrivals queue and form the next batch.
 *   The batch size therefore follows the load by itself.
 * - A lane queues at most MAX_QUEUE commands; beyond that it answers 503 at
 *   once (overload sheds load instead of growing every caller's latency).
 * - FIFO and a cap of MAX_BATCH (64) commands: an arrival waits for at most
 *   the running batch plus its own, and a batch never uses more than 64
 *   subtransaction ids (PostgreSQL caches 64 per backend; beyond that every
 *   other session's snapshots overflow to pg_subtrans and slow down).
 * - Receipt numbers stay gapless: the counter is advanced inside the sale's
 *   savepoint, so a refused sale's ROLLBACK TO gives its number back, and a
 *   failed batch rolls every number back.
 * - The same Idempotency-Key twice in one lane is never put in the same batch:
 *   the second waits for the next batch and then replays the first one's
 *   committed response (what it would get had it arrived a moment later).
 *   (Inside one batch the advisory lock is re-entrant for the session, so the
 *   lock alone would not separate them.) Across lanes and processes the
 *   advisory lock answers 409 idempotency_key_in_flight as usual.
 * - Deadlock / serialization failure anywhere in the batch (two lanes or two
 *   processes locking the same rows in different orders): the whole batch is
 *   rolled back and run again from the start (bounded, jittered backoff). A
 *   savepoint-level retry would keep the locks of the earlier sales and could
 *   walk into the same cycle again.
 * - Any other error in one command (including an unexpected one) rolls back
 *   to its savepoint: that caller gets its error, the rest of the batch goes on.
 * - A COMMIT that fails with a PostgreSQL error rolled everything back: a
 *   retryable one re-runs the batch, any other fails every caller. A COMMIT
 *   whose connection dies is ambiguous (it may have committed): nothing is
 *   re-run blindly; every caller gets 503 service_unavailable and retries with
 *   its Idempotency-Key, which replays the sale if it did commit.
 */

const MAX_BATCH = 64;
const MAX_ATTEMPTS = 5;
/** Beyond this many waiting commands a lane sheds load (503) instead of queueing without bound. */
const MAX_QUEUE = 5_000;

const batchSize = new prometheus.Histogram({
  name: 'storekeep_group_commit_batch_size',
  help: 'Commands committed together in one group-commit transaction',
  buckets: [1, 2, 4, 8, 16, 32, 64],
  registers: [registry],
});

interface Pending {
  input: CommandInput;
  spec: CommandSpec;
  fn: CommandFn;
  resolve: (outcome: CommandOutcome) => void;
  reject: (error: unknown) => void;
}

interface Lane {
  tenantId: string;
  queue: Pending[];
  running: boolean;
}

type Settled = { ok: true; outcome: CommandOutcome } | { ok: false; error: unknown };

class AmbiguousCommit extends Error {}

export interface GroupCommitOptions {
  maxBatch?: number;
  maxAttempts?: number;
}

export class GroupCommitter {
  private readonly lanes = new Map<string, Lane>();
  private readonly maxBatch: number;
  private readonly maxAttempts: number;

  constructor(
    private readonly db: Db,
    options: GroupCommitOptions = {},
  ) {
    this.maxBatch = Math.max(1, Math.min(options.maxBatch ?? MAX_BATCH, MAX_BATCH));
    this.maxAttempts = options.maxAttempts ?? MAX_ATTEMPTS;
  }

  /**
   * Runs a command in the next batch of its lane; resolves with that command's
   * own outcome once the batch has committed. `laneKey` names what the
   * command locks (for sales: the store), within the input's tenant.
   */
  run(laneKey: string, input: CommandInput, spec: CommandSpec, fn: CommandFn): Promise<CommandOutcome> {
    const key = `${input.tenantId}/${laneKey}`;
    let lane = this.lanes.get(key);
    if (lane && lane.queue.length >= MAX_QUEUE) {
      return Promise.reject(new AppError('service_unavailable', 'too many sales are waiting for this store; retry shortly with the same Idempotency-Key'));
    }
    if (!lane) {
      lane = { tenantId: input.tenantId, queue: [], running: false };
      this.lanes.set(key, lane);
    }
    const promise = new Promise<CommandOutcome>((resolve, reject) => lane.queue.push({ input, spec, fn, resolve, reject }));
    if (!lane.running) void this.drain(key, lane);
    return promise;
  }

  private async drain(key: string, lane: Lane): Promise<void> {
    lane.running = true;
    try {
      while (lane.queue.length > 0) {
        const batch = this.takeBatch(lane);
        await this.commitBatch(lane.tenantId, batch);
      }
    } finally {
      lane.running = false;
      if (lane.queue.length === 0) this.lanes.delete(key);
      else void this.drain(key, lane);
    }
  }

  /** Up to maxBatch commands in arrival order, never two with the same idempotency key. */
  private takeBatch(lane: Lane): Pending[] {
    const batch: Pending[] = [];
    const keys = new Set<string>();
    const rest: Pending[] = [];
    for (const item of lane.queue) {
      const idempotencyKey = item.input.idempotencyKey;
      if (batch.length >= this.maxBatch || (idempotencyKey !== undefined && keys.has(idempotencyKey))) {
        rest.push(item);
        continue;
      }
      if (idempotencyKey !== undefined) keys.add(idempotencyKey);
      batch.push(item);
    }
    lane.queue = rest;
    return batch;
  }

  private async commitBatch(tenantId: string, batch: Pending[]): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        const settled = await this.attempt(tenantId, batch);
        batchSize.observe(batch.length);
        settled.forEach((result, index) => {
          const item = batch[index]!;
          if (result.ok) item.resolve(result.outcome);
          else item.reject(result.error);
        });
        return;
      } catch (error) {
        if (attempt < this.maxAttempts && isRetryableTransactionError(error)) {
          commandRetries.inc();
          const ceilingMs = Math.min(200, 5 * 2 ** attempt);
          await new Promise((resolve) => setTimeout(resolve, Math.random() * ceilingMs));
          continue;
        }
        const failure =
          error instanceof AmbiguousCommit
            ? new AppError('service_unavailable', 'the database connection was lost while committing; retry with the same Idempotency-Key', {
                cause: error.cause,
              })
            : error;
        for (const item of batch) item.reject(failure);
        return;
      }
    }
  }

  /** One try of the batch: every command under its savepoint, one COMMIT. Throws if the batch as a whole failed. */
  private async attempt(tenantId: string, batch: Pending[]): Promise<Settled[]> {
    const trx = await this.db.startTransaction().execute();
    let committing = false;
    try {
      await setTenant(trx, tenantId);
      const settled: Settled[] = [];
      for (const [index, item] of batch.entries()) {
        // One round trip: release the previous command's savepoint (keeping its
        // work) and open this one's.
        await sql.raw(index === 0 ? 'SAVEPOINT command' : 'RELEASE SAVEPOINT command; SAVEPOINT command').execute(trx);
        try {
          settled.push({ ok: true, outcome: await executeCommand(trx, item.input, item.spec, item.fn) });
        } catch (error) {
          if (isRetryableTransactionError(error)) throw error;
          await sql.raw('ROLLBACK TO SAVEPOINT command').execute(trx);
          if (error instanceof CommandRefused) settled.push({ ok: true, outcome: { ...error.result, replayed: false, opId: null } });
          else settled.push({ ok: false, error });
        }
      }
      committing = true;
      await trx.commit().execute();
      return settled;
    } catch (error) {
      if (!trx.isCommitted && !trx.isRolledBack) await trx.rollback().execute().catch(() => undefined);
      // A COMMIT that got no answer from the server may or may not have happened.
      if (committing && pgCode(error) === undefined) throw new AmbiguousCommit('commit outcome unknown', { cause: error });
      throw error;
    }
  }
}

const committers = new WeakMap<Db, GroupCommitter>();

/** The process's group committer for a database (one per Db, created on first use). */
export function groupCommitterFor(db: Db): GroupCommitter {
  let committer = committers.get(db);
  if (!committer) {
    committer = new GroupCommitter(db);
    committers.set(db, committer);
  }
  return committer;
}
