/**
 * Failed authentications per client IP, in one-minute windows, in this
 * process. @fastify/rate-limit counts requests per token after authentication
 * succeeded; guesses at tokens never reach it, and each costs a database
 * lookup. Past `limit` failures in a window the IP is answered 429 before
 * any lookup, until the window ends. Per process (each API process counts its
 * own); the window is short, so nothing needs cleaning beyond a size bound.
 */
export class AuthFailureLimiter {
  private readonly windows = new Map<string, { start: number; failures: number }>();

  constructor(
    private readonly limit: number,
    private readonly windowMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Seconds until `ip` may try again, or 0 when it may try now. */
  retryAfterSeconds(ip: string): number {
    const window = this.windows.get(ip);
    if (!window || this.now() - window.start >= this.windowMs || window.failures < this.limit) return 0;
    return Math.max(1, Math.ceil((window.start + this.windowMs - this.now()) / 1000));
  }

  recordFailure(ip: string): void {
    const now = this.now();
    const window = this.windows.get(ip);
    if (!window || now - window.start >= this.windowMs) {
      if (this.windows.size >= 100_000) this.windows.clear();
      this.windows.set(ip, { start: now, failures: 1 });
    } else {
      window.failures += 1;
    }
  }
}
