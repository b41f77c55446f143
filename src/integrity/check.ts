/**
 * An invariant of DESIGN.md principle 7, as one SQL query that returns the
 * rows breaking it. Each part of the system declares its own checks in
 * `src/<part>/integrity.ts`; `registry.ts` lists them all.
 */
export interface IntegrityCheck {
  /** Stable snake_case name, e.g. `stock_ledger_matches_balance`. */
  name: string;
  severity: 'warning' | 'critical';
  /** One sentence: the invariant that must hold. */
  description: string;
  /**
   * Returns one row per finding with columns `tenant_id uuid, subject text,
   * detail jsonb`. `$1` is a tenant id or NULL for every tenant; the query
   * must filter with `($1::uuid IS NULL OR tenant_id = $1)`.
   */
  sql: string;
}
