import type pg from 'pg';
import { createLogger } from '../../src/core/logger.js';
import { allChecks } from '../../src/integrity/registry.js';
import type { CheckRunLog } from '../../src/integrity/runChecks.js';

export interface Finding {
  check: string;
  subject: string;
  detail: unknown;
}

/** For tests that run the checks themselves: a check that cannot run logs what failed on the test's stderr. */
export const testCheckLog: CheckRunLog = { logger: createLogger('error', 'storekeep-test', process.stderr), correlationId: 'test-integrity-run' };

/** Runs every registered integrity check for one tenant (owner pool) and returns the findings. */
export async function integrityFindings(admin: pg.Pool, tenantId: string | null, names?: string[]): Promise<Finding[]> {
  const findings: Finding[] = [];
  for (const check of allChecks) {
    if (names && !names.includes(check.name)) continue;
    const { rows } = await admin.query<{ subject: string; detail: unknown }>(check.sql, [tenantId]);
    for (const row of rows) findings.push({ check: check.name, subject: row.subject, detail: row.detail });
  }
  return findings;
}

/** The tenant's findings that were not there before `corrupt` ran (told apart by check and subject). */
export async function findingsAfter(admin: pg.Pool, tenantId: string, corrupt: () => Promise<void>): Promise<Finding[]> {
  const before = new Set((await integrityFindings(admin, tenantId)).map((finding) => `${finding.check}/${finding.subject}`));
  await corrupt();
  return (await integrityFindings(admin, tenantId)).filter((finding) => !before.has(`${finding.check}/${finding.subject}`));
}

/** A statement (for withTriggersOff) moving an account's balance and totals by `amount` (debit positive), as a posting of it would. */
export function accountMoved(tenantId: string, key: string, amount: number): [string, unknown[]] {
  return [
    `UPDATE accounts SET balance = balance + $3, debit_total = debit_total + greatest($3, 0), credit_total = credit_total + greatest(-$3, 0) WHERE tenant_id = $1 AND key = $2`,
    [tenantId, key, amount],
  ];
}

/** Counts the statements a pool's clients run (a pool/query hook), e.g. to prove "one query, not one per row". */
export function countQueries(pool: pg.Pool): { texts: string[]; reset(): void } {
  const texts: string[] = [];
  const wrapped = new WeakSet<object>();
  pool.on('acquire', (client) => {
    if (wrapped.has(client)) return;
    wrapped.add(client);
    const original = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
      const first = args[0];
      texts.push(typeof first === 'string' ? first : String((first as { text?: string })?.text ?? ''));
      return original(...args);
    };
  });
  return {
    texts,
    reset() {
      texts.length = 0;
    },
  };
}
