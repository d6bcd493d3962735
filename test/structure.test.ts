/**
 * The layout's promises: parts depend on each other one way, and the published types carry no
 * internals. Checked on the source (imports) and on a real build (declarations).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '..');
const SRC = path.join(ROOT, 'src');

function files(dir: string, keep: (file: string) => boolean): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return files(full, keep);
    return keep(full) ? [full] : [];
  });
}

const sources = files(
  SRC,
  (f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && !f.includes('test-support'),
);

/** Every relative import of a source file (type-only ones too), resolved to a file. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const match of text.matchAll(/(?:import|export)[^'"]*?from\s+'(\.[^']+)'/g)) {
    out.push(path.resolve(path.dirname(file), (match[1] as string).replace(/\.js$/, '.ts')));
  }
  return out;
}

const part = (file: string) => path.relative(SRC, file).split(path.sep)[0] as string;

/** Cycles among `nodes` (file → imported files), each as a list of files. */
function cycles(graph: Map<string, string[]>): string[][] {
  const found: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (node: string) => {
    state.set(node, 'open');
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      if (!graph.has(next)) continue;
      if (state.get(next) === 'open') found.push(stack.slice(stack.indexOf(next)));
      else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const node of graph.keys()) if (!state.has(node)) visit(node);
  return found;
}

describe('the layout', () => {
  it('src/pg has no import cycle (type-only imports included)', () => {
    const pg = sources.filter((f) => part(f) === 'pg');
    const graph = new Map(pg.map((f) => [f, importsOf(f).filter((i) => part(i) === 'pg')]));
    const rel = (f: string) => path.relative(SRC, f);
    expect(cycles(graph).map((c) => c.map(rel))).toEqual([]);
  });

  it('the HTTP layer (and readiness) import nothing of the node-postgres driver', () => {
    const offending = sources
      .filter((f) => ['http', 'health', 'hono', 'express', 'fastify'].includes(part(f)))
      .flatMap((f) =>
        importsOf(f)
          .filter((i) => part(i) === 'pg')
          .map((i) => `${path.relative(SRC, f)} → ${path.relative(SRC, i)}`),
      );
    expect(offending).toEqual([]);
  });

  it('the built declarations carry no @internal member', () => {
    const out = mkdtempSync(path.join(os.tmpdir(), 'regional-dts-'));
    try {
      execFileSync(
        process.execPath,
        [
          path.join(ROOT, 'node_modules/typescript/bin/tsc'),
          '-p',
          path.join(ROOT, 'tsconfig.build.json'),
          '--emitDeclarationOnly',
          '--outDir',
          out,
        ],
        { cwd: ROOT, stdio: 'pipe' },
      );
      const declarations = files(out, (f) => f.endsWith('.d.ts'));
      expect(declarations.length).toBeGreaterThan(20);
      const internal = declarations.filter((f) => readFileSync(f, 'utf8').includes('@internal'));
      expect(internal.map((f) => path.relative(out, f))).toEqual([]);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
