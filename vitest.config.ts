import { createRequire } from 'node:module';
import { defineConfig } from 'vitest/config';

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
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two test files at a time fits a 2-core machine.
    maxWorkers: 2,
  },
});
