import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfig, maskedConfig, requireClusterBackends, settingsMarkdown, SETTINGS, viewerEnabled } from './index.ts';

describe('loadConfig', () => {
  it('gives the documented defaults', () => {
    const c = loadConfig({ env: {} });
    expect(c.dimse.port).toBe(11112);
    expect(c.dimse.aeTitle).toBe('PORTICO');
    expect(c.http.port).toBe(8080);
    expect(c.http.dicomwebRoot).toBe('/dicom-web');
    expect(c.dataDir).toBe('./data');
    expect(Object.isFrozen(c) && Object.isFrozen(c.dimse)).toBe(true);
  });

  it('reports every bad value at once, each with its variable name and reason', () => {
    let err: unknown;
    try {
      loadConfig({ env: { PORTICO_DIMSE_PORT: 'abc', PORTICO_AE_TITLE: 'MUCH_TOO_LONG_AE_TITLE', PORTICO_LOG_LEVEL: 'loud', PORTICO_TYPO: '1' } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const problems = (err as ConfigError).problems.join('\n');
    expect(problems).toMatch(/PORTICO_DIMSE_PORT/);
    expect(problems).toMatch(/PORTICO_AE_TITLE.*16/);
    expect(problems).toMatch(/PORTICO_LOG_LEVEL/);
    expect(problems).toMatch(/PORTICO_TYPO: unknown environment variable/);
    expect((err as ConfigError).problems).toHaveLength(4);
  });

  it("accepts the launcher's variables (read by bin/portico, not part of the configuration)", () => {
    const config = loadConfig({ env: { PORTICO_NODE: '/usr/bin/node', PORTICO_NODE_OLD_SPACE_MB: '512', PORTICO_NODE_SEMI_SPACE_MB: '4' } });
    expect(config.dimse.port).toBe(11112);
  });

  it('reads a YAML file, lets the environment win, and rejects unknown keys', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'portico-config-'));
    const file = path.join(dir, 'portico.yml');
    writeFileSync(file, 'dimse:\n  port: 104\n  aeTitle: FROMFILE\nhttp:\n  port: 9000\n');
    const c = loadConfig({ env: { PORTICO_HTTP_PORT: '9001' }, file });
    expect(c.dimse.port).toBe(104);
    expect(c.dimse.aeTitle).toBe('FROMFILE');
    expect(c.http.port).toBe(9001);
    writeFileSync(file, 'dimse:\n  prot: 104\n');
    expect(() => loadConfig({ env: {}, file })).toThrow(/unknown setting "dimse.prot"/);
  });

  it('serves the viewer in standalone unless switched off, and in the dicomweb role only when switched on', () => {
    const unset = loadConfig({ env: {} });
    expect(unset.viewer.enabled).toBeUndefined();
    expect(unset.viewer.path).toBe('./.viewer/dist');
    expect(viewerEnabled(unset, 'standalone')).toBe(true);
    expect(viewerEnabled(unset, 'dicomweb')).toBe(false);
    const off = loadConfig({ env: { PORTICO_VIEWER_ENABLED: 'false' } });
    expect(viewerEnabled(off, 'standalone')).toBe(false);
    const on = loadConfig({ env: { PORTICO_VIEWER_ENABLED: 'true', PORTICO_VIEWER_PATH: '/opt/ohif' } });
    expect(viewerEnabled(on, 'dicomweb')).toBe(true);
    expect(on.viewer.path).toBe('/opt/ohif');
    expect(() => loadConfig({ env: { PORTICO_VIEWER_ENABLED: 'maybe' } })).toThrow(/PORTICO_VIEWER_ENABLED/);
  });

  it('refuses a DICOMweb root under the viewer mount', () => {
    expect(() => loadConfig({ env: { PORTICO_DICOMWEB_ROOT: '/viewer/dicom-web' } })).toThrow(/must not lie under \/viewer/);
    expect(() => loadConfig({ env: { PORTICO_DICOMWEB_ROOT: '/viewer' } })).toThrow(/must not lie under \/viewer/);
    expect(loadConfig({ env: { PORTICO_DICOMWEB_ROOT: '/viewers' } }).http.dicomwebRoot).toBe('/viewers');
  });

  it('masks secrets for --print-config', () => {
    const c = loadConfig({
      env: {
        PORTICO_DATABASE_URL: 'postgres://u:hunter2@db/portico',
        PORTICO_S3_ENDPOINT: 'http://minio:9000',
        PORTICO_S3_ACCESS_KEY: 'AK',
        PORTICO_S3_SECRET_KEY: 'SK',
      },
    });
    const text = JSON.stringify(maskedConfig(c));
    expect(text).not.toMatch(/hunter2|"SK"|"AK"/);
    expect(text).toMatch(/postgres:\/\/u:\*+@db\/portico/);
  });

  it('requires external backends for the cluster roles', () => {
    expect(() => requireClusterBackends(loadConfig({ env: {} }), 'worker', { database: true, queue: true, objects: true })).toThrow(/PORTICO_DATABASE_URL/);
  });

  it('documents every setting', () => {
    const md = settingsMarkdown();
    for (const s of SETTINGS) expect(md).toContain(s.env);
  });
});
