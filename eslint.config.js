// ESLint flat config: type-aware typescript-eslint. The rules that matter most for a gateway that must
// never drop an acknowledgement: no floating promises, exhaustive switches.
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['**/node_modules/**', '**/dist-types/**', '.node/**', 'data/**', '**/generated/**', 'bench/results/**', '.tmp/**', '.viewer/**'] },
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: {
        projectService: {
          allowDefaultProject: ['*.ts', 'scripts/*.ts', 'scripts/*/*.ts', 'bench/*.ts', 'e2e/*.ts'],
          // Loose scripts and e2e files have no tsconfig of their own (e2e page code needs the DOM lib,
          // which would retype Node's fetch for the rest); a couple of dozen files is cheap.
          maximumDefaultProjectFileMatchCount_THIS_WILL_SLOW_DOWN_LINTING: 24,
        },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'error',
    },
  },
  {
    files: ['**/*.test.ts', 'scripts/**', 'bench/**', 'e2e/**'],
    rules: { 'no-console': 'off', '@typescript-eslint/no-non-null-assertion': 'off' },
  },
);
