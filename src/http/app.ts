import http from 'node:http';
import type { Socket } from 'node:net';
import { randomUUID } from 'node:crypto';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import cors from '@fastify/cors';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import pg from 'pg';
import type { Config } from '../config.js';
import { bearerCredential, type Authenticator, type Principal } from '../core/auth.js';
import { currentScope, runInScope } from '../core/context.js';
import type { Db } from '../core/db.js';
import { AppError, ERROR_STATUS } from '../core/errors.js';
import { briefly, type Logger } from '../core/logger.js';
import { apiMetrics, httpRequestDuration, metricsAllowed } from '../core/metrics.js';
import { pendingMigrations } from '../core/migrate.js';
import { roleHas, type Permission } from '../core/permissions.js';
import { answerClientError, logAnsweredError, sendProblem, toAppError, writeProblem } from './problem.js';
import { idempotencyKeyOf } from './command.js';
import { headerLineValues } from './headerText.js';
import { bodyIsOptional, NoQuery, Problem as ProblemSchema } from './schemas.js';
import { makeBodyAjv, makeTextAjv } from './ajv.js';
import { assertStorableText, MERGE_PATCH_JSON, mergePatchParser, strictJsonParser } from './json.js';
import { AuthFailureLimiter } from './authFailures.js';
import { clientOf, rateLimitKeyOf } from './rateLimitKey.js';
import { routeModules } from './routes.js';
import { corsOptions, isCorsCatchAll, isCorsCatchAllRoute } from './cors.js';
import { BEFORE_ROUTING, documentedRefusals, isDeclared, openApiPath, refusalsOf, type Refusals } from './refusals.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the auth hook; null only on routes with `auth: 'none'`. */
    principal: Principal | null;
  }
  interface FastifyContextConfig {
    /** Who may call: `tenant` (default) a tenant token, `operator` the root token, `none` anyone. */
    auth?: 'none' | 'operator' | 'tenant';
    /** Permission a tenant token's role must have; checked before the body is read. */
    permission?: Permission;
    /**
     * The route itself refuses body text the database cannot store (a NUL, a
     * lone surrogate): the webhook after its signature check, the sync batch
     * sale by sale (one such sale must not hold up the rest of a till's queue).
     */
    textCheckedByRoute?: boolean;
    /**
     * The refusals that are the route's own, by problem code (src/http/refusals.ts):
     * those that follow from the kind of route (a token, a permission, a path
     * id, a body, an Idempotency-Key, an If-Match) are derived and need not be named.
     */
    refusals?: Refusals;
  }
}

export interface AppDeps {
  config: Config;
  pool: pg.Pool;
  db: Db;
  logger: Logger;
  authenticator: Authenticator;
  /** Called on unexpected errors (Sentry when configured). */
  reportError?: (error: unknown) => void;
  /**
   * Tests: called for every problem answered by a documented route whose
   * (status, code) the route does not declare (src/http/refusals.ts), so a
   * refusal missing from the OpenAPI document fails the test that caused it.
   */
  onUndeclaredRefusal?: (refusal: UndeclaredRefusal) => void;
}

export interface UndeclaredRefusal {
  method: string;
  route: string;
  status: number;
  code: string;
}

export type App = FastifyInstance<http.Server, http.IncomingMessage, http.ServerResponse, FastifyBaseLogger, TypeBoxTypeProvider>;

const CORRELATION_HEADER = 'x-correlation-id';
/**
 * A given X-Correlation-ID is kept (API.md) when it is 1–200 printable ASCII
 * characters — trace ids of load balancers and APM agents carry `;`, `|`,
 * spaces… —; anything else (longer, not ASCII) is replaced by a generated one.
 */
const CORRELATION_ID = /^[\x21-\x7e](?:[\x20-\x7e]{0,198}[\x21-\x7e])?$/;
/** The methods routes are registered for (HEAD comes with every GET). */
const ROUTABLE_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

/**
 * Closes a connection taken from the HTTP server (a CONNECT's) once its answer
 * is sent: destroyed, not just ended — the server's sockets are half-open, so
 * an end alone left it open until the client ended its side, and a client
 * that never did held it for ever (no HTTP timeout watches it any more) and
 * with it the server's shutdown (close waits for every connection).
 */
function closeAfterAnswer(socket: Socket): void {
  socket.end(() => socket.destroy());
}

/** Whether a path is valid percent-encoding (what the router checks before routing). */
function isPercentEncoding(path: string): boolean {
  try {
    decodeURI(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * The request's correlation id: its X-Correlation-ID as sent when usable
 * (CORRELATION_ID), else a generated one. Several header lines — a client's
 * id and a proxy's, a client library that adds its own — reach us joined by
 * Node into one value, `a, b`: an id nobody sent, found in no other system's
 * log, and it was used. The first usable line is the id: the one nearest the
 * request's origin (a proxy adds its line after those it received). A
 * tracing header is never a reason to refuse a request.
 */
function correlationIdOf(request: http.IncomingMessage): string {
  const given = request.headers[CORRELATION_HEADER];
  if (typeof given !== 'string') return randomUUID();
  // Only a joined value holds ', ' (one line may too): the raw lines are read only then, off the common path.
  if (given.includes(', ')) {
    const lines = headerLineValues(request.rawHeaders, CORRELATION_HEADER);
    if (lines.length > 1) return lines.find((line) => CORRELATION_ID.test(line)) ?? randomUUID();
  }
  return CORRELATION_ID.test(given) ? given : randomUUID();
}

/** The charset parameter of a Content-Type, lowercased and unquoted (undefined: none). */
function charsetOf(contentType: string | undefined): string | undefined {
  const match = contentType === undefined ? null : /;\s*charset\s*=\s*(?:"([^"]*)"|([^;\s]*))/i.exec(contentType);
  return match ? (match[1] ?? match[2] ?? '').toLowerCase() : undefined;
}


type OpenApiResponse = { description?: string; headers?: Record<string, unknown>; content?: Record<string, { schema?: { properties?: Record<string, unknown>; $ref?: string } }> };
type OpenApiRequestBody = { required?: boolean; content?: Record<string, { schema?: { anyOf?: Array<{ type?: unknown }> } }> };
type OpenApiDocument = {
  paths?: Record<string, Record<string, { responses?: Record<string, OpenApiResponse>; requestBody?: OpenApiRequestBody }>>;
  components?: { schemas?: Record<string, unknown> };
};

/**
 * TypeBox writes a union of string literals (`'cash' | 'card'`) as `anyOf`
 * one-value enums; the document says it the usual way, one string `enum`,
 * which client generators turn into an enum type. Same values, so the same
 * schema: only the document is rewritten (new objects, the routes' own
 * schemas are left as they are).
 */
export function withPlainEnums(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withPlainEnums);
  if (value === null || typeof value !== 'object') return value;
  const object = Object.fromEntries(Object.entries(value).map(([key, member]) => [key, withPlainEnums(member)])) as Record<string, unknown>;
  const branches = object.anyOf;
  const isLiteral = (branch: unknown): branch is { type: 'string'; enum: [string] } => {
    if (branch === null || typeof branch !== 'object') return false;
    const { type, enum: values, ...rest } = branch as Record<string, unknown>;
    return type === 'string' && Array.isArray(values) && values.length === 1 && Object.keys(rest).length === 0;
  };
  if (Array.isArray(branches) && branches.length > 0 && branches.every(isLiteral)) {
    const { anyOf: _anyOf, ...rest } = object;
    return { type: 'string', enum: branches.map((branch) => branch.enum[0]), ...rest };
  }
  return object;
}

/** The names an object schema of a route declares (its headers, its query parameters; an intersection of objects too). */
function propertyNamesOf(schema: unknown): string[] {
  if (schema === null || typeof schema !== 'object') return [];
  const { properties, allOf } = schema as { properties?: Record<string, unknown>; allOf?: unknown[] };
  return [...Object.keys(properties ?? {}), ...(allOf ?? []).flatMap(propertyNamesOf)];
}

/** Paths whose answers carry the record's version as `ETag` although their body has no `version` field. */
const ETAG_WITHOUT_VERSION_FIELD = new Set(['/v1/tenant/settings']);

/**
 * Every operation can be refused, and every refusal is a problem document
 * (src/http/problem.ts): the document says so once, as `4XX`/`5XX` responses
 * of every operation referring to one `Problem` schema (routes declare only
 * their successes). The response headers clients rely on (API.md) are
 * declared here too: `X-Correlation-ID` on every answer, `Idempotent-Replayed`
 * on the answers of commands, `ETag` where the answer is a record with a
 * version (what `sendVersioned` and the routes' own `reply.header('etag')`
 * send), `Retry-After` on refusals.
 */
function withProblemResponses(document: OpenApiDocument, refusalsByOperation: ReadonlyMap<string, Refusals>): OpenApiDocument {
  const problem = { $ref: '#/components/schemas/Problem' };
  const header = (description: string) => ({ description, schema: { type: 'string' } });
  const correlation = { 'X-Correlation-ID': header('the request\'s correlation id (the one sent — of several header lines, the first usable one —, or a generated one); also in logs and audit events') };
  const refusal = (description: string) => ({
    description,
    headers: {
      ...correlation,
      'Retry-After': header('seconds to wait before retrying (429 rate_limited, 503 service_unavailable)'),
      'WWW-Authenticate': header('`Bearer realm="storekeep"` on 401 unauthorized: send the token as `Authorization: Bearer <token>`'),
    },
    content: { 'application/problem+json': { schema: problem } },
  });
  document.components = { ...document.components, schemas: { ...document.components?.schemas, Problem: { ...ProblemSchema, required: [...ProblemSchema.required].sort() } } };
  for (const [path, operations] of Object.entries(document.paths ?? {})) {
    for (const [method, operation] of Object.entries(operations)) {
      // An action whose body is optional (NoBody, or all its input optional:
      // a branch `null`) is taken without one: the document says so.
      const body = operation.requestBody;
      if (body !== undefined && bodyIsOptional(body.content?.['application/json']?.schema)) body.required = false;
      for (const [status, response] of Object.entries(operation.responses ?? {})) {
        if (!status.startsWith('2')) continue;
        const headers: Record<string, unknown> = { ...response.headers, ...correlation };
        if (method !== 'get') headers['Idempotent-Replayed'] = header('`true` when this is the stored answer of an earlier request with the same Idempotency-Key (nothing new was written)');
        if (response.content?.['application/json']?.schema?.properties?.version !== undefined || ETAG_WITHOUT_VERSION_FIELD.has(path)) {
          headers.ETag = header('the record\'s version, quoted (`"3"`): send it back as If-Match');
        }
        response.headers = headers;
      }
      // The refusals this operation can answer, one response per status naming
      // its codes (src/http/refusals.ts); 4XX and 5XX stay as the catch-all.
      const specific: Record<string, OpenApiResponse> = {};
      for (const [status, description] of documentedRefusals(refusalsByOperation.get(`${method} ${path}`) ?? {})) {
        if (operation.responses?.[status] === undefined) specific[status] = refusal(description);
      }
      operation.responses = {
        ...operation.responses,
        ...specific,
        '4XX': refusal(
          `Refused: a problem document with a stable \`code\` (validation_failed, unauthorized, forbidden, not_found, insufficient_stock, idempotency_key_reused, rate_limited, …); see the README for each code's status. The statuses above name this operation's own; any request may also be refused before it reaches an operation: ${BEFORE_ROUTING.map((code) => `\`${code}\` (${ERROR_STATUS[code]})`).join(', ')}`,
        ),
        '5XX': refusal('internal_error (logged), or service_unavailable (database unreachable or not answering, shutting down, shedding load; with Retry-After: retry with the same Idempotency-Key)'),
      };
    }
  }
  return document;
}

/** How long an idle keep-alive connection is kept open (Fastify's default; see serverFactory below). */
const KEEP_ALIVE_TIMEOUT_MS = 72_000;
/** The same while the server drains (preClose). */
const DRAIN_KEEP_ALIVE_TIMEOUT_MS = 1_000;

export async function buildApp(deps: AppDeps): Promise<App> {
  const { config, logger } = deps;
  const answerError = (error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply => {
    const { appError, unexpected } = toAppError(error);
    logAnsweredError(request.log, error, unexpected, deps.reportError);
    return sendProblem(request, reply, appError);
  };
  /**
   * The answer to a method no route serves at a path: 405 naming the methods
   * that path has (its `Allow`), or 404 when it has none — for a request the
   * router found no route for and for a CONNECT, which never reaches it. Set
   * once the routes exist (below); the server calls it only after that.
   */
  let noRouteFor: (method: string, path: string) => { error: AppError; allow?: string };
  const options: FastifyServerOptions<http.Server, Logger> = {
    loggerInstance: logger,
    bodyLimit: config.bodyLimitBytes,
    logController: new LogController({
      requestIdLogLabel: 'correlation_id',
      // Probes and scrapes would drown the log.
      disableRequestLogging: (request) => /^\/(healthz|readyz|metrics)/.test(request.url),
    }),
    genReqId: (request) => (request as http.IncomingMessage & { correlationId?: string }).correlationId ?? correlationIdOf(request),
    // Requests that arrive while the server drains are refused by our own
    // onRequest hook below, as a problem like every other refusal (Fastify's
    // built-in answer is a bare JSON body without code or Retry-After).
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    routerOptions: { ignoreTrailingSlash: true },
    // Refusals made by the router before any hook runs (a path that is not
    // valid percent-encoding, a path parameter past its length) are problems
    // like any other, with the correlation id the hooks would have set.
    frameworkErrors: (error, request, reply) => {
      reply.header(CORRELATION_HEADER, request.id);
      return answerError(error, request, reply);
    },
    // Requests Node cannot even parse never reach Fastify.
    clientErrorHandler: answerClientError,
    // Every request runs inside its own async scope, so the correlation id
    // reaches every log line and audit event without being passed around.
    serverFactory: (handler) => {
      const server = http.createServer((request, response) => {
        const correlationId = correlationIdOf(request);
        (request as http.IncomingMessage & { correlationId?: string }).correlationId = correlationId;
        runInScope({ correlationId }, () => handler(request, response));
      });
      // Fastify sets these on the servers it makes, not on one a factory
      // makes. Without it an idle keep-alive connection is closed after
      // Node's 5 s: a proxy or load balancer that keeps idle connections
      // longer (60 s is common) then sends a request down a connection the
      // server is closing and answers 502. Fastify's 72 s outlasts them.
      // (requestTimeout stays Node's 300 s, not Fastify's 0 = none.)
      server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
      // CONNECT never reaches Fastify: Node hands it to this event, and
      // without a listener closed the connection unanswered. No route serves
      // it: 405 with Allow on a path that has routes, else 404, as for any
      // other method (noRouteFor), and the connection closed.
      server.on('connect', (request: http.IncomingMessage, socket: Socket) => {
        // The socket is ours now: a client that resets it must not crash the process.
        socket.on('error', () => socket.destroy());
        const path = (request.url ?? '').split('?')[0] ?? '';
        const correlationId = correlationIdOf(request);
        if (!isPercentEncoding(path)) {
          // As the router refuses such a path for every other method (FST_ERR_BAD_URL).
          writeProblem(socket, toAppError({ code: 'FST_ERR_BAD_URL' }).appError, correlationId);
          closeAfterAnswer(socket);
          return;
        }
        const { error, allow } = noRouteFor('CONNECT', path);
        writeProblem(socket, error, correlationId, allow === undefined ? {} : { Allow: allow });
        closeAfterAnswer(socket);
      });
      return server;
    },
  };
  const app = Fastify(options).withTypeProvider<TypeBoxTypeProvider>() as unknown as App;

  const bodyAjv = makeBodyAjv();
  const textAjv = makeTextAjv();
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? bodyAjv : textAjv).compile(schema));

  // A route that declares no query string takes none (NoQuery): an unknown
  // parameter is refused as the lists refuse theirs. Set before any route is
  // registered, so every route — a new one too — has it. Not the CORS
  // catch-all (a preflight's URL carries the query of the request it asks
  // about; it is answered before validation anyway) nor the browsable docs
  // (below: a page and its assets, where browsers and the UI add parameters).
  app.addHook('onRoute', (route) => {
    if (route.schema?.querystring !== undefined || isCorsCatchAllRoute(route)) return;
    route.schema = { ...route.schema, querystring: NoQuery };
  });

  app.decorateRequest('principal', null);

  // A route's Idempotency-Key is checked as the key it is — its text, UTF-8
  // read as UTF-8, of 1 to 255 characters, none of storekeep's own — before
  // the handler runs (idempotencyKeyOf), where its schema's maxLength, which
  // counted the bytes, refused it before: a bad key is 400 first, as it was.
  app.addHook('onRoute', (route) => {
    if (!propertyNamesOf(route.schema?.headers).some((name) => name.toLowerCase() === 'idempotency-key')) return;
    const checkIdempotencyKey = async (request: FastifyRequest) => {
      idempotencyKeyOf(request);
    };
    route.preHandler = [...[route.preHandler ?? []].flat(), checkIdempotencyKey];
  });

  // Each documented route's refusals (declared and derived), by `method path`
  // as the OpenAPI document writes it: for the document and the test guard.
  const refusalsByOperation = new Map<string, Refusals>();
  app.addHook('onRoute', (route) => {
    if ((route.schema as { hide?: boolean } | undefined)?.hide === true) return;
    const schema = route.schema as { headers?: unknown; querystring?: unknown } | undefined;
    const headers = propertyNamesOf(schema?.headers).map((name) => name.toLowerCase());
    for (const method of [route.method].flat()) {
      if (method === 'HEAD' || method === 'OPTIONS') continue;
      refusalsByOperation.set(
        `${method.toLowerCase()} ${openApiPath(route.url)}`,
        refusalsOf({
          method,
          url: route.url,
          auth: route.config?.auth,
          permission: route.config?.permission,
          rateLimited: (route.config as { rateLimit?: unknown } | undefined)?.rateLimit !== false,
          headers,
          query: propertyNamesOf(schema?.querystring),
          declared: route.config?.refusals,
        }),
      );
    }
  });
  const undeclared = deps.onUndeclaredRefusal;
  if (undeclared) {
    app.addHook('onSend', async (request, reply, payload) => {
      const route = request.routeOptions.url;
      const type = reply.getHeader('content-type');
      // A request no route of ours serves (404, 405) is no route's refusal.
      if (route === undefined || reachesNoRoute(request) || typeof payload !== 'string' || typeof type !== 'string' || !type.startsWith('application/problem+json')) return payload;
      const method = request.method === 'HEAD' ? 'GET' : request.method;
      const refusals = refusalsByOperation.get(`${method.toLowerCase()} ${openApiPath(route)}`);
      if (refusals === undefined) return payload;
      const { code } = JSON.parse(payload) as { code: string };
      if (!isDeclared(refusals, reply.statusCode, code)) undeclared({ method, route, status: reply.statusCode, code });
      return payload;
    });
  }
  // JSON only: a text/plain body is refused with 415 rather than parsed as a string.
  app.removeContentTypeParser('text/plain');
  // JSON as UTF-8 only (src/http/json.ts); text the database cannot store is
  // refused by the preValidation hook below, at its field.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  const jsonParser = strictJsonParser(parseJson as Parameters<typeof strictJsonParser>[0]);
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, jsonParser);
  // A JSON merge patch (RFC 7396) is JSON: the same parser, on the routes that are merge patches.
  app.addContentTypeParser(MERGE_PATCH_JSON, { parseAs: 'buffer' }, mergePatchParser(jsonParser));

  // JSON between systems is UTF-8 (RFC 8259 §8.1): a body declared in any
  // other charset is refused, not read as if it were UTF-8.
  app.addHook('preParsing', async (request, _reply, payload) => {
    const charset = charsetOf(request.headers['content-type']);
    const hasBody = request.headers['transfer-encoding'] !== undefined || (request.headers['content-length'] ?? '0') !== '0';
    if (hasBody && charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
      // Named as sent when the endpoint takes it (a merge patch on a merge-patch route), else application/json.
      const sent = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      const consumes = (request.routeOptions.schema as { consumes?: unknown } | undefined)?.consumes;
      const mediaType = Array.isArray(consumes) && consumes.includes(sent) ? sent : 'application/json';
      throw new AppError('unsupported_media_type', `send the body as ${mediaType} in UTF-8, not ${charset}`);
    }
    return payload;
  });

  // Bodies, query strings and path parameters: no text the database cannot
  // store (src/http/json.ts), refused at its field or parameter before the
  // database refuses it at path `/`.
  app.addHook('preValidation', async (request) => {
    assertStorableText(request.query, '/querystring');
    assertStorableText(request.params, '/params');
    if (request.routeOptions.config.textCheckedByRoute !== true) assertStorableText(request.body, '/body');
  });

  app.setErrorHandler(answerError);
  // No route for this method: when the path has routes for other methods it
  // is a 405 naming them in `Allow` (RFC 9110), otherwise a 404. The OPTIONS
  // catch-all that lets CORS preflights through (src/http/cors.ts) serves no
  // path: an OPTIONS that is not a preflight from an allowed origin is
  // answered here, as it is with CORS off.
  //
  // A path serves the methods whose routes match it most closely: those that
  // read the fewest of its segments as parameters. A GET of
  // `/v1/stores/{id}/stock/receipts`, a path only POST serves, is a 405
  // though `GET /v1/stores/{id}/stock/{sku_id}` would take `receipts` for a SKU id.
  const closestRoutes = (path: string): (typeof ROUTABLE_METHODS)[number][] => {
    if (!path.startsWith('/')) return [];
    const routes = ROUTABLE_METHODS.flatMap((method) => {
      const route = app.findRoute({ method, url: path });
      if (route === null || (method === 'OPTIONS' && isCorsCatchAll(route.params))) return [];
      return [{ method, parameters: Object.keys(route.params ?? {}).length }];
    });
    const fewest = Math.min(...routes.map((route) => route.parameters));
    return routes.filter((route) => route.parameters === fewest).map((route) => route.method);
  };
  noRouteFor = (method, path) => {
    const allowed = closestRoutes(path);
    if (allowed.length === 0) return { error: new AppError('not_found', `no route for ${method} ${path}`) };
    return { error: new AppError('method_not_allowed', `${path} does not serve ${method}; it serves ${allowed.join(', ')}`), allow: allowed.join(', ') };
  };
  const answerNoRoute = (request: FastifyRequest, reply: FastifyReply): FastifyReply => {
    const { error, allow } = noRouteFor(request.method, request.url.split('?')[0] ?? request.url);
    if (allow !== undefined) reply.header('allow', allow);
    return sendProblem(request, reply, error);
  };
  app.setNotFoundHandler(answerNoRoute);
  /**
   * Whether a request reaches no route of ours: none matched, or only the
   * OPTIONS catch-all CORS registers (a preflight the CORS hook answered
   * never gets this far, so this one is none, and the catch-all serves no
   * path), or a route with parameters took a word of another method's path.
   */
  const reachesNoRoute = (request: FastifyRequest): boolean => {
    const url = request.routeOptions.url;
    if (url === undefined || isCorsCatchAllRoute({ method: request.method, url })) return true;
    // A route with parameters may have matched a path another method's route
    // names word for word (closestRoutes): that path is not this route's.
    return url.includes(':') && !closestRoutes(request.url.split('?')[0] ?? request.url).includes(request.method as (typeof ROUTABLE_METHODS)[number]);
  };

  // Shutting down: requests in flight finish; one that arrives now (on a
  // connection kept alive) is refused before it runs, and told to come back
  // (a load balancer sends it to another instance).
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
    // The drain closes the connections idle when it begins; one whose request
    // was in flight goes idle when its answer is sent, and would then hold
    // the shutdown for KEEP_ALIVE_TIMEOUT_MS. Node reads the timeout as each
    // answer finishes, so from now on such a connection closes a second
    // after its answer (one with a request pipelined behind it still gets
    // that request's 503 first).
    app.server.keepAliveTimeout = DRAIN_KEEP_ALIVE_TIMEOUT_MS;
  });

  // Every answer carries the correlation id, a CORS preflight's too.
  app.addHook('onRequest', async (request, reply) => {
    reply.header(CORRELATION_HEADER, request.id);
  });
  // Shared rate limits (REDIS_URL): its connection closes with the app.
  const redis = config.redisUrl ? new (await import('ioredis')).Redis(config.redisUrl, { lazyConnect: false, maxRetriesPerRequest: 1 }) : undefined;
  if (redis) {
    // Without a listener, ioredis printed "[ioredis] Unhandled error event"
    // and a stack on stderr — outside the log — at every reconnect (several a
    // second) for as long as Redis stayed down. One warning per outage.
    let down = false;
    redis.on('error', (error: unknown) => {
      if (down) return;
      down = true;
      logger.warn({ error: briefly(error) }, 'Redis (REDIS_URL) is unavailable: rate limits are not enforced, requests are let through, until it answers again');
    });
    redis.on('ready', () => {
      if (!down) return;
      down = false;
      logger.info('Redis (REDIS_URL) answers again: rate limits are shared again');
    });
    app.addHook('onClose', async () => void (await redis.quit().catch(() => redis.disconnect())));
  }
  await app.register(rateLimit, {
    global: true,
    max: config.rateLimitPerMinute,
    timeWindow: 60_000,
    // Redis down: requests are let through (a shop keeps selling), not refused.
    skipOnError: true,
    ...(redis ? { redis } : {}),
    // Runs after the auth hook (route-level hooks follow application-level ones).
    // Registered before CORS so that its limiter (app.rateLimit) exists for
    // the preflights below; it hooks only the routes registered after it.
    keyGenerator: rateLimitKeyOf,
    errorResponseBuilder: (_request, context) =>
      new AppError('rate_limited', `rate limit of ${context.max} requests per minute exceeded; retry after ${context.after}`),
  });

  // What no route's limiter sees is limited here, by the client's address
  // (no token has been read: rateLimitKeyOf counts it as `ip:<client>`, the
  // bucket of the routes that take no token), in the same store (Redis with
  // REDIS_URL): a CORS preflight, answered by the CORS hook before any route
  // hook runs, and a request no route serves (404, 405). Each is cheap to
  // answer, but a flood of them from one address is still a flood; a
  // browser's preflights are cached (CORS_MAX_AGE_SECONDS) and count far
  // below RATE_LIMIT_PER_MINUTE. Past the limit: 429 with Retry-After.
  const limitByAddress = app.rateLimit();

  // CORS (CORS_ORIGINS) before authentication and every refusal: a preflight
  // carries no token, and a browser shows its page a refusal (401, 429, 503…)
  // only when the refusal carries the CORS headers too. A preflight is
  // counted just before (a browser reads no header of a preflight that is
  // not 2xx: it simply does not send the request).
  if (config.corsOrigins.length > 0) {
    app.addHook('onRoute', (route) => {
      if (isCorsCatchAllRoute(route)) route.config = { ...route.config, auth: 'none' };
    });
    app.addHook('onRequest', async (request, reply) => {
      if (request.method === 'OPTIONS' && request.headers['access-control-request-method'] !== undefined) await limitByAddress.call(app, request, reply);
    });
    await app.register(cors, corsOptions(config.corsOrigins, ROUTABLE_METHODS.filter((method) => method !== 'OPTIONS')));
  }
  // After CORS, so the refusal carries its headers (the route hooks count every routed request after CORS too).
  // An OPTIONS on the CORS catch-all that reaches here is no preflight the CORS
  // hook answered: the auth hook answers it 404/405 before the catch-all's own
  // limiter runs, so it is counted here (the limiter counts a request once,
  // one counted as a preflight above included).
  app.addHook('onRequest', async (request, reply) => {
    if (reachesNoRoute(request)) await limitByAddress.call(app, request, reply);
  });

  const authFailures = new AuthFailureLimiter(config.authFailuresPerMinute);
  app.addHook('onRequest', async (request, reply) => {
    if (closing) {
      reply.header('connection', 'close');
      throw new AppError('service_unavailable', 'the server is shutting down; retry with the same Idempotency-Key', { retryAfterSeconds: 1 });
    }
    // No route for this method and path: 404 or 405 here, before the body
    // is read — what a request that reaches nothing carries (malformed JSON,
    // another charset, past the size limit; QUERY without a Content-Type)
    // does not change that answer (it was 400, 413 or 415); so is an OPTIONS
    // on the CORS catch-all (reachesNoRoute).
    if (reachesNoRoute(request)) return answerNoRoute(request, reply);
    const config = request.routeOptions.config;
    const mode = config.auth ?? 'tenant';
    if (mode === 'none') return;
    const token = bearerCredential(request.headers.authorization);
    // Past too many failures from this address, only tokens known good in
    // this process get through (a guesser cannot present one).
    // Counted per client: an IPv6 address by its /64 (a guesser holds all of it).
    const client = clientOf(request.ip);
    const wait = authFailures.retryAfterSeconds(client);
    if (wait > 0 && !(token && deps.authenticator.wasRecentlyValid(token))) {
      throw new AppError('rate_limited', `too many failed authentications from this address; retry after ${wait} s`, { retryAfterSeconds: wait });
    }
    if (!token) {
      authFailures.recordFailure(client);
      throw new AppError('unauthorized', 'send a token as "Authorization: Bearer <token>"');
    }
    const principal = await deps.authenticator.authenticate(token);
    if (!principal) {
      authFailures.recordFailure(client);
      throw new AppError('unauthorized', 'the token is not valid');
    }
    if (mode === 'operator' && principal.kind !== 'operator') {
      throw new AppError('forbidden', 'this endpoint needs the operator token');
    }
    if (mode === 'tenant') {
      if (principal.kind !== 'token') throw new AppError('forbidden', 'this endpoint needs a tenant token');
      const scope = currentScope();
      if (scope) scope.tenantId = principal.tenantId;
      if (config.permission && !roleHas(principal.role, config.permission)) {
        throw new AppError('forbidden', `role ${principal.role} may not ${config.permission}`);
      }
    }
    request.principal = principal;
  });

  app.addHook('onResponse', async (request, reply) => {
    httpRequestDuration.observe(
      { method: request.method, route: request.routeOptions.url ?? 'unmatched', status_code: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'storekeep API',
        version: '1.0.0',
        description:
          'Every mutating request accepts an `Idempotency-Key` header. Errors are `application/problem+json` with a stable `code`. See API.md for the conventions. ' +
          'Unknown body fields and unknown query parameters are refused on every operation (`400 validation_failed`, `errors` naming each at `/body/<name>` or `/querystring/<name>`); an operation that lists no query parameters takes none. ' +
          'Browser pages on the origins listed in `CORS_ORIGINS` may call the API cross-origin (CORS: preflights answered 204 without a token, counted against the rate limit of their client address; `ETag`, `Idempotent-Replayed`, `Retry-After` and `X-Correlation-ID` exposed); any other `OPTIONS` is 405 with `Allow`.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
    transformObject: (documentObject) => withPlainEnums(withProblemResponses((documentObject as { openapiObject: OpenApiDocument }).openapiObject, refusalsByOperation)) as OpenApiDocument,
  });
  // The browsable docs are as public as /openapi.json: a browser sends no
  // token, so every route of the UI (page, assets, its copy of the document)
  // is `auth: 'none'` — never a 401, never an authentication failure counted.
  await app.register(async (docs) => {
    docs.addHook('onRoute', (route) => {
      route.config = { ...route.config, auth: 'none' };
      // Not the API: the UI's page and assets take whatever query a browser adds (runs after the app's NoQuery hook).
      if (route.schema?.querystring === NoQuery) {
        const { querystring: _querystring, ...schema } = route.schema;
        route.schema = schema;
      }
    });
    await docs.register(swaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list' } });
  });

  app.get('/openapi.json', { config: { auth: 'none', rateLimit: false }, schema: { hide: true } }, async () => app.swagger());

  // Health and metrics (API.md's core endpoints): without a tenant token.
  const operations = (summary: string, response: Record<string, unknown>) => ({ tags: ['operations'], summary, security: [], response });
  app.get(
    '/healthz',
    { config: { auth: 'none', rateLimit: false }, schema: operations('Liveness: the process answers (it does not touch the database)', { 200: Type.Object({ status: Type.Literal('ok') }) }) },
    async () => ({ status: 'ok' as const }),
  );

  const readiness = operations('Readiness: the database answers and every migration is applied; 503 otherwise (with what is missing)', {
    200: Type.Object({ status: Type.Literal('ready'), database: Type.Literal('ok'), migrations: Type.Literal('applied') }),
    503: Type.Object(
      {
        status: Type.Literal('not_ready'),
        database: Type.Union([Type.Literal('ok'), Type.Literal('unreachable')]),
        pending_migrations: Type.Optional(Type.Array(Type.String(), { description: 'migrations not yet applied (run `storekeep migrate`)' })),
      },
      { description: 'Not ready (not a problem document): the database cannot be reached, or migrations are pending' },
    ),
  });
  // The probe asks the database over a connection of its own. In the API's
  // pool it queued behind every command in flight: a burst of sales holding
  // all of its connections for longer than READINESS_TIMEOUT_MS made it say
  // `unreachable` of a database that answered, and an orchestrator then took
  // a busy instance out of service (all of them, under a shop-wide burst).
  const probe = readinessPool(deps.pool, config.readinessTimeoutMs);
  app.addHook('onClose', async () => probe.end());
  app.get('/readyz', { config: { auth: 'none', rateLimit: false }, schema: readiness }, async (_request, reply) => {
    try {
      // Its own time limit: a connection the network dropped silently gives no
      // error for minutes, and a probe that hangs tells an orchestrator nothing.
      const pending = await probePendingMigrations(probe, config.readinessTimeoutMs);
      if (pending.length > 0) {
        return reply.status(503).send({ status: 'not_ready', database: 'ok', pending_migrations: pending });
      }
      return { status: 'ready', database: 'ok', migrations: 'applied' };
    } catch (error) {
      logger.warn({ error: briefly(error) }, 'readiness check failed');
      return reply.status(503).send({ status: 'not_ready', database: 'unreachable' });
    }
  });

  const metricsSchema = operations('Prometheus metrics, text format; with METRICS_TOKEN set, send it as `Authorization: Bearer <token>` (401 otherwise; a wrong one counts as a failed authentication of its address, 429 past AUTH_FAILURES_PER_MINUTE)', {
    200: { description: 'Prometheus text exposition format', content: { 'text/plain': { schema: { type: 'string' } } } },
  });
  const metricsRefusals = {
    unauthorized: 'METRICS_TOKEN is set and the request does not send it (with `WWW-Authenticate`)',
    rate_limited: 'too many failed authentications from this address (with `Retry-After`)',
  };
  app.get('/metrics', { config: { auth: 'none', rateLimit: false, refusals: metricsRefusals }, schema: metricsSchema }, async (request, reply) => {
    if (!metricsAllowed(config.metricsToken, request.headers.authorization)) {
      // A wrong METRICS_TOKEN is a failed authentication like a wrong API
      // token: counted against the client, and past the limit refused before
      // it is even compared (guessing it is capped). The right one always
      // passes, so a scraper is never held back by a guesser at its address.
      const client = clientOf(request.ip);
      const wait = authFailures.retryAfterSeconds(client);
      if (wait > 0) throw new AppError('rate_limited', `too many failed authentications from this address; retry after ${wait} s`, { retryAfterSeconds: wait });
      authFailures.recordFailure(client);
      throw new AppError('unauthorized', 'send the METRICS_TOKEN as "Authorization: Bearer <token>"');
    }
    const served = apiMetrics();
    reply.header('content-type', served.contentType);
    return served.metrics();
  });

  for (const register of routeModules) await app.register(async (scoped) => register(scoped as unknown as App, deps));

  return app;
}

/**
 * One connection to the API pool's database, as the same login and role with
 * the same session settings, kept while probes come (an orchestrator's every
 * few seconds) and closed a minute after the last.
 */
function readinessPool(pool: pg.Pool, timeoutMs: number): pg.Pool {
  // pg-pool keeps the password out of the options' enumerable keys.
  const { password, ...options } = pool.options;
  // A connection that cannot be made (or waited for) within the probe's time gives up by itself (pg-pool destroys it).
  const probe = new pg.Pool({ ...options, password, max: 1, idleTimeoutMillis: 60_000, connectionTimeoutMillis: timeoutMs, application_name: 'storekeep readiness' });
  // A dropped connection fails the probe that runs on it; the event itself must not crash the process.
  probe.on('error', () => undefined);
  probe.on('connect', (client) => client.on('error', () => undefined));
  return probe;
}

/**
 * The pending migrations, asked over the probe's connection within `ms`. A
 * connection that gives no answer in time is destroyed, not kept: the
 * network may have dropped it silently (a NAT, a failover), and the pool's one
 * connection would then hold every later probe behind a query that never
 * ends — 503 for as long as the kernel keeps the socket, while new
 * connections answer — and app.close() waiting for it.
 */
async function probePendingMigrations(probe: pg.Pool, ms: number): Promise<string[]> {
  const started = Date.now();
  const client = await probe.connect();
  let failure: Error | undefined;
  try {
    const left = Math.max(1, ms - (Date.now() - started));
    return await withTimeout(pendingMigrations(client), left, `the database did not answer within ${ms} ms`);
  } catch (error) {
    failure = error instanceof Error ? error : new Error(String(error));
    client.connection.stream.destroy();
    throw error;
  } finally {
    client.release(failure);
  }
}

/** `promise`, or a rejection with `message` once `ms` have passed (the promise itself runs on). */
async function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
