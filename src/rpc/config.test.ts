import { describe, expect, it } from 'vitest';
import { loadConfig } from '../core/config.js';
import { ConfigError } from '../core/errors.js';
import { RegionalPool } from '../pg/pool.js';
import { loadRpcConfig } from './config.js';
import { Procedures } from './procedures.js';

const SECRET = 'e469510d32bf70170f9f515aab060069cedc4684b2b41a80e30c7b419bc96dce';
const DB = 'postgres://app:pw@127.0.0.1:1/app';
const multi = (region: string) =>
  loadConfig({ primaryRegion: 'iad', region, databaseUrl: DB, replicaUrl: null });
const single = loadConfig({ databaseUrl: DB });

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('regional/rpc configuration', () => {
  it('refuses to start in multi-region mode without a secret', () => {
    const error = configError(() => loadRpcConfig({}, multi('iad'), {}));
    expect(error.variable).toBe('REGIONAL_SECRET');
    expect(error.message).toMatch(/PRIMARY_REGION=iad is: calls between regions must be signed/);
    expect(
      configError(() => loadRpcConfig({}, multi('syd'), { REGIONAL_SECRET: 'short' })).message,
    ).toMatch(/REGIONAL_SECRET: is 5 characters; use at least 32/);
  });

  it('single-region mode needs no secret: calls run in-process and the handler serves nothing', async () => {
    expect(loadRpcConfig({}, single, {}).keyring).toBeNull();
    const pool = new RegionalPool({ config: single, onWarning: () => {} });
    const procedures = new Procedures({ pool, env: {} });
    const response = await procedures.handler(
      new Request('http://app/_regional/rpc/x', { method: 'POST', body: '{}' }),
    );
    expect(response?.status).toBe(503);
    await pool.end();
  });

  it('a replica region needs the primary region URL, from REGIONAL_PRIMARY_URL or REGIONAL_REGION_URL', () => {
    const error = configError(() => loadRpcConfig({}, multi('syd'), { REGIONAL_SECRET: SECRET }));
    expect(error.variable).toBe('REGIONAL_PRIMARY_URL');
    expect(error.message).toMatch(/an instance in iad/);
    const env = {
      REGIONAL_SECRET: SECRET,
      REGIONAL_REGION_URL: 'http://{region}.app.internal:8080',
    };
    const config = loadRpcConfig({}, multi('syd'), env);
    expect(config.primaryUrl).toEqual({
      url: 'http://iad.app.internal:8080',
      variable: 'REGIONAL_REGION_URL',
    });
    expect(config.regionUrl?.url('cdg')).toBe('http://cdg.app.internal:8080');
    expect(
      configError(() =>
        loadRpcConfig({}, multi('syd'), { ...env, REGIONAL_REGION_URL: 'http://app:8080' }),
      ).message,
    ).toMatch(/REGIONAL_REGION_URL: "http:\/\/app:8080" has no \{region\}/);
  });

  it('on Fly.io the region URL follows <region>.<app>.internal', () => {
    const config = loadRpcConfig({}, multi('syd'), {
      REGIONAL_SECRET: SECRET,
      FLY_APP_NAME: 'forum',
      PORT: '3000',
    });
    expect(config.primaryUrl?.url).toBe('http://iad.forum.internal:3000');
  });

  it('names the variable at fault for wrong values', () => {
    const env = { REGIONAL_SECRET: SECRET };
    const cases: [Record<string, string>, RegExp][] = [
      [
        { REGIONAL_RPC_FALLBACK: 'yes' },
        /REGIONAL_RPC_FALLBACK: must be "direct" .* or "off", got "yes"/,
      ],
      [
        { REGIONAL_RPC_TIMEOUT_MS: 'soon' },
        /REGIONAL_RPC_TIMEOUT_MS: must be a whole number >= 1, got "soon"/,
      ],
      [{ REGIONAL_RPC_ATTEMPTS: '0' }, /REGIONAL_RPC_ATTEMPTS: must be a whole number >= 1/],
      [
        { REGIONAL_RPC_MAX_BODY_BYTES: '10' },
        /REGIONAL_RPC_MAX_BODY_BYTES: must be a whole number >= 1024/,
      ],
      [
        { REGIONAL_RPC_RETENTION_MS: '60000' },
        /REGIONAL_RPC_RETENTION_MS: must be a whole number >= 600000/,
      ],
    ];
    for (const [extra, message] of cases) {
      expect(
        configError(() => loadRpcConfig({}, multi('iad'), { ...env, ...extra })).message,
      ).toMatch(message);
    }
    expect(configError(() => loadRpcConfig({ retentionMs: 5 }, multi('iad'), env)).variable).toBe(
      'retentionMs',
    );
    expect(configError(() => loadRpcConfig({ table: 'Calls; DROP' }, single, {})).variable).toBe(
      'table',
    );
    expect(configError(() => loadRpcConfig({ basePath: '/x/' }, single, {})).variable).toBe(
      'basePath',
    );
    const defaults = loadRpcConfig({}, multi('iad'), env);
    expect(defaults).toMatchObject({
      fallback: 'off',
      timeoutMs: 15_000,
      attempts: 3,
      maxBodyBytes: 1024 * 1024,
      retentionMs: 24 * 3600_000,
      debug: false,
      basePath: '/_regional',
      table: 'regional_procedure_calls',
    });
  });

  it('checks what is defined', async () => {
    const pool = new RegionalPool({ config: single, onWarning: () => {} });
    const procedures = new Procedures({ pool, env: {} });
    procedures.define('ok.name-1', async () => 1);
    expect(() => procedures.define('ok.name-1', async () => 2)).toThrow(/already defined/);
    expect(() => procedures.define('../etc', async () => 1)).toThrow(/is not a procedure name/);
    expect(() =>
      procedures.define('x', async () => 1, { isolationLevel: 'chaos' as 'serializable' }),
    ).toThrow(/isolationLevel: must be one of/);
    await expect(procedures.call('y', null, { id: 'bad id!' })).rejects.toThrow(/is not a call id/);
    await pool.end();
  });

  it("the pool's write mode comes from `writes` or REGIONAL_WRITES", () => {
    expect(
      configError(() => new RegionalPool({ config: single, writes: 'maybe' as 'direct' })).variable,
    ).toBe('writes');
    const previous = process.env.REGIONAL_WRITES;
    process.env.REGIONAL_WRITES = 'sideways';
    try {
      expect(configError(() => new RegionalPool({ config: single })).message).toMatch(
        /REGIONAL_WRITES: must be "direct" .* or "forward"/,
      );
    } finally {
      if (previous === undefined) delete process.env.REGIONAL_WRITES;
      else process.env.REGIONAL_WRITES = previous;
    }
  });
});
