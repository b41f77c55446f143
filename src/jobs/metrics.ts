import { prometheus, workerRegistry } from '../core/metrics.js';

export const jobsTotal = new prometheus.Counter({
  name: 'storekeep_jobs_total',
  help: 'Job runs by task and outcome: done, retried (failed, another attempt scheduled), failed (gave up: review item opened)',
  labelNames: ['task', 'outcome'] as const,
  registers: [workerRegistry],
});

export const jobDuration = new prometheus.Histogram({
  name: 'storekeep_job_duration_seconds',
  help: 'Duration of one job run by task',
  labelNames: ['task'] as const,
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
  registers: [workerRegistry],
});
