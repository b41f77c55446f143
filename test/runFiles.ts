/**
 * The test files' runner, started by test/run.ts with the run's database in
 * its environment: node:test's `run()` over the files in the order given.
 * (`node --test <files>` sorts them by path, whatever the order they are
 * given in; here the longest files can start first.) Prints with the spec
 * reporter and exits 1 when any test failed — or a file failed outside its
 * tests.
 *
 *   node --enable-source-maps .build/test-<pid>/test/runFiles.js <concurrency> <file.js> …
 *
 * (as JavaScript, transformed by test/build.ts; the test files' processes
 * inherit its flags, so they load JavaScript too.)
 */
import { run } from 'node:test';
import { spec } from 'node:test/reporters';

const [concurrency = '3', ...files] = process.argv.slice(2);
const stream = run({
  files,
  concurrency: Number(concurrency),
  // A file whose tests have all ended exits even if something it started
  // still runs (a test that timed out keeps running its code): the run then
  // fails instead of hanging.
  forceExit: true,
});
// Set at the failure itself, not at the end: with forceExit the process may
// be ended by process.exit(), which runs no 'beforeExit' listener.
process.exitCode = 0;
stream.on('test:fail', (event: { todo?: unknown }) => {
  if (!event.todo) process.exitCode = 1;
});
stream.compose(new spec()).pipe(process.stdout);
