import type { FastifyReply, FastifyRequest } from 'fastify';
import { runCommand, type CommandFn, type CommandOutcome, type CommandSpec } from '../core/command.js';
import type { Db } from '../core/db.js';
import { commandInputOf, sendOutcome } from './command.js';
import { AppError } from '../core/errors.js';
import type { ExpectedVersions } from '../core/expectedVersions.js';

/**
 * Optimistic concurrency at the edge: a record's `version` is its ETag;
 * If-Match sends it back. If-Match is a list (RFC 9110 §13.1.1): the
 * precondition holds when the current version is ANY of the tags named, so a
 * request a proxy or client library sent with two If-Match headers, or a
 * client that names every version it would accept, is not refused while one
 * of them matches.
 */

/**
 * Parses an If-Match header into the versions it names: a comma-separated
 * list of `"3"`, `W/"3"` (a proxy that compresses responses weakens the tags
 * it passes on; a weak echo of our strong tag is still that version) or a bare
 * `3`. A well-formed tag that is no version of ours (`"abc"`) simply matches
 * nothing. Null when the header names no version at all, or is not a list of
 * entity tags.
 */
export function versionsFromIfMatch(header: string): ExpectedVersions | null {
  // One pass, no backtracking: the header is the client's (up to Node's 16 KB of headers).
  const versions: number[] = [];
  const skipSpace = (at: number) => {
    while (at < header.length && (header[at] === ' ' || header[at] === '\t')) at++;
    return at;
  };
  let at = skipSpace(0);
  while (at < header.length) {
    if (header[at] === ',') {
      at = skipSpace(at + 1); // an empty list member (RFC 9110 §5.6.1)
      continue;
    }
    const weak = header.startsWith('W/', at);
    if (weak) at += 2;
    let tag: string;
    if (header[at] === '"') {
      const close = header.indexOf('"', at + 1);
      if (close < 0) return null;
      tag = header.slice(at + 1, close);
      at = close + 1;
    } else {
      // A bare version (`3`), as some clients send it; never weak.
      const start = at;
      while (at < header.length && !' \t,"'.includes(header[at]!)) at++;
      if (weak || at === start) return null;
      tag = header.slice(start, at);
    }
    if (/^\d{1,9}$/.test(tag)) versions.push(Number(tag));
    at = skipSpace(at);
    if (at < header.length && header[at] !== ',') return null;
  }
  const [first, ...rest] = versions;
  return first === undefined ? null : [first, ...rest];
}

export function etagOf(version: number): string {
  return `"${version}"`;
}

/**
 * What a request's If-Match asks for: nothing (no header), any version (`*`),
 * or one of a list of versions. A header that names no version can never
 * match: a 412.
 */
function ifMatchOf(request: FastifyRequest, what: string): { kind: 'none' } | { kind: 'any' } | { kind: 'versions'; versions: ExpectedVersions } {
  const header = request.headers['if-match'];
  if (header === undefined) return { kind: 'none' };
  if (typeof header === 'string' && header.trim() === '*') return { kind: 'any' };
  const versions = typeof header === 'string' ? versionsFromIfMatch(header) : null;
  if (versions === null) throw new AppError('version_conflict', `If-Match ${String(header)} does not name a version of this ${what}`);
  return { kind: 'versions', versions };
}

/**
 * The versions an optional If-Match names: undefined without the header or
 * with `*` (it matches any current version, RFC 9110: no precondition).
 */
export function optionalExpectedVersion(request: FastifyRequest, what: string): ExpectedVersions | undefined {
  const ifMatch = ifMatchOf(request, what);
  return ifMatch.kind === 'versions' ? ifMatch.versions : undefined;
}

/**
 * The versions a required If-Match names: without the header, or with `*`
 * (which would accept whatever is there now), 428 precondition_required —
 * a decision names the version it was made on.
 */
export function requiredExpectedVersion(request: FastifyRequest, what: string): ExpectedVersions {
  const ifMatch = ifMatchOf(request, what);
  if (ifMatch.kind === 'none') throw new AppError('precondition_required', `send If-Match with the ${what}'s ETag (its version) to decide it`);
  if (ifMatch.kind === 'any') throw new AppError('precondition_required', `If-Match * does not say which ${what} was checked: send the ${what}'s ETag (its version) to decide it`);
  return ifMatch.versions;
}

/** Sends a command's outcome; a successful one carrying a `version` also sends it as the ETag. */
export function sendVersioned(reply: FastifyReply, outcome: CommandOutcome): FastifyReply {
  const version = (outcome.body as { version?: unknown } | null)?.version;
  if (outcome.status < 300 && typeof version === 'number') reply.header('etag', etagOf(version));
  return sendOutcome(reply, outcome);
}

/** `command` for a record with a version: the response (a replay too) carries it as the ETag. */
export async function versionedCommand(db: Db, request: FastifyRequest, reply: FastifyReply, spec: CommandSpec, fn: CommandFn): Promise<FastifyReply> {
  return sendVersioned(reply, await runCommand(db, commandInputOf(request), spec, fn));
}
