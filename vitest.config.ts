import { defineConfig } from 'vitest/config';

// Three projects: unit (pure logic, nothing external), integration (real PostgreSQL, Redis, S3-protocol
// server, folder store, dcmtk peers), e2e (portico as a child process, real clients).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['{shared,services}/*/src/**/*.test.ts', 'scripts/**/*.test.ts'],
          exclude: ['**/*.int.test.ts', '**/node_modules/**'],
          testTimeout: 30_000,
        },
      },
      {
        test: {
          name: 'integration',
          // memory tests force collections so they measure live memory, not garbage awaiting a GC
          execArgv: ['--expose-gc'],
          include: ['{shared,services}/*/src/**/*.int.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          // Files share one PostgreSQL and Redis; each uses its own database / prefix / folder.
          fileParallelism: true,
          maxWorkers: 2,
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['e2e/**/*.test.ts'],
          testTimeout: 600_000,
          hookTimeout: 300_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
