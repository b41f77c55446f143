import http from 'node:http';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { signWebhook } from '../orders/webhookSignature.js';

/**
 * `storekeep provider-sim`: a stand-in for the outside fulfilment provider,
 * on loopback, speaking the API the adapter (src/orders/fulfilmentProvider.ts)
 * calls, with faults to inject:
 *
 *   POST /orders            Idempotency-Key required; one order per key (a repeat returns it, 200)
 *   GET  /orders?idempotency_key=K   the order created with that key, or 404
 *   GET  /orders/{id}
 *   POST /orders/{id}/cancel   Idempotency-Key required; accepted/processing → cancelled (200, and a
 *                            `cancelled` webhook), already cancelled → 200; completed (shipped) or
 *                            failed → 422 { error: 'order_not_cancellable', status }
 *   then webhooks to `webhookUrl`: processing, then completed (signed, see webhookSignature.ts)
 *
 * Control (for tests and demos): GET/POST /_sim/faults (merge), GET /_sim/orders,
 * POST /_sim/orders/{id}/status { status } (sends that webhook).
 */
export interface SimFaults {
  /** Added to every response. */
  latencyMs: number;
  /** The next N creates answer 500 without creating anything. */
  failCreates: number;
  /** The next N creates create (or find) the order, then never answer (the caller times out). */
  acceptThenHang: number;
  /** The next N creates are refused for good (422): bad address, unknown product… */
  rejectCreates: number;
  /** The next N calls (creates and lookups) answer 401, as with a wrong or expired API key. */
  refuseAuth: number;
  /** The next N creates answer 409: a request with this key is still being processed. */
  conflictCreates: number;
  /** The next N cancels answer 500 without cancelling anything. */
  failCancels: number;
  /** The next N cancels find the order shipped that instant: it becomes completed and the cancel is refused (422). */
  shipBeforeCancels: number;
  /** Probability that a create answers 500 (0..1), for the crash test's noise. */
  failRate: number;
  /** Send each webhook twice. */
  duplicateWebhooks: boolean;
  /** Send the completed webhook before the processing one. */
  outOfOrderWebhooks: boolean;
  /** Send webhooks at all. */
  webhooks: boolean;
  /** Delay before the first webhook. */
  webhookDelayMs: number;
}

export interface SimOrder {
  id: string;
  status: 'accepted' | 'processing' | 'completed' | 'failed' | 'cancelled';
  reference: string;
  merchant: string;
  idempotency_key: string;
  body: unknown;
  created_at: string;
  /** How many create calls carried this order's key. */
  create_calls: number;
  /** How many cancel calls reached this order (refused ones included, failed ones not). */
  cancel_calls: number;
}

export interface ProviderSimOptions {
  port?: number;
  host?: string;
  secret: string;
  /** Where webhooks go (storekeep's POST /v1/webhooks/fulfilment); unset: none are sent. */
  webhookUrl?: string;
  faults?: Partial<SimFaults>;
  log?: (line: string) => void;
}

export interface ProviderSim {
  url: string;
  faults: SimFaults;
  orders: Map<string, SimOrder>;
  /** Calls to the provider's API (not /_sim/), as they arrive: method and path with its query. */
  requests: Array<{ method: string; path: string; idempotency_key?: string }>;
  /** Webhook deliveries attempted (event id, the provider's order id, status code or error). */
  deliveries: Array<{ event_id: string; order_id: string; status: number | string }>;
  /** Where webhooks go (settable once the API's address is known). */
  webhookUrl: string | undefined;
  /** Sends a status webhook for an order now. */
  sendStatus(orderId: string, status: SimOrder['status']): Promise<void>;
  stop(): Promise<void>;
}

const DEFAULT_FAULTS: SimFaults = {
  latencyMs: 0,
  failCreates: 0,
  acceptThenHang: 0,
  rejectCreates: 0,
  refuseAuth: 0,
  conflictCreates: 0,
  failCancels: 0,
  shipBeforeCancels: 0,
  failRate: 0,
  duplicateWebhooks: false,
  outOfOrderWebhooks: false,
  webhooks: true,
  webhookDelayMs: 20,
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function startProviderSim(options: ProviderSimOptions): Promise<ProviderSim> {
  const faults: SimFaults = { ...DEFAULT_FAULTS, ...options.faults };
  const orders = new Map<string, SimOrder>();
  const byKey = new Map<string, string>();
  const deliveries: ProviderSim['deliveries'] = [];
  const requests: ProviderSim['requests'] = [];
  const hanging = new Set<http.ServerResponse>();
  const pendingTimers = new Set<NodeJS.Timeout>();
  let sequence = 0;
  let stopped = false;
  const log = options.log ?? (() => undefined);

  /** Delivers one event; `number` is its place in the provider's own order of events (data.sequence). */
  async function deliver(order: SimOrder, status: SimOrder['status'], number: number = ++sequence): Promise<void> {
    const webhookUrl = sim.webhookUrl;
    if (!webhookUrl || stopped) return;
    const event = {
      id: `evt_${randomUUID()}`,
      type: `order.${status}`,
      created_at: new Date().toISOString(),
      data: { order_id: order.id, reference: order.reference, merchant: order.merchant, status, sequence: number },
    };
    const copies = faults.duplicateWebhooks ? 2 : 1;
    let deliveryAttempt = 0;
    for (let copy = 0; copy < copies; copy++) {
      // Like real providers: retry a delivery that failed, a few times.
      for (let attempt = 1; attempt <= 5 && !stopped; attempt++) {
        // Like real providers, each delivery of the event carries its own
        // delivery metadata (attempt number, send time) besides a fresh signature.
        const body = JSON.stringify({ ...event, delivery_attempt: ++deliveryAttempt, sent_at: new Date().toISOString() });
        try {
          const response = await fetch(webhookUrl, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'fulfilment-signature': signWebhook(options.secret, Math.floor(Date.now() / 1000), body) },
            body,
            signal: AbortSignal.timeout(5000),
          });
          await response.text();
          deliveries.push({ event_id: event.id, order_id: order.id, status: response.status });
          if (response.status < 500) break;
        } catch (error) {
          deliveries.push({ event_id: event.id, order_id: order.id, status: error instanceof Error ? error.message : String(error) });
        }
        await sleep(100 * attempt);
      }
    }
  }

  function scheduleLifecycle(order: SimOrder): void {
    if (!faults.webhooks || !sim.webhookUrl) return;
    const timer = setTimeout(() => {
      pendingTimers.delete(timer);
      // Numbered in the order they happen (processing, then completed), delivered
      // in that order or — with outOfOrderWebhooks — the other way round.
      const happened: Array<{ status: SimOrder['status']; number: number }> = [
        { status: 'processing', number: ++sequence },
        { status: 'completed', number: ++sequence },
      ];
      const steps = faults.outOfOrderWebhooks ? [...happened].reverse() : happened;
      (async () => {
        for (const { status, number } of steps) {
          // A cancelled order goes no further.
          if (stopped || order.status === 'cancelled') return;
          if (status === 'completed' || order.status !== 'completed') order.status = status;
          await deliver(order, status, number);
        }
      })().catch((error: unknown) => log(`webhook delivery failed: ${String(error)}`));
    }, faults.webhookDelayMs);
    pendingTimers.add(timer);
  }

  const send = (response: http.ServerResponse, status: number, body: unknown) => {
    response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };
  const publicOrder = ({ body: _body, create_calls: _calls, cancel_calls: _cancels, ...order }: SimOrder) => order;

  async function readBody(request: http.IncomingMessage): Promise<unknown> {
    let text = '';
    for await (const chunk of request) text += chunk;
    return text ? JSON.parse(text) : undefined;
  }

  const server = http.createServer((request, response) => {
    (async () => {
      const url = new URL(request.url ?? '/', 'http://sim');
      if (url.pathname.startsWith('/_sim/')) {
        if (url.pathname === '/_sim/faults') {
          if (request.method === 'POST') Object.assign(faults, await readBody(request));
          return send(response, 200, faults);
        }
        if (url.pathname === '/_sim/orders') return send(response, 200, { items: [...orders.values()] });
        const match = /^\/_sim\/orders\/([^/]+)\/status$/.exec(url.pathname);
        const order = match ? orders.get(match[1]!) : undefined;
        if (order && request.method === 'POST') {
          const { status } = (await readBody(request)) as { status: SimOrder['status'] };
          order.status = status;
          await deliver(order, status);
          return send(response, 200, publicOrder(order));
        }
        return send(response, 404, { error: 'not_found' });
      }
      const idempotencyKey = request.headers['idempotency-key'];
      requests.push({ method: request.method ?? '', path: `${url.pathname}${url.search}`, ...(typeof idempotencyKey === 'string' ? { idempotency_key: idempotencyKey } : {}) });
      if (faults.latencyMs > 0) await sleep(faults.latencyMs);
      if (faults.refuseAuth > 0) {
        faults.refuseAuth--;
        return send(response, 401, { error: 'invalid_api_key' });
      }
      if (request.method === 'POST' && url.pathname === '/orders') {
        const key = request.headers['idempotency-key'];
        if (typeof key !== 'string' || key.length === 0) return send(response, 400, { error: 'idempotency_key_required' });
        const body = (await readBody(request)) as { reference?: string; merchant?: string } | undefined;
        if (!body?.reference || !body.merchant) return send(response, 422, { error: 'reference and merchant are required' });
        if (faults.failCreates > 0) {
          faults.failCreates--;
          return send(response, 500, { error: 'internal' });
        }
        if (faults.conflictCreates > 0) {
          faults.conflictCreates--;
          return send(response, 409, { error: 'request_in_progress' });
        }
        if (faults.rejectCreates > 0) {
          faults.rejectCreates--;
          return send(response, 422, { error: 'address_not_deliverable' });
        }
        if (faults.failRate > 0 && Math.random() < faults.failRate) return send(response, 503, { error: 'unavailable' });
        const existingId = byKey.get(key);
        let order = existingId ? orders.get(existingId) : undefined;
        const created = !order;
        if (!order) {
          order = {
            id: `po_${randomUUID()}`,
            status: 'accepted',
            reference: body.reference,
            merchant: body.merchant,
            idempotency_key: key,
            body,
            created_at: new Date().toISOString(),
            create_calls: 0,
            cancel_calls: 0,
          };
          orders.set(order.id, order);
          byKey.set(key, order.id);
          log(`created ${order.id} for ${body.reference}`);
          scheduleLifecycle(order);
        }
        order.create_calls++;
        if (faults.acceptThenHang > 0) {
          faults.acceptThenHang--;
          hanging.add(response); // never answered: the caller's timeout fires
          return;
        }
        return send(response, created ? 201 : 200, publicOrder(order));
      }
      if (request.method === 'GET' && url.pathname === '/orders') {
        const key = url.searchParams.get('idempotency_key');
        const order = key ? orders.get(byKey.get(key) ?? '') : undefined;
        return order ? send(response, 200, publicOrder(order)) : send(response, 404, { error: 'not_found' });
      }
      const cancel = /^\/orders\/([^/]+)\/cancel$/.exec(url.pathname);
      if (request.method === 'POST' && cancel) {
        const key = request.headers['idempotency-key'];
        if (typeof key !== 'string' || key.length === 0) return send(response, 400, { error: 'idempotency_key_required' });
        const order = orders.get(cancel[1]!);
        if (!order) return send(response, 404, { error: 'not_found' });
        if (faults.failCancels > 0) {
          faults.failCancels--;
          return send(response, 500, { error: 'internal' });
        }
        order.cancel_calls++;
        if (faults.shipBeforeCancels > 0 && (order.status === 'accepted' || order.status === 'processing')) {
          faults.shipBeforeCancels--;
          order.status = 'completed';
        }
        if (order.status === 'completed' || order.status === 'failed') return send(response, 422, { error: 'order_not_cancellable', status: order.status });
        if (order.status !== 'cancelled') {
          order.status = 'cancelled';
          log(`cancelled ${order.id} for ${order.reference}`);
          if (faults.webhooks) deliver(order, 'cancelled').catch((error: unknown) => log(`webhook delivery failed: ${String(error)}`));
        }
        return send(response, 200, publicOrder(order));
      }
      const match = /^\/orders\/([^/]+)$/.exec(url.pathname);
      if (request.method === 'GET' && match) {
        const order = orders.get(match[1]!);
        return order ? send(response, 200, publicOrder(order)) : send(response, 404, { error: 'not_found' });
      }
      return send(response, 404, { error: 'not_found' });
    })().catch((error: unknown) => {
      log(`request failed: ${String(error)}`);
      if (!response.headersSent) send(response, 400, { error: 'bad_request' });
    });
  });

  await new Promise<void>((resolve) => server.listen(options.port ?? 0, options.host ?? '127.0.0.1', resolve));
  const address = server.address() as AddressInfo;
  const sim: ProviderSim = {
    webhookUrl: options.webhookUrl,
    url: `http://${options.host ?? '127.0.0.1'}:${address.port}`,
    faults,
    orders,
    requests,
    deliveries,
    sendStatus: async (orderId, status) => {
      const order = orders.get(orderId);
      if (!order) throw new Error(`no sim order ${orderId}`);
      order.status = status;
      await deliver(order, status);
    },
    stop: async () => {
      stopped = true;
      for (const timer of pendingTimers) clearTimeout(timer);
      for (const response of hanging) response.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return sim;
}
