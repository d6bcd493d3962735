/**
 * bench/README.md and the demo's table in README.md are generated from bench/results/*.json by
 * bench/readme.ts: a figure a reader sees cannot drift from the results committed beside it.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { expectedFiles, readResults, renderBenchReadme } from './readme.js';

const ROOT = path.resolve(import.meta.dirname, '..');

describe('bench/readme.ts', () => {
  it.each(expectedFiles(ROOT))('$file is what it makes of bench/results', ({ file, content }) => {
    const actual = readFileSync(path.join(ROOT, file), 'utf8');
    expect(
      actual === content,
      `${file} differs from what bench/readme.ts makes of bench/results/*.json: run npm run bench:readme`,
    ).toBe(true);
  });

  it('renders every result committed in bench/results', () => {
    const committed = readdirSync(path.join(ROOT, 'bench/results'))
      .filter((name) => name.endsWith('.json'))
      .map((name) => name.replace(/\.json$/, ''));
    const results = readResults(ROOT);
    expect(Object.keys(results).sort()).toEqual(committed.sort());
    expect(renderBenchReadme(results)).not.toContain('No results committed yet');
  });

  it('still renders, saying what to run, when there are no results', () => {
    const readme = renderBenchReadme({});
    expect(readme).toContain('No results committed yet: `npm run bench -- core`');
    expect(readme).toContain('No results committed yet: `npm run test:faults`');
  });
});
