import { describe, expect, it } from 'vitest';
import { configError } from '../../test/support/errors.js';
import { loadConfig, parseServiceUrl, redactUrl } from './config.js';

const primary = 'postgres://app:secret@db.internal:5432/app';
const replica = 'postgres://app:secret@127.0.0.1:6432/app';

describe('loadConfig', () => {
  it('without PRIMARY_REGION is single-region: everything on DATABASE_URL', () => {
    const config = loadConfig({}, { DATABASE_URL: primary, DATABASE_REPLICA_URL: replica });
    expect(config).toMatchObject({
      mode: 'single',
      isPrimaryRegion: true,
      databaseUrl: primary,
      replicaUrl: null,
    });
    expect(config.warnings).toEqual([]);
  });

  it('reads a replica region from the environment', () => {
    const config = loadConfig(
      {},
      {
        PRIMARY_REGION: 'iad',
        REGION: 'syd',
        DATABASE_URL: primary,
        DATABASE_REPLICA_URL: replica,
      },
    );
    expect(config).toMatchObject({
      mode: 'multi',
      primaryRegion: 'iad',
      region: 'syd',
      isPrimaryRegion: false,
      replicaUrl: replica,
      maxWaitMs: 1000,
      waitPolicy: 'primary',
    });
  });

  it('falls back to FLY_REGION, and the Fly preset derives the replica on port 5433 of the same host', () => {
    const config = loadConfig(
      {},
      { PRIMARY_REGION: 'iad', FLY_REGION: 'syd', FLY_APP_NAME: 'app', DATABASE_URL: primary },
    );
    expect(config.region).toBe('syd');
    expect(config.replicaUrl).toBe('postgres://app:secret@db.internal:5433/app');
  });

  it('options override the environment', () => {
    const config = loadConfig(
      { region: 'cdg', replicaUrl: replica, maxWaitMs: 50, waitPolicy: 'error' },
      { PRIMARY_REGION: 'iad', REGION: 'syd', DATABASE_URL: primary },
    );
    expect(config).toMatchObject({
      region: 'cdg',
      replicaUrl: replica,
      maxWaitMs: 50,
      waitPolicy: 'error',
    });
  });

  it('a replica region without a replica warns and reads from the primary', () => {
    const config = loadConfig({}, { PRIMARY_REGION: 'iad', REGION: 'syd', DATABASE_URL: primary });
    expect(config.replicaUrl).toBeNull();
    expect(config.warnings[0]).toMatch(/syd has no replica.*DATABASE_REPLICA_URL/);
  });

  it.each([
    [{}, 'DATABASE_URL', /is not set/],
    [{ DATABASE_URL: 'not a url' }, 'DATABASE_URL', /is not a URL; expected postgres:\/\//],
    [{ DATABASE_URL: 'mysql://x@y/z' }, 'DATABASE_URL', /must start with postgres:\/\//],
    [{ DATABASE_URL: primary, PRIMARY_REGION: 'iad' }, 'REGION', /is not set \(nor FLY_REGION\)/],
    [
      { DATABASE_URL: primary, PRIMARY_REGION: 'iad', REGION: 'IAD' },
      'REGION',
      /differ only in case/,
    ],
    [
      {
        DATABASE_URL: primary,
        PRIMARY_REGION: 'iad',
        REGION: 'iad',
        DATABASE_REPLICA_URL: replica,
      },
      'DATABASE_REPLICA_URL',
      /set in the primary region \(iad\)/,
    ],
    [
      {
        DATABASE_URL: primary,
        PRIMARY_REGION: 'iad',
        REGION: 'syd',
        DATABASE_REPLICA_URL: primary,
      },
      'DATABASE_REPLICA_URL',
      /same as DATABASE_URL/,
    ],
    [
      {
        DATABASE_URL: primary,
        PRIMARY_REGION: 'iad',
        REGION: 'syd',
        DATABASE_REPLICA_URL: 'http://x',
      },
      'DATABASE_REPLICA_URL',
      /postgres:\/\//,
    ],
    [
      { DATABASE_URL: primary, REGIONAL_MAX_WAIT_MS: 'soon' },
      'REGIONAL_MAX_WAIT_MS',
      /number of milliseconds/,
    ],
    [
      { DATABASE_URL: primary, REGIONAL_WAIT_POLICY: 'wait' },
      'REGIONAL_WAIT_POLICY',
      /"primary".*or "error"/,
    ],
    [{ DATABASE_URL: primary, PRIMARY_REGION: 'i a d' }, 'PRIMARY_REGION', /not a region name/],
  ])('rejects %j naming %s', (env, variable, message) => {
    const error = configError(() => loadConfig({}, env as Record<string, string>));
    expect(error.variable).toBe(variable);
    expect(error.message).toMatch(message);
    expect(error.message.startsWith(`${variable}:`)).toBe(true);
  });

  it('never prints a password in an error', () => {
    const error = configError(() =>
      loadConfig({}, { DATABASE_URL: 'mysql://user:hunter2@host/db' }),
    );
    expect(error.message).not.toContain('hunter2');
  });
});

describe('redactUrl', () => {
  it.each([
    ['postgres://app:s3cret@db:5432/app', 'postgres://app:***@db:5432/app'],
    [
      'postgres://app@db:5432/app?password=s3cret&sslmode=require',
      'postgres://app@db:5432/app?password=***&sslmode=require',
    ],
    [
      'postgres://app@db/app?sslpassword=s3cret&pass=s3cret&PWD=s3cret&application_name=passenger',
      'postgres://app@db/app?sslpassword=***&pass=***&PWD=***&application_name=passenger',
    ],
    ['redis://:s3cret@cache:6379/0', 'redis://:***@cache:6379/0'],
    ['postgres://db:5432/app', 'postgres://db:5432/app'],
    // Not URLs: shown, but with whatever could be a password hidden.
    ['postgres://app:s3cret@db:5432:x/app', 'postgres://app:***@db:5432:x/app'],
    ['postgres://app:s3c@ret@db:5432,db2:5432/app', 'postgres://app:***@db:5432,db2:5432/app'],
    ['postgres://app:s3cret@db:x/app?password=s3cret', 'postgres://app:***@db:x/app?password=***'],
    ['redis://s3cret@cache:x', 'redis://***@cache:x'],
    ['postgres:app:s3cret@db/app', 'postgres:app:***@db/app'],
    ['host=db user=app password=s3cret dbname=app', 'host=db user=app password=*** dbname=app'],
    ["host=db password='s3 cret' dbname=app", 'host=db password=*** dbname=app'],
    ['not a url', 'not a url'],
  ])('%s → %s', (url, redacted) => {
    expect(redactUrl(url)).toBe(redacted);
  });
});

describe('parseServiceUrl', () => {
  const kind = { protocols: ['postgres:'], name: 'Postgres', example: 'postgres://host/db' };

  it.each([
    'postgres://app:s3cret@db:5432:x/app',
    'postgres://app@db:5432:x/app?password=s3cret&sslmode=require',
    'postgres://db:5432:x/app?password=s3cret',
    'mysql://app@db/app?password=s3cret',
    'postgres:app:s3cret@db/app',
    'host=db user=app password=s3cret dbname=app',
  ])('never quotes the password of %s', (value) => {
    const error = configError(() => parseServiceUrl('DATABASE_URL', value, kind));
    expect(error.variable).toBe('DATABASE_URL');
    expect(error.message).toMatch(/not a (Postgres )?URL|names no host/);
    expect(error.message).not.toContain('s3cret');
  });
});
