import assert from 'node:assert/strict';
import { test } from 'node:test';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * What `src/cli.ts` loads before it knows the command: the files and packages
 * its static imports reach (esbuild's import graph; `import type` and
 * `await import(…)` excluded, as Node loads neither at start-up).
 */
async function staticGraphOf(entry: string): Promise<{ files: string[]; packages: string[] }> {
  const { metafile } = await build({
    absWorkingDir: root,
    entryPoints: [entry],
    bundle: true,
    write: false,
    metafile: true,
    platform: 'node',
    format: 'esm',
    packages: 'external',
    splitting: true,
    outdir: 'unused',
    logLevel: 'silent',
  });
  const files = new Set<string>();
  const packages = new Set<string>();
  const walk = (file: string): void => {
    if (files.has(file)) return;
    files.add(file);
    for (const imported of metafile.inputs[file]?.imports ?? []) {
      if (imported.kind !== 'import-statement') continue;
      if (imported.external) packages.add(imported.path);
      else walk(imported.path);
    }
  };
  walk(entry);
  return { files: [...files].sort(), packages: [...packages].sort() };
}

test("the CLI's start-up loads no command's modules: `storekeep --help`, a bad flag or a configuration error answer without loading the server, the database or the worker", async () => {
  const { files, packages } = await staticGraphOf('src/cli.ts');
  // Each command imports what it runs when it runs (src/cli.ts): the server,
  // Fastify, pg, Kysely, graphile-worker and the embedded PostgreSQL took
  // ~1 s of CPU to load, for an answer that needs none of them.
  assert.deepEqual(
    packages.filter((name) => !name.startsWith('node:')),
    ['pino'],
    `packages src/cli.ts loads at start-up (import them inside the command that needs them): ${packages.join(', ')}`,
  );
  assert.deepEqual(files, ['src/cli.ts', 'src/config.ts', 'src/core/context.ts', 'src/core/logger.ts']);
});
