export interface BackoffPolicy {
  baseMs: number;
  maxMs: number;
}

/**
 * Delay before retry number `attempt` (1 = the retry after the first failure):
 * exponential (base · 2^(attempt-1), capped at max) with "full jitter" — a
 * uniform pick in [ceiling/2, ceiling]. The jitter spreads retries of many
 * jobs that failed together (a provider outage) so they do not return as one
 * wave; keeping the lower half out preserves the exponential growth.
 * `random` is injectable so the policy is a pure function under test.
 */
export function retryDelayMs(attempt: number, policy: BackoffPolicy, random: () => number = Math.random): number {
  const exponent = Math.max(0, Math.min(attempt - 1, 30));
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** exponent);
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}
