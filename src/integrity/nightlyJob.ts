import { fingerprintRequest, runCommand } from '../core/command.js';
import { newId } from '../core/ids.js';
import { openReviewItems } from '../core/review.js';
import { defineTask } from '../jobs/task.js';
import { allChecks } from './registry.js';
import { CHECK_STATEMENT_TIMEOUT_MS, checkSettingsOf, runChecksAsOwner, type Finding } from './runChecks.js';
import { forEachTenant } from '../jobs/eachTenant.js';

/** Review items opened per statement. */
const REVIEW_BATCH = 1000;

function storeOf(finding: Finding): string | undefined {
  const detail = finding.detail as { store_id?: unknown } | null;
  return typeof detail?.store_id === 'string' ? detail.store_id : undefined;
}

/**
 * Runs every check over every tenant and opens one review item per finding
 * in the finding's tenant (`integrity_finding`, deduplicated per check and
 * subject while open). It never fixes or deletes anything: money and stock
 * records are corrected by people, through commands, after review.
 */
export const integrityNightly = defineTask<Record<string, unknown>>({
  name: 'integrity.run',
  maxAttempts: 3,
  async handle(_data, ctx) {
    // On the worker's pool for checks, whose connection waits for an answer as long as a check may run (CHECK_STATEMENT_TIMEOUT_MS).
    const settings = { ...checkSettingsOf(ctx.config), statementTimeoutMs: CHECK_STATEMENT_TIMEOUT_MS };
    const run = await runChecksAsOwner(ctx.checkPool, allChecks, settings, { logger: ctx.logger, correlationId: ctx.correlationId });
    const byTenant = new Map<string, Finding[]>();
    // Appended in place: copying the tenant's list for every finding was quadratic in findings.
    for (const finding of run.findings) {
      const list = byTenant.get(finding.tenant_id);
      if (list) list.push(finding);
      else byTenant.set(finding.tenant_id, [finding]);
    }
    await forEachTenant([...byTenant], ([tenantId]) => tenantId, async ([tenantId, findings]) => {
      await runCommand(
        ctx.db,
        {
          tenantId,
          principal: ctx.principal,
          correlationId: ctx.correlationId,
          fingerprint: fingerprintRequest('JOB', 'integrity.run', { checked_at: run.checked_at }),
          payload: { findings: findings.length },
        },
        { type: 'integrity.review' },
        async (cmd) => {
          // In batches, one statement each. An item is touched as created only
          // when this run created it: a finding whose open item exists already
          // (the same problem, still there) leaves that item as it is.
          for (let start = 0; start < findings.length; start += REVIEW_BATCH) {
            const batch = findings.slice(start, start + REVIEW_BATCH).map((finding) => {
              const storeId = storeOf(finding);
              return {
                id: newId(),
                opId: cmd.opId,
                kind: 'integrity_finding',
                severity: finding.severity,
                subjectType: finding.check,
                subjectId: finding.subject,
                ...(storeId ? { storeId } : {}),
                dedupeKey: `integrity:${finding.check}:${finding.subject}`,
                detail: { check: finding.check, subject: finding.subject, detail: finding.detail, checked_at: run.checked_at },
              };
            });
            const ids = await openReviewItems(cmd.tx, tenantId, batch);
            ids.forEach((id, index) => {
              if (id === batch[index]!.id) cmd.touch('review_items', id, 'created');
            });
          }
          return { status: 200, body: { findings: findings.length } };
        },
      );
    });
    ctx.logger.info({ checks: run.checks.length, findings: run.findings.length }, 'integrity run finished');
  },
});
