// @ts-check
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

/**
 * Import boundaries: core imports no backend, worker or API; no backend imports another; the
 * shared stores import no backend; the worker, service and CLI reach backends only through the
 * client (src/client.ts).
 */
const backends = ['memory', 'sqlite', 'rabbitmq'];
/** Every backend folder, however deep the importing file is. */
const backendFolders = backends.map((name) => `**/brokers/${name}/**`);
/**
 * A gitignore-style import pattern of no-restricted-imports as a regular expression source
 * (`**` any folders, `*` within a name; a bare name also matches its subpaths), for `import()`.
 * @param {string} glob
 */
const globToRegExp = (glob) =>
  `^${glob
    .split(/(\*\*\/|\/\*\*|\*)/)
    .map((part) => ({ '**/': '(.*/)?', '/**': '(/.*)?', '*': '[^/]*' })[part] ?? part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
    .join('')}${glob.endsWith('**') ? '' : '(/.*)?'}$`.replaceAll('/', '\\/');
/** @param {string[]} patterns @param {string} message */
const boundary = (patterns, message) => ({
  'no-restricted-imports': ['error', { patterns: patterns.map((group) => ({ group: [group], message })) }],
  // no-restricted-imports sees static imports only; a lazy import('...') is held to the same patterns.
  'no-restricted-syntax': ['error', { selector: `ImportExpression[source.value=/${patterns.map(globToRegExp).join('|')}/]`, message }],
});

export default defineConfig(
  { ignores: ['dist/**', 'node_modules/**', '.tmp/**', 'data/**'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: { allowDefaultProject: ['eslint.config.js', 'bin/*.js'] }, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        // node:test registers suites synchronously; their returned promises are the runner's to await.
        { allowForKnownSafeCalls: [{ from: 'package', name: ['test', 'describe', 'it', 'suite', 'before', 'after', 'beforeEach', 'afterEach'], package: 'node:test' }] },
      ],
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-unnecessary-condition': 'off',
      '@typescript-eslint/no-confusing-void-expression': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['src/core/**/*.ts'],
    rules: boundary(['**/brokers/**', '**/worker/**', '**/client*', '**/index.js', 'better-sqlite3', 'amqplib'], 'src/core is backend-agnostic: it imports no backend, worker or public API.'),
  },
  ...backends.map((name) => ({
    files: [`src/brokers/${name}/**/*.ts`],
    rules: boundary(
      [...backends.filter((other) => other !== name).flatMap((other) => [`../${other}/**`, `**/brokers/${other}/**`]), '**/worker/**', '../../index.js', '../../client*'],
      `a backend depends on src/core and src/brokers/broker.ts only, never on another backend or the worker`,
    ),
  })),
  {
    files: ['src/stores/**/*.ts'],
    rules: boundary(
      [...backendFolders, 'amqplib', 'better-sqlite3', '**/worker/**', '**/client*', '../../index.js'],
      'src/stores is the coordination store a backend composes: it imports src/core and src/brokers/broker.ts only, never a backend (memory, sqlite, rabbitmq), its driver, the worker or the public API',
    ),
  },
  {
    files: ['src/worker/**/*.ts'],
    rules: boundary(
      [...backendFolders, '**/stores/**', 'amqplib', 'better-sqlite3'],
      'src/worker runs handlers on the Broker port (src/brokers/broker.ts): it imports no backend, store or driver; the client chooses the backend',
    ),
  },
  {
    files: ['src/service/**/*.ts', 'src/cli/**/*.ts'],
    rules: boundary(
      [...backendFolders, '**/stores/**'],
      'src/service and src/cli talk to the client (src/client.ts) and the public API, never to a backend folder or the store: ask the client (e.g. describeUrl) for what a backend knows',
    ),
  },
  {
    files: ['bin/*.js'],
    languageOptions: { globals: { process: 'readonly' } },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts', 'reliability/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
);
