import { existsSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../../test/support/http-client.js';
import { LocalCluster } from '../testing/cluster.js';
import { type AppExit, LocalApps } from './apps.js';

/** An instance: answers every request with its REGION and PORT, once `$GO` exists. */
const APP = `echo "port $PORT"; while [ ! -e "$GO" ]; do sleep 0.02; done; exec "${process.execPath}" -e "require('http').createServer((q, s) => s.end(process.env.REGION + ' ' + process.env.PORT)).listen(+process.env.PORT, '127.0.0.1')"`;

/** An instance answering `REGION PORT EXTRA pid`; `/crash` makes it print a line and exit with 3. */
const CRASHY = `exec "${process.execPath}" -e "require('http').createServer((q, s) => { if (q.url === '/crash') { console.log('crashing on purpose'); process.exit(3); } s.end([process.env.REGION, process.env.PORT, process.env.EXTRA, process.pid].join(' ')); }).listen(+process.env.PORT, '127.0.0.1')"`;

let cluster: LocalCluster;
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  cluster = await LocalCluster.start({ temporary: true, regions: ['iad', 'cdg'] });
});
afterAll(async () => {
  await cluster?.stop();
});
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

/** A listener of this test's own on a free port: "another process" to the instances. */
async function squat(port = 0): Promise<number> {
  const server = http.createServer((_req, res) => res.end('squatter'));
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  closers.push(() => new Promise((resolve) => server.close(resolve)));
  return (server.address() as AddressInfo).port;
}

/** Starts the instances; they listen once the file `go` exists. */
async function start(go: string, options: Partial<Parameters<typeof LocalApps.start>[0]> = {}) {
  const apps = await LocalApps.start({
    command: APP,
    cluster,
    env: { ...process.env, GO: go },
    ...options,
  });
  closers.push(() => apps.stop());
  return apps;
}

/** The text an instance answers at `port` (a port, or `port/path`). */
const answer = async (port: number | string) => {
  const [at, path = ''] = String(port).split(/\/(.*)/);
  return (await new Client(`http://127.0.0.1:${at}`).get(`/${path}`)).text;
};

describe('LocalApps', () => {
  it('starts one instance per region, each on its own port with its region', async () => {
    const go = `${cluster.dir}/go-now`;
    writeFileSync(go, '');
    const apps = await start(go);
    const { iad, cdg } = apps.edgeApps();
    expect(iad?.port).not.toBe(cdg?.port);
    expect(await answer(iad?.port as number)).toBe(`iad ${iad?.port}`);
    expect(await answer(cdg?.port as number)).toBe(`cdg ${cdg?.port}`);
  });

  it.skipIf(!existsSync('/proc/net/tcp'))(
    'a port taken before its instance binds it is not answered by the taker: the instances start again on new ports',
    async () => {
      const go = `${cluster.dir}/go-retry`;
      let taken: number | undefined;
      const lines: string[] = [];
      const apps = await start(go, {
        onOutput: (region, line) => {
          lines.push(`${region}: ${line}`);
          const port = /^port (\d+)$/.exec(line)?.[1];
          // The first time cdg's instance says its port: take it, then let the instances listen.
          if (region === 'cdg' && port && taken === undefined) {
            taken = Number(port);
            void squat(taken).then(() => writeFileSync(go, ''));
          }
        },
      });
      expect(taken).toBeDefined();
      // The first attempt's link was closed with its instances: one link, the current one's.
      const appLinks = cluster.link('cdg', 'iad').proxies.filter((p) => p.name.endsWith(' app'));
      expect(appLinks.map((p) => p.name)).toEqual(['cdg->iad app']);
      const { cdg } = apps.edgeApps();
      expect(cdg?.port).not.toBe(taken);
      expect(await answer(cdg?.port as number)).toBe(`cdg ${cdg?.port}`);
      expect(await answer(taken as number)).toBe('squatter');
      expect(lines).toContainEqual(
        expect.stringMatching(
          new RegExp(
            `^cdg: \\[regional\\] The app in cdg cannot listen on PORT=${taken}: this process \\(pid ${process.pid}\\) listens there\\. Starting again on new ports\\.$`,
          ),
        ),
      );
    },
  );

  it('closes the links it made when it stops', async () => {
    const go = `${cluster.dir}/go-now`;
    writeFileSync(go, '');
    const link = cluster.link('cdg', 'iad');
    const before = link.proxies.length;
    const apps = await start(go);
    expect(link.proxies.length).toBe(before + 1);
    await apps.stop();
    expect(link.proxies.length).toBe(before);
  });

  it('refuses a port given in `ports` that another process listens on, naming the region and the port', async () => {
    const port = await squat();
    await expect(start(`${cluster.dir}/go-now`, { ports: { cdg: port } })).rejects.toThrow(
      new RegExp(
        `^The app in cdg cannot listen on PORT=${port}: .*listens there\\. Free the port or choose another in ports\\.cdg\\.$`,
      ),
    );
  });

  it('kill() ends an instance without counting a crash; restart() starts it again on the same port with the same environment', async () => {
    const apps = await start('', {
      command: CRASHY,
      regionEnv: (region) => ({ EXTRA: `extra-${region}` }),
    });
    const port = apps.edgeApps().cdg?.port as number;
    const [, , extra, pid] = (await answer(port)).split(' ');
    expect(extra).toBe('extra-cdg');
    await apps.kill('cdg');
    await expect(answer(port)).rejects.toThrow();
    await apps.restart('cdg');
    expect(apps.edgeApps().cdg?.port).toBe(port);
    const [region, samePort, sameExtra, newPid] = (await answer(port)).split(' ');
    expect([region, samePort, sameExtra]).toEqual(['cdg', String(port), 'extra-cdg']);
    expect(newPid).not.toBe(pid);
    // A graceful kill, and a restart of a running instance, are not crashes either.
    await apps.kill('iad', 'SIGTERM');
    await apps.restart('iad');
    await apps.restart('cdg');
    expect(await answer(apps.edgeApps().iad?.port as number)).toMatch(/^iad /);
    expect(apps.exits()).toEqual([]);
    await expect(apps.kill('syd')).rejects.toThrow(
      'No instance runs in "syd" (instances: iad, cdg)',
    );
    await expect(apps.restart('syd')).rejects.toThrow('No instance runs in "syd"');
  });

  it('records an instance that exits by itself, with its code and last output, and tells onExit', async () => {
    const told: AppExit[] = [];
    const apps = await start('', { command: CRASHY, onExit: (exit) => told.push(exit) });
    const port = apps.edgeApps().cdg?.port as number;
    const before = Date.now();
    await expect(answer(`${port}/crash`)).rejects.toThrow();
    for (let i = 0; i < 500 && apps.exits().length === 0; i++) await sleep(10);
    const exits = apps.exits();
    expect(exits).toHaveLength(1);
    expect(exits[0]).toMatchObject({ region: 'cdg', code: 3, signal: null });
    expect(exits[0]?.lastOutput).toContain('crashing on purpose');
    expect(exits[0]?.at).toBeGreaterThanOrEqual(before);
    expect(told).toEqual(exits);
    // Restarted, it serves again; the record stays.
    await apps.restart('cdg');
    expect(await answer(port)).toMatch(/^cdg /);
    expect(apps.exits()).toHaveLength(1);
    await apps.stop();
    expect(apps.exits()).toHaveLength(1);
  });

  it('names a bad `ports` option', async () => {
    await expect(start(`${cluster.dir}/go-now`, { ports: { syd: 3000 } })).rejects.toThrow(
      'ports.syd: no instance runs there (regions: iad, cdg)',
    );
    await expect(start(`${cluster.dir}/go-now`, { ports: { cdg: 70_000 } })).rejects.toThrow(
      'ports.cdg: 70000 is not a TCP port (1 to 65535)',
    );
  });
});
