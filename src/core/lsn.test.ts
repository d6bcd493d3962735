import { describe, expect, it } from 'vitest';
import { compareLsn, formatLsn, LsnFormatError, maxLsn, parseLsn } from './lsn.js';

describe('LSN', () => {
  it('parses and formats the X/Y form as a 64-bit number', () => {
    expect(parseLsn('0/0')).toBe(0n);
    expect(parseLsn('16/B374D848')).toBe((0x16n << 32n) | 0xb374d848n);
    expect(parseLsn('ffffffff/ffffffff')).toBe((1n << 64n) - 1n);
    expect(formatLsn(parseLsn('16/b374d848'))).toBe('16/B374D848');
    expect(formatLsn(parseLsn('0/0000001'))).toBe('0/1');
  });

  it('compares numerically, not as text', () => {
    const [small, large] = [parseLsn('0/9'), parseLsn('0/10')];
    expect('0/9' > '0/10').toBe(true);
    expect(compareLsn(small, large)).toBeLessThan(0);
    expect(compareLsn(parseLsn('1/0'), parseLsn('0/FFFFFFFF'))).toBeGreaterThan(0);
    expect(compareLsn(small, parseLsn('0/9'))).toBe(0);
    expect(maxLsn(small, large)).toBe(large);
  });

  it.each(['', '0', '0/', '/0', 'G/0', '0/0/0', '123456789/0', ' 0/0', '0x1/0', '-1/0'])(
    'rejects %j',
    (text) => {
      expect(() => parseLsn(text)).toThrow(LsnFormatError);
      expect(() => parseLsn(text)).toThrow(/two hexadecimal numbers/);
    },
  );

  it('rejects values that are not LSNs', () => {
    expect(() => parseLsn(42 as unknown as string)).toThrow(LsnFormatError);
    expect(() => formatLsn(-1n)).toThrow(LsnFormatError);
    expect(() => formatLsn(1n << 64n)).toThrow(LsnFormatError);
  });
});
