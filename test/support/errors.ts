import { expect } from 'vitest';
import { ConfigError } from '../../src/core/errors.js';

/** The `ConfigError` that `fn` throws (the test fails if it throws nothing, or something else). */
export function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError');
}
