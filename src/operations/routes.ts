import { Type } from 'typebox';
import { inTenantTransaction } from '../core/command.js';
import { notFound } from '../core/errors.js';
import type { App, AppDeps } from '../http/app.js';
import { command, tenantOf } from '../http/command.js';
import { IdempotencyHeaders, NoBody, Timestamp, Uuid } from '../http/schemas.js';
import { getOperation, operationInScope } from './getOperation.js';
import { revertOperation } from './revertOperation.js';
import { revertHandlers } from './revertRegistry.js';

const OperationAnswer = Type.Object({
  id: Uuid,
  type: Type.String({ description: 'the command, e.g. sale.create, stock.receive, transfer.approve' }),
  actor: Type.String({ description: 'who ran it: role:token name, or the worker' }),
  correlation_id: Type.String(),
  store_id: Type.Union([Uuid, Type.Null()]),
  created_at: Timestamp,
  reverted_by: Type.Union([Uuid, Type.Null()], { description: 'the operation that reverted this one' }),
  effects: Type.Array(
    Type.Object({
      table: Type.String(),
      id: Type.String({ description: 'the row: its id; a stock ledger row, a posting or an order status history row by its number, a balance as store/sku' }),
      action: Type.Union([Type.Literal('created'), Type.Literal('updated'), Type.Literal('consumed'), Type.Literal('reversed'), Type.Literal('deleted')], {
        description: 'a stock balance row the operation made (a receipt, a purchase, a transfer received or a count of a SKU the store never held) is created, once; one it moved is updated',
      }),
    }),
  ),
  events: Type.Array(
    Type.Object({
      id: Type.Integer(),
      type: Type.String(),
      subject_type: Type.Union([Type.String(), Type.Null()]),
      subject_id: Type.Union([Type.String(), Type.Null()]),
      before: Type.Unknown(),
      after: Type.Unknown(),
      created_at: Timestamp,
    }),
    { description: 'its audit events' },
  ),
});

export async function operationRoutes(app: App, { db }: AppDeps): Promise<void> {
  app.get(
    '/v1/operations/:op_id',
    {
      config: { permission: 'operations.read' },
      schema: {
        tags: ['operations'],
        summary: 'An operation: who ran which command, when, and every row it touched (money postings with the accounts they moved, and order lines and status history rows, found by the operation\'s id)',
        description: "A token limited to some stores sees the operations filed under those stores, every operation of a transfer with either end among them, and the resolution of a review item with either of its stores among them (a transfer's shortfall: destination and source); an operation without a store (catalogue changes, sweeps) only tokens limited to no store see. Otherwise `404`.",
        params: Type.Object({ op_id: Uuid }),
        response: { 200: OperationAnswer },
      },
    },
    async (request) => {
      const principal = tenantOf(request);
      const operation = await inTenantTransaction(db, principal.tenantId, async (tx) => {
        const found = await getOperation(tx, principal.tenantId, request.params.op_id);
        return found && (await operationInScope(tx, principal, found, found.effects)) ? found : undefined;
      });
      if (operation) return operation;
      throw notFound('operation');
    },
  );

  app.post(
    '/v1/operations/:op_id/revert',
    {
      config: { permission: 'operations.revert', refusals: { operation_already_used: 'a later operation used what it created (`used_by_op_id`)', unprocessable: 'an operation of a type that cannot be reverted', insufficient_stock: 'the stock balance is below its pieces (see the integrity check piece_stock_matches_balance)', limit_exceeded: "an account total would exceed 9 × 10^15 minor units (a payment's reversal), or the stock of a SKU in a store 10^15 base units (pieces restored)", forbidden: 'the token made the operation and the tenant requires a second person to undo it (`reason`: second_approver_required; setting require_second_approver_for_reversals), reverted already or not; nothing written' } },
      schema: {
        tags: ['operations'],
        summary:
          'Revert an operation as a new operation: finds exactly the rows it created and consumed by its id, restores them (soft deletes, reversing stock entries) and marks it `reverted_by`. Revertible types: ' +
          Object.keys(revertHandlers).join(', ') +
          '. Reverting a reverted operation replays the first revert (200, `Idempotent-Replayed: true`). `409 operation_already_used` names the later operation (`used_by_op_id`) that used its outputs; `422 unprocessable` for a type that cannot be reverted. With the tenant setting `require_second_approver_for_reversals`, the token that made the operation may not revert it: `403 forbidden` with `reason: second_approver_required`, reverted already or not, nothing written and its Idempotency-Key not kept; another token with operations.revert may.',
        description:
          "A payment (`payment.create`, a payment recorded wrongly: the wrong amount, party or method) is reverted by a journal entry of kind `payment_revert`, the payment its subject, that moves exactly its entry's postings back between the same two accounts; the payment and its entry are kept as they were and the payment gets `reverted_by_op` and `reverted_at` (GET /v1/payments/{id}; `revert_business_date` is the reversal's day). The reversal is dated like every store entry: today, or the first day after it with no count when today is counted — never on a counted day; its cash is in that day's count as `other_cash` (not a payment in or out). `changes` lists a `payment.reverted` event (the payment before and after) and the operation's `operation.reverted`. A token limited to some stores reverts the operations of its stores only: another store's payment is `404` as for an unknown operation.",
        headers: IdempotencyHeaders,
        params: Type.Object({ op_id: Uuid }),
        body: NoBody,
        response: {
          200: Type.Object({
            op_id: Uuid,
            reverted_op_id: Uuid,
            reverted_type: Type.String(),
            changes: Type.Array(
              Type.Object({ type: Type.String(), subject_type: Type.String(), subject_id: Type.String(), before: Type.Unknown(), after: Type.Unknown() }),
            ),
          }),
        },
      },
    },
    async (request, reply) =>
      command(db, request, reply, { type: 'operation.revert', replayInStoreScopeOnly: true }, async (cmd) => ({
        status: 200,
        body: await revertOperation(cmd, request.params.op_id, revertHandlers),
      })),
  );
}
