import { describe, expect, it } from 'vitest';
import {
  activeContext,
  ConsistencyContext,
  currentContext,
  runInContext,
  withContext,
} from './context.js';

describe('consistency context', () => {
  it('keeps the highest position per source and only moves forward', () => {
    const context = new ConsistencyContext();
    expect(context.observe('pg:1', 10n)).toBe(true);
    expect(context.observe('pg:1', 5n)).toBe(false);
    expect(context.observe('redis:a', 3n)).toBe(true);
    expect(context.position('pg:1')).toBe(10n);
    expect(context.entries()).toEqual([
      ['pg:1', 10n],
      ['redis:a', 3n],
    ]);
  });

  it('follows async work, and each run has its own', async () => {
    const seen = await Promise.all(
      [1n, 2n].map((n) =>
        withContext(async () => {
          currentContext().observe('pg:1', n);
          await new Promise((resolve) => setTimeout(resolve, 5));
          return currentContext().position('pg:1');
        }),
      ),
    );
    expect(seen).toEqual([1n, 2n]);
  });

  it('outside any run, one process-wide context remembers writes', () => {
    expect(activeContext()).toBeUndefined();
    currentContext().observe('pg:process-test', 7n);
    expect(currentContext().position('pg:process-test')).toBe(7n);
  });

  it('a nested run starts from its parent positions, but its own stay its own', async () => {
    await withContext(async () => {
      currentContext().observe('pg:1', 5n);
      await withContext(async () => {
        expect(currentContext().position('pg:1')).toBe(5n);
        currentContext().observe('pg:1', 9n);
      });
      expect(currentContext().position('pg:1')).toBe(5n);
      await withContext(() => expect(currentContext().position('pg:1')).toBeUndefined(), {
        inherit: false,
      });
    });
  });

  it('starts from given positions (a token) without counting them as advanced', () => {
    withContext(
      () => {
        expect(currentContext().position('pg:1')).toBe(42n);
        expect(currentContext().advanced).toBe(false);
      },
      { positions: [['pg:1', 42n]] },
    );
    const context = new ConsistencyContext([['pg:1', 1n]]);
    runInContext(context, () => expect(currentContext()).toBe(context));
  });
});
