import { request } from 'node:http';
import { describe, expect, it } from 'vitest';
import { startS3 } from './s3.ts';

function get(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    })
      .once('error', reject)
      .end();
  });
}

describe('startS3', () => {
  it('starts an S3-protocol server on a loopback port and stops it', async () => {
    const s3 = await startS3();
    expect(s3).toMatchObject({ endPoint: '127.0.0.1', useSSL: false });
    expect(await get(s3.port)).toBeGreaterThanOrEqual(200); // answers (unsigned, so 403)
    await s3.stop();
    await expect(get(s3.port)).rejects.toThrow(/ECONNREFUSED/);
  });
});

describe('startS3 with PORTICO_TEST_S3_ENDPOINT', () => {
  it('uses the endpoint from the environment and does not stop it', async () => {
    const local = await startS3();
    const saved = { ...process.env };
    try {
      process.env['PORTICO_TEST_S3_ENDPOINT'] = `http://127.0.0.1:${local.port}`;
      process.env['PORTICO_TEST_S3_ACCESS_KEY'] = 'S3RVER';
      process.env['PORTICO_TEST_S3_SECRET_KEY'] = 'S3RVER';
      const fromEnv = await startS3();
      expect(fromEnv).toMatchObject({ endPoint: '127.0.0.1', port: local.port, useSSL: false, accessKey: 'S3RVER' });
      await fromEnv.stop();
      expect(await get(local.port)).toBeGreaterThanOrEqual(200);

      delete process.env['PORTICO_TEST_S3_SECRET_KEY'];
      await expect(startS3()).rejects.toThrow(/PORTICO_TEST_S3_SECRET_KEY/);
    } finally {
      process.env = saved;
      await local.stop();
    }
  });
});
