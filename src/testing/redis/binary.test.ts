import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalCluster, TEMP_PREFIX } from '../cluster.js';
import { findRedisServer, RedisMissingError, redisUnavailableReason } from './binary.js';

const root = path.resolve(import.meta.dirname, '../../..');
const MISSING = '/nonexistent/redis-server';

describe('finding redis-server', () => {
  const saved = process.env.REGIONAL_REDIS_SERVER;
  afterEach(() => {
    if (saved === undefined) delete process.env.REGIONAL_REDIS_SERVER;
    else process.env.REGIONAL_REDIS_SERVER = saved;
  });

  it('without one on PATH, says exactly how to install it', () => {
    const error = (() => {
      try {
        findRedisServer({ PATH: '/nonexistent' });
      } catch (e) {
        return e as Error;
      }
      throw new Error('expected an error');
    })();
    expect(error).toBeInstanceOf(RedisMissingError);
    expect(error.message).toMatch(/no redis-server on PATH/);
    expect(error.message).toMatch(/sudo apt-get install redis-server/);
    expect(error.message).toMatch(/brew install redis/);
  });

  it('names REGIONAL_REDIS_SERVER when it points nowhere', () => {
    expect(() => findRedisServer({ REGIONAL_REDIS_SERVER: MISSING })).toThrow(
      /REGIONAL_REDIS_SERVER=\/nonexistent\/redis-server is not an executable file/,
    );
  });

  it('is a reason to skip the Redis tests, except under CI where they must run (and fail)', () => {
    expect(redisUnavailableReason({ REGIONAL_REDIS_SERVER: MISSING })).toMatch(/apt-get install/);
    expect(redisUnavailableReason({ REGIONAL_REDIS_SERVER: MISSING, CI: 'true' })).toBeNull();
  });

  it('LocalCluster.start({ redis: true }) fails with the hint before starting anything', async () => {
    process.env.REGIONAL_REDIS_SERVER = MISSING;
    const before = readdirSync(os.tmpdir()).filter((d) => d.startsWith(TEMP_PREFIX)).length;
    await expect(LocalCluster.start({ temporary: true, redis: true })).rejects.toThrow(
      /redis-server is needed .*`sudo apt-get install redis-server`/,
    );
    const after = readdirSync(os.tmpdir()).filter((d) => d.startsWith(TEMP_PREFIX)).length;
    expect(after).toBeLessThanOrEqual(before);
  });
});

describe('Redis tests where redis-server is missing', () => {
  const runFixture = (env: Record<string, string | undefined>) => {
    const result = spawnSync(
      process.execPath,
      [
        path.join(root, 'node_modules/vitest/vitest.mjs'),
        'run',
        '--config',
        path.join(root, 'test/fixtures/redis-skip/vitest.config.ts'),
        '--reporter',
        'verbose',
      ],
      {
        cwd: root,
        encoding: 'utf8',
        env: { ...process.env, REGIONAL_REDIS_SERVER: MISSING, NO_COLOR: '1', ...env },
        timeout: 60_000,
      },
    );
    return { status: result.status, output: `${result.stdout}\n${result.stderr}` };
  };

  it('are reported as skipped, never passed, with the install hint', () => {
    const { status, output } = runFixture({ CI: undefined });
    expect(output).toMatch(/SKIPPED: redis-server is needed/);
    expect(output).toMatch(/apt-get install redis-server/);
    expect(output).toMatch(/Tests\s+1 skipped/);
    expect(output).not.toMatch(/\d+ passed/);
    expect(status).toBe(0);
  });

  it('fail under CI, with the install hint', () => {
    const { status, output } = runFixture({ CI: 'true' });
    expect(output).toMatch(/apt-get install redis-server/);
    expect(output).toMatch(/1 failed/);
    expect(status).not.toBe(0);
  });
});
