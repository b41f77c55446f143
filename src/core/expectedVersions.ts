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
