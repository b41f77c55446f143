import { AppError } from './errors.js';

/**
 * Optimistic concurrency in commands: the versions a client said it acted on
 * (HTTP If-Match, parsed in http/etag). The precondition holds when the
 * record's current version is any of them. Never empty.
 */
export type ExpectedVersions = readonly [number, ...number[]];

/** True when `version` is one of the expected versions. */
export function matchesExpected(expected: ExpectedVersions, version: number): boolean {
  return expected.includes(version);
}

/** The expected versions for an error message: `3`, or `3 or 5`. */
export function describeExpected(expected: ExpectedVersions): string {
  return expected.join(' or ');
}

/**
 * A change made from a version the record is no longer at (its If-Match,
 * `expected`; undefined: no precondition) is refused, 412 version_conflict
 * naming `current_version`. Called under the record's lock, before anything
 * is written.
 */
export function assertExpectedVersion(expected: ExpectedVersions | undefined, current: number, what: string): void {
  if (expected === undefined || matchesExpected(expected, current)) return;
  throw new AppError('version_conflict', `version ${current} of the ${what} is current, not ${describeExpected(expected)}: reload and change again`, {
    extra: { current_version: current },
  });
}
