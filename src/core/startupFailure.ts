import { isConnectionFailure, pgCode } from './pgErrors.js';

/**
 * A failure to start that the operator fixes (a setting, the machine), not a
 * bug: the CLI prints its message alone, without a stack trace.
 */
export class StartupRefused extends Error {}

/** The socket error codes a listen fails with because of PORT or HOST, and what each means. */
const LISTEN_FAILURES: Record<string, string> = {
  EADDRINUSE: 'the port is already in use (another process listens on it): set PORT to a free port',
  EACCES: 'this process may not listen on that port (below 1024 it needs privileges): set PORT to a higher one',
  EADDRNOTAVAIL: 'HOST is not an address of this machine',
  ENOTFOUND: 'HOST is not a known host name',
  EAI_AGAIN: 'HOST could not be resolved (name resolution failed)',
  EAI_FAIL: 'HOST could not be resolved (name resolution failed)',
};

/** A listen of the API that failed because of its settings, as a StartupRefused naming them; other errors as they are. */
export function listenFailure(error: unknown, host: string, port: number, settings: string): unknown {
  const code = (error as { code?: unknown } | null)?.code;
  const meaning = typeof code === 'string' ? LISTEN_FAILURES[code] : undefined;
  return meaning ? new StartupRefused(`cannot listen on ${host}:${port} (${settings}): ${meaning}`) : error;
}

/** The messages of an error and of the errors it aggregates (Node reports a refused dual-stack connect as an AggregateError with an empty message). */
function messagesOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const inner = error instanceof AggregateError ? error.errors.map((each: unknown) => (each instanceof Error ? each.message : String(each))) : [];
  const code = (error as { code?: unknown }).code;
  const own = error.message || (typeof code === 'string' ? code : error.name);
  return [own, ...inner.filter((message) => message && message !== own)].join('; ');
}

/**
 * One line for a database that cannot be reached or refuses the login (class
 * 28 invalid authorization, 3D000 no such database) — an operator's fix, not
 * a bug. undefined for any other error. The messages of node-postgres and of
 * the socket name the host, port, user or database, never the password.
 */
export function databaseFailureMessage(error: unknown): string | undefined {
  if (isConnectionFailure(error)) return `cannot reach the database: ${messagesOf(error)}`;
  const code = pgCode(error);
  if (code !== undefined && (code.startsWith('28') || code === '3D000')) return `the database refused the connection: ${messagesOf(error)}`;
  return undefined;
}
