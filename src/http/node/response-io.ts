import { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { ReplayAnswer } from '../replay.js';

/**
 * Writing to a `ServerResponse` whose methods may have been replaced: by Regional itself,
 * when it took the response over from a handler whose request is being replayed (see
 * {@link takeOver}), or by other middleware. Answers are written with the prototype's own
 * methods so nothing in between sees or changes them.
 */
const protoWrite = ServerResponse.prototype.write as (
  this: ServerResponse,
  chunk: unknown,
) => boolean;
const STUBBED = [
  'writeHead',
  'setHeader',
  'appendHeader',
  'removeHeader',
  'write',
  'end',
  'flushHeaders',
] as const;
type Stubbed = (typeof STUBBED)[number];

/** Runs `fn` with `res`'s own (prototype) methods, then puts any replacements back. */
function withOwnMethods<T>(res: ServerResponse, fn: () => T): T {
  const saved = new Map<Stubbed, unknown>();
  const target = res as unknown as Record<string, unknown>;
  for (const name of STUBBED) {
    if (Object.hasOwn(res, name)) {
      saved.set(name, target[name]);
      delete target[name];
    }
  }
  try {
    return fn();
  } finally {
    for (const [name, value] of saved) target[name] = value;
  }
}

/** Header pairs as an object, repeated names (`set-cookie`) as arrays. */
export function headerObject(
  pairs: readonly [string, string][],
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of pairs) {
    const known = out[name];
    if (known === undefined) out[name] = value;
    else if (Array.isArray(known)) known.push(value);
    else out[name] = [known, value];
  }
  return out;
}

const waitForDrain = (res: ServerResponse) =>
  new Promise<void>((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });

/**
 * Writes `answer` as the whole response, replacing any headers a handler had set, and streams
 * its body with backpressure. A body that fails midway ends the response abruptly (the
 * client must not take a truncated body for a whole one).
 */
export async function writeAnswer(res: ServerResponse, answer: ReplayAnswer): Promise<void> {
  withOwnMethods(res, () => {
    for (const name of res.getHeaderNames()) res.removeHeader(name);
    res.writeHead(answer.status, headerObject(answer.headers));
  });
  const body = answer.body;
  if (body === null || Buffer.isBuffer(body)) {
    withOwnMethods(res, () => res.end(body ?? undefined));
    return;
  }
  try {
    for await (const chunk of body as Readable) {
      if (res.destroyed) break;
      if (!protoWrite.call(res, chunk)) await waitForDrain(res);
    }
    if (res.destroyed) (body as Readable).destroy();
    else withOwnMethods(res, () => res.end());
  } catch (error) {
    res.destroy(error as Error);
  }
}

/**
 * Takes the response away from the handler: from now on whatever it writes is discarded, and
 * the first time it tries to send anything (or ends), `onAnswer` runs to write the real
 * answer. Used when a read request turns out to write and is replayed in the primary region.
 */
export function takeOver(res: ServerResponse, onAnswer: () => void): void {
  const target = res as unknown as Record<Stubbed, unknown>;
  const ignore = function (this: ServerResponse) {
    return this;
  };
  const finish = (args: unknown[]) => {
    const callback = args.findLast((a) => typeof a === 'function') as (() => void) | undefined;
    if (callback) res.once('finish', callback);
    onAnswer();
  };
  target.setHeader = ignore;
  target.appendHeader = ignore;
  target.removeHeader = () => {};
  target.writeHead = ignore;
  target.flushHeaders = () => {};
  target.write = (...args: unknown[]) => {
    finish(args);
    return true;
  };
  target.end = (...args: unknown[]) => {
    finish(args);
    return res;
  };
}
