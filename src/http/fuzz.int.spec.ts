/**
 * Bad input, walked over the whole API: every mutating operation of the
 * OpenAPI document gets a battery of malformed requests (wrong JSON types,
 * missing and extra fields, boundary numbers, long and odd strings, bodies
 * that are not JSON, wrong media types, ids that do not exist or belong to
 * another tenant, impossible dates, bad Idempotency-Key and If-Match headers)
 * with a valid token, and some list endpoints get bad query parameters.
 *
 * What each answer must be: never a 5xx and never a hang; a refusal is
 * `application/problem+json` with a `code` (and, for `validation_failed`, the
 * path of the field or parameter, never just `/`), and leaves every table as
 * it was (no insert, update or delete in any of them). A request is only
 * allowed to succeed when its body is valid by the operation's documented
 * schema and nothing else about it is wrong; then the new state becomes the
 * baseline. List endpoints get garbage limits, cursors, dates, ids and enums.
 *
 * Deterministic: cases are sampled with a fixed seed. Before its fixes this
 * found a body that is not UTF-8 stored with U+FFFD, and NUL characters,
 * unpaired surrogates and year-0 or past-±15:59 date-times refused by the
 * database at path `/` instead of at their field.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { signWebhook } from '../orders/webhookSignature.js';
import { makeBodyAjv } from './ajv.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20261205);
/**
 * Cases sent per operation (sampled from all the operation's cases), besides
 * the structural ones every operation gets. FUZZ_CASES_PER_OPERATION raises it
 * for a longer hunt (e.g. 100000: every case, ~3,300 requests); FUZZ_SEED changes the sample.
 */
const CASES_PER_OPERATION = Number(process.env.FUZZ_CASES_PER_OPERATION ?? 30);
const REQUEST_TIMEOUT_MS = 10_000;
const WEBHOOK_SECRET = 'fuzz-webhook-secret';

/** mulberry32: a small seeded PRNG, so every run sends the same requests. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function sample<T>(items: T[], count: number, random: () => number): T[] {
  const copy = items.slice();
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy.slice(0, count);
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Schema = {
  type?: string;
  anyOf?: Schema[];
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  minItems?: number;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  format?: string;
  enum?: Json[];
  pattern?: string;
  additionalProperties?: boolean;
};
type Operation = {
  parameters?: Array<{ in: string; name: string }>;
  requestBody?: { content: Record<string, { schema: Schema }> };
};

interface Sent {
  status: number;
  contentType: string;
  body: any;
  text: string;
}

/** Raw HTTP (node:http, not fetch), so the test decides every header, including none, and every byte of the body. */
function send(baseUrl: string, method: string, path: string, headers: Record<string, string>, body?: string | Buffer): Promise<Sent> {
  const url = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const request = http.request(
      { host: url.hostname, port: url.port, method, path, headers: body === undefined ? headers : { ...headers, 'content-length': String(Buffer.byteLength(body)) } },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const contentType = response.headers['content-type'] ?? '';
          let parsed: unknown = text;
          try {
            if (/json/.test(contentType) && text.length > 0) parsed = JSON.parse(text);
          } catch {
            parsed = text;
          }
          resolve({ status: response.statusCode ?? 0, contentType, body: parsed, text });
        });
        response.on('error', reject);
      },
    );
    request.setTimeout(REQUEST_TIMEOUT_MS, () => request.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms: a hang`)));
    request.on('error', reject);
    if (body !== undefined) request.write(body);
    request.end();
  });
}

/** The schema a value must match, one level down (anyOf: its first non-null form). */
function concrete(schema: Schema | undefined): Schema | undefined {
  if (schema?.anyOf) return schema.anyOf.find((form) => form.type !== 'null') ?? schema.anyOf[0];
  return schema;
}

interface Ids {
  tenantId: string;
  store: string;
  store2: string;
  sku: string;
  ropeSku: string;
  customer: string;
  pointOfSale: string;
  agentToken: string;
  piece: string;
  reservation: string;
  order: string;
  transfer: string;
  sale: string;
  settlement: string;
  visit: string;
  token: string;
  operation: string;
}

/** The id a uuid field of this name holds in a request that names existing records of `ids`' tenant. */
function idForField(ids: Ids, field: string, path: string): string {
  const piecesPath = path.startsWith('/v1/pieces');
  switch (field) {
    case 'store_id':
    case 'source_store_id':
      return ids.store;
    case 'destination_store_id':
      return ids.store2;
    case 'sku_id':
      return piecesPath ? ids.ropeSku : ids.sku;
    case 'party_id':
    case 'customer_id':
      return ids.customer;
    case 'point_of_sale_id':
      return ids.pointOfSale;
    case 'agent_token_id':
      return ids.agentToken;
    case 'piece_id':
    case 'piece_ids':
      return ids.piece;
    case 'reservation_op_id':
      return ids.reservation;
    case 'merchant':
      return ids.tenantId;
    case 'reference':
      return ids.order;
    case 'store_ids':
      return ids.store;
    default:
      return randomUUIDFrom(field);
  }
}

/** A uuid that names nothing, the same on every run for the same seed text. */
function randomUUIDFrom(text: string): string {
  let hash = 0;
  for (const char of text) hash = (Math.imul(hash, 31) + char.charCodeAt(0)) >>> 0;
  return `00000000-0000-4000-8000-${hash.toString(16).padStart(12, '0')}`;
}

/** The id a path parameter holds for this route, in `ids`' tenant. */
function idForPath(ids: Ids, path: string): string | undefined {
  if (path.startsWith('/v1/tokens/')) return ids.token;
  if (path.startsWith('/v1/operations/')) return ids.operation;
  if (path.startsWith('/v1/stores/{store_id}')) return ids.store;
  if (path.startsWith('/v1/visits/')) return ids.visit;
  if (path.startsWith('/v1/transfers/')) return ids.transfer;
  if (path.startsWith('/v1/sales/')) return ids.sale;
  if (path.startsWith('/v1/settlements/')) return ids.settlement;
  if (path.startsWith('/v1/pieces/reservations/')) return ids.reservation;
  if (path.startsWith('/v1/orders/')) return ids.order;
  if (path.includes('review-items/')) return randomUUIDFrom(path);
  return undefined;
}

/** A request body every field of which is well-formed, naming existing records where a field is an id. */
function exampleOf(schema: Schema | undefined, field: string, path: string, ids: Ids): Json {
  const form = concrete(schema);
  if (!form) return null;
  if (form.enum) return form.enum[0]!;
  switch (form.type) {
    case 'object': {
      const value: Record<string, Json> = {};
      for (const [name, property] of Object.entries(form.properties ?? {})) {
        // Optional fields that would change what the request does (pieces
        // instead of quantities, a reservation) are left out of the base body.
        if (!(form.required ?? []).includes(name) && ['piece_ids', 'reservation_op_id', 'settlement', 'sequence'].includes(name)) continue;
        value[name] = exampleOf(property, name, path, ids);
      }
      return value;
    }
    case 'array':
      return [exampleOf(form.items, field, path, ids)];
    case 'integer':
      return Math.max(form.minimum ?? 1, 1);
    case 'number':
      return 1;
    case 'boolean':
      return false;
    case 'string':
      if (form.format === 'uuid') return idForField(ids, field, path);
      if (form.format === 'date') return '2026-01-15';
      if (form.format === 'date-time') return '2026-01-15T10:00:00Z';
      if (form.pattern === '^[A-Z]{2}$') return 'KE';
      if (field === 'idempotency_key') return `fuzz-${randomUUID()}`;
      return `fz-${field}`.slice(0, form.maxLength ?? 100).padEnd(form.minLength ?? 1, 'x');
    default:
      return 'x';
  }
}

interface Case {
  name: string;
  /** false: the request is wrong whatever its body, so it must be refused (4xx). */
  mayAccept: boolean;
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string | Buffer;
  /** The parsed body, to check a success against the documented schema. */
  json?: Json | undefined;
}

/** Every (pointer, schema) of a value, depth first: the places a mutation can land. */
function slotsOf(value: Json, schema: Schema | undefined, pointer: string[] = []): Array<{ pointer: string[]; schema: Schema | undefined; value: Json }> {
  const form = concrete(schema);
  const slots: Array<{ pointer: string[]; schema: Schema | undefined; value: Json }> = [{ pointer, schema: form, value }];
  if (Array.isArray(value)) value.forEach((item, index) => slots.push(...slotsOf(item, form?.items, [...pointer, String(index)])));
  else if (value !== null && typeof value === 'object') {
    for (const [name, item] of Object.entries(value)) slots.push(...slotsOf(item, form?.properties?.[name], [...pointer, name]));
  }
  return slots;
}

function replaced(value: Json, pointer: string[], replacement: Json | undefined): Json {
  if (pointer.length === 0) return replacement as Json;
  const [head, ...rest] = pointer as [string, ...string[]];
  if (Array.isArray(value)) {
    const copy = value.slice();
    copy[Number(head)] = replaced(copy[Number(head)]!, rest, replacement);
    return copy;
  }
  const copy = { ...(value as Record<string, Json>) };
  if (rest.length === 0 && replacement === undefined) delete copy[head];
  else copy[head] = replaced(copy[head]!, rest, replacement);
  return copy;
}

const LONG = 'x'.repeat(20_000);
const ODD_STRINGS: Array<[string, string]> = [
  ['empty', ''],
  ['NUL', 'a\u0000b'],
  ['lone high surrogate', 'a\ud800b'],
  ['lone low surrogate', '\udfff'],
  ['RTL marks', '\u202eabc\u200f\u2066'],
  ['BOM and zero-width', '\ufeff\u200b'],
  ['emoji', '🧾💸'],
  ['very long', LONG],
  ['spaces only', '   '],
  ['SQL-ish', "'; DROP TABLE sales; --"],
];
const ODD_NUMBERS: Array<[string, Json]> = [
  ['0', 0],
  ['-1', -1],
  ['2^53', 2 ** 53],
  ['2^53+2', 2 ** 53 + 2],
  ['1e308', 1e308],
  ['-1e308', -1e308],
  ['1.5', 1.5],
  ['1e-7', 1e-7],
  ['numeric string', '12'],
  ['max int32 + 1', 2 ** 31],
  ['-0', -0],
];
const WRONG_TYPES: Array<[string, Json]> = [
  ['null', null],
  ['true', true],
  ['object', {}],
  ['array', []],
  ['number', 7],
  ['string', 'seven'],
];
const BAD_DATES = ['2026-02-30', '0000-01-01', '10000-01-01', '2026-13-01', '2026-1-1', '15/01/2026', '2026-02-29', '-2026-01-01'];
const BAD_DATE_TIMES = [
  '2026-02-30T10:00:00Z',
  '0000-01-01T00:00:00Z',
  '0001-01-01T00:00:00+15:59',
  '9999-12-31T23:59:59-15:59',
  '2026-01-15T25:00:00Z',
  '2026-01-15T10:00:00+99:00',
  '2026-01-15T10:00:60Z',
  '2026-01-15',
  '2026-01-15T10:00:00',
  '294277-01-01T00:00:00Z',
  '2026-01-15T10:00:00+16:00',
  '2026-01-15T10:00:00-23:59',
  '2026-01-15T10:00:00+20',
];

describe('fuzzing every mutating operation with bad input: a 4xx problem, nothing changed, never a 5xx', () => {
  let t: TestApp;
  let owner: ApiClient;
  let ownerToken: string;
  let agentToken: string;
  let doc: { paths: Record<string, Record<string, Operation>> };
  let mine: Ids;
  let theirs: Ids;
  let snapshotSql: string;
  const ajv = makeBodyAjv();

  /** Ids of one tenant's records, one of each kind the API's paths and bodies name. */
  async function seedTenant(): Promise<{ ids: Ids; owner: ApiClient; token: string; agent: string }> {
    const { tenantId, owner, token } = await t.newTenant();
    const ok = async (response: Promise<{ status: number; body: any }>, what: string) => {
      const answered = await response;
      assert.ok(answered.status >= 200 && answered.status < 300, `${what}: ${answered.status} ${JSON.stringify(answered.body)}`);
      return answered.body;
    };
    const store = (await ok(owner.post('/v1/stores', { code: 'MAIN', name: 'Main' }), 'store')).id;
    const store2 = (await ok(owner.post('/v1/stores', { code: 'TWO', name: 'Two' }), 'store 2')).id;
    const sku = (await ok(owner.post('/v1/skus', { code: 'SOAP', name: 'Soap', unit: 'piece', price: 120 }), 'sku')).id;
    const ropeSku = (await ok(owner.post('/v1/skus', { code: 'ROPE', name: 'Rope', unit: 'metre', price: 30, tracks_pieces: true }), 'rope')).id;
    const receipt = await ok(owner.post(`/v1/stores/${store}/stock/receipts`, { items: [{ sku_id: sku, quantity: 1000 }] }), 'receipt');
    const customer = (await ok(owner.post('/v1/parties', { kind: 'customer', name: 'Ada' }), 'customer')).id;
    const agent = await ok(owner.post('/v1/tokens', { name: 'agent', role: 'field_agent', store_ids: [store] }), 'agent');
    const cashier = await ok(owner.post('/v1/tokens', { name: 'till', role: 'cashier' }), 'cashier');
    const pointOfSale = (await ok(owner.post('/v1/points-of-sale', { name: 'Kiosk', store_id: store, latitude: 1, longitude: 1 }), 'point of sale')).id;
    const visit = (await ok(owner.post('/v1/visits', { point_of_sale_id: pointOfSale, agent_token_id: agent.id, scheduled_for: '2026-01-15T10:00:00Z' }), 'visit')).id;
    const transfer = (await ok(owner.post('/v1/transfers', { source_store_id: store, destination_store_id: store2, items: [{ sku_id: sku, quantity: 1 }] }), 'transfer')).id;
    const sale = (await ok(owner.post('/v1/sales', { store_id: store, payment_method: 'cash', items: [{ sku_id: sku, quantity: 1, unit_price: 120 }] }), 'sale')).id;
    const settlement = (await ok(owner.post('/v1/settlements', { store_id: store, business_date: '2026-01-14', declared_cash: 120 }), 'settlement')).id;
    const pieces = await ok(owner.post('/v1/pieces', { store_id: store, sku_id: ropeSku, pieces: [{ kind: 'roll', quantity: 10_000 }, { kind: 'roll', quantity: 5_000 }] }), 'pieces');
    const pieceIds = (pieces.pieces ?? pieces.items).map((piece: { id: string }) => piece.id);
    const reservation = (await ok(owner.post('/v1/pieces/reservations', { piece_ids: [pieceIds[1]], expires_in_seconds: 3600 }), 'reservation')).op_id;
    const order = (
      await ok(
        owner.post('/v1/orders', {
          store_id: store,
          lines: [{ sku_id: sku, quantity: 1 }],
          shipping_address: { name: 'Ada', line1: '1 Quay St', city: 'Lisbon', postal_code: '1100-001', country: 'PT' },
          payment_reference: 'pay-1',
        }),
        'order',
      )
    ).id;
    return {
      ids: { tenantId, store, store2, sku, ropeSku, customer, pointOfSale, agentToken: agent.id, piece: pieceIds[0], reservation, order, transfer, sale, settlement, visit, token: cashier.id, operation: receipt.op_id },
      owner,
      token,
      agent: agent.token,
    };
  }

  before(async () => {
    t = await startTestApp({ fulfilmentWebhookSecret: WEBHOOK_SECRET });
    const a = await seedTenant();
    ({ owner } = a);
    mine = a.ids;
    ownerToken = a.token;
    agentToken = a.agent;
    theirs = (await seedTenant()).ids;
    doc = (await owner.get('/openapi.json')).body;
    // Every table: a refused request leaves all of them as they were.
    const { rows } = await t.admin.query<{ name: string }>(
      `SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) AS name FROM information_schema.tables
        WHERE table_type = 'BASE TABLE' AND (table_schema = 'public' OR (table_schema = 'graphile_worker' AND table_name = '_private_jobs'))
        ORDER BY 1`,
    );
    assert.ok(rows.length > 30, `tables: ${rows.map((row) => row.name)}`);
    snapshotSql = rows
      .map(({ name }) => `SELECT '${name}' AS name, count(*)::int AS n, max(xmin::text::bigint)::text AS w FROM ${name}`)
      .join('\nUNION ALL\n');
  });
  after(() => t?.close());

  /**
   * Per table: its row count and the newest transaction that wrote one of its
   * rows (xmin). An insert or update stamps rows with a newer xmin, a delete
   * lowers the count, so any committed write shows — at a fraction of the
   * cost of comparing contents, which matters at thousands of requests.
   */
  async function snapshot(): Promise<Record<string, string>> {
    // Prepared once per connection: planning the union of every table is most of its cost.
    const { rows } = await t.admin.query<{ name: string; n: number; w: string | null }>({ name: 'fuzz-snapshot', text: snapshotSql });
    return Object.fromEntries(rows.map((row) => [row.name, `${row.n}:${row.w}`]));
  }

  function changedTables(before: Record<string, string>, after: Record<string, string>): string[] {
    return Object.keys(after).filter((name) => before[name] !== after[name]);
  }

  /** The token an operation is sent with: the one that may call it, so the request reaches its validation and its command. */
  function tokenFor(path: string): string | undefined {
    if (path === '/v1/tenants' || path.startsWith('/v1/system/')) return t.operatorToken;
    if (path === '/v1/webhooks/fulfilment') return undefined;
    if (path === '/v1/visits/{id}/complete') return agentToken;
    return ownerToken;
  }

  function headersFor(path: string, extra: Record<string, string> = {}): Record<string, string> {
    const token = tokenFor(path);
    return {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      // A sync batch's own key is recorded before its sales are applied (by
      // design), so its body cases go without one: a batch whose every sale is
      // refused then changes nothing.
      ...(path === '/v1/sync/sales' ? {} : { 'idempotency-key': `fuzz-${randomUUID()}` }),
      ...extra,
    };
  }

  /** The webhook is signed (with the configured secret) so its bodies reach the handler, not only the signature check. */
  function signed(path: string, headers: Record<string, string>, body: string | Buffer | undefined): Record<string, string> {
    if (path !== '/v1/webhooks/fulfilment') return headers;
    return { ...headers, 'fulfilment-signature': signWebhook(WEBHOOK_SECRET, Math.floor(Date.now() / 1000), body === undefined ? '' : body.toString()) };
  }

  function realPath(template: string, id: string | undefined): string {
    return template.replace(/\{[a-z_]+\}/g, id ?? '');
  }

  /** All the bad requests for one operation: body mutations, then the structural ones (sent whatever the sample). */
  function casesFor(method: string, template: string, operation: Operation): { sampled: Case[]; structural: Case[] } {
    const schema = operation.requestBody?.content['application/json']?.schema;
    const upper = method.toUpperCase();
    const path = realPath(template, idForPath(mine, template));
    const base = exampleOf(schema, 'body', template, mine);
    const form = concrete(schema);
    const json = (name: string, value: Json | undefined, mayAccept = true): Case => ({
      name,
      mayAccept,
      method: upper,
      path,
      headers: headersFor(template, { 'content-type': 'application/json' }),
      body: value === undefined ? undefined : JSON.stringify(value),
      json: value,
    });

    const sampled: Case[] = [];
    for (const slot of slotsOf(base, form)) {
      if (slot.pointer.length === 0) continue;
      const at = `/${slot.pointer.join('/')}`;
      const field = slot.pointer.filter((part) => !/^\d+$/.test(part)).at(-1) ?? 'body';
      for (const [name, value] of WRONG_TYPES) sampled.push(json(`${at} as ${name}`, replaced(base, slot.pointer, value)));
      const slotForm = concrete(slot.schema);
      if (slotForm?.type === 'integer' || slotForm?.type === 'number') {
        for (const [name, value] of ODD_NUMBERS) sampled.push(json(`${at} = ${name}`, replaced(base, slot.pointer, value)));
      }
      if (slotForm?.type === 'string') {
        for (const [name, value] of ODD_STRINGS) sampled.push(json(`${at} ${name}`, replaced(base, slot.pointer, slotForm.format === 'uuid' ? `${mine.store}${value}` : value)));
        if (slotForm.format === 'uuid') {
          // Well-formed ids that name nothing of this tenant: refused, whatever the field.
          const mayAccept = template === '/v1/webhooks/fulfilment';
          sampled.push(json(`${at} names nothing`, replaced(base, slot.pointer, randomUUIDFrom(at)), mayAccept));
          sampled.push(json(`${at} of another tenant`, replaced(base, slot.pointer, idForField(theirs, field, template)), mayAccept));
          sampled.push(json(`${at} not a uuid`, replaced(base, slot.pointer, 'not-a-uuid')));
          sampled.push(json(`${at} nil uuid`, replaced(base, slot.pointer, '00000000-0000-0000-0000-000000000000'), mayAccept));
        }
        if (slotForm.format === 'date') for (const date of BAD_DATES) sampled.push(json(`${at} = ${date}`, replaced(base, slot.pointer, date)));
        if (slotForm.format === 'date-time') for (const date of BAD_DATE_TIMES) sampled.push(json(`${at} = ${date}`, replaced(base, slot.pointer, date)));
      }
      if (slotForm?.type === 'array') {
        sampled.push(json(`${at} empty`, replaced(base, slot.pointer, [])));
        const item = (slot.value as Json[])[0] ?? null;
        sampled.push(json(`${at} repeated 1001 times`, replaced(base, slot.pointer, Array.from({ length: 1001 }, () => item))));
        sampled.push(json(`${at} item twice`, replaced(base, slot.pointer, [item, item])));
      }
      if (slotForm?.type === 'object') {
        sampled.push(json(`${at} with an extra field`, replaced(base, [...slot.pointer, 'zz_extra'], 1)));
        for (const name of slotForm.required ?? []) sampled.push(json(`${at} without ${name}`, replaced(base, [...slot.pointer, name], undefined)));
      }
    }

    const structural: Case[] = [];
    // Every number of the body at its documented extreme at once (products and
    // sums of values each fine alone), and every string at its longest in
    // characters that take several bytes.
    for (const [name, pick] of [
      ['every number at its maximum', (form: Schema) => form.maximum ?? 2 ** 53],
      ['every number at its minimum', (form: Schema) => form.minimum ?? -(2 ** 53)],
    ] as const) {
      let value = base;
      for (const slot of slotsOf(base, form)) {
        const slotForm = concrete(slot.schema);
        if (slotForm?.type === 'integer' || slotForm?.type === 'number') value = replaced(value, slot.pointer, pick(slotForm));
      }
      if (value !== base) structural.push(json(name, value));
    }
    let longest = base;
    for (const slot of slotsOf(base, form)) {
      const slotForm = concrete(slot.schema);
      if (slotForm?.type === 'string' && !slotForm.format && !slotForm.enum && !slotForm.pattern && slot.pointer.length > 0) {
        longest = replaced(longest, slot.pointer, '€'.repeat(slotForm.maxLength ?? 1000));
      }
    }
    if (longest !== base) structural.push(json('every string at its longest, in 3-byte characters', longest));
    if (form?.type === 'object') {
      for (const name of form.required ?? []) structural.push(json(`without ${name}`, replaced(base, [name], undefined)));
      structural.push(json('with an extra field', { ...(base as Record<string, Json>), zz_extra: 'x' }));
      const rest = JSON.stringify(base).slice(1);
      structural.push(json('a field named __proto__', JSON.parse(`{"__proto__": {"x": 1}${rest === '}' ? '' : ','} ${rest}`) as Json));
    }
    const text = JSON.stringify(base);
    const raw = (name: string, body: string | Buffer | undefined, headers: Record<string, string>, mayAccept = false): Case => ({
      name,
      mayAccept,
      method: upper,
      path,
      headers: headersFor(template, headers),
      body,
      // The base body's own text: what it parses to, to judge a success by.
      json: body === text ? base : undefined,
    });
    const acceptsNoBody = schema === undefined || (schema.anyOf ?? []).some((alternative) => alternative.type === 'null');
    structural.push(
      raw('no body', undefined, {}, acceptsNoBody),
      raw('an empty JSON body', '', { 'content-type': 'application/json' }, acceptsNoBody),
      raw('not JSON', 'this is not json', { 'content-type': 'application/json' }),
      raw('truncated JSON', text.slice(0, -1), { 'content-type': 'application/json' }),
      raw('JSON with a trailing comma', `${text.slice(0, -1)},}`, { 'content-type': 'application/json' }),
      raw('a JSON array', '[]', { 'content-type': 'application/json' }),
      raw('a JSON string', '"body"', { 'content-type': 'application/json' }),
      raw('a JSON number', '12', { 'content-type': 'application/json' }),
      raw('deeply nested JSON', `${'['.repeat(20_000)}${']'.repeat(20_000)}`, { 'content-type': 'application/json' }),
      raw('invalid UTF-8', Buffer.concat([Buffer.from('{"name":"'), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}')]), { 'content-type': 'application/json' }),
      raw('as text/plain', text, { 'content-type': 'text/plain' }),
      raw('as a form', 'name=x', { 'content-type': 'application/x-www-form-urlencoded' }),
      raw('as multipart without a boundary', text, { 'content-type': 'multipart/form-data' }),
      raw('as JSON in UTF-16', text, { 'content-type': 'application/json; charset=utf-16' }),
      raw('with a garbage media type', text, { 'content-type': 'garbage' }),
      raw('with an empty media type', text, { 'content-type': '' }),
      raw('as application/jsonx', text, { 'content-type': 'application/jsonx' }),
      raw('without a media type', text, {}),
    );
    const declares = (header: string) => operation.parameters?.some((parameter) => parameter.in === 'header' && parameter.name === header) ?? false;
    if (declares('idempotency-key')) {
      structural.push(
        raw('Idempotency-Key empty', text, { 'content-type': 'application/json', 'idempotency-key': '' }),
        raw('Idempotency-Key of 256 characters', text, { 'content-type': 'application/json', 'idempotency-key': 'k'.repeat(256) }),
        raw('Idempotency-Key of 8000 characters', text, { 'content-type': 'application/json', 'idempotency-key': 'k'.repeat(8000) }),
        // UTF-8 on the wire (Node hands it over as Latin-1), read as the text it encodes (headerText): a key, which may be taken.
        raw('Idempotency-Key in UTF-8', text, { 'content-type': 'application/json', 'idempotency-key': Buffer.from('ключ-🔑-\u202e', 'utf8').toString('latin1') }, true),
        raw('Idempotency-Key reserved', text, { 'content-type': 'application/json', 'idempotency-key': 'sync-batch:mine' }),
      );
    }
    if (declares('if-match')) {
      for (const ifMatch of ['garbage', '"', 'W/', '"99999999999999999999999"', '"-1"', '"1.5"', ',', '"0"', `"${'9'.repeat(300)}"`, 'W/"abc", "def"']) {
        structural.push(raw(`If-Match ${ifMatch.slice(0, 30)}`, text, { 'content-type': 'application/json', 'if-match': ifMatch }));
      }
    }
    if (template.includes('{')) {
      const bad = (name: string, id: string, mayAccept = false): Case => ({ ...json(`path id ${name}`, base, mayAccept), path: realPath(template, id) });
      structural.push(
        bad('names nothing', randomUUIDFrom(template)),
        bad('of another tenant', idForPath(theirs, template) ?? randomUUIDFrom('x')),
        bad('not a uuid', 'not-a-uuid'),
        bad('with a NUL', '%00'),
        bad('a uuid with a tail', `${mine.store}x`),
        bad('far too long', 'a'.repeat(5000)),
        bad('a number', '12'),
      );
    }
    return { sampled, structural };
  }

  interface Finding {
    operation: string;
    name: string;
    problem: string;
  }

  /** What is wrong with a refusal: not a 4xx, not a problem document with a code, a validation failure without field paths. */
  function problemFault(answer: Sent): string | undefined {
    if (answer.status < 400 || answer.status >= 500) return `status ${answer.status}: ${answer.text.slice(0, 300)}`;
    if (!/^application\/problem\+json/.test(answer.contentType)) return `${answer.status} with content-type ${answer.contentType}: ${answer.text.slice(0, 200)}`;
    if (typeof answer.body?.code !== 'string' || answer.body.status !== answer.status) return `${answer.status} without a code: ${answer.text.slice(0, 200)}`;
    if (answer.body.code === 'validation_failed') {
      const paths = (answer.body.errors ?? []).map((error: { path?: unknown }) => error.path);
      // The path of the field at fault: `/body/…`, `/querystring/…`, `/params/…`, `/headers/…` or `/url` (never just `/`).
      if (paths.length === 0 || !paths.every((path: unknown) => typeof path === 'string' && /^\/(body|querystring|params|headers|url)\b/.test(path))) {
        return `validation_failed without field paths: ${answer.text.slice(0, 300)}`;
      }
    }
    return undefined;
  }

  /** A case the server may accept: nothing else is wrong with it and its body is valid by the documented schema. */
  function acceptable(request: Case, schema: Schema | undefined): boolean {
    if (!request.mayAccept) return false;
    if (request.path === '/v1/sync/sales') return true; // sale by sale: some may be applied
    return schema === undefined || request.json === undefined || ajv.validate(schema, structuredClone(request.json));
  }

  /**
   * Sends the cases of every mutating operation and collects what is wrong
   * with the answers. Tables are compared after every request that may be
   * accepted, and after every few that must be refused (a change then names
   * those few): a snapshot per request would double the run time.
   */
  async function fuzz(operations: Array<{ name: string; schema: Schema | undefined; cases: Case[] }>): Promise<{ findings: Finding[]; sent: number }> {
    const findings: Finding[] = [];
    let baseline = await snapshot();
    let pending: Array<{ operation: string; name: string }> = [];
    const settle = async () => {
      if (pending.length === 0) return;
      const after = await snapshot();
      const changed = changedTables(baseline, after);
      if (changed.length > 0) {
        findings.push({ operation: pending[0]!.operation, name: pending.map((request) => request.name).join(' | '), problem: `refused, yet one of these changed ${changed.join(', ')}` });
        baseline = after;
      }
      pending = [];
    };
    let sent = 0;
    for (const { name: operation, schema, cases } of operations) {
      for (const request of cases) {
        const finding = (problem: string) => findings.push({ operation, name: request.name, problem });
        const mayChange = acceptable(request, schema);
        if (mayChange) await settle();
        sent++;
        let answer: Sent;
        try {
          answer = await send(t.baseUrl, request.method, request.path, signed(operation.split(' ')[1]!, request.headers, request.body), request.body);
        } catch (error) {
          finding(`no answer: ${(error as Error).message}`);
          continue;
        }
        if (answer.status >= 200 && answer.status < 300) {
          // Taken, so the tables may have changed: a new baseline. (A case that
          // had to be refused is a finding of its own, and the refused ones
          // since the last snapshot can no longer be told apart from it.)
          pending = [];
          const after = await snapshot();
          const changed = changedTables(baseline, after);
          baseline = after;
          if (request.path === '/v1/sync/sales' && answer.status === 200 && Array.isArray(answer.body?.results)) {
            // A batch is answered 200 with a result per sale, each as if the sale was sent alone.
            const sales = ((request.json as { sales?: Json[] } | undefined)?.sales ?? []) as Json[];
            let applied = false;
            for (const [index, result] of (answer.body.results as Array<{ status: number; body: any }>).entries()) {
              if (result.status >= 200 && result.status < 300) {
                applied = true;
                if (!request.mayAccept) finding(`sale ${index} of the batch applied (${result.status}) though it must be refused`);
                else if (!ajv.validate(schema!.properties!.sales!.items!, structuredClone(sales[index]))) finding(`sale ${index} applied though its documented schema refuses it: ${ajv.errorsText(ajv.errors)}`);
              } else {
                const fault = problemFault({ status: result.status, contentType: 'application/problem+json', body: result.body, text: JSON.stringify(result.body) });
                if (fault) finding(`sale ${index}: ${fault}`);
              }
            }
            // With its own Idempotency-Key, a batch is recorded before its sales are applied.
            const batchRecorded = request.headers['idempotency-key'] !== undefined;
            if (!applied && !batchRecorded && changed.length > 0) finding(`every sale refused, yet it changed ${changed.join(', ')}`);
          } else if (!mayChange) {
            finding(`accepted (${answer.status}) a request that must be refused: ${answer.text.slice(0, 300)}`);
          }
          continue;
        }
        const fault = problemFault(answer);
        if (fault) finding(fault);
        pending.push({ operation, name: request.name });
        if (mayChange || pending.length >= 8) await settle();
      }
      await settle();
    }
    return { findings, sent };
  }

  it('refuses every malformed request to every mutating operation with a 4xx problem, and changes nothing', async () => {
    const random = prng(SEED);
    const operations: Array<{ name: string; schema: Schema | undefined; cases: Case[] }> = [];
    for (const [template, methods] of Object.entries(doc.paths)) {
      for (const [method, operation] of Object.entries(methods)) {
        if (!['post', 'put', 'patch', 'delete'].includes(method)) continue;
        const { sampled, structural } = casesFor(method, template, operation);
        operations.push({ name: `${method} ${template}`, schema: operation.requestBody?.content['application/json']?.schema, cases: [...sample(sampled, CASES_PER_OPERATION, random), ...structural] });
      }
    }
    assert.ok(operations.length >= 30, `mutating operations: ${operations.length}`);
    const { findings, sent } = await fuzz(operations);
    assert.ok(sent > 1500, `requests sent: ${sent}`);
    assert.deepEqual(findings, [], `${findings.length} of ${sent} requests answered wrongly:\n${findings.map((f) => `${f.operation} — ${f.name}: ${f.problem}`).join('\n')}`);
  });
  /** A GET route with its path parameters filled with records of this tenant. */
  function getPath(template: string): string {
    return template.replace(/\{([a-z_]+)\}/g, (_, name: string) => {
      if (name === 'store_id') return mine.store;
      if (name === 'sku_id') return mine.sku;
      if (name === 'kind') return 'cash_drawer';
      if (name === 'op_id') return mine.operation;
      if (template.startsWith('/v1/points-of-sale/')) return mine.pointOfSale;
      if (template.startsWith('/v1/pieces/')) return mine.piece;
      if (template.startsWith('/v1/parties/')) return mine.customer;
      return idForPath(mine, template) ?? randomUUIDFrom(template);
    });
  }

  it('refuses bad query parameters of every list with a 4xx problem at the parameter, and never fails or hangs', async () => {
    const base64 = (text: string) => Buffer.from(text, 'utf8').toString('base64url');
    const anotherListsCursor = (await owner.get('/v1/stores?limit=1')).body.next_cursor as string;
    assert.equal(typeof anotherListsCursor, 'string');
    const byType = (name: string, schema: Schema | undefined, template: string): Array<[string, boolean]> => {
      const form = concrete(schema);
      if (name === 'limit') return [['0', false], ['-1', false], ['501', false], ['99999999999999999999', false], ['1e400', false], ['abc', false], ['1.5', false], ['', false], ['%00', false], ['NaN', false], ['Infinity', false]];
      if (name === 'cursor') {
        return [
          ['garbage', false],
          ['!!!', false],
          [base64('not json'), false],
          [base64('{}'), false],
          [base64('[]'), false],
          [base64('null'), false],
          [base64('{"id":1}'), true], // a position in the lists that page by a bigint id
          [base64('{"id":"not-a-uuid","created_at":"yesterday"}'), false],
          [base64('{"__proto__":{"x":1}}'), false],
          [base64('"\u0000"'), false],
          ['x'.repeat(501), false],
          [`${anotherListsCursor}x`, false],
          [anotherListsCursor, template === '/v1/stores'], // a cursor is read only by the list that wrote it
          ['%00', false],
          ['%FF%FE', false],
        ];
      }
      if (form?.format === 'uuid') return [['not-a-uuid', false], ['%00', false], [randomUUIDFrom(name), true], [idForField(theirs, name, ''), true]];
      if (form?.format === 'date') return [...BAD_DATES.map((date): [string, boolean] => [encodeURIComponent(date), false]), ['yesterday', false], ['', false]];
      if (form?.format === 'date-time') return [...BAD_DATE_TIMES.map((date): [string, boolean] => [encodeURIComponent(date), false]), ['now', false], ['epoch', false]];
      if (form?.type === 'boolean') return [['maybe', false], ['2', false], ['%00', false]];
      if (form?.type === 'integer') return [['abc', false], ['1.5', false], ['99999999999999999999', false]];
      return [['%00', false], ['x%00', false], ['%ED%A0%80', true], ['x'.repeat(5000), true], ['bogus', true]];
    };
    const findings: string[] = [];
    let baseline = await snapshot();
    let sent = 0;
    const headers = { authorization: `Bearer ${ownerToken}` };
    for (const [template, methods] of Object.entries(doc.paths)) {
      const operation = methods.get;
      if (!operation) continue;
      const path = getPath(template);
      const query = (operation.parameters ?? []).filter((parameter) => parameter.in === 'query') as Array<{ name: string; schema?: Schema }>;
      // A route without query parameters has no query schema: it ignores them.
      const cases: Array<[string, boolean]> = [['zz_unknown=1', query.length === 0]];
      for (const parameter of query) for (const [value, mayAccept] of byType(parameter.name, parameter.schema, template)) cases.push([`${parameter.name}=${value}`, mayAccept]);
      // Required parameters are sent well-formed beside the bad one, so each bad one is judged on its own.
      const required = template === '/v1/analytics/daily-sales' ? { store_id: mine.store, from: '2026-01-01', to: '2026-01-31' } : {};
      for (const entry of cases) {
        const name = entry[0].split('=')[0]!;
        const others = Object.entries(required).filter(([other]) => other !== name).map(([other, value]) => `${other}=${value}`);
        entry[0] = [...others, entry[0]].join('&');
      }
      if (query.some((parameter) => parameter.name === 'limit')) cases.push(['limit=1&limit=2', false]);
      if (template === '/v1/analytics/daily-sales') cases.push([`store_id=${mine.store}&from=0001-01-01&to=9999-12-31`, true], [`store_id=${mine.store}&from=2026-02-01&to=2026-01-01`, true]);
      for (const [queryText, mayAccept] of cases) {
        sent++;
        const url = `${path}?${queryText}`;
        let answer: Sent;
        try {
          answer = await send(t.baseUrl, 'GET', url, template.startsWith('/v1/system/') ? { authorization: `Bearer ${t.operatorToken}` } : headers);
        } catch (error) {
          findings.push(`GET ${url.slice(0, 120)}: no answer: ${(error as Error).message}`);
          continue;
        }
        if (answer.status >= 200 && answer.status < 300) {
          if (!mayAccept) findings.push(`GET ${url.slice(0, 120)}: accepted (${answer.status}) a query that must be refused`);
        } else {
          const fault = problemFault(answer);
          if (fault) findings.push(`GET ${url.slice(0, 120)}: ${fault}`);
        }
      }
      const after = await snapshot();
      const changed = changedTables(baseline, after);
      if (changed.length > 0) findings.push(`GET ${template}: reading changed ${changed.join(', ')}`);
      baseline = after;
    }
    assert.ok(sent > 200, `requests sent: ${sent}`);
    assert.deepEqual(findings, [], `${findings.length} of ${sent} requests answered wrongly:\n${findings.join('\n')}`);
  });
});
