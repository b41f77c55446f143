import { currentScope } from '../core/context.js';
import { storableJson, storableText } from '../core/text.js';

/** An order as the provider reports it. */
export interface ProviderOrder {
  id: string;
  status: string;
  reference: string;
  merchant: string;
  idempotency_key: string;
}

/**
 * The provider could not be reached or failed (5xx, 408, 429, timeout,
 * network), refused our credentials (401, 403: a wrong or expired
 * FULFILMENT_API_KEY is ours to fix, not the order's fault), or is still
 * processing a request with the same key (409): try again later.
 */
export class ProviderUnavailable extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ProviderUnavailable';
  }
}

/** 4xx answers that say nothing against the order itself: retried like a 5xx. */
const RETRYABLE_4XX: ReadonlySet<number> = new Set([401, 403, 408, 409, 429]);

/** The provider refused the order (any other 4xx: 400, 422…): the same call will be refused again. */
export class ProviderRejected extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
  ) {
    // Cut between characters (storableText): the message is recorded in the
    // order's history (jsonb), which refused half an emoji — the refusal was
    // then never recorded, and the order stayed pending through the retries.
    super(`provider refused the order (${status}): ${storableText(JSON.stringify(body) ?? String(body), 500)}`);
    this.name = 'ProviderRejected';
  }
}

/**
 * What the provider answered a cancel: it cancelled the order (or it was
 * already cancelled), it holds no such order, or it refused — with its
 * status when it says one (`completed`: shipped, too late to cancel).
 */
export type ProviderCancelAnswer =
  /** `order`: what the provider answered (cleaned for storage, see storableJson). */
  | { outcome: 'cancelled'; order: unknown }
  | { outcome: 'not_found' }
  | { outcome: 'refused'; httpStatus: number; providerStatus: string | null; body: unknown };

export interface ProviderOptions {
  baseUrl: string;
  apiKey?: string | undefined;
  timeoutMs: number;
}

/** Which of our orders a call is about: the provider's answer must not name another (when it names one). */
export interface OrderOfOurs {
  /** Our order id. */
  reference: string;
  /** Our tenant id. */
  merchant: string;
}

export interface CreateProviderOrder {
  reference: string;
  merchant: string;
  lines: Array<{ sku_id: string; quantity: number }>;
  shipping_address: unknown;
  payment_reference: string;
}

/**
 * The adapter to the outside fulfilment provider (the API storekeep
 * provider-sim speaks). Every create carries the order's idempotency key, so
 * any number of retries — after a 500, a timeout, a lost response, a
 * recovery — leave one order at the provider.
 */
/** The most of an answer the provider's calls read: a larger one is no answer (retried), not a body held in memory. */
export const MAX_ANSWER_BYTES = 1024 * 1024;

/** The body of a response as UTF-8 text, refused (ProviderUnavailable) past `limit` bytes without reading the rest. */
async function readAtMost(response: Response, limit: number, what: string): Promise<string> {
  const declared = Number(response.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > limit) {
    await response.body?.cancel().catch(() => undefined);
    throw new ProviderUnavailable(`${what} answered ${response.status} with ${declared} bytes, more than the ${limit} read`);
  }
  if (response.body === null) return '';
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let read = 0;
  let text = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return text + decoder.decode();
    read += value.byteLength;
    if (read > limit) {
      await reader.cancel().catch(() => undefined);
      throw new ProviderUnavailable(`${what} answered ${response.status} with more than the ${limit} bytes read`);
    }
    text += decoder.decode(value, { stream: true });
  }
}

export class FulfilmentProvider {
  constructor(private readonly options: ProviderOptions) {}

  private async call(method: string, path: string, init: { body?: unknown; idempotencyKey?: string } = {}): Promise<{ status: number; body: unknown; raw: unknown }> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.options.apiKey) headers.authorization = `Bearer ${this.options.apiKey}`;
    if (init.idempotencyKey) headers['idempotency-key'] = init.idempotencyKey;
    const correlationId = currentScope()?.correlationId;
    if (correlationId) headers['x-correlation-id'] = correlationId;
    if (init.body !== undefined) headers['content-type'] = 'application/json';
    const signal = AbortSignal.timeout(this.options.timeoutMs);
    let response: Response;
    let text: string;
    try {
      response = await fetch(`${this.options.baseUrl}${path}`, {
        method,
        headers,
        body: init.body === undefined ? undefined : JSON.stringify(init.body),
        signal,
        // Not followed: the provider's API answers where it is asked, and an
        // answer from wherever a redirect points (a login page, another
        // host, with our API key) is not the provider's.
        redirect: 'manual',
      });
    } catch (error) {
      throw new ProviderUnavailable(`provider ${method} ${path} failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
    try {
      // The timeout covers the body too: an answer whose body never finishes
      // (dripped in slower than FULFILMENT_TIMEOUT_MS, a connection cut) is
      // no answer. Read as empty, it was a lookup's "no such order" (a
      // cancellation recorded not_found and never asked again).
      text = await readAtMost(response, MAX_ANSWER_BYTES, `provider ${method} ${path}`);
    } catch (error) {
      if (error instanceof ProviderUnavailable) throw error;
      throw new ProviderUnavailable(
        `provider ${method} ${path} answered ${response.status} but its body did not arrive: ${error instanceof Error ? error.message : String(error)}`,
        { cause: error },
      );
    }
    let raw: unknown = text;
    try {
      raw = text ? JSON.parse(text) : null;
    } catch {
      // keep the text
    }
    // What the provider says is recorded (an audit payload, a review item,
    // last_error): a NUL or half a character in any string, or a value nested
    // thousands deep, made that record fail as a whole — and the job that
    // wrote it retry until it gave up, the answer never recorded.
    const body = storableJson(raw);
    if (response.status >= 300 && response.status < 400) {
      throw new ProviderUnavailable(`provider ${method} ${path} answered ${response.status} (a redirect to ${storableText(response.headers.get('location') ?? '?', 200)}): not followed`);
    }
    if (response.status >= 500 || RETRYABLE_4XX.has(response.status)) {
      const hint = response.status === 401 || response.status === 403 ? ' (check FULFILMENT_API_KEY)' : '';
      throw new ProviderUnavailable(`provider ${method} ${path} answered ${response.status}${hint}`);
    }
    return { status: response.status, body, raw };
  }

  /**
   * The order a 2xx answer describes. An answer that is not one — not JSON
   * (a proxy's page, a redirect followed to a login page), or without the
   * provider's order id as a string we can keep — is no answer: retried like
   * a 5xx. Taken as an order, a create was `submitted` with no order at the
   * provider, and a lookup's order id "undefined" got a cancel recorded
   * `not_found`.
   */
  private orderIn(method: string, path: string, status: number, raw: unknown, body: unknown, ours: OrderOfOurs): ProviderOrder {
    const order = typeof raw === 'object' && raw !== null && !Array.isArray(raw) ? (raw as Record<string, unknown>) : null;
    const id = order?.id;
    if (typeof id !== 'string' || id.length === 0 || id.length > 200 || storableText(id) !== id) {
      throw new ProviderUnavailable(
        `provider ${method} ${path} answered ${status} with something that is not an order: ${storableText(typeof body === 'string' ? body : (JSON.stringify(body) ?? String(body)), 300)}`,
      );
    }
    const word = (value: unknown) => (typeof value === 'string' ? storableText(value, 200) : '');
    const found: ProviderOrder = { id, status: word(order!.status), reference: word(order!.reference), merchant: word(order!.merchant), idempotency_key: word(order!.idempotency_key) };
    // The provider mixed its orders up (answered this key with another
    // order of ours, or another merchant's): taken as ours, its id was
    // recorded on this order and a cancel of this order cancelled that one.
    if ((found.reference !== '' && found.reference !== ours.reference) || (found.merchant !== '' && found.merchant !== ours.merchant)) {
      throw new ProviderUnavailable(
        `provider ${method} ${path} answered ${status} with its order ${storableText(id, 200)} of another order (reference ${found.reference || '?'}, merchant ${found.merchant || '?'}), not of ${ours.reference}`,
      );
    }
    return found;
  }

  async createOrder(idempotencyKey: string, order: CreateProviderOrder): Promise<ProviderOrder> {
    const { status, body, raw } = await this.call('POST', '/orders', { body: order, idempotencyKey });
    // Any 2xx is the provider taking the order (202 Accepted, too): its body
    // must be the order, else it is no answer and is tried again (orderIn).
    // Read as a refusal, a 202 failed an order the provider held and shipped.
    if (status >= 200 && status < 300) return this.orderIn('POST', '/orders', status, raw, body, order);
    throw new ProviderRejected(status, body);
  }

  /**
   * Asks the provider to cancel its order. The key makes a retry (after a
   * 5xx, a timeout, a lost answer) the same request. 5xx, timeouts and the
   * retryable 4xx throw ProviderUnavailable, as for every call; any other 4xx
   * is the provider's refusal, an answer. A 2xx is read for what its body
   * says: the order `cancelled` (or naming no status) is cancelled;
   * `completed` or `failed` there is the provider's refusal with that status,
   * whatever its HTTP status; any other status (still `accepted`,
   * `processing`), or a body that is not a JSON object, is not an answer yet:
   * retried like a 5xx.
   */
  async cancelOrder(providerOrderId: string, idempotencyKey: string): Promise<ProviderCancelAnswer> {
    const path = `/orders/${encodeURIComponent(providerOrderId)}/cancel`;
    const { status, body } = await this.call('POST', path, { idempotencyKey });
    if (status === 404) return { outcome: 'not_found' };
    const providerStatus = typeof (body as { status?: unknown } | null)?.status === 'string' ? storableText((body as { status: string }).status, 100) : null;
    // Any 2xx is read for what its body says (a 204 has none: no answer yet,
    // asked again); read as a refusal, it opened a critical item for nothing.
    if (status >= 200 && status < 300) {
      if (typeof body !== 'object' || body === null || Array.isArray(body)) {
        throw new ProviderUnavailable(`provider POST ${path} answered ${status} with something that is not an answer: ${storableText(String(JSON.stringify(body)), 300)}`);
      }
      if (providerStatus === null || providerStatus === 'cancelled') return { outcome: 'cancelled', order: body };
      if (providerStatus !== 'completed' && providerStatus !== 'failed') {
        throw new ProviderUnavailable(`provider POST ${path} answered ${status} but says the order is ${providerStatus}: not cancelled yet`);
      }
    }
    return { outcome: 'refused', httpStatus: status, providerStatus, body };
  }

  /** The order created with this idempotency key, or null if the provider never created one; one it says is another order (`ours`) is no answer. */
  async findByIdempotencyKey(idempotencyKey: string, ours: OrderOfOurs): Promise<ProviderOrder | null> {
    const path = `/orders?idempotency_key=${encodeURIComponent(idempotencyKey)}`;
    const { status, body, raw } = await this.call('GET', path);
    if (status === 404) return null;
    if (status === 200) return this.orderIn('GET', path, status, raw, body, ours);
    throw new ProviderRejected(status, body);
  }
}
