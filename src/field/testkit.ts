import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';

/** A token limited to the given stores: its client and its id (a visit names its agent by id). */
export interface FieldToken {
  client: ApiClient;
  id: string;
}

/**
 * A depot for the field specs: a tenant (its owner), one store `DEPOT`, and
 * tokens of that store — a manager and two field agents. With `stock`, soap
 * (a piece at 120) and tea (a piece at 300) with that much of each in the
 * depot; without, no SKUs (the spec makes its own).
 */
export async function givenFieldDepot(
  t: TestApp,
  options: { stock?: number } = {},
): Promise<{
  owner: ApiClient;
  tenantId: string;
  storeId: string;
  manager: ApiClient;
  agent: FieldToken;
  otherAgent: FieldToken;
  goods: { soap: string; tea: string } | null;
}> {
  const { owner, tenantId } = await t.newTenant();
  const storeId = (await owner.post('/v1/stores', { code: 'DEPOT', name: 'Depot' })).body.id;
  let goods: { soap: string; tea: string } | null = null;
  if (options.stock !== undefined) {
    const soap = (await owner.post('/v1/skus', { code: 'SOAP', name: 'Soap', unit: 'piece', price: 120 })).body.id;
    const tea = (await owner.post('/v1/skus', { code: 'TEA', name: 'Tea', unit: 'piece', price: 300 })).body.id;
    const received = await owner.post(`/v1/stores/${storeId}/stock/receipts`, {
      items: [
        { sku_id: soap, quantity: options.stock },
        { sku_id: tea, quantity: options.stock },
      ],
    });
    assert.equal(received.status, 201, JSON.stringify(received.body));
    goods = { soap, tea };
  }
  const token = async (role: string): Promise<FieldToken> => {
    const issued = await owner.post('/v1/tokens', { name: `${role}-${randomUUID().slice(0, 6)}`, role, store_ids: [storeId] });
    assert.equal(issued.status, 201, JSON.stringify(issued.body));
    return { client: t.client(issued.body.token), id: issued.body.id };
  };
  const manager = (await token('manager')).client;
  const agent = await token('field_agent');
  const otherAgent = await token('field_agent');
  return { owner, tenantId, storeId, manager, agent, otherAgent, goods };
}
