import { sql } from 'kysely';
import { all, maybeOne, type Tx } from '../core/db.js';
import type { Effect } from '../core/command.js';

export interface OperationView {
  id: string;
  type: string;
  actor: string;
  correlation_id: string;
  store_id: string | null;
  created_at: Date;
  reverted_by: string | null;
  effects: Effect[];
  events: Array<{
    id: number;
    type: string;
    subject_type: string | null;
    subject_id: string | null;
    before: unknown;
    after: unknown;
    created_at: Date;
  }>;
}

/** An operation with the rows it touched (from its command event) and its audit events. */
export async function getOperation(tx: Tx, tenantId: string, opId: string): Promise<OperationView | undefined> {
  const operation = await maybeOne(
    tx,
    sql<Omit<OperationView, 'effects' | 'events'>>`
      SELECT id, type, actor, correlation_id, store_id, created_at, reverted_by
      FROM operations WHERE tenant_id = ${tenantId} AND id = ${opId}`,
  );
  if (!operation) return undefined;
  const events = await all(
    tx,
    sql<OperationView['events'][number] & { effects: Effect[] | null }>`
      SELECT id, type, subject_type, subject_id, before, after, effects, created_at
      FROM events WHERE tenant_id = ${tenantId} AND op_id = ${opId} ORDER BY id`,
  );
  const effects = events.flatMap((event) => event.effects ?? []);
  return {
    ...operation,
    reverted_by: operation.reverted_by ?? null,
    effects,
    events: events
      .filter((event) => event.subject_type !== null)
      .map(({ effects: _effects, ...event }) => event),
  };
}
