import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalCluster } from '../../../src/testing/cluster.js';
import { LinkProbe } from './link-probe.js';

let cluster: LocalCluster;

beforeAll(async () => {
  cluster = await LocalCluster.start({
    temporary: true,
    regions: ['iad', 'cdg'],
    rttMs: { cdg: 40 },
  });
});
afterAll(async () => {
  await cluster?.stop();
});

describe('LinkProbe', () => {
  it('measures the round trip on the link, then closes the paths it made', async () => {
    const link = cluster.link('cdg', 'iad');
    const before = link.proxies.length;
    const probe = await LinkProbe.start(cluster, { to: 'iad', from: ['cdg'], intervalMs: 10 });
    expect(link.proxies.map((p) => p.name)).toContain('cdg->iad ping');
    probe.measureFrom(performance.now());
    await new Promise((resolve) => setTimeout(resolve, 500));
    const medians = await probe.stop();
    // The link delays each direction by half the round trip: never less than 40 ms in all.
    expect(medians.cdg).toBeGreaterThanOrEqual(40);
    expect(link.proxies.length).toBe(before);
  });
});
