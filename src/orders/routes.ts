import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { assertStoreInScope } from '../core/auth.js';
import { fingerprintRequest, internalIdempotencyKey, inTenantTransaction, runCommand, type CommandInput, type CommandOutcome } from '../core/command.js';
import { AppError, notFound } from '../core/errors.js';
import { isUuid } from '../core/ids.js';
import type { App, AppDeps } from '../http/app.js';
import { commandInputOf, sendOutcome, tenantOf } from '../http/command.js';
import { optionalExpectedVersion, sendVersioned, versionedCommand } from '../http/etag.js';
import { assertStorableText, tooDeepIn, utf8TextOf } from '../http/json.js';
import { IdempotencyHeaders, IdParams, IfMatchHeaders, PositiveQuantity, Timestamp, Uuid } from '../http/schemas.js';
import { applyOrderEvent, orThrow } from './applyOrderEvent.js';
import { cancelOrder } from './cancelOrder.js';
import { createOrder } from './createOrder.js';
import { findOrder, findOrderView } from './findOrder.js';
import { receiveWebhook, webhookEventContent, type WebhookEvent } from './receiveWebhook.js';
import { SIGNATURE_HEADER, verifyWebhookSignature } from './webhookSignature.js';

const Status = Type.Union([
  Type.Literal('pending'),
  Type.Literal('submitting'),
  Type.Literal('submitted'),
  Type.Literal('processing'),
  Type.Literal('completed'),
  Type.Literal('failed'),
  Type.Literal('cancelled'),
]);
const ShippingAddress = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 200 }),
    line1: Type.String({ minLength: 1, maxLength: 200 }),
    line2: Type.Optional(Type.String({ maxLength: 200 })),
    city: Type.String({ minLength: 1, maxLength: 100 }),
    postal_code: Type.String({ minLength: 1, maxLength: 20 }),
    country: Type.String({ pattern: '^[A-Z]{2}$', description: 'ISO 3166-1 alpha-2' }),
    phone: Type.Optional(Type.String({ maxLength: 40 })),
  },
  { additionalProperties: false },
);
const Order = Type.Object({
  id: Uuid,
  store_id: Uuid,
  status: Status,
  shipping_address: ShippingAddress,
  payment_reference: Type.String(),
  provider_order_id: Type.Union([Type.String(), Type.Null()]),
  submit_attempts: Type.Integer({ description: 'calls made to the provider to create the order' }),
  recoveries: Type.Integer({ description: 'times the stuck-order sweep submitted it again' }),
  last_error: Type.Union([Type.String(), Type.Null()]),
  provider_cancellation: Type.Union(
    [Type.Literal('requested'), Type.Literal('confirmed'), Type.Literal('refused'), Type.Literal('not_found'), Type.Null()],
    {
      description:
        'for an order a manager cancelled while the provider held it (submitted or processing): asking the provider to cancel it too — `requested` (on its way, retried through provider outages), `confirmed` (cancelled there, or failed there: nothing ships), `refused` (it had shipped: the order stays cancelled, `last_error` says why and an `order_cancel_refused` review item is open), `not_found` (the provider holds no order under our key); null: nothing was asked (also for an order the provider cancelled on its side: its history says so, `source` webhook or recovery)',
    },
  ),
  version: Type.Integer(),
  op_id: Uuid,
  created_at: Timestamp,
  updated_at: Timestamp,
  status_changed_at: Timestamp,
  lines: Type.Array(Type.Object({ line_no: Type.Integer(), sku_id: Uuid, quantity: Type.Integer() })),
  history: Type.Array(
    Type.Object({
      from_status: Type.Union([Status, Type.Null()]),
      to_status: Status,
      source: Type.Union([Type.Literal('api'), Type.Literal('worker'), Type.Literal('webhook'), Type.Literal('recovery')]),
      op_id: Uuid,
      created_at: Timestamp,
    }),
  ),
});
/** A manual action's body is optional (none, `{}` or `null`), like every action without required input. */
const ManualBody = Type.Union([Type.Object({ reason: Type.Optional(Type.String({ minLength: 1, maxLength: 500 })) }, { additionalProperties: false }), Type.Null()]);

const WebhookBody = Type.Object(
  {
    id: Type.String({ minLength: 1, maxLength: 200, description: 'the provider\'s event id (a second delivery is acknowledged and changes nothing)' }),
    type: Type.String({ minLength: 1, maxLength: 100 }),
    // Delivery metadata we do not read: any shape (unix seconds, text, null). A 400 on it
    // would refuse a genuine, signed status change on every delivery, as for `sequence`.
    created_at: Type.Optional(Type.Unknown({ description: 'when the provider made the event; delivery metadata, not read (any JSON value)' })),
    data: Type.Object(
      {
        order_id: Type.String({ minLength: 1, maxLength: 200, description: 'the provider\'s order id' }),
        reference: Uuid,
        merchant: Uuid,
        status: Type.String({
          minLength: 1,
          maxLength: 50,
          description:
            'the provider\'s status of the order: `accepted`, `processing`, `completed`, `failed` or `cancelled` (cancelled on its side: an order before `completed` is cancelled, source `webhook`, with no cancellation asked of the provider and one `order_failed` review item naming the payment to refund, as for `failed`; one completed here stays completed and opens an `order_provider_mismatch` review item); any other word is acknowledged and changes nothing',
        }),
        // Any value: an ordering hint, not the event. One we cannot compare is
        // taken as absent rather than refused — a 400 drops a genuine, signed
        // status change after the provider's retries (which 4xx do not stop).
        sequence: Type.Optional(
          Type.Unknown({
            description:
              'the provider\'s number of this event within the order (an integer), increasing: an event numbered at or below one already received for the order is recorded as ignored (out of order); anything else — a number outside 0 … 10^15 - 1, a fraction, null, a string, an object — is treated as absent, not refused. Without it, an `accepted` or `processing` about an order the provider itself already reported `failed` or `cancelled` is late too: recorded as ignored, no `order_provider_mismatch`',
          }),
        ),
      },
      { additionalProperties: true },
    ),
  },
  // The provider's payload, not ours: fields it adds later are kept, not refused.
  { additionalProperties: true },
);

/** Tries of a webhook delivery whose event another delivery is processing (waits of 0.65 to 1.3 s in all). */
const WEBHOOK_IN_FLIGHT_TRIES = 10;

/**
 * One delivery of a provider event, answered 2xx whenever the event is (or
 * gets) processed: a 4xx reads to a provider as final (the event is dropped)
 * or is retried until its budget ends.
 *
 * - Another delivery of the same event holds its key (a replay for a few
 *   milliseconds, a first delivery until its order is free): wait for it
 *   (bounded, jittered), then replay; still held after that: 409
 *   idempotency_key_in_flight as before, and the provider retries.
 * - The event id was processed with other content (idempotency_key_reused):
 *   the recorded event decides (nothing is applied again) and receiveWebhook
 *   opens a review item; this delivery is a command of its own, not stored
 *   under the event's key (which keeps the first delivery's answer).
 */
async function receiveDelivery(receive: (input: CommandInput) => Promise<CommandOutcome>, input: CommandInput): Promise<CommandOutcome> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await receive(input);
    } catch (error) {
      if (!(error instanceof AppError)) throw error;
      if (error.code === 'idempotency_key_reused') return receive({ ...input, idempotencyKey: undefined });
      if (error.code !== 'idempotency_key_in_flight' || attempt >= WEBHOOK_IN_FLIGHT_TRIES) throw error;
      const delayMs = Math.min(200, 10 * 2 ** attempt);
      await new Promise((resolve) => setTimeout(resolve, delayMs / 2 + (Math.random() * delayMs) / 2));
    }
  }
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The webhook body's bytes as received (what its signature covers). */
    rawBody?: Buffer;
    bodyParseError?: boolean;
  }
}

export async function orderRoutes(app: App, { db, config }: AppDeps): Promise<void> {
  app.post(
    '/v1/orders',
    {
      config: { permission: 'orders.create', refusals: { not_found: 'the store does not exist or is outside the token stores' } },
      schema: {
        tags: ['orders'],
        summary: 'Create an order for the outside fulfilment provider (submitted by the worker; starts `pending`). Its Idempotency-Key is kept for good (not IDEMPOTENCY_TTL_HOURS): sent again days later, it replays the first answer.',
        headers: IdempotencyHeaders,
        body: Type.Object(
          {
            store_id: Uuid,
            lines: Type.Array(Type.Object({ sku_id: Uuid, quantity: PositiveQuantity }, { additionalProperties: false }), { minItems: 1, maxItems: 500 }),
            shipping_address: ShippingAddress,
            payment_reference: Type.String({ minLength: 1, maxLength: 200 }),
          },
          { additionalProperties: false },
        ),
        response: { 201: Order },
      },
    },
    async (request, reply) => {
      assertStoreInScope(tenantOf(request), request.body.store_id);
      return versionedCommand(db, request, reply, { type: 'order.create', storeId: request.body.store_id, ttlHours: 'forever' }, async (cmd) => ({
        status: 201,
        body: await createOrder(cmd, request.body),
      }));
    },
  );

  app.get(
    '/v1/orders/:id',
    { config: { permission: 'orders.read' }, schema: { tags: ['orders'], summary: 'An order with its lines and status history', params: IdParams, response: { 200: Order } } },
    async (request, reply) => {
      const principal = tenantOf(request);
      const order = await inTenantTransaction(db, principal.tenantId, (tx) => findOrderView(tx, principal.tenantId, request.params.id));
      if (!order) throw notFound('order');
      assertStoreInScope(principal, order.store_id, 'order');
      reply.header('etag', `"${order.version}"`);
      return order;
    },
  );

  for (const [verb, event] of [
    ['complete', { type: 'complete' }],
    ['cancel', { type: 'cancel' }],
  ] as const) {
    app.post(
      `/v1/orders/:id/${verb}`,
      {
        config: { permission: 'orders.manage', refusals: { invalid_transition: `the order is not in a status it can be ${verb === 'complete' ? 'completed' : 'cancelled'} from (\`current_status\`)` } },
        schema: {
          tags: ['orders'],
          summary:
            verb === 'complete'
              ? 'Mark a submitted or processing order completed by hand (409 invalid_transition otherwise). Optional `If-Match` with the order\'s ETag: stale → `412 version_conflict`; the response carries the new ETag.'
              : 'Cancel a pending, submitted or processing order (409 invalid_transition otherwise, e.g. while submitting); it is `cancelled` at once. One the provider holds (submitted or processing) is also cancelled at the provider by a background job enqueued in the same transaction: `provider_cancellation` is `requested`, then `confirmed`, `refused` (it had shipped: the order stays cancelled and an `order_cancel_refused` review item is opened) or `not_found`. Optional `If-Match` with the order\'s ETag: stale → `412 version_conflict`; the response carries the new ETag.',
          headers: IfMatchHeaders('order'),
          params: IdParams,
          body: ManualBody,
          response: { 200: Order },
        },
      },
      async (request, reply) => {
        const principal = tenantOf(request);
        const existing = await inTenantTransaction(db, principal.tenantId, (tx) => findOrder(tx, principal.tenantId, request.params.id));
        if (!existing) throw notFound('order');
        assertStoreInScope(principal, existing.store_id, 'order');
        const expectedVersion = optionalExpectedVersion(request, 'order');
        const outcome = await runCommand(db, commandInputOf(request), { type: `order.${verb}`, storeId: existing.store_id }, async (cmd) => {
          const patch = { ...(request.body?.reason ? { note: request.body.reason } : {}), ...(expectedVersion !== undefined ? { expectedVersion } : {}) };
          if (event.type === 'cancel') await cancelOrder(cmd, request.params.id, patch);
          else orThrow(await applyOrderEvent(cmd, request.params.id, event, 'api', patch));
          return { status: 200, body: (await findOrderView(cmd.tx, cmd.tenantId, request.params.id))! };
        });
        return sendVersioned(reply, outcome);
      },
    );
  }

  // Webhooks authenticate by signature, not by token, over the exact bytes
  // received: this scope keeps the raw body next to the parsed one.
  await app.register(async (hooks) => {
    hooks.removeContentTypeParser('application/json');
    hooks.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request: FastifyRequest, body: string | Buffer, done) => {
      // The signature covers the bytes sent (a byte order mark included, which the text below drops).
      request.rawBody = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
      let text: string;
      try {
        text = typeof body === 'string' ? body : utf8TextOf(body);
      } catch {
        // Not UTF-8: the signature is still checked first (over these bytes), then malformed_json.
        request.bodyParseError = true;
        done(null, undefined);
        return;
      }
      try {
        done(null, text.length > 0 ? JSON.parse(text) : undefined);
      } catch {
        request.bodyParseError = true;
        done(null, undefined);
      }
    });

    hooks.post(
      '/v1/webhooks/fulfilment',
      {
        config: {
          auth: 'none',
          textCheckedByRoute: true,
          refusals: {
            invalid_signature: 'the Fulfilment-Signature is absent, malformed, too old or does not match',
            not_found: 'the event names no order of this provider',
            idempotency_key_in_flight: 'another delivery of the same event is still being processed',
          },
        },
        schema: {
          tags: ['orders'],
          summary:
            'Provider event (order status). Authenticated by the `Fulfilment-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">` header (one or more `v1`: one matching is enough, under the current or, during a rotation, the previous secret), not a token; 401 invalid_signature changes nothing. A repeated event id is acknowledged (200) and applied at most once: the first delivery wins. Fields outside `type` and `data` (created_at, attempt counters, send times) are delivery metadata: such a redelivery is a replay. A redelivery whose `type` or `data` differ is acknowledged with `duplicate: true, applied: false, conflict: true` and opens a `fulfilment_webhook_conflict` review item. A delivery arriving while another delivery of the same event is processed waits for it (about a second at most) before answering 409 idempotency_key_in_flight. An event behind the order is recorded as ignored: numbered (`data.sequence`) at or below one received, or — unnumbered — an `accepted`/`processing` after the provider\'s own `failed`/`cancelled` of the order (no `order_provider_mismatch`).',
          security: [],
          // Documented here; checked by the handler (absent or wrong: 401 invalid_signature, not a 400).
          headers: Type.Object({
            'fulfilment-signature': Type.Optional(
              Type.String({
                description:
                  '`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" keyed with FULFILMENT_WEBHOOK_SECRET>`; the timestamp must be within the tolerance of now. Several `v1` signatures may be sent (a provider rotating its secret signs with both): one matching is enough, keyed with FULFILMENT_WEBHOOK_SECRET or, during a rotation, FULFILMENT_WEBHOOK_SECRET_PREVIOUS. Required: absent, malformed (not exactly one whole-number `t`, no `v1`, a `v1` that is not 64 lowercase hex digits) or not matching → 401 invalid_signature.',
              }),
            ),
          }),
          body: WebhookBody,
          response: {
            200: Type.Object({
              received: Type.Boolean(),
              event_id: Type.String(),
              order_id: Uuid,
              duplicate: Type.Boolean(),
              applied: Type.Boolean({ description: 'the event moved the order' }),
              conflict: Type.Optional(
                Type.Boolean({
                  description:
                    'a redelivery of an event id already processed whose type or data differ from the first delivery: acknowledged, not applied, a fulfilment_webhook_conflict review item opened',
                }),
              ),
              status: Type.Optional(Status),
            }),
          },
        },
        preValidation: async (request) => {
          const header = request.headers[SIGNATURE_HEADER];
          const check = verifyWebhookSignature(
            [config.fulfilmentWebhookSecret, config.fulfilmentWebhookSecretPrevious].filter((secret) => secret !== undefined),
            typeof header === 'string' ? header : undefined,
            request.rawBody ?? Buffer.alloc(0),
            Math.floor(Date.now() / 1000),
            config.fulfilmentWebhookToleranceSeconds,
          );
          if (!check.ok) {
            request.log.warn({ reason: check.reason }, 'fulfilment webhook refused');
            throw new AppError('invalid_signature', check.reason);
          }
          if (request.bodyParseError) throw new AppError('malformed_json', 'the request body is not valid UTF-8 JSON');
          // As for every other body (strictJsonParser): a payload nested
          // thousands deep overflowed the recursive walks behind it (500,
          // retried by the provider for ever); a 400 says it will not do.
          const deep = tooDeepIn(request.body, '/body');
          if (deep) throw new AppError('validation_failed', `${deep.path} ${deep.message}`, { errors: [deep] });
          assertStorableText(request.body, '/body');
        },
      },
      async (request, reply) => {
        const event = request.body as WebhookEvent;
        // Lowercase already: the body schema reads these ids as every UUID
        // (`Uuid`, any letter case). Two deliveries of one event differing only
        // in case must take one in-flight lock and carry one content, or the
        // second fails an internal check and opens a spurious conflict item.
        const tenantId = event.data.merchant;
        const orderId = event.data.reference;
        if (!isUuid(tenantId) || !isUuid(orderId)) throw notFound('order');
        // The order must exist in the tenant the event names (also proves the tenant exists).
        const order = await inTenantTransaction(db, tenantId, (tx) => findOrder(tx, tenantId, orderId));
        if (!order) throw notFound('order');
        const input: CommandInput = {
          tenantId,
          principal: { kind: 'operator', name: 'provider:fulfilment' },
          correlationId: request.id,
          idempotencyKey: internalIdempotencyKey('fulfilment-webhook', event.id),
          // The event's content only: a redelivery differing in delivery
          // metadata (attempt counter, send time…) is the same request, a replay.
          fingerprint: fingerprintRequest('POST', '/v1/webhooks/fulfilment', { id: event.id, ...webhookEventContent(event) }),
          payload: event,
        };
        const receive = (commandInput: CommandInput) =>
          runCommand(db, commandInput, { type: 'order.webhook', storeId: order.store_id }, async (cmd) => ({ status: 200, body: await receiveWebhook(cmd, event) }));
        return sendOutcome(reply, await receiveDelivery(receive, input));
      },
    );
  });
}
