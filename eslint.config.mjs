// ESLint for `npm run lint`: ESLint's and typescript-eslint's recommended rules over the TypeScript
// (src, test, bench) and the CommonJS scripts Node runs as they are (scripts, bin, the kernel
// launcher). Formatting is Prettier's job (`prettier --check` in the same script), so no stylistic
// rules here. Type-aware rules (recommendedTypeChecked) are left out: on this 2-core machine they took
// 80 s and 1 GB against about 20 s, and most of what they found was node:test's describe/it calls
// as "floating promises"; tsc --noEmit already runs strict in `npm test`.
import js from '@eslint/js';
import { defineConfig, globalIgnores } from 'eslint/config';
import tseslint from 'typescript-eslint';

// The globals the .cjs files may use. Listed rather than taken from the `globals` package so that
// lint needs no dependency beyond ESLint's own; a new one is added here when a script needs it.
const nodeCommonJsGlobals = Object.fromEntries(
  [
    'require',
    'module',
    'exports',
    '__dirname',
    '__filename',
    'process',
    'console',
    'Buffer',
    'URL',
    'setTimeout',
    'clearTimeout',
    'setInterval',
    'clearInterval',
    'setImmediate',
    'clearImmediate',
  ].map((name) => [name, 'readonly']),
);

// The codebase's convention for what is unused on purpose, the same one tsc's noUnusedParameters
// follows: a leading underscore, as in an interface method's ignored argument or
// `const { payload: _payload, ...rest } = letter` (omitting a field by destructuring).
const unusedVars = {
  argsIgnorePattern: '^_',
  varsIgnorePattern: '^_',
  caughtErrorsIgnorePattern: '^_',
  destructuredArrayIgnorePattern: '^_',
  ignoreRestSiblings: true,
};

// A `let` that closures read before it is first assigned is bound late on purpose (the service
// hands the experiment platform functions that reach the model server opened after it): it cannot
// become a const where it is declared.
const preferConst = { ignoreReadBeforeAssign: true };

export default defineConfig([
  // Generated state, data kept byte for byte, and notebooks (JSON; their code is checked by running
  // them in `npm test`).
  globalIgnores(['.wb/', 'runs/', '.scratch/', 'data/', 'notebooks/', 'test/fixtures/', '**/.ipynb_checkpoints/']),
  {
    linterOptions: { reportUnusedDisableDirectives: 'error' },
  },
  {
    files: ['**/*.ts'],
    extends: [js.configs.recommended, tseslint.configs.recommended],
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', unusedVars],
      'prefer-const': ['error', preferConst],
      // The package is CommonJS, and require() is how it loads on first use what is slow to load
      // (danfojs brings tfjs), what exists only inside a kernel (tslab), the untyped .cjs scripts
      // the git filter and `npm install` run too, and simple-statistics, whose types cannot be
      // imported from CommonJS (see src/serving/observability/anomaly.ts). Anything else is an import.
      '@typescript-eslint/no-require-imports': ['error', { allow: ['\\.cjs$', '^tslab(/|$)', '^danfojs$', '^simple-statistics$'] }],
    },
  },
  {
    files: ['**/*.cjs'],
    extends: [js.configs.recommended],
    languageOptions: { sourceType: 'commonjs', ecmaVersion: 2023, globals: nodeCommonJsGlobals },
    rules: {
      'no-unused-vars': ['error', unusedVars],
      'prefer-const': ['error', preferConst],
    },
  },
]);
