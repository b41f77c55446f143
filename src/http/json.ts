import type { FastifyRequest } from 'fastify';
import { AppError, type FieldError } from '../core/errors.js';
import { MAX_JSON_DEPTH, UNSTORABLE_CHARACTER } from '../core/text.js';
import { bodyIsOptional } from './schemas.js';

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * A request body's bytes as text, or a malformed_json refusal: JSON between
 * systems is UTF-8 (RFC 8259 §8.1), and bytes that are not were once read
 * with U+FFFD in their place and stored so (a tenant named "�(�").
 */
export function utf8TextOf(body: Buffer): string {
  try {
    return UTF8.decode(body);
  } catch {
    throw new AppError('malformed_json', 'the request body is not valid UTF-8');
  }
}

const escapePointer = (name: string) => name.replace(/~/g, '~0').replace(/\//g, '~1');

/**
 * The first string or member name in a parsed JSON value that PostgreSQL
 * cannot store — a NUL character (text refuses it) or a lone surrogate (json
 * refuses it; text would hold U+FFFD instead) — as the field error of its
 * path under `prefix`. Walked without recursion: a body may nest deeper than
 * the stack.
 */
export function unstorableTextIn(value: unknown, prefix: string): FieldError | undefined {
  const stack: Array<[unknown, string]> = [[value, prefix]];
  while (stack.length > 0) {
    const [current, path] = stack.pop()!;
    if (typeof current === 'string') {
      if (UNSTORABLE_CHARACTER.test(current)) return { path, message: 'must not contain a NUL character or an unpaired surrogate' };
    } else if (Array.isArray(current)) {
      for (let index = current.length - 1; index >= 0; index--) stack.push([current[index], `${path}/${index}`]);
    } else if (typeof current === 'object' && current !== null) {
      for (const [name, item] of Object.entries(current).reverse()) {
        if (UNSTORABLE_CHARACTER.test(name)) return { path: `${path}/${escapePointer(name)}`, message: 'is a field name with a NUL character or an unpaired surrogate' };
        stack.push([item, `${path}/${escapePointer(name)}`]);
      }
    }
  }
  return undefined;
}

/** unstorableTextIn of a part of a request (its paths under `prefix`: `/body`, `/querystring`…), as the validation_failed refusal it is. */
export function assertStorableText(value: unknown, prefix: string): void {
  const error = unstorableTextIn(value, prefix);
  if (error) throw new AppError('validation_failed', `${error.path} ${error.message}`, { errors: [error] });
}

/**
 * The path of the first array or object in a parsed JSON value nested
 * deeper than MAX_JSON_DEPTH, as the field error it is; walked without
 * recursion.
 */
export function tooDeepIn(value: unknown, prefix: string): FieldError | undefined {
  type Entry = { value: object; depth: number; parent: Entry | null; name: string };
  const stack: Entry[] = [];
  if (typeof value === 'object' && value !== null) stack.push({ value, depth: 1, parent: null, name: '' });
  while (stack.length > 0) {
    const entry = stack.pop()!;
    if (entry.depth > MAX_JSON_DEPTH) {
      const names: string[] = [];
      for (let at: Entry | null = entry; at !== null && at.parent !== null; at = at.parent) names.push(escapePointer(at.name));
      return { path: [prefix, ...names.reverse()].join('/'), message: `nests deeper than ${MAX_JSON_DEPTH} levels` };
    }
    for (const [name, item] of Object.entries(entry.value)) {
      if (typeof item === 'object' && item !== null) stack.push({ value: item, depth: entry.depth + 1, parent: entry, name });
    }
  }
  return undefined;
}

/**
 * The first member name repeated within one object of a JSON text (as the
 * field error of its path), compared as read — `"name"` and `"n\u0061me"`
 * are one name. JSON.parse keeps the last and drops the others unseen, while
 * RFC 8259 leaves repeated names to each reader: a proxy that read the first
 * `role` and this server the last would disagree on what was asked. `text`
 * must be JSON that parsed; scanned once, without recursion.
 */
export function repeatedNameIn(text: string, prefix: string): FieldError | undefined {
  type Container = { names: Set<string> | null; expectName: boolean; member: string; index: number };
  const stack: Container[] = [];
  const pathOf = () => [prefix, ...stack.map((container) => (container.names === null ? String(container.index) : escapePointer(container.member)))].join('/');
  for (let at = 0; at < text.length; at++) {
    const char = text[at];
    if (char === '"') {
      // The closing quote: the next one not escaped by an odd run of backslashes.
      let end = text.indexOf('"', at + 1);
      for (;;) {
        let backslashes = 0;
        while (text[end - 1 - backslashes] === '\\') backslashes++;
        if (backslashes % 2 === 0) break;
        end = text.indexOf('"', end + 1);
      }
      const top = stack[stack.length - 1];
      if (top?.names && top.expectName) {
        const raw = text.slice(at + 1, end);
        const name = raw.includes('\\') ? (JSON.parse(text.slice(at, end + 1)) as string) : raw;
        top.member = name;
        top.expectName = false;
        if (top.names.has(name)) return { path: pathOf(), message: 'is a member name already given in this object' };
        top.names.add(name);
      }
      at = end;
    } else if (char === '{') {
      stack.push({ names: new Set(), expectName: true, member: '', index: 0 });
    } else if (char === '[') {
      stack.push({ names: null, expectName: false, member: '', index: 0 });
    } else if (char === '}' || char === ']') {
      stack.pop();
    } else if (char === ',') {
      const top = stack[stack.length - 1];
      if (top?.names) top.expectName = true;
      else if (top) top.index++;
    }
  }
  return undefined;
}

/**
 * RFC 7396's media type. A merge patch is JSON read exactly as JSON (the same
 * parser, limits and refusals); it is taken only by routes that are merge
 * patches, which say so in their schema's `consumes` (also what the OpenAPI
 * document lists): elsewhere a body declared a merge patch is not one, and is
 * refused 415 as before.
 */
export const MERGE_PATCH_JSON = 'application/merge-patch+json';

/** The media types a merge-patch route takes (its schema's `consumes`). */
export const MERGE_PATCH_CONSUMES = ['application/json', MERGE_PATCH_JSON];

type JsonParser = (request: FastifyRequest, body: string, done: (error: Error | null, value?: unknown) => void) => void;

/**
 * The app's application/json parser: Fastify's own (same errors, same
 * prototype-poisoning refusal) over the body decoded strictly as UTF-8. Text
 * the database cannot store is refused later, at the field's path, by the
 * app's preValidation hook (or, for a route that answers item by item, by the
 * route: see `textCheckedByRoute`). A body nested deeper than MAX_JSON_DEPTH,
 * or repeating a member name within an object, is refused here, at its path.
 */
export function strictJsonParser(parseJson: JsonParser) {
  return (request: FastifyRequest, body: string | Buffer, done: (error: Error | null, value?: unknown) => void): void => {
    let text: string;
    try {
      text = typeof body === 'string' ? body : utf8TextOf(body);
    } catch (error) {
      done(error as Error, undefined);
      return;
    }
    // An action whose body is optional (NoBody, or input that is all
    // optional) sent an empty one declared as JSON (Content-Length: 0, as
    // OkHttp and .NET send a bodiless POST): it sent no body, and is read as
    // none, not refused as malformed JSON.
    if (text === '' && bodyIsOptional(request.routeOptions.schema?.body)) {
      done(null, undefined);
      return;
    }
    parseJson(request, text, (error, value) => {
      if (error) return done(error, undefined);
      const deep = tooDeepIn(value, '/body');
      if (deep) return done(new AppError('validation_failed', `${deep.path} ${deep.message}`, { errors: [deep] }), undefined);
      const repeated = repeatedNameIn(text, '/body');
      if (repeated) return done(new AppError('validation_failed', `${repeated.path} ${repeated.message}`, { errors: [repeated] }), undefined);
      return done(null, value);
    });
  };
}

/**
 * The application/merge-patch+json parser: the strict JSON parser on the
 * routes whose schema `consumes` it; a 415 naming application/json on the
 * others. A request that matched no route is read as JSON, so it gets the
 * 404 or 405 it gets with application/json.
 */
export function mergePatchParser(jsonParser: ReturnType<typeof strictJsonParser>) {
  return (request: FastifyRequest, body: string | Buffer, done: (error: Error | null, value?: unknown) => void): void => {
    const route = request.routeOptions;
    const consumes = (route.schema as { consumes?: unknown } | undefined)?.consumes;
    if (route.url !== undefined && !(Array.isArray(consumes) && consumes.includes(MERGE_PATCH_JSON))) {
      done(new AppError('unsupported_media_type', `${request.method} ${route.url} is not a JSON merge patch: send its body as application/json`), undefined);
      return;
    }
    jsonParser(request, body, done);
  };
}
