import type pg from 'pg';
import { prometheus, registry, workerRegistry } from '../core/metrics.js';

export const integrityFindings = new prometheus.Gauge({
  name: 'storekeep_integrity_findings',
  help: 'Findings of the last all-tenant integrity run (worker: nightly, or on demand), per check',
  labelNames: ['check'] as const,
  registers: [workerRegistry],
});

export const integrityLastRun = new prometheus.Gauge({
  name: 'storekeep_integrity_last_run_timestamp_seconds',
  help: 'When the last all-tenant integrity run finished',
  registers: [workerRegistry],
});

let openFindingsSource: pg.Pool | undefined;

/** The pool the API's /metrics reads open findings through (the last app built in this process). */
export function serveOpenFindingsFrom(pool: pg.Pool): void {
  openFindingsSource = pool;
}

/**
 * Open `integrity_finding` review items per check, read at scrape time from
 * the review queue (what the nightly runs found and nobody has resolved yet),
 * so the API's /metrics shows them too, not only the worker's.
 */
export const integrityOpenFindings = new prometheus.Gauge({
  name: 'storekeep_integrity_open_findings',
  help: 'Open integrity_finding review items per check (all tenants)',
  labelNames: ['check'] as const,
  registers: [registry],
  async collect() {
    const pool = openFindingsSource;
    if (!pool) return;
    try {
      const { rows } = await pool.query<{ check_name: string; findings: number }>('SELECT check_name, findings FROM open_integrity_findings()');
      this.reset();
      for (const row of rows) this.set({ check: row.check_name }, Number(row.findings));
    } catch {
      // the database is unreachable: /metrics still answers, without this
      // gauge's values — not with the last scrape's, which are no longer
      // known to be open (they were served as current until a read succeeded)
      this.reset();
    }
  },
});
