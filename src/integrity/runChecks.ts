import { CompiledQuery } from 'kysely';
import type pg from 'pg';
import { inTenantTransaction } from '../core/command.js';
import { createPool, DATABASE_ANSWER_TIMEOUT_MS, STATEMENT_TIMEOUT_MS, type Db } from '../core/db.js';
import { SYSTEM_TENANT_ID } from '../core/auth.js';
import { isConnectionFailure } from '../core/pgErrors.js';
import type { IntegrityCheck } from './check.js';
import { integrityFindings, integrityLastRun } from './metrics.js';

export interface Finding {
  check: string;
  severity: 'warning' | 'critical';
  subject: string;
  detail: unknown;
  tenant_id: string;
}

export interface CheckRun {
  checked_at: Date;
  checks: string[];
  findings: Finding[];
}

/** Settings some checks read (`current_setting('storekeep.…')`), set per transaction. */
export interface CheckSettings {
  /** An order in pending/submitting longer than this is reported as stuck. */
  ordersStuckSeconds: number;
  /**
   * statement_timeout of each check's read-only transaction, in ms (unset:
   * the session's — 30 s on the service's pools). The nightly run sets
   * CHECK_STATEMENT_TIMEOUT_MS.
   */
  statementTimeoutMs?: number;
}

/**
 * How long one check may run in the nightly run (ms). The session limit of
 * the service's pools (30 s) is there so that a hung statement cannot hold
 * stock rows locked; a check holds no row lock (its transaction is read-only)
 * and reads a shop's whole history: at 1,122,000 sales the slowest took
 * 12–23 s and, under load, went past 30 s (bench/RESULTS.md, "Which
 * integrity checks grow with a shop's history") — every night a
 * `check_failed` for good as the history grew. Ten minutes, at night.
 */
export const CHECK_STATEMENT_TIMEOUT_MS = 10 * 60_000;

/**
 * The owner pool of one connection an integrity run as the owner uses (the
 * worker's nightly run, `storekeep check`): its checks may run
 * `statementTimeoutMs` each, so its connection waits that long for an answer
 * plus the margin the service's pools give their statement_timeout — and no
 * longer. A database that stops answering (a network that drops packets, a
 * frozen host) fails the run with DatabaseSilent instead of hanging it; the
 * pool also bounds the connect (10 s) and probes idle sockets, like the
 * service's pools.
 */
export function createCheckPool(connectionString: string, options: { statementTimeoutMs: number; applicationName: string; onError?: (error: Error) => void }): pg.Pool {
  return createPool(connectionString, {
    max: 1,
    asAppRole: false,
    applicationName: options.applicationName,
    answerTimeoutMs: options.statementTimeoutMs + DATABASE_ANSWER_TIMEOUT_MS - STATEMENT_TIMEOUT_MS,
    ...(options.onError ? { onError: options.onError } : {}),
  });
}

interface Row {
  tenant_id: string;
  subject: string;
  detail: unknown;
}

/** A failing check's finding says only this (and the correlation id); what went wrong is logged. */
export const CHECK_COULD_NOT_RUN = 'the check could not run; its cause is in the server log under correlation_id';

/**
 * Where a run tells what made a check fail: `logger` must put `correlationId`
 * on its lines — a request's logger, or any logger inside the request's or
 * job's scope (the mixin adds it, and the tenant of a request).
 */
export interface CheckRunLog {
  logger: { error(fields: object, message: string): void };
  correlationId: string;
}

/**
 * A check that cannot run (a privilege or table gone, a bug in its SQL) must
 * not be silent: it is reported as a finding of its own. What the database
 * said goes to the log only: it may name tables, columns and SQL, which no
 * answer shows (API.md) — not a tenant's admins on GET /v1/integrity, nor the
 * review items or the CLI report the owner runs fill. The finding names the
 * correlation id under which the log has it.
 */
function failed(check: IntegrityCheck, tenantId: string, error: unknown, log: CheckRunLog): Finding {
  log.logger.error({ err: error, check: check.name }, 'integrity check could not run');
  return {
    check: check.name,
    severity: 'critical',
    subject: 'check_failed',
    detail: { error: CHECK_COULD_NOT_RUN, correlation_id: log.correlationId },
    tenant_id: tenantId,
  };
}

/**
 * Appends a check's rows as findings. One push per row: `push(...rows)` passes
 * every row as an argument, and past ~120,000 rows (a whole table corrupted)
 * that overflows the call stack — the check was then reported as one
 * `check_failed` in the system tenant instead of its findings.
 */
function addFindings(findings: Finding[], check: IntegrityCheck, rows: Row[]): void {
  for (const row of rows) findings.push({ check: check.name, severity: check.severity, subject: String(row.subject), detail: row.detail, tenant_id: row.tenant_id });
}

/**
 * Every check over every tenant, as the owner (row-level security does not
 * apply to it): `storekeep check` and the nightly job. Each check is one
 * statement in its own read-only transaction, so it sees one consistent
 * snapshot and a failing check cannot hide the others.
 */
export async function runChecksAsOwner(pool: pg.Pool, checks: IntegrityCheck[], settings: CheckSettings, log: CheckRunLog): Promise<CheckRun> {
  const findings: Finding[] = [];
  const client = await pool.connect();
  // A connection lost mid-run is reported by the query that was running (and
  // thrown below); its socket's own 'error' event, unheard, crashed the process.
  const ignoreSocketError = () => undefined;
  client.on('error', ignoreSocketError);
  try {
    for (const check of checks) {
      try {
        await client.query('BEGIN READ ONLY');
        await client.query(`SELECT set_config('storekeep.orders_stuck_seconds', $1, true), set_config('statement_timeout', coalesce($2, current_setting('statement_timeout')), true)`, [
          String(settings.ordersStuckSeconds),
          settings.statementTimeoutMs === undefined ? null : String(settings.statementTimeoutMs),
        ]);
        const result = await client.query<Row>(check.sql, [null]);
        await client.query('COMMIT');
        addFindings(findings, check, result.rows);
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined);
        // The database lost (not one check's failure): the run cannot check,
        // and every later check would fail too — a check_failed finding each
        // ("the data is wrong", exit 1) where the truth is "we do not know".
        if (isConnectionFailure(error)) throw error;
        findings.push(failed(check, SYSTEM_TENANT_ID, error, log));
      }
    }
  } finally {
    client.off('error', ignoreSocketError);
    client.release();
  }
  const perCheck = new Map<string, number>();
  for (const finding of findings) perCheck.set(finding.check, (perCheck.get(finding.check) ?? 0) + 1);
  for (const check of checks) integrityFindings.set({ check: check.name }, perCheck.get(check.name) ?? 0);
  integrityLastRun.setToCurrentTime();
  return { checked_at: new Date(), checks: checks.map((check) => check.name), findings };
}

/** Every check over one tenant, as the app role under row-level security (`GET /v1/integrity`). */
export async function runChecksForTenant(db: Db, tenantId: string, checks: IntegrityCheck[], settings: CheckSettings, log: CheckRunLog): Promise<CheckRun> {
  const findings: Finding[] = [];
  for (const check of checks) {
    try {
      const rows = await inTenantTransaction(db, tenantId, async (tx) => {
        await tx.executeQuery(CompiledQuery.raw(`SELECT set_config('storekeep.orders_stuck_seconds', $1, true)`, [String(settings.ordersStuckSeconds)]));
        return (await tx.executeQuery<Row>(CompiledQuery.raw(check.sql, [tenantId]))).rows;
      });
      addFindings(findings, check, rows);
    } catch (error) {
      if (isConnectionFailure(error)) throw error; // as in runChecksAsOwner: 503, not findings
      findings.push(failed(check, tenantId, error, log));
    }
  }
  return { checked_at: new Date(), checks: checks.map((check) => check.name), findings };
}

/** Stuck-order threshold of the checker: later than the worker's own recovery, so a finding means recovery failed. */
export function checkSettingsOf(config: { ordersStuckAfterSeconds: number }): CheckSettings {
  return { ordersStuckSeconds: Math.max(config.ordersStuckAfterSeconds * 2, config.ordersStuckAfterSeconds + 60) };
}
