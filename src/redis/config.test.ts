import { describe, expect, it } from 'vitest';
import { configError } from '../../test/support/errors.js';
import { commandKind } from './commands.js';
import { loadRedisConfig } from './config.js';
import { RedisUnsupportedCommandError } from './errors.js';
import { parseReplicationInfo } from './replication-info.js';

const primary = 'redis://:secret@redis.internal:6379';
const replica = 'redis://:secret@127.0.0.1:6380';
const cache = 'redis://127.0.0.1:6381';

describe('loadRedisConfig', () => {
  it('without PRIMARY_REGION is single-region: one Redis, also the cache', () => {
    const config = loadRedisConfig({}, { REDIS_URL: primary, REDIS_REPLICA_URL: replica });
    expect(config).toMatchObject({
      mode: 'single',
      url: primary,
      replicaUrl: null,
      cacheUrl: primary,
    });
    expect(config.warnings).toEqual([]);
  });

  it('reads a replica region from the environment, with the shared wait settings', () => {
    const config = loadRedisConfig(
      {},
      {
        PRIMARY_REGION: 'iad',
        REGION: 'syd',
        REDIS_URL: primary,
        REDIS_REPLICA_URL: replica,
        REDIS_CACHE_URL: cache,
        REGIONAL_MAX_WAIT_MS: '250',
        REGIONAL_WAIT_POLICY: 'error',
      },
    );
    expect(config).toMatchObject({
      mode: 'multi',
      region: 'syd',
      isPrimaryRegion: false,
      url: primary,
      replicaUrl: replica,
      cacheUrl: cache,
      maxWaitMs: 250,
      waitPolicy: 'error',
    });
    expect(config.warnings).toEqual([]);
  });

  it('options override the environment', () => {
    const config = loadRedisConfig(
      { region: 'cdg', replicaUrl: null, cacheUrl: cache },
      { PRIMARY_REGION: 'iad', REGION: 'syd', REDIS_URL: primary, REDIS_REPLICA_URL: replica },
    );
    expect(config).toMatchObject({ region: 'cdg', replicaUrl: null, cacheUrl: cache });
  });

  it('warns about a replica region without a replica or without a cache instance', () => {
    const config = loadRedisConfig(
      {},
      { PRIMARY_REGION: 'iad', REGION: 'syd', REDIS_URL: primary },
    );
    expect(config.warnings.join('\n')).toMatch(/syd has no Redis replica.*REDIS_REPLICA_URL/);
    expect(config.warnings.join('\n')).toMatch(/no cache instance.*REDIS_CACHE_URL/);
  });

  it.each([
    [{ REDIS_URL: 'not a url' }, 'REDIS_URL', /is not a URL; expected redis:\/\//],
    [{ REDIS_URL: 'http://x:6379' }, 'REDIS_URL', /must start with redis:\/\/ or rediss:\/\//],
    [{ REDIS_URL: primary, REDIS_CACHE_URL: 'postgres://x' }, 'REDIS_CACHE_URL', /redis:\/\//],
    [
      { REDIS_URL: primary, PRIMARY_REGION: 'iad', REGION: 'iad', REDIS_REPLICA_URL: replica },
      'REDIS_REPLICA_URL',
      /set in the primary region \(iad\)/,
    ],
    [
      { REDIS_URL: primary, PRIMARY_REGION: 'iad', REGION: 'syd', REDIS_REPLICA_URL: primary },
      'REDIS_REPLICA_URL',
      /same as REDIS_URL/,
    ],
    [
      { REDIS_URL: primary, PRIMARY_REGION: 'iad', REGION: 'syd', REDIS_CACHE_URL: primary },
      'REDIS_CACHE_URL',
      /this region's own Redis instance/,
    ],
    [{ REDIS_URL: primary, PRIMARY_REGION: 'iad' }, 'REGION', /is not set/],
    [{ REDIS_URL: primary, REGIONAL_WAIT_POLICY: 'later' }, 'REGIONAL_WAIT_POLICY', /"error"/],
  ])('rejects %j naming %s', (env, variable, message) => {
    const error = configError(() => loadRedisConfig({}, env as Record<string, string>));
    expect(error.variable).toBe(variable);
    expect(error.message).toMatch(message);
  });

  it('never prints a password in an error', () => {
    const error = configError(() => loadRedisConfig({}, { REDIS_URL: 'http://:hunter2@x' }));
    expect(error.message).not.toContain('hunter2');
    for (const url of ['redis://:hunter2@cache:x', 'redis://cache:6379:x?password=hunter2']) {
      const unparseable = configError(() => loadRedisConfig({}, { REDIS_URL: url }));
      expect(unparseable.message).toMatch(/^REDIS_URL: .* is not a URL/);
      expect(unparseable.message).not.toContain('hunter2');
    }
  });
});

describe('commandKind', () => {
  it.each([
    ['get', 'read'],
    ['HGETALL', 'read'],
    ['zrange', 'read'],
    ['eval_ro', 'read'],
    ['set', 'write'],
    ['incrby', 'write'],
    ['eval', 'write'],
    ['publish', 'write'],
    ['no-such-command', 'write'],
  ])('%s is a %s', (name, kind) => {
    expect(commandKind(name)).toBe(kind);
  });

  it('refuses commands that block or change the shared connection, saying what to use', () => {
    expect(() => commandKind('brpop')).toThrow(RedisUnsupportedCommandError);
    expect(() => commandKind('subscribe')).toThrow(/duplicate\(\)/);
    expect(() => commandKind('select')).toThrow(/duplicate\(\)/);
    expect(() => commandKind('exec')).toThrow(/store.transaction/);
    expect(() => commandKind('xread', ['BLOCK', 0, 'STREAMS', 's', '$'])).toThrow(/BLOCK/);
    expect(commandKind('xread', ['COUNT', 1, 'STREAMS', 's', '0'])).toBe('read');
  });
});

describe('parseReplicationInfo', () => {
  it('reads a primary and a replica', () => {
    const primaryInfo =
      '# Replication\r\nrole:master\r\nconnected_slaves:1\r\nmaster_replid:abc123\r\nmaster_repl_offset:2123\r\n';
    expect(parseReplicationInfo(primaryInfo)).toEqual({
      role: 'master',
      replid: 'abc123',
      offset: 2123n,
      linkUp: true,
    });
    const replicaInfo =
      '# Replication\r\nrole:slave\r\nmaster_link_status:down\r\nslave_repl_offset:70\r\nmaster_replid:abc123\r\nmaster_repl_offset:71\r\n';
    expect(parseReplicationInfo(replicaInfo)).toEqual({
      role: 'slave',
      replid: 'abc123',
      offset: 70n,
      linkUp: false,
    });
  });

  it('refuses a reply that is not from Redis', () => {
    expect(() => parseReplicationInfo('hello')).toThrow(/Unexpected reply to INFO replication/);
  });
});
