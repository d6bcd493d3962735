import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { configError } from '../../test/support/errors.js';
import { ConfigError } from './errors.js';
import { RegionInstances } from './instances.js';

const servers: http.Server[] = [];
const closers: RegionInstances[] = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((c) => c.close()));
  await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
});

/** An instance that answers with its own address, on `host:port` (port 0 picks one). */
async function instance(host: string, port = 0): Promise<number> {
  const server = http.createServer((req, res) => res.end(`${host} ${req.headers.host}`));
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  return (server.address() as AddressInfo).port;
}

describe('RegionInstances', () => {
  it('sends to the instance a URL names, keeping the Host header', async () => {
    const port = await instance('127.0.0.1');
    const instances = new RegionInstances(`http://127.0.0.1:${port}`);
    closers.push(instances);
    const { body } = await instances.request({ method: 'GET', path: '/' });
    expect(await body.text()).toBe(`127.0.0.1 127.0.0.1:${port}`);
  });

  it('a name that resolves to several instances: a failed one is skipped when the request may be retried', async () => {
    const port = await instance('127.0.0.2');
    await instance('127.0.0.3', port);
    const instances = new RegionInstances(`http://iad.app.internal:${port}`, {
      resolveHost: async () => ['127.0.0.1', '127.0.0.2', '127.0.0.3'],
    });
    closers.push(instances);
    // Nothing listens on 127.0.0.1:port: without retry, the failure is the caller's.
    await expect(instances.request({ method: 'GET', path: '/' })).rejects.toMatchObject({
      code: 'ECONNREFUSED',
    });
    const { body } = await instances.request({ method: 'GET', path: '/' }, () => true);
    expect(await body.text()).toBe(`127.0.0.2 iad.app.internal:${port}`);
    // The failed instance is now tried last.
    expect((await instances.origins())[2]).toBe(`http://127.0.0.1:${port}`);
  });

  it('rejects a missing or wrong URL naming the variable', () => {
    expect(() => new RegionInstances(undefined, { variable: 'REGIONAL_PRIMARY_URL' })).toThrow(
      ConfigError,
    );
    expect(() => new RegionInstances('iad:8080', { variable: 'REGIONAL_PRIMARY_URL' })).toThrow(
      /REGIONAL_PRIMARY_URL: iad:8080 must start with http/,
    );
    expect(() => new RegionInstances('not a url', { variable: 'REGIONAL_PRIMARY_URL' })).toThrow(
      /is not a URL/,
    );
  });

  it('never quotes a password in its errors', () => {
    for (const url of [
      'http://app:s3cret@iad.app.internal:x',
      'ftp://app:s3cret@iad.app.internal',
    ]) {
      const error = configError(
        () => new RegionInstances(url, { variable: 'REGIONAL_PRIMARY_URL' }),
      );
      expect(error.message).toMatch(/^REGIONAL_PRIMARY_URL: .*app:\*\*\*@iad/);
      expect(error.message).not.toContain('s3cret');
    }
  });
});
