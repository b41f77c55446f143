import type { FastifyReply, FastifyRequest } from 'fastify';
import { runCommand, type CommandFn, type CommandOutcome, type CommandSpec } from '../core/command.js';
import type { Db } from '../core/db.js';
import { commandInputOf, sendOutcome } from './command.js';
import { AppError } from '../core/errors.js';

/** Optimistic concurrency at the edge: a record's `version` is its ETag; If-Match sends it back. */
/** Parses an If-Match header into the version it names: `"3"`, `W/"3"` or `3`. */
export function versionFromIfMatch(header: string): number | null {
  const match = /^\s*(?:W\/)?"?(\d{1,9})"?\s*$/.exec(header);
  return match?.[1] ? Number(match[1]) : null;
}

export function etagOf(version: number): string {
  return `"${version}"`;
}

/**
 * What a request's If-Match asks for: nothing (no header), any version (`*`),
 * or one version. A header that names no version can never match: a 412.
 */
function ifMatchOf(request: FastifyRequest, what: string): { kind: 'none' } | { kind: 'any' } | { kind: 'version'; version: number } {
  const header = request.headers['if-match'];
  if (header === undefined) return { kind: 'none' };
  if (typeof header === 'string' && header.trim() === '*') return { kind: 'any' };
  const version = typeof header === 'string' ? versionFromIfMatch(header) : null;
  if (version === null) throw new AppError('version_conflict', `If-Match ${String(header)} does not name a version of this ${what}`);
  return { kind: 'version', version };
}

/**
 * The version an optional If-Match names: undefined without the header or
 * with `*` (it matches any current version, RFC 9110: no precondition).
 */
export function optionalExpectedVersion(request: FastifyRequest, what: string): number | undefined {
  const ifMatch = ifMatchOf(request, what);
  return ifMatch.kind === 'version' ? ifMatch.version : undefined;
}

/**
 * The version a required If-Match names: without the header, or with `*`
 * (which would accept whatever is there now), 428 precondition_required —
 * a decision names the version it was made on.
 */
export function requiredExpectedVersion(request: FastifyRequest, what: string): number {
  const ifMatch = ifMatchOf(request, what);
  if (ifMatch.kind === 'none') throw new AppError('precondition_required', `send If-Match with the ${what}'s ETag (its version) to decide it`);
  if (ifMatch.kind === 'any') throw new AppError('precondition_required', `If-Match * does not say which ${what} was checked: send the ${what}'s ETag (its version) to decide it`);
  return ifMatch.version;
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
