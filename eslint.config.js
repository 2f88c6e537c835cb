// ESLint with typescript-eslint's type-checked rules, over every TypeScript file in the repository
// (`npm run lint`). Types come from tsconfig.json through the project service.
import eslint from '@eslint/js';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

export default defineConfig(
  // src/rest/graphql-env.d.ts is written by `npm run schema:print`.
  { ignores: ['dist/', 'node_modules/', '.data/', 'coverage/', 'scratch/', 'src/rest/graphql-env.d.ts'] },
  eslint.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // A promise nobody awaits or catches loses its error; a promise where a plain value is
      // expected (an if, a void callback) is always truthy or never awaited.
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      // A switch over a union names every member, so a new member is a type error until handled.
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      // An underscore marks what is left unused on purpose (a positional parameter, a property
      // taken out of an object by destructuring the rest).
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', ignoreRestSiblings: true },
      ],
    },
  },
  {
    // Tests and benchmarks read the gateway's answers as JSON, typed any where they are parsed
    // (test/helpers/http.ts, bench/lib/http-client.ts), and walk them field by field: their
    // expectations are what checks the shape, and typing every answer would restate the schema in
    // each file. The other rules, promises first, hold for them as for src.
    files: ['test/**', 'bench/**'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
  {
    // Migrations are never edited once landed; MikroORM writes their up() and down() async.
    files: ['migrations/**'],
    rules: { '@typescript-eslint/require-await': 'off' },
  },
  { files: ['**/*.js'], extends: [tseslint.configs.disableTypeChecked] },
);
