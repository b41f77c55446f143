import { loadConfig, type Config } from '../../src/config.js';
import { createLogger } from '../../src/core/logger.js';
import { inTenantTransaction } from '../../src/core/command.js';
import { enqueueJob } from '../../src/jobs/enqueueJob.js';
import type { TaskDefinition } from '../../src/jobs/task.js';
import { startWorker, type RunningWorker } from '../../src/jobs/worker.js';
import type { TestDatabase } from './database.js';

/**
 * A worker on a test file's database, as the tests run it: silent, no cron,
 * polling every 100 ms, with the default configuration under `config`; every
 * task unless `tasks` names some.
 */
export function startTestWorker(t: Pick<TestDatabase, 'url' | 'appUrl'>, config: Partial<Config>, tasks?: TaskDefinition[]): Promise<RunningWorker> {
  return startWorker({
    databaseUrl: t.url,
    appDatabaseUrl: t.appUrl,
    config: { ...loadConfig({ LOG_LEVEL: 'silent' }), ...config },
    logger: createLogger('silent'),
    ...(tasks ? { tasks } : {}),
    cronItems: [],
    pollIntervalMs: 100,
  });
}

/**
 * Enqueues a job of a tenant as the app does: through `enqueue_job` as the app
 * role, in a transaction of that tenant (a job naming a tenant needs its
 * tenant set), and commits it. What a sweep or a command would have queued.
 */
export function enqueueForTenant(t: Pick<TestDatabase, 'db'>, tenantId: string, task: string, data: unknown, options: Omit<NonNullable<Parameters<typeof enqueueJob>[3]>, 'tenantId'> = {}): Promise<string> {
  return inTenantTransaction(t.db, tenantId, (tx) => enqueueJob(tx, task, data, { ...options, tenantId }));
}
