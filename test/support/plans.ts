import assert from 'node:assert/strict';
import type pg from 'pg';
import { CompiledQuery, PostgresQueryCompiler, type KyselyPlugin } from 'kysely';
import { inTenantTransaction } from '../../src/core/command.js';
import type { Db, Tx } from '../../src/core/db.js';

/** A node of PostgreSQL's EXPLAIN (FORMAT JSON) plan, with the fields the plan specs read. */
export interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Index Cond'?: string;
  'Actual Rows'?: number;
  'Actual Loops'?: number;
  'Rows Removed by Filter'?: number;
  Plans?: PlanNode[];
}

/** A plan node and every node under it. */
export const nodesOf = (node: PlanNode): PlanNode[] => [node, ...(node.Plans ?? []).flatMap(nodesOf)];

/** Stops the query it is given before it runs, handing over what the code would have sent. */
class Captured extends Error {
  constructor(readonly query: CompiledQuery) {
    super('captured');
  }
}
const capture: KyselyPlugin = {
  transformQuery: (args) => {
    throw new Captured(new PostgresQueryCompiler().compileQuery(args.node, args.queryId));
  },
  transformResult: async (args) => args.result,
};

/** A value as an SQL literal (the values of list queries: ids, codes, moments, numbers, arrays, null). */
const literal = (value: unknown): string =>
  value === null ? 'NULL' : typeof value === 'number' ? String(value) : Array.isArray(value) ? `'{${value.join(',')}}'` : `'${String(value).replaceAll("'", "''")}'`;

/** The query `read` sends in `tx`, stopped before it runs. */
async function capturedIn(tx: Tx, read: (tx: Tx) => Promise<unknown>): Promise<CompiledQuery> {
  return read(tx.withPlugin(capture)).then(
    () => assert.fail('the query ran'),
    (error: unknown) => {
      if (error instanceof Captured) return error.query;
      throw error;
    },
  );
}

/**
 * The plans of the statements run inside the query `read` sends — a
 * function's (SQL or PL/pgSQL) own queries, which EXPLAIN shows as one
 * Function Scan —, each as auto_explain logs it (ANALYZE, nested statements),
 * the query run with its values as the app role (storekeep_app) in the
 * tenant. `admin`: a superuser's pool (LOAD 'auto_explain'). `generic`: the
 * function's statements planned under plan_cache_mode = force_generic_plan.
 */
export async function nestedPlansOf(
  admin: pg.Pool,
  db: Db,
  tenantId: string,
  read: (tx: Tx) => Promise<unknown>,
  plan: 'auto' | 'generic',
): Promise<PlanNode[][]> {
  const query = await inTenantTransaction(db, tenantId, (tx) => capturedIn(tx, read));
  const client = await admin.connect();
  const notices: string[] = [];
  const listen = (notice: { message?: string }) => notices.push(notice.message ?? '');
  client.on('notice', listen);
  try {
    await client.query('BEGIN');
    await client.query(`LOAD 'auto_explain'`);
    for (const setting of ['log_min_duration = 0', 'log_analyze = on', 'log_nested_statements = on', 'log_format = json', 'log_level = notice']) {
      await client.query(`SET LOCAL auto_explain.${setting}`);
    }
    if (plan === 'generic') await client.query('SET LOCAL plan_cache_mode = force_generic_plan');
    await client.query(`SELECT set_config('app.tenant_id', $1, true)`, [tenantId]);
    await client.query('SET LOCAL ROLE storekeep_app');
    notices.length = 0;
    await client.query(query.sql, [...query.parameters]);
  } finally {
    await client.query('ROLLBACK').catch(() => undefined);
    client.off('notice', listen);
    client.release();
  }
  return notices
    .filter((message) => message.includes('{'))
    .map((message) => nodesOf((JSON.parse(message.slice(message.indexOf('{'))) as { Plan: PlanNode }).Plan));
}

/**
 * The plan of exactly the query `read` sends, with its values, run (EXPLAIN
 * ANALYZE) as the app role in the tenant. `auto`: as the service runs it (an
 * unnamed statement, planned with its values). `generic`: planned without
 * them, as a prepared statement reused by a driver or a pooler, or a server
 * set to plan_cache_mode = force_generic_plan, runs it.
 */
export async function planOf(db: Db, tenantId: string, read: (tx: Tx) => Promise<unknown>, plan: 'auto' | 'generic'): Promise<PlanNode[]> {
  const rows = await inTenantTransaction(db, tenantId, async (tx) => {
    const query = await capturedIn(tx, read);
    if (plan === 'auto') return (await tx.executeQuery(CompiledQuery.raw(`EXPLAIN (ANALYZE, FORMAT JSON) ${query.sql}`, [...query.parameters]))).rows;
    await tx.executeQuery(CompiledQuery.raw(`PREPARE planned_page AS ${query.sql}`));
    await tx.executeQuery(CompiledQuery.raw('SET LOCAL plan_cache_mode = force_generic_plan'));
    const explained = (await tx.executeQuery(CompiledQuery.raw(`EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE planned_page(${query.parameters.map(literal).join(', ')})`))).rows;
    await tx.executeQuery(CompiledQuery.raw('DEALLOCATE planned_page'));
    return explained;
  });
  return nodesOf((rows[0] as { 'QUERY PLAN': Array<{ Plan: PlanNode }> })['QUERY PLAN'][0]!.Plan);
}
