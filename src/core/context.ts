import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * What every log line, audit event and job needs to know about the request (or
 * job) that caused it. Set once at the edge; read anywhere without threading it
 * through every call.
 */
export interface RequestScope {
  correlationId: string;
  tenantId?: string;
}

const storage = new AsyncLocalStorage<RequestScope>();

export function runInScope<T>(scope: RequestScope, fn: () => T): T {
  return storage.run(scope, fn);
}

export function currentScope(): RequestScope | undefined {
  return storage.getStore();
}
