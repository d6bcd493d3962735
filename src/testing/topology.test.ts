import { describe, expect, it } from 'vitest';
import { parseRttList, resolveTopology, TopologyError } from './topology.js';

describe('resolveTopology', () => {
  it('defaults to iad (primary), cdg and syd with real-world round trips', () => {
    const t = resolveTopology();
    expect(t.regions).toEqual(['iad', 'cdg', 'syd']);
    expect(t.primaryRegion).toBe('iad');
    expect(t.replicaRegions).toEqual(['cdg', 'syd']);
    expect(t.rttMs('iad', 'cdg')).toBe(80);
    expect(t.rttMs('syd', 'iad')).toBe(200);
    expect(t.rttMs('cdg', 'syd')).toBe(280);
    expect(t.rttMs('syd', 'syd')).toBe(0);
  });

  it('takes round trips to the primary by region name and between regions by pair', () => {
    const t = resolveTopology({ rttMs: { cdg: 10, syd: 20, 'syd-cdg': 30 } });
    expect([t.rttMs('iad', 'cdg'), t.rttMs('iad', 'syd'), t.rttMs('cdg', 'syd')]).toEqual([
      10, 20, 30,
    ]);
  });

  it('estimates round trips between known regions', () => {
    const t = resolveTopology({ regions: ['lhr', 'nrt'] });
    expect(t.primaryRegion).toBe('lhr');
    expect(t.rttMs('lhr', 'nrt')).toBeGreaterThan(100);
    expect(t.rttMs('lhr', 'nrt')).toBeLessThan(400);
  });

  it.each([
    [{ regions: [] }, 'regions', /at least one/],
    [{ regions: ['iad', 'IAD'] }, 'regions', /"IAD" is not a region name/],
    [{ regions: ['iad', 'iad'] }, 'regions', /listed twice/],
    [{ primaryRegion: 'lhr' }, 'primaryRegion', /"lhr" is not among the regions/],
    [{ rttMs: { xyz: 5 } }, 'rttMs', /names region "xyz"/],
    [{ rttMs: { syd: -1 } }, 'rttMs', /0 or more/],
    [{ regions: ['iad', 'abc'] }, 'rttMs', /no round trip known between "abc" and "iad"/],
  ])('rejects %j naming the option', (input, option, message) => {
    try {
      resolveTopology(input as never);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(TopologyError);
      expect((error as TopologyError).option).toBe(option);
      expect((error as Error).message).toMatch(message);
    }
  });
});

describe('parseRttList', () => {
  it('parses the command-line form', () => {
    expect(parseRttList('cdg=80, syd=200,cdg-syd=280')).toEqual({
      cdg: 80,
      syd: 200,
      'cdg-syd': 280,
    });
  });

  it.each(['cdg', 'cdg=', 'cdg=fast', 'syd=-5'])('rejects %s', (text) => {
    expect(() => parseRttList(text)).toThrow(TopologyError);
  });
});
