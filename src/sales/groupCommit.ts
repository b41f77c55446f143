import { sql } from 'kysely';
import {
  AlreadyDone,
  claimIdempotencyKeys,
  CommandRefused,
  executeCommand,
  idempotencyKeyForms,
  idempotencyKeyInFlight,
  insertOperations,
  recordAlreadyDone,
  recordCommands,
  replayOf,
  storedResponseOf,
  storedResponses,
  type CommandFn,
  type CommandInput,
  type CommandOutcome,
  type CommandSpec,
  type RowsToLock,
} from '../core/command.js';
import type { Db, Tx } from '../core/db.js';
import { AppError } from '../core/errors.js';
import { DATABASE_RETRY_AFTER_SECONDS } from '../http/problem.js';
import { newId } from '../core/ids.js';
import { apiRegistry, commandRetries, prometheus } from '../core/metrics.js';
import { isRetryableTransactionError, LockNotWaitedFor, PG, pgCode } from '../core/pgErrors.js';
import { saleCommand } from './createSale.js';
import { SALE_RETURN_OP } from './returnSale.js';
import { SALE_VOID_OP } from './voidSale.js';
import type { SaleInput, SaleSource } from './sale.table.js';
import { planSale, saleEffects, validateSale, type PlannedSale, type SaleRequest, type SaleState } from './salePlan.js';
import {
  balanceKey,
  heldAccountRefusal,
  heldAccountsOf,
  heldRowRefusal,
  heldRowsOf,
  loadSaleStates,
  RowHeldElsewhere,
  rowNamedBy,
  rowWaitedFor,
  saleAccountKeys,
  writeSales,
  type LockWithoutWaiting,
} from './saleRows.js';

/**
 * Group commit for the sale path.
 *
 * Problem. One transaction per sale holds the hot SKU's balance row lock
 * across its COMMIT, i.e. across a WAL flush to disk. On this machine that
 * caps a hot SKU at ~1,000–1,500 sales/s however many tills are selling, and
 * every additional client only waits longer for the same lock.
 *
 * Overview. Commands are queued per *lane*: one per tenant (a transaction
 * acts for one tenant — row-level security — so a batch can hold any of the
 * tenant's commands, whatever their store). A lane runs at most one batch at
 * a time. A batch is ONE transaction and ONE COMMIT (one disk flush); then
 * every caller gets its own outcome. Per tenant rather than per store: with
 * many stores selling a little each, per-store batches were mostly batches
 * of one (a transaction, a dozen round trips and a disk flush per sale);
 * measured on 64 clients over 10 stores, one lane per tenant sold 1.8× as
 * many sales/s in-process and 2.1× over HTTP (bench/RESULTS.md).
 *
 * Sales (POST /v1/sales and synced sales without workshop pieces) are written
 * set-based: a run of consecutive sales in the batch is decided together and
 * written with a fixed number of statements whatever its length:
 *
 *   BEGIN; SET LOCAL app.tenant_id
 *     SAVEPOINT unit
 *     pg_try_advisory_xact_lock(each key)          → 409 for keys in flight
 *     SELECT stored responses of the keys           → replays / 422
 *     lock balances + receipt counters, read SKUs … (loadSaleStates: every store of the run)
 *       plan each sale in arrival order (salePlan.ts): refused ones (409
 *       insufficient_stock, 400, 403 …) write nothing; accepted ones take
 *       the stock and the next receipt number the sales of their store
 *       before them left
 *     INSERT operations                              (all accepted sales)
 *     UPDATE balances, counter; INSERT ledger, sales, lines   (writeSales)
 *     INSERT journal entries, postings; UPDATE accounts       (postJournals)
 *     INSERT events, idempotency records             (recordCommands)
 *   COMMIT                                           → 201, 409, 201 …
 *
 * Any other command (a void, a partial return, a sale of workshop pieces) is a batch of its
 * own, run under a SAVEPOINT through `executeCommand`, exactly the code path
 * of a lone command:
 *
 *     SAVEPOINT unit;  void …  ok                                    COMMIT
 *     SAVEPOINT unit;  sale with pieces … 409  ROLLBACK TO unit       COMMIT  (nothing written)
 *
 * Decisions and why:
 * - No timer. A batch is flushed as soon as the lane is idle: the first sale
 *   after a quiet period runs alone, immediately (no added latency at low
 *   load); while a batch commits, new arrivals queue and form the next batch.
 *   The batch size therefore follows the load by itself.
 * - A lane queues at most MAX_QUEUE commands, and the process at most
 *   MAX_WAITING over all its lanes; beyond either it answers 503 at once, with
 *   Retry-After (overload sheds load instead of growing every caller's latency
 *   and the process's memory). Per lane, so one tenant's flood cannot take
 *   every place; in all, so a thousand busy tenants cannot queue five million.
 * - FIFO and a cap of MAX_BATCH commands: an arrival waits for at most the
 *   running batch plus its own, and a batch never uses more than 64
 *   subtransaction ids (PostgreSQL caches 64 per backend; beyond that every
 *   other session's snapshots overflow to pg_subtrans and slow down) — a run
 *   of sales uses one.
 * - A batch is one run of sales of any stores, or — when another command
 *   comes first — that command alone (takeBatch). So every transaction takes
 *   its locks in the one order every writer uses (a run: balances in (store,
 *   SKU) order in one statement, then counters, then accounts; a void or a
 *   sale of pieces: its sale row or pieces, then balances, then accounts).
 *   Two units in one transaction break that order: a batch that locked one
 *   store's rows and then, after a void, another's could meet a batch of
 *   another API process doing the opposite; and a void's postings lock the
 *   store's accounts before the sales after it lock their balances, while
 *   another process's run holds such a balance and waits for those accounts
 *   (both measured: a deadlock, a batch redone after deadlock_timeout).
 * - Receipt numbers stay gapless: only accepted sales are given numbers, in
 *   order from the locked counter, and the counter is set to the last one in
 *   the same transaction; a refused sale takes none, a command rolled back to
 *   its savepoint gives its number back, a failed batch rolls every number back.
 * - A run of sales that fails with an unexpected error (anything but a
 *   refusal) is rolled back to its savepoint and its sales are run again one
 *   by one, each under its own savepoint: only the sale that fails gets the error.
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
 * - A row held from outside (a psql session, a stuck transaction) does not
 *   stall the lane. A batch's statements wait at most SALE_LOCK_WAIT_MS (2 s,
 *   its transaction's lock_timeout; 15 s elsewhere) for a lock. A run of
 *   sales whose wait timed out is rolled back (releasing what it held while
 *   waiting), the row it waited for — named by the error — is remembered for
 *   the tenant as held, and the run is run again at once: rows known held are
 *   locked with SKIP LOCKED, so the sales needing one still held are answered
 *   503 at once (RowHeldElsewhere, nothing of theirs written, no receipt
 *   number) and the others are written; a row found free is forgotten. A
 *   held row thus costs each process's lane one lock wait, not 15 s per
 *   batch and then per sale (measured before: 60–90 s before the tenant's
 *   other sales went through, heldRow.int.spec.ts). The lock order stays
 *   deadlock-free: rows locked without waiting come after the rows waited for
 *   of their kind. A journal account (locked last, by postJournals) found so
 *   is handled alike: the run is decided again once with the sales posting
 *   to it refused 503, and later runs whose sales post to it probe it without
 *   waiting, in a savepoint rolled back at once (no lock of the run's order;
 *   before, the run was re-run sale by sale, each waiting 2 s again:
 *   heldAccount.int.spec.ts). A void, a partial return or a sale naming
 *   pieces (a batch of its own, runOne) names the rows a held one may be
 *   among before it locks them (Command.beforeLocking: a void or a return
 *   its balances and the sale's accounts after locking the sale row and
 *   before its pieces; a sale naming pieces its balances and counter before
 *   its pieces, its accounts before it posts): those the tenant's runs
 *   found held are probed without waiting (heldRowsOf, a savepoint rolled
 *   back at once: no lock of its order), and one still held refuses it at
 *   once (RowHeldElsewhere, 503, nothing written; one found free is
 *   forgotten). A lock wait of such a command that times out on a row it
 *   named (a void or a return after 2 s; a sale naming pieces, which may
 *   wait for a piece behind a reservation's end, after 15 s, as any
 *   command) is remembered for the tenant as held, as a run's is: the
 *   lane's later voids, returns and runs of sales needing it do not wait
 *   for it again (before, each void or return waited 2 s, and the tenant's
 *   sales queued behind it: heldVoid.int.spec.ts). A row none of them names
 *   — the sale row, a piece — is waited for each time, as before.
 * - A COMMIT that fails with a PostgreSQL error rolled everything back: a
 *   retryable one re-runs the batch, any other fails every caller. A COMMIT
 *   whose connection dies is ambiguous (it may have committed): nothing is
 *   re-run blindly; every caller gets 503 service_unavailable and retries with
 *   its Idempotency-Key, which replays the sale if it did commit.
 */

const MAX_BATCH = 64;
const MAX_ATTEMPTS = 5;
/**
 * How long a statement of a batch waits for a row lock before PostgreSQL
 * gives up (lock_timeout, set for the batch's transaction; 15 s elsewhere):
 * the longest a row held from outside stalls the tenant's lane. Above
 * deadlock_timeout (1 s), so a deadlock is still found and the batch re-run
 * before this; far above what a batch of another process holds a row for
 * (milliseconds).
 */
export const SALE_LOCK_WAIT_MS = 2_000;
/** The operation type of a sale (POST /v1/sales, a synced sale). */
const SALE_CREATE_OP = 'sale.create';
/** The commands of the lane, besides a run of sales, whose batch waits SALE_LOCK_WAIT_MS for a lock (not a sale naming pieces). */
const LANE_LOCK_WAIT_TYPES: ReadonlySet<string> = new Set([SALE_VOID_OP, SALE_RETURN_OP]);
/** Rows found held per tenant and kind (balances, counters) that a process remembers; beyond, the oldest is forgotten. */
const MAX_HELD_ROWS = 1_000;
/** Held rows a run of sales finds one lock wait at a time before it locks every row without waiting (see runSales). */
const MAX_HELD_ROUNDS = 3;
/** Beyond this many waiting commands a lane sheds load (503) instead of queueing without bound. */
const MAX_QUEUE = 5_000;
/** Beyond this many waiting commands over all lanes the process sheds load (503). */
const MAX_WAITING = 20_000;

const heldRowRefusals = new prometheus.Counter({
  name: 'storekeep_sales_row_held_total',
  help: 'Sales answered 503 at once because a stock balance, receipt counter or journal account they need was held by another transaction',
  registers: [apiRegistry],
});

const batchSize = new prometheus.Histogram({
  name: 'storekeep_group_commit_batch_size',
  help: 'Commands committed together in one group-commit transaction',
  buckets: [1, 2, 4, 8, 16, 32, 64],
  registers: [apiRegistry],
});

/** A queued command: a sale written set-based with the sales around it (`sale`), or any command function (`fn`). */
type Work = { sale: SaleRequest; fn?: undefined } | { fn: CommandFn; sale?: undefined };

type Pending = Work & {
  input: CommandInput;
  spec: CommandSpec;
  resolve: (outcome: CommandOutcome) => void;
  reject: (error: unknown) => void;
};

interface Lane {
  tenantId: string;
  queue: Pending[];
  running: boolean;
}

type Settled = { ok: true; outcome: CommandOutcome } | { ok: false; error: unknown };

/**
 * Rows of a tenant another transaction was found holding (balances by
 * balanceKey, counters by lowercase store id, journal accounts by their
 * lowercase key), oldest first.
 */
interface HeldRows {
  balances: Set<string>;
  counters: Set<string>;
  accounts: Set<string>;
}

/** The rows a run of sales locks, and those of them found held (each kind keyed as in HeldRows). */
interface RunRows {
  rows: { balances: Set<string>; counters: Set<string> };
  held: { balances: Set<string>; counters: Set<string> };
}

class AmbiguousCommit extends Error {}

export interface GroupCommitOptions {
  maxBatch?: number;
  maxAttempts?: number;
  /** Waiting commands per lane (tenant) beyond which a command is refused with 503. */
  maxQueue?: number;
  /** Waiting commands over all lanes beyond which a command is refused with 503. */
  maxWaiting?: number;
  /** lock_timeout of a batch's transaction, in ms (default SALE_LOCK_WAIT_MS). */
  lockWaitMs?: number;
}

export class GroupCommitter {
  private readonly lanes = new Map<string, Lane>();
  private readonly maxBatch: number;
  private readonly maxAttempts: number;
  private readonly maxQueue: number;
  private readonly maxWaiting: number;
  private readonly lockWaitMs: number;
  /** Commands queued in all lanes, not yet taken into a batch. */
  private waiting = 0;
  /** Per tenant: rows found held by another transaction, locked or probed without waiting until found free (see runSales, runOne). */
  private readonly heldRows = new Map<string, HeldRows>();

  constructor(
    private readonly db: Db,
    options: GroupCommitOptions = {},
  ) {
    this.maxBatch = Math.max(1, Math.min(options.maxBatch ?? MAX_BATCH, MAX_BATCH));
    this.maxAttempts = options.maxAttempts ?? MAX_ATTEMPTS;
    this.maxQueue = options.maxQueue ?? MAX_QUEUE;
    this.maxWaiting = options.maxWaiting ?? MAX_WAITING;
    this.lockWaitMs = options.lockWaitMs ?? SALE_LOCK_WAIT_MS;
  }

  /**
   * Runs a command in the next batch of its tenant's lane; resolves with that
   * command's own outcome once the batch has committed.
   */
  run(input: CommandInput, spec: CommandSpec, fn: CommandFn): Promise<CommandOutcome> {
    return this.enqueue({ input, spec, fn });
  }

  /**
   * A sale (POST /v1/sales, or one synced sale): in its tenant's lane,
   * planned and written set-based with the sales around it (of any store).
   * A sale naming workshop pieces runs as its own command (recordSale: its
   * pieces are locked first).
   */
  sale(input: CommandInput, body: SaleInput, source: SaleSource): Promise<CommandOutcome> {
    // A sale's key is kept as long as the sale: a till that never got the
    // answer may send it again days later, from its offline queue.
    const spec: CommandSpec = { type: SALE_CREATE_OP, storeId: body.store_id, ttlHours: 'forever' };
    if (body.items.some((item) => item.piece_ids !== undefined)) return this.run(input, spec, saleCommand(body, source));
    return this.enqueue({ input, spec, sale: { input, sale: body, source } });
  }

  private enqueue(work: Omit<Pending, 'resolve' | 'reject'>): Promise<CommandOutcome> {
    const { input } = work;
    const key = input.tenantId;
    let lane = this.lanes.get(key);
    if ((lane && lane.queue.length >= this.maxQueue) || this.waiting >= this.maxWaiting) {
      const whose = lane && lane.queue.length >= this.maxQueue ? 'of this tenant ' : '';
      return Promise.reject(
        new AppError('service_unavailable', `too many commands ${whose}are waiting to be written; retry shortly with the same Idempotency-Key`, { retryAfterSeconds: 1 }),
      );
    }
    if (!lane) {
      lane = { tenantId: input.tenantId, queue: [], running: false };
      this.lanes.set(key, lane);
    }
    const promise = new Promise<CommandOutcome>((resolve, reject) => lane.queue.push({ ...work, resolve, reject } as Pending));
    this.waiting++;
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

  /**
   * The next batch, in arrival order, never two commands with the same
   * idempotency key, at most maxBatch: either one run of sales of any stores
   * (locked together in one ordered statement), or — when another command
   * (a void, a sale naming pieces) comes first — that command alone. So a
   * transaction takes its locks in the order every writer takes them: two
   * units in one transaction (a void, then the sales after it) lock rows
   * after rows the first unit locked later in that order (its accounts
   * before their balances), which another API process holding them in the
   * right order deadlocks with.
   */
  private takeBatch(lane: Lane): Pending[] {
    const batch: Pending[] = [];
    const keys = new Set<string>();
    const rest: Pending[] = [];
    const first = lane.queue[0];
    // What may join the first command: a sale joins a run of sales; any other command runs alone.
    const joins = (item: Pending) => first?.sale !== undefined && item.sale !== undefined;
    let closed = false;
    for (const item of lane.queue) {
      // A key's former forms too (idempotencyKeyForms): one transaction takes a lock it holds again at once.
      const forms = idempotencyKeyForms(item.input);
      if (!closed && batch.length > 0 && (batch.length >= this.maxBatch || !joins(item))) closed = true;
      if (closed || forms.some((form) => keys.has(form))) {
        rest.push(item);
        continue;
      }
      for (const form of forms) keys.add(form);
      batch.push(item);
    }
    lane.queue = rest;
    this.waiting -= batch.length;
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
                // when, as for every 503 of a database that is away (it had none: the till was told to retry, not when)
                retryAfterSeconds: DATABASE_RETRY_AFTER_SECONDS,
              })
            : error;
        for (const item of batch) item.reject(failure);
        return;
      }
    }
  }

  /** One try of the batch: each run of sales and each other command under its savepoint, one COMMIT. Throws if the batch as a whole failed. */
  private async attempt(tenantId: string, batch: Pending[]): Promise<Settled[]> {
    const trx = await this.db.startTransaction().execute();
    let committing = false;
    try {
      // The tenant (row-level security) and, for sales, voids and partial returns, the lane's lock wait, in one round
      // trip (setTenant's statement). A sale naming workshop pieces waits as long as any command (the session's
      // lock_timeout): it may wait for a piece behind a reservation's end. A return waited so too, and a row held
      // from outside then stalled every sale of the tenant behind it for 15 s (heldRow.int.spec.ts).
      const lockWait = batch[0]!.sale !== undefined || LANE_LOCK_WAIT_TYPES.has(batch[0]!.spec.type) ? sql`, set_config('lock_timeout', ${String(this.lockWaitMs)}, true)` : sql``;
      await sql`SELECT set_config('app.tenant_id', ${tenantId}, true)${lockWait}`.execute(trx);
      const units = new Savepoints(trx);
      const settled: Settled[] = [];
      for (let start = 0; start < batch.length; ) {
        let end = start + 1;
        if (batch[start]!.sale) while (end < batch.length && batch[end]!.sale) end++;
        const unit = batch.slice(start, end);
        settled.push(...(unit[0]!.sale ? await this.runSales(trx, tenantId, unit, units) : [await this.runOne(trx, tenantId, unit[0]!, units)]));
        start = end;
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

  /**
   * A run of sales, set-based, under one savepoint. If it fails unexpectedly
   * (not a refusal: those are outcomes), it is rolled back and its sales are
   * run again one by one, so only the failing sale gets the error.
   *
   * A row held by another transaction (a psql session, a stuck transaction)
   * must not stall the lane. A lock wait gives up after the batch's
   * lock_timeout (SALE_LOCK_WAIT_MS); the run is rolled back — releasing the
   * rows it held meanwhile — and the row it waited for, named by the error
   * (rowWaitedFor), is remembered for the tenant as held; the run is then run
   * again at once. Rows known held are locked without waiting (SKIP LOCKED):
   * the sales needing one still held are answered 503 (RowHeldElsewhere),
   * nothing of theirs written, and the others are written; a row found free
   * is forgotten. So a held row costs the lane one lock wait, not one per
   * batch or per sale. When the error names no row (a wait for its place in
   * line behind another waiter for the row has no context) — or after
   * MAX_HELD_ROUNDS rows found so in one run —, the run is run again with
   * every row locked without waiting (`all`): what is held at that moment is
   * taken as held.
   */
  private async runSales(
    trx: Tx,
    tenantId: string,
    sales: Pending[],
    units: Savepoints,
    mode: 'wait' | 'all' = 'wait',
    rounds = 0,
    heldAccounts: ReadonlySet<string> = new Set(),
  ): Promise<Settled[]> {
    await units.open();
    try {
      const accounts = await this.accountsStillHeld(trx, tenantId, sales, heldAccounts);
      const { settled, rows } = await writeSaleRun(trx, tenantId, sales, mode === 'all' ? 'all' : this.knownHeld(tenantId), accounts);
      if (rows) this.noteHeld(tenantId, rows);
      return settled;
    } catch (error) {
      if (isRetryableTransactionError(error)) throw error;
      await units.rollback();
      if (pgCode(error) === PG.LOCK_NOT_AVAILABLE) {
        const waitedFor = await this.rowWaitedFor(trx, tenantId, error, sales, units);
        // An account (locked late, by postJournals, however the run locked its balances and counters): the run
        // once more, the sales posting to it refused (heldAccountRefusal) — not its sales one by one, each
        // waiting the lock wait again. Remembered for the tenant: later runs find it held or free without
        // waiting (accountsStillHeld).
        if (waitedFor !== null && waitedFor !== 'other' && waitedFor.kind === 'accounts' && !heldAccounts.has(waitedFor.key) && rounds < MAX_HELD_ROUNDS) {
          this.remember(tenantId, 'accounts', waitedFor.key);
          return await this.runSales(trx, tenantId, sales, units, mode, rounds + 1, new Set([...heldAccounts, waitedFor.key]));
        }
        if (mode === 'wait') {
          if (waitedFor === null || rounds >= MAX_HELD_ROUNDS) return await this.runSales(trx, tenantId, sales, units, 'all', 0, heldAccounts);
          if (waitedFor !== 'other' && waitedFor.kind !== 'accounts' && !this.heldRows.get(tenantId)?.[waitedFor.kind].has(waitedFor.key)) {
            this.remember(tenantId, waitedFor.kind, waitedFor.key);
            return await this.runSales(trx, tenantId, sales, units, 'wait', rounds + 1, heldAccounts);
          }
        }
      }
      if (sales.length === 1) return [{ ok: false, error }];
      const settled: Settled[] = [];
      for (const sale of sales) settled.push(...(await this.runSales(trx, tenantId, [sale], units, mode, 0, heldAccounts)));
      return settled;
    }
  }

  /**
   * One command (a void, a partial return, a sale naming pieces) under its
   * own savepoint, through executeCommand (the path of a lone command).
   *
   * A row held from outside must not cost each such command the lock wait
   * again: before it locks rows a held one may be among, the command names
   * them (Command.beforeLocking: stock balances, counters, journal accounts);
   * those of them the tenant's runs found held are probed without waiting
   * (heldRowsOf: a savepoint of its own, given back at once, so no lock of
   * the command's order) and, one still held, the command is refused at once
   * (RowHeldElsewhere, 503, nothing written); one found free is forgotten.
   * A lock wait of the command that times out on a row it named is
   * remembered for the tenant as held, as a run of sales remembers one: the
   * lane's later commands and runs of sales needing it do not wait for it.
   */
  private async runOne(trx: Tx, tenantId: string, item: Pending, units: Savepoints): Promise<Settled> {
    await units.open();
    const named: HeldRows = { balances: new Set(), counters: new Set(), accounts: new Set() };
    const fn: CommandFn = (cmd) => {
      cmd.heldRowCheck = (rows) => this.refuseHeld(trx, tenantId, rows, named, item.spec.type === SALE_CREATE_OP);
      return item.fn!(cmd);
    };
    try {
      return { ok: true, outcome: await executeCommand(trx, item.input, item.spec, fn) };
    } catch (error) {
      if (isRetryableTransactionError(error)) throw error;
      await units.rollback();
      if (error instanceof CommandRefused) return { ok: true, outcome: { ...error.result, replayed: false, opId: null } };
      if (error instanceof AlreadyDone) {
        // Its key is kept in the batch's transaction; a failure there is this command's alone.
        try {
          return { ok: true, outcome: await recordAlreadyDone(trx, item.input, item.spec, error) };
        } catch (recordError) {
          if (isRetryableTransactionError(recordError)) throw recordError;
          await units.rollback();
          return { ok: false, error: recordError };
        }
      }
      if (pgCode(error) === PG.LOCK_NOT_AVAILABLE && !(error instanceof LockNotWaitedFor)) await this.rememberWaitedFor(trx, tenantId, error, named, units);
      return { ok: false, error };
    }
  }

  /**
   * Command.beforeLocking in the lane: notes the rows a command named, and
   * refuses it (RowHeldElsewhere; a sale naming pieces counted as the sales
   * refused so are) if one of them the tenant's runs found held still is —
   * found so without waiting. Nothing remembered of them (the usual case): no
   * statement.
   */
  private async refuseHeld(trx: Tx, tenantId: string, rows: RowsToLock, named: HeldRows, isSale: boolean): Promise<void> {
    const kinds = ['balances', 'counters', 'accounts'] as const;
    for (const kind of kinds) for (const key of rows[kind] ?? []) named[kind].add(key);
    const known = this.heldRows.get(tenantId);
    if (!known) return;
    const toProbe = { balances: [] as string[], counters: [] as string[], accounts: [] as string[] };
    for (const kind of kinds) toProbe[kind] = [...new Set(rows[kind] ?? [])].filter((key) => known[kind].has(key));
    if (kinds.every((kind) => toProbe[kind].length === 0)) return;
    const held = await heldRowsOf(trx, tenantId, toProbe);
    for (const kind of kinds) {
      for (const key of toProbe[kind]) {
        if (held[kind].has(key)) this.remember(tenantId, kind, key);
        else this.heldRows.get(tenantId)?.[kind].delete(key);
      }
    }
    this.forgetIfNone(tenantId);
    const names = [
      ...[...held.balances].map((key) => `the stock balance ${key}`),
      ...[...held.counters].map((key) => `the receipt counter of store ${key}`),
      ...[...held.accounts].map((key) => `the account ${key}`),
    ];
    if (names.length === 0) return;
    if (isSale) heldRowRefusals.inc();
    throw new RowHeldElsewhere(`${names.join(' and ')} held by another transaction: nothing was written`);
  }

  /**
   * After a command's lock wait timed out (its unit rolled back): the row it
   * waited for, if one it named (Command.beforeLocking), is remembered for
   * the tenant as held. A lookup that fails is rolled back, and nothing is
   * remembered.
   */
  private async rememberWaitedFor(trx: Tx, tenantId: string, error: unknown, named: HeldRows, units: Savepoints): Promise<void> {
    if (named.balances.size + named.counters.size + named.accounts.size === 0) return;
    try {
      const row = await rowNamedBy(trx, tenantId, error);
      if (row !== null && row !== 'other' && named[row.kind].has(row.key)) this.remember(tenantId, row.kind, row.key);
    } catch (lookupError) {
      if (isRetryableTransactionError(lookupError)) throw lookupError;
      await units.rollback();
    }
  }

  /**
   * The accounts a run's sales are refused for (heldAccountRefusal): those
   * this run found held (`known`) and, of the accounts the tenant's runs
   * found held before that the sales post to, those still held — found so
   * without waiting, by a lock taken in a savepoint of its own and given back
   * at once (heldAccountsOf): taken after nothing and kept during no wait,
   * it leaves the lock order as it is. One found free is forgotten. Nothing
   * remembered (the usual case): no statement.
   */
  private async accountsStillHeld(trx: Tx, tenantId: string, sales: Pending[], known: ReadonlySet<string>): Promise<ReadonlySet<string>> {
    const remembered = this.heldRows.get(tenantId)?.accounts;
    if (!remembered || remembered.size === 0) return known;
    const posted = new Set(sales.flatMap((item) => saleAccountKeys(item.sale!.sale)));
    const toProbe = [...remembered].filter((key) => posted.has(key) && !known.has(key));
    if (toProbe.length === 0) return known;
    const held = await heldAccountsOf(trx, tenantId, toProbe);
    for (const key of toProbe) {
      if (held.has(key)) this.remember(tenantId, 'accounts', key);
      else remembered.delete(key);
    }
    this.forgetIfNone(tenantId);
    return new Set([...known, ...held]);
  }

  /** rowWaitedFor, in the unit's savepoint (rolled back again if the lookup fails: then no row is known). */
  private async rowWaitedFor(trx: Tx, tenantId: string, error: unknown, sales: Pending[], units: Savepoints): ReturnType<typeof rowWaitedFor> {
    try {
      return await rowWaitedFor(trx, tenantId, error, sales.map((item) => item.sale!.sale));
    } catch (lookupError) {
      if (isRetryableTransactionError(lookupError)) throw lookupError;
      await units.rollback();
      return null;
    }
  }

  /** The rows of a tenant known held, to lock without waiting. */
  private knownHeld(tenantId: string): LockWithoutWaiting {
    const held = this.heldRows.get(tenantId);
    return { balances: new Set(held?.balances), counters: new Set(held?.counters) };
  }

  /** Remembers a row of a tenant as held (the most recent last; beyond MAX_HELD_ROWS of its kind, the oldest is forgotten). */
  private remember(tenantId: string, kind: keyof HeldRows, key: string): void {
    let known = this.heldRows.get(tenantId);
    if (!known) this.heldRows.set(tenantId, (known = { balances: new Set(), counters: new Set(), accounts: new Set() }));
    const rows = known[kind];
    rows.delete(key);
    rows.add(key);
    for (const row of rows) {
      if (rows.size <= MAX_HELD_ROWS) break;
      rows.delete(row);
    }
  }

  /** Remembers the rows of a run found held and forgets those found free. */
  private noteHeld(tenantId: string, { rows, held }: RunRows): void {
    for (const kind of ['balances', 'counters'] as const) {
      for (const row of rows[kind]) {
        if (held[kind].has(row)) this.remember(tenantId, kind, row);
        else this.heldRows.get(tenantId)?.[kind].delete(row);
      }
    }
    this.forgetIfNone(tenantId);
  }

  private forgetIfNone(tenantId: string): void {
    const known = this.heldRows.get(tenantId);
    if (known && known.balances.size === 0 && known.counters.size === 0 && known.accounts.size === 0) this.heldRows.delete(tenantId);
  }
}

/** The savepoint of the current unit of a batch: opening the next one releases (keeps) the previous one's work. */
class Savepoints {
  private isOpen = false;
  constructor(private readonly trx: Tx) {}

  async open(): Promise<void> {
    // One round trip: release the previous unit's savepoint and open this one's.
    await sql.raw(this.isOpen ? 'RELEASE SAVEPOINT unit; SAVEPOINT unit' : 'SAVEPOINT unit').execute(this.trx);
    this.isOpen = true;
  }

  async rollback(): Promise<void> {
    await sql.raw('ROLLBACK TO SAVEPOINT unit').execute(this.trx);
  }
}

/**
 * Sales of one store, decided together and written with a fixed number of
 * statements (see the overview above). Refusals, replays and keys in flight
 * are outcomes; only an unexpected failure throws.
 */
async function writeSaleRun(
  trx: Tx,
  tenantId: string,
  items: Pending[],
  withoutWaiting: LockWithoutWaiting,
  heldAccounts: ReadonlySet<string>,
): Promise<{ settled: Settled[]; rows: RunRows | null }> {
  const settled: Array<Settled | undefined> = items.map(() => undefined);
  // Each key with its former forms (idempotencyKeyForms): all locked, the key's own record first.
  const keyed = items.flatMap((item, index) => (item.input.idempotencyKey === undefined ? [] : [{ index, forms: idempotencyKeyForms(item.input) }]));
  const forms = keyed.flatMap((entry) => entry.forms);
  const claimed = await claimIdempotencyKeys(trx, tenantId, forms);
  const free = new Set(forms.filter((_, position) => claimed[position]));
  for (const { index, forms: itsForms } of keyed) {
    if (!itsForms.every((form) => free.has(form))) settled[index] = { ok: false, error: idempotencyKeyInFlight() };
  }
  // Former forms answer only where kept before keys were read as text (storedResponses).
  const stored = await storedResponses(trx, tenantId, [...free], keyed.flatMap((entry) => entry.forms.slice(1)));
  for (const { index, forms: itsForms } of keyed) {
    const response = storedResponseOf(stored, itsForms);
    if (response === undefined || settled[index] !== undefined) continue;
    try {
      settled[index] = { ok: true, outcome: replayOf(items[index]!.input, response) };
    } catch (error) {
      settled[index] = { ok: false, error };
    }
  }

  const open = items.flatMap((item, index) => (settled[index] === undefined ? [{ index, request: item.sale! }] : []));
  let rows: RunRows | null = null;
  if (open.length > 0) {
    const states = await loadSaleStates(trx, tenantId, open.map(({ request }) => request.sale), { lock: true, withoutWaiting });
    rows = runRowsOf(open.map(({ request }) => request.sale), states);
    const locked = new Map([...states].map(([storeId, state]) => [storeId, state.lastReceipt]));
    const accepted: Array<{ index: number; plan: PlannedSale }> = [];
    for (const { index, request } of open) {
      const state = states.get(request.sale.store_id)!;
      const invalid = validateSale(state, request) ?? heldRowRefusal(state, request.sale) ?? heldAccountRefusal(state, request.sale, heldAccounts);
      if (invalid instanceof RowHeldElsewhere) heldRowRefusals.inc();
      const planned = invalid ? ({ ok: false, error: invalid } as const) : planSale(state, request, newId());
      if (planned.ok) accepted.push({ index, plan: planned.plan });
      else settled[index] = { ok: false, error: planned.error };
    }
    if (accepted.length > 0) {
      const commands = accepted.map(({ index, plan }) => ({ input: items[index]!.input, spec: items[index]!.spec, opId: plan.opId, storeId: plan.sale.store_id }));
      await insertOperations(trx, tenantId, commands);
      const ledgerIds = await writeSales(trx, tenantId, accepted.map(({ plan }) => plan), locked);
      const results = accepted.map(({ plan }) => ({ status: 201, body: plan.sale }));
      await recordCommands(
        trx,
        tenantId,
        accepted.map(({ plan }, position) => ({ ...commands[position]!, ...saleEffects(plan, ledgerIds[position]!), result: results[position]! })),
      );
      accepted.forEach(({ index, plan }, position) => {
        settled[index] = { ok: true, outcome: { ...results[position]!, replayed: false, opId: plan.opId } };
      });
    }
  }
  return { settled: settled.map((result) => result!), rows };
}

/** The rows sales lock (balances by balanceKey, counters by lowercase store id) and those their states say are held. */
function runRowsOf(sales: readonly SaleInput[], states: ReadonlyMap<string, SaleState>): RunRows {
  const rows = { balances: new Set<string>(), counters: new Set<string>() };
  const held = { balances: new Set<string>(), counters: new Set<string>() };
  for (const sale of sales) {
    rows.counters.add(sale.store_id.toLowerCase());
    for (const item of sale.items) rows.balances.add(balanceKey(sale.store_id, item.sku_id));
  }
  for (const [storeId, state] of states) {
    if (state.held.counter) held.counters.add(storeId.toLowerCase());
    for (const skuId of state.held.skus) held.balances.add(balanceKey(storeId, skuId));
  }
  return { rows, held };
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
