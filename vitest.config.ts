import { createRequire } from 'node:module';
import { defineConfig } from 'vitest/config';
import SlowFilesFirst from './test/setup/slow-files-first.js';

const require = createRequire(import.meta.url);

export default defineConfig({
  resolve: {
    // graphql 16 ships both CommonJS and .mjs without an exports map: Node (and so every library
    // such as Pothos or yoga) loads the CommonJS build, so the tests must load that same one.
    alias: [{ find: /^graphql$/, replacement: require.resolve('graphql') }],
  },
  test: {
    include: ['test/**/*.test.ts'],
    // One migrated database per run, copied by each test file (test/helpers/database.ts).
    globalSetup: ['test/setup/template-database.ts'],
    // Every limit here is an outer bound for a busy machine, never a measure: tests wait for
    // conditions (expect.poll, events) and go on as soon as they hold.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    expect: { poll: { timeout: 20_000 } },
    pool: 'forks',
    // Two test files at a time fits a 2-core machine.
    maxWorkers: 2,
    // The test files of a worker share its loaded modules instead of importing the gateway's
    // (seconds of work) once per file. What src keeps at module level is constant or keyed by
    // objects of one gateway, and every file starts and stops its own gateways and receivers.
    isolate: false,
    sequence: { sequencer: SlowFilesFirst },
  },
});
