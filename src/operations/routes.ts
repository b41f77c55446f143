import { Type } from 'typebox';
import { assertStoreInScope } from '../core/auth.js';
import { inTenantTransaction } from '../core/command.js';
import { notFound } from '../core/errors.js';
import type { App, AppDeps } from '../http/app.js';
import { tenantOf } from '../http/command.js';
import { Uuid } from '../http/schemas.js';
import { getOperation } from './getOperation.js';

export async function operationRoutes(app: App, { db }: AppDeps): Promise<void> {
  app.get(
    '/v1/operations/:op_id',
    {
      config: { permission: 'operations.read' },
      schema: {
        tags: ['operations'],
        summary: 'An operation: who ran which command, when, and every row it touched',
        params: Type.Object({ op_id: Uuid }),
      },
    },
    async (request) => {
      const principal = tenantOf(request);
      const operation = await inTenantTransaction(db, principal.tenantId, (tx) =>
        getOperation(tx, principal.tenantId, request.params.op_id),
      );
      if (!operation) throw notFound('operation');
      if (operation.store_id !== null) assertStoreInScope(principal, operation.store_id, 'operation');
      return operation;
    },
  );
}
