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
 * The version an optional If-Match names: undefined without the header or
 * with `*`; a header that names no version can never match, so it is a 412.
 */
export function optionalExpectedVersion(request: FastifyRequest, what: string): number | undefined {
  const header = request.headers['if-match'];
  // `*` matches any current version (RFC 9110): no precondition.
  if (header === undefined || (typeof header === 'string' && header.trim() === '*')) return undefined;
  const version = typeof header === 'string' ? versionFromIfMatch(header) : null;
  if (version === null) throw new AppError('version_conflict', `If-Match ${String(header)} does not name a version of this ${what}`);
  return version;
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
