import { describe, expect, it } from 'vitest';
import { globMatcher } from './routes.js';

describe('globMatcher (Fly.io replay cache patterns)', () => {
  it('matches `*` against anything and the rest literally', () => {
    const matches = globMatcher('forum.test/api/topics/*/posts');
    expect(matches('forum.test/api/topics/7/posts')).toBe(true);
    expect(matches('forum.test/api/topics/7/8/posts')).toBe(true);
    expect(matches('forum.test/api/topics//posts')).toBe(true);
    expect(matches('forum.test/api/topics/7/posts/1')).toBe(false);
    expect(matches('forumXtest/api/topics/7/posts')).toBe(false);
    expect(globMatcher('*')('')).toBe(true);
    expect(globMatcher('a*')('a')).toBe(true);
    expect(globMatcher('*a')('ba')).toBe(true);
    expect(globMatcher('*a')('ab')).toBe(false);
    expect(globMatcher('a.b')('axb')).toBe(false);
  });

  it('stays fast for patterns full of `*` that do not match (a RegExp would backtrack for ages)', () => {
    const pattern = `${'*a'.repeat(30)}*b`;
    expect(globMatcher(pattern)('a'.repeat(5000))).toBe(false);
    expect(globMatcher(`${'*'.repeat(200)}x`)('y'.repeat(5000))).toBe(false);
  });
});
