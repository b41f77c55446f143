import { prometheus, registry } from '../core/metrics.js';

export const integrityFindings = new prometheus.Gauge({
  name: 'storekeep_integrity_findings',
  help: 'Findings of the last all-tenant integrity run (worker: nightly, or on demand), per check',
  labelNames: ['check'] as const,
  registers: [registry],
});

export const integrityLastRun = new prometheus.Gauge({
  name: 'storekeep_integrity_last_run_timestamp_seconds',
  help: 'When the last all-tenant integrity run finished',
  registers: [registry],
});
