import { existsSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../../test/support/http-client.js';
import { LocalCluster } from '../testing/cluster.js';
import { LocalApps } from './apps.js';

/** An instance: answers every request with its REGION and PORT, once `$GO` exists. */
const APP = `echo "port $PORT"; while [ ! -e "$GO" ]; do sleep 0.02; done; exec "${process.execPath}" -e "require('http').createServer((q, s) => s.end(process.env.REGION + ' ' + process.env.PORT)).listen(+process.env.PORT, '127.0.0.1')"`;

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

const answer = async (port: number) => (await new Client(`http://127.0.0.1:${port}`).get('/')).text;

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

  it('names a bad `ports` option', async () => {
    await expect(start(`${cluster.dir}/go-now`, { ports: { syd: 3000 } })).rejects.toThrow(
      'ports.syd: no instance runs there (regions: iad, cdg)',
    );
    await expect(start(`${cluster.dir}/go-now`, { ports: { cdg: 70_000 } })).rejects.toThrow(
      'ports.cdg: 70000 is not a TCP port (1 to 65535)',
    );
  });
});
