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
  | { outcome: 'cancelled'; order: ProviderOrder }
  | { outcome: 'not_found' }
  | { outcome: 'refused'; httpStatus: number; providerStatus: string | null; body: unknown };

export interface ProviderOptions {
  baseUrl: string;
  apiKey?: string | undefined;
  timeoutMs: number;
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
export class FulfilmentProvider {
  constructor(private readonly options: ProviderOptions) {}

  private async call(method: string, path: string, init: { body?: unknown; idempotencyKey?: string } = {}): Promise<{ status: number; body: unknown }> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.options.apiKey) headers.authorization = `Bearer ${this.options.apiKey}`;
    if (init.idempotencyKey) headers['idempotency-key'] = init.idempotencyKey;
    const correlationId = currentScope()?.correlationId;
    if (correlationId) headers['x-correlation-id'] = correlationId;
    if (init.body !== undefined) headers['content-type'] = 'application/json';
    let response: Response;
    try {
      response = await fetch(`${this.options.baseUrl}${path}`, {
        method,
        headers,
        body: init.body === undefined ? undefined : JSON.stringify(init.body),
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
    } catch (error) {
      throw new ProviderUnavailable(`provider ${method} ${path} failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
    const text = await response.text().catch(() => '');
    let body: unknown = text;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      // keep the text
    }
    // What the provider says is recorded (an audit payload, a review item,
    // last_error): a NUL or half a character in any string, or a value nested
    // thousands deep, made that record fail as a whole — and the job that
    // wrote it retry until it gave up, the answer never recorded.
    body = storableJson(body);
    if (response.status >= 500 || RETRYABLE_4XX.has(response.status)) {
      const hint = response.status === 401 || response.status === 403 ? ' (check FULFILMENT_API_KEY)' : '';
      throw new ProviderUnavailable(`provider ${method} ${path} answered ${response.status}${hint}`);
    }
    return { status: response.status, body };
  }

  async createOrder(idempotencyKey: string, order: CreateProviderOrder): Promise<ProviderOrder> {
    const { status, body } = await this.call('POST', '/orders', { body: order, idempotencyKey });
    if (status === 200 || status === 201) return body as ProviderOrder;
    throw new ProviderRejected(status, body);
  }

  /**
   * Asks the provider to cancel its order. The key makes a retry (after a
   * 5xx, a timeout, a lost answer) the same request. 5xx, timeouts and the
   * retryable 4xx throw ProviderUnavailable, as for every call; any other 4xx
   * is the provider's refusal, an answer.
   */
  async cancelOrder(providerOrderId: string, idempotencyKey: string): Promise<ProviderCancelAnswer> {
    const { status, body } = await this.call('POST', `/orders/${encodeURIComponent(providerOrderId)}/cancel`, { idempotencyKey });
    if (status === 200 || status === 201) return { outcome: 'cancelled', order: body as ProviderOrder };
    if (status === 404) return { outcome: 'not_found' };
    const providerStatus = typeof (body as { status?: unknown } | null)?.status === 'string' ? storableText((body as { status: string }).status, 100) : null;
    return { outcome: 'refused', httpStatus: status, providerStatus, body };
  }

  /** The order created with this idempotency key, or null if the provider never created one. */
  async findByIdempotencyKey(idempotencyKey: string): Promise<ProviderOrder | null> {
    const { status, body } = await this.call('GET', `/orders?idempotency_key=${encodeURIComponent(idempotencyKey)}`);
    if (status === 404) return null;
    if (status === 200) return body as ProviderOrder;
    throw new ProviderRejected(status, body);
  }
}
