import { describe, expect, it } from 'vitest';
import { decodeValue, encodeValue, UnserializableValueError } from './codec.js';

describe('the wire codec', () => {
  it('keeps what JSON loses', () => {
    const value = {
      at: new Date(1_700_000_000_123),
      n: -(2n ** 64n),
      map: new Map([[{ k: 1 }, new Set([undefined, null])]]),
      u: undefined,
      odd: [Number.NaN, -0, Number.NEGATIVE_INFINITY],
      re: /x+/gi,
      bytes: Buffer.from('héllo'),
      typed: new Uint16Array([1, 65535]),
    };
    const back = decodeValue(encodeValue(value, 'a value')) as typeof value;
    expect(back).toEqual(value);
    expect(Buffer.isBuffer(back.bytes)).toBe(true);
    expect(back.typed).toBeInstanceOf(Uint16Array);
  });

  it('keeps shared and circular references', () => {
    const shared = { a: 1 };
    const cyclic: { self?: unknown; pair: unknown[] } = { pair: [shared, shared] };
    cyclic.self = cyclic;
    const back = decodeValue(encodeValue(cyclic, 'a value')) as typeof cyclic;
    expect(back.self).toBe(back);
    expect(back.pair[0]).toBe(back.pair[1]);
  });

  it('names what cannot be sent, and where in it', () => {
    class Handle {}
    const error = (() => {
      try {
        encodeValue({ ok: 1, deep: { handle: new Handle() } }, 'the result of procedure "x"');
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(UnserializableValueError);
    expect((error as Error).message).toMatch(
      /the result of procedure "x" cannot be sent between instances \(at \.deep\.handle\)/,
    );
    expect(() => encodeValue(() => 1, 'a function')).toThrow(/a function cannot be sent/);
  });

  it('refuses input that is not its own, and never builds prototypes from the network', () => {
    expect(() => decodeValue('not json')).toThrow();
    expect(() => decodeValue('[{"__proto__":1},{"polluted":2}]')).toThrow(/__proto__/);
    expect(() => decodeValue('[["Buffer",1],{}]')).toThrow();
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined();
  });
});
