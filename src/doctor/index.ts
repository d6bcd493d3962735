/**
 * `regional doctor`: checks an instance's configuration and surroundings and says, for every
 * problem, what to do about it.
 *
 * @example
 * const { findings, problems } = await runDoctor({ peers: ['http://cdg.my-app.internal:8080'] });
 */
import pg from 'pg';
import { loadConfig, type RegionalConfig, redactUrl } from '../core/config.js';
import { formatLsn, parseLsn } from '../core/lsn.js';
import { Keyring } from '../core/signing.js';
import { pingInstance } from '../health/ping.js';

export interface Finding {
  check: string;
  level: 'ok' | 'warn' | 'fail';
  message: string;
  /** What to do, for warnings and failures. */
  fix?: string;
}

export interface DoctorOptions {
  env?: Readonly<Record<string, string | undefined>>;
  /** Base URLs of instances in other regions to ping (besides REGIONAL_PRIMARY_URL). */
  peers?: string[];
  /** Each check gives up after this long (default 5000 ms). */
  timeoutMs?: number;
  /** Clock differences beyond this are problems (default 2000 ms; signatures allow 30 s). */
  maxSkewMs?: number;
}

interface ServerFacts {
  standby: boolean;
  systemId: string;
  lsn: string | null;
  version: string;
  skewMs: number;
  rttMs: number;
}

async function inspectServer(url: string, timeoutMs: number): Promise<ServerFacts> {
  const client = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: timeoutMs,
    query_timeout: timeoutMs,
  });
  client.on('error', () => {});
  await client.connect();
  try {
    const sent = Date.now();
    const { rows } = await client.query<{
      standby: boolean;
      id: string;
      lsn: string | null;
      version: string;
      now: string;
    }>(
      `SELECT pg_is_in_recovery() AS standby, (SELECT system_identifier::text FROM pg_control_system()) AS id,
              CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_flush_lsn() END::text AS lsn,
              current_setting('server_version') AS version,
              (extract(epoch FROM clock_timestamp()) * 1000)::text AS now`,
    );
    const rttMs = Date.now() - sent;
    const row = rows[0] as {
      standby: boolean;
      id: string;
      lsn: string | null;
      version: string;
      now: string;
    };
    return {
      standby: row.standby,
      systemId: row.id,
      lsn: row.lsn,
      version: row.version,
      rttMs,
      skewMs: Number(row.now) - (sent + rttMs / 2),
    };
  } finally {
    await client.end().catch(() => {});
  }
}

/** Polls the replica until it has replayed `target`; resolves with the milliseconds it took. */
async function timeToReplay(url: string, target: string, boundMs: number): Promise<number | null> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: boundMs });
  client.on('error', () => {});
  await client.connect();
  try {
    const started = Date.now();
    const goal = parseLsn(target);
    while (Date.now() - started <= boundMs) {
      const { rows } = await client.query<{ lsn: string }>(
        'SELECT pg_last_wal_replay_lsn()::text AS lsn',
      );
      if (parseLsn((rows[0] as { lsn: string }).lsn) >= goal) return Date.now() - started;
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    return null;
  } finally {
    await client.end().catch(() => {});
  }
}

const secretFix =
  'Set the same random REGIONAL_SECRET on every instance, made with `openssl rand -hex 32` (at least 32 characters and 128 bits of estimated entropy: no repeats or runs).';

/** Runs every check; `problems` counts the failures (warnings are not problems). */
export async function runDoctor(
  options: DoctorOptions = {},
): Promise<{ findings: Finding[]; problems: number }> {
  const env = options.env ?? process.env;
  const timeoutMs = options.timeoutMs ?? 5000;
  const maxSkewMs = options.maxSkewMs ?? 2000;
  const findings: Finding[] = [];
  const add = (finding: Finding) => findings.push(finding);
  const done = () => ({ findings, problems: findings.filter((f) => f.level === 'fail').length });

  let config: RegionalConfig;
  try {
    config = loadConfig({}, env);
  } catch (error) {
    add({
      check: 'configuration',
      level: 'fail',
      message: (error as Error).message,
      fix: 'Correct the variable named above.',
    });
    return done();
  }
  add({
    check: 'configuration',
    level: 'ok',
    message:
      config.mode === 'single'
        ? 'single-region mode (PRIMARY_REGION is not set): everything uses DATABASE_URL'
        : `multi-region mode: this instance is in ${config.region}, the primary in ${config.primaryRegion}`,
  });
  for (const warning of config.warnings)
    add({ check: 'configuration', level: 'warn', message: warning });

  let keyring: Keyring | null = null;
  try {
    keyring = Keyring.fromEnv(env);
    if (keyring) {
      add({
        check: 'secret',
        level: 'ok',
        message: `REGIONAL_SECRET is set (key id ${keyring.current.id})`,
      });
    } else if (config.mode === 'multi') {
      add({
        check: 'secret',
        level: 'fail',
        message:
          'REGIONAL_SECRET is not set: multi-region mode signs calls between regions and client tokens with it',
        fix: secretFix,
      });
    } else {
      add({
        check: 'secret',
        level: 'ok',
        message: 'REGIONAL_SECRET is not set (not needed in single-region mode)',
      });
    }
  } catch (error) {
    add({ check: 'secret', level: 'fail', message: (error as Error).message, fix: secretFix });
  }

  let primary: ServerFacts | null = null;
  try {
    primary = await inspectServer(config.databaseUrl, timeoutMs);
    if (primary.standby) {
      add({
        check: 'primary',
        level: 'fail',
        message: `DATABASE_URL (${redactUrl(config.databaseUrl)}) points at a server in recovery: a replica, not the primary`,
        fix: 'Point DATABASE_URL at the writable primary (as reached from this region).',
      });
    } else {
      add({
        check: 'primary',
        level: 'ok',
        message: `DATABASE_URL is a primary (Postgres ${primary.version}), ${primary.rttMs} ms away`,
      });
    }
  } catch (error) {
    add({
      check: 'primary',
      level: 'fail',
      message: `cannot reach DATABASE_URL (${redactUrl(config.databaseUrl)}): ${(error as Error).message}`,
      fix: 'Check the URL, credentials, and the network path to the primary.',
    });
  }

  if (config.replicaUrl) {
    try {
      const replica = await inspectServer(config.replicaUrl, timeoutMs);
      if (!replica.standby) {
        add({
          check: 'replica',
          level: 'fail',
          message: `DATABASE_REPLICA_URL (${redactUrl(config.replicaUrl)}) points at a primary (not in recovery), not at a replica`,
          fix: "Point DATABASE_REPLICA_URL at this region's streaming replica; writes through it would bypass Regional's routing.",
        });
      } else if (primary && replica.systemId !== primary.systemId) {
        add({
          check: 'replica',
          level: 'fail',
          message: `DATABASE_REPLICA_URL is a replica of another cluster (system identifier ${replica.systemId}, the primary's is ${primary.systemId})`,
          fix: 'Point DATABASE_REPLICA_URL at a replica of the primary that DATABASE_URL names.',
        });
      } else {
        add({
          check: 'replica',
          level: 'ok',
          message: `DATABASE_REPLICA_URL is a replica, replayed up to ${replica.lsn}`,
        });
        if (primary && !primary.standby && primary.lsn) {
          const lag = await timeToReplay(config.replicaUrl, primary.lsn, config.maxWaitMs).catch(
            () => null,
          );
          add(
            lag === null
              ? {
                  check: 'replica lag',
                  level: 'fail',
                  message: `the replica did not replay the primary's position ${formatLsn(parseLsn(primary.lsn))} within ${config.maxWaitMs} ms (REGIONAL_MAX_WAIT_MS)`,
                  fix: 'Check replication (is replay paused? is the link to the primary up?), or raise REGIONAL_MAX_WAIT_MS.',
                }
              : {
                  check: 'replica lag',
                  level: 'ok',
                  message: `${lag} ms behind the primary (bound ${config.maxWaitMs} ms)`,
                },
          );
        }
      }
    } catch (error) {
      add({
        check: 'replica',
        level: 'fail',
        message: `cannot reach DATABASE_REPLICA_URL (${redactUrl(config.replicaUrl)}): ${(error as Error).message}`,
        fix: 'Check the URL and that the replica runs; until then reads go to the primary.',
      });
    }
  }

  if (primary) {
    const skew = Math.round(primary.skewMs);
    add(
      Math.abs(skew) > maxSkewMs
        ? {
            check: 'clock',
            level: 'fail',
            message: `this machine's clock is ${Math.abs(skew)} ms ${skew > 0 ? 'behind' : 'ahead of'} the primary database's`,
            fix: 'Synchronise clocks (NTP): signed calls are refused beyond 30 s of difference and tokens expire by the clock.',
          }
        : {
            check: 'clock',
            level: 'ok',
            message: `within ${Math.abs(skew)} ms of the primary database's clock`,
          },
    );
  }

  const peers = [
    ...(config.isPrimaryRegion || !env.REGIONAL_PRIMARY_URL ? [] : [env.REGIONAL_PRIMARY_URL]),
    ...(options.peers ?? []),
  ];
  for (const peer of peers) {
    // A peer URL may carry credentials (http://user:password@host); findings never show them.
    const check = `peer ${redactUrl(peer)}`;
    if (!keyring) {
      add({
        check,
        level: 'fail',
        message: 'cannot ping without REGIONAL_SECRET',
        fix: secretFix,
      });
      continue;
    }
    const result = await pingInstance(peer, keyring, timeoutMs);
    if (!result.ok) {
      add(
        result.status === 401
          ? {
              check,
              level: 'fail',
              message: `refused our signed ping (${result.reason}): that instance does not share this REGIONAL_SECRET`,
              fix: 'Give every region the same REGIONAL_SECRET (during a rotation, the old one as REGIONAL_SECRET_PREVIOUS).',
            }
          : {
              check,
              level: 'fail',
              message: `cannot ping it: ${result.status ? `HTTP ${result.status}: ` : ''}${result.reason}`,
              fix: 'Check the URL and that the instance runs and mounts Regional.',
            },
      );
      continue;
    }
    const skew = Math.round(result.skewMs);
    add(
      Math.abs(skew) > maxSkewMs
        ? {
            check,
            level: 'fail',
            message: `answers (region ${result.answer.region}) but its clock is ${Math.abs(skew)} ms off ours`,
            fix: 'Synchronise clocks (NTP) on every instance.',
          }
        : {
            check,
            level: 'ok',
            message: `region ${result.answer.region} shares the secret (key ${result.answer.keyId}); ${result.rttMs} ms round trip, clocks within ${Math.abs(skew)} ms`,
          },
    );
  }
  return done();
}
