import { storableText } from '../core/text.js';

/**
 * Runs `fn` for each tenant in turn, as the jobs that sweep every tenant do
 * (snapshots, rollups, reservation expiry, integrity review items). Tenants
 * are walls for failures too: one tenant's error (bad data, a check its rows
 * break) does not keep the tenants after it from being served. Once every
 * tenant had its turn, the failures are thrown together (the job retries, or
 * its give-up opens a review item naming them); the work of the others is
 * committed already, each tenant's being its own command.
 */
export async function forEachTenant<T, R>(items: readonly T[], tenantOf: (item: T) => string, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  const failures: Array<{ tenantId: string; error: unknown }> = [];
  for (const item of items) {
    try {
      results.push(await fn(item));
    } catch (error) {
      failures.push({ tenantId: tenantOf(item), error });
    }
  }
  if (failures.length > 0) {
    const named = failures.map(({ tenantId, error }) => `${tenantId}: ${error instanceof Error ? error.message : String(error)}`);
    throw new AggregateError(
      failures.map((failure) => failure.error),
      `${failures.length} of ${items.length} tenant(s) failed (the others were done): ${storableText(named.join('; '), 1500)}`,
    );
  }
  return results;
}
