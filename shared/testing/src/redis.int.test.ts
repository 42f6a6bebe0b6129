import { describe, expect, it } from 'vitest';
import { redisPing, startRedisServer, testRedisUrl } from './redis.ts';

describe('testRedisUrl', () => {
  it('resolves to a Redis that answers PING', async () => {
    const url = new URL(await testRedisUrl());
    expect(url.protocol).toBe('redis:');
    expect(await redisPing(url.hostname, Number(url.port || 6379), 1000)).toBe(true);
  });
});

describe('startRedisServer', () => {
  it('spawns redis-server on a free port and stops it', async () => {
    const server = await startRedisServer();
    const port = Number(new URL(server.url).port);
    expect(await redisPing('127.0.0.1', port, 1000)).toBe(true);
    await server.stop();
    expect(await redisPing('127.0.0.1', port, 500)).toBe(false);
  });
});

describe('redisPing', () => {
  it('is false when nothing listens', async () => {
    expect(await redisPing('127.0.0.1', 9, 500)).toBe(false);
  });
});
