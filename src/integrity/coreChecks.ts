import type { IntegrityCheck } from './check.js';

/** Invariants of the command core (DESIGN.md principles 3–5). */
export const coreChecks: IntegrityCheck[] = [
  {
    name: 'idempotency_record_has_operation',
    severity: 'critical',
    description: 'Every stored idempotency record points at the operation whose response it replays.',
    sql: `
      SELECT k.tenant_id, k.key AS subject, jsonb_build_object('op_id', k.op_id, 'response_status', k.response_status) AS detail
      FROM idempotency_keys k
      WHERE ($1::uuid IS NULL OR k.tenant_id = $1)
        AND NOT EXISTS (SELECT 1 FROM operations o WHERE o.tenant_id = k.tenant_id AND o.id = k.op_id)`,
  },
  {
    name: 'operation_has_audit_event',
    severity: 'critical',
    description:
      'Every operation has its audit event (a tenant’s copy of its own creation is audited in the system tenant, where the operator ran it; it is recognised by the owner token it created).',
    sql: `
      SELECT o.tenant_id, o.id::text AS subject, jsonb_build_object('type', o.type, 'created_at', o.created_at) AS detail
      FROM operations o
      WHERE ($1::uuid IS NULL OR o.tenant_id = $1)
        AND NOT EXISTS (SELECT 1 FROM events e WHERE e.tenant_id = o.tenant_id AND e.op_id = o.id)
        AND NOT (o.type = 'tenant.create' AND EXISTS (
          SELECT 1 FROM api_tokens t WHERE t.tenant_id = o.tenant_id AND t.op_id = o.id))`,
  },
];
