/**
 * Docs that cannot rot: every TypeScript example in README.md and docs/ type-checks against
 * this package (one compiler program for all of them), every relative link points at a file
 * and heading that exist, and the README's adoption example runs — two regions on a real local
 * cluster behind the local edge — and keeps read-your-writes.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalApps } from '../src/edge/apps.js';
import { LocalEdge } from '../src/edge/edge.js';
import { LocalCluster } from '../src/testing/cluster.js';
import {
  type CodeBlock,
  codeBlocks,
  folderOf,
  isChecked,
  markdownFiles,
  ROOT,
  typeCheck,
  type WrittenBlock,
  writeBlocks,
} from './support/doc-blocks.js';
import { Client } from './support/http-client.js';

let dir: string;
let blocks: CodeBlock[];
let written: WrittenBlock[];

beforeAll(() => {
  // Inside the repository (git-ignored), so `regional/...` resolves to this package's own
  // exports under the `source` condition, and other imports to its node_modules.
  dir = mkdtempSync(path.join(ROOT, '.docs-check-'));
  blocks = markdownFiles().flatMap((file) => codeBlocks(file));
  written = writeBlocks(blocks, dir);
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the examples in README.md and docs/', () => {
  it('are found: README.md and docs/ have TypeScript examples, few of them fragments', () => {
    const checked = blocks.filter(isChecked);
    const fragments = blocks.filter((b) => b.attributes.has('fragment'));
    expect(checked.filter((b) => b.file === 'README.md').length).toBeGreaterThan(5);
    expect(checked.filter((b) => b.file.startsWith('docs/')).length).toBeGreaterThan(20);
    // A fragment is not checked: keep them the exception, not the way around the check.
    expect(
      fragments.length,
      fragments.map((b) => `${b.file}:${b.line}`).join(', '),
    ).toBeLessThanOrEqual(Math.ceil(checked.length / 10));
  });

  it('type-check against this package, as an app would compile them', () => {
    expect(typeCheck(written)).toEqual([]);
  }, 180_000);
});

describe('what a reader sees', () => {
  it('README.md is a door, not a manual: at most 300 lines', () => {
    const lines = readFileSync(path.join(ROOT, 'README.md'), 'utf8').split('\n').length;
    expect(lines).toBeLessThanOrEqual(300);
  });

  it('holds no dated run diaries: no dates in README.md, docs/ or bench/README.md', () => {
    const dated: string[] = [];
    for (const file of [...markdownFiles(), 'bench/README.md'])
      readFileSync(path.join(ROOT, file), 'utf8')
        .split('\n')
        .forEach((line, i) => {
          if (/\b20\d\d-[01]\d-[0-3]\d\b/.test(line))
            dated.push(`${file}:${i + 1}: ${line.trim()}`);
        });
    expect(dated).toEqual([]);
  });
});

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens. */
const slug = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/`/g, '')
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');

function anchorsOf(file: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  let fenced = false;
  for (const line of readFileSync(path.join(ROOT, file), 'utf8').split('\n')) {
    if (/^\s*(```|~~~)/.test(line)) fenced = !fenced;
    const heading = !fenced && /^#{1,6}\s+(.*)$/.exec(line);
    if (!heading) continue;
    const base = slug(heading[1] as string);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  }
  return anchors;
}

describe('the links in README.md and docs/', () => {
  it('point at files and headings that exist', () => {
    const broken: string[] = [];
    for (const file of markdownFiles()) {
      let fenced = false;
      readFileSync(path.join(ROOT, file), 'utf8')
        .split('\n')
        .forEach((line, i) => {
          if (/^\s*(```|~~~)/.test(line)) fenced = !fenced;
          if (fenced) return;
          for (const [, target] of line.matchAll(/\]\(([^)\s]+)\)/g)) {
            if (!target || /^[a-z]+:/i.test(target)) continue;
            const [pathPart = '', anchor] = target.split('#');
            const linked = pathPart
              ? path.posix.normalize(path.posix.join(path.posix.dirname(file), pathPart))
              : file;
            const where = `${file}:${i + 1}: ${target}`;
            let exists = true;
            try {
              readFileSync(path.join(ROOT, linked));
            } catch (error) {
              exists = (error as NodeJS.ErrnoException).code === 'EISDIR';
            }
            if (!exists) broken.push(`${where} (no such file)`);
            else if (anchor && linked.endsWith('.md') && !anchorsOf(linked).has(anchor))
              broken.push(`${where} (no such heading)`);
          }
        });
    }
    expect(broken).toEqual([]);
  });
});

describe("the README's adoption example", () => {
  const readme = () => {
    const diff = blocks.find(
      (b) =>
        b.file === 'README.md' && b.lang === 'diff' && b.attributes.get('file') === 'server.ts',
    );
    if (!diff) throw new Error('README.md has no ```diff file=server.ts block');
    return folderOf(dir, 'README.md');
  };

  let cluster: LocalCluster | undefined;
  let apps: LocalApps | undefined;
  let edge: LocalEdge | undefined;
  afterAll(async () => {
    await edge?.close();
    await apps?.stop();
    await cluster?.stop();
  });

  it('runs in two regions: a post from syd is replayed in iad, and syd reads it back at once', async () => {
    const folder = readme();
    cluster = await LocalCluster.start({
      temporary: true,
      regions: ['iad', 'syd'],
      rttMs: { syd: 100 },
    });
    // What the app's migrations would create (see schema.ts in the README).
    await cluster.query('iad', 'CREATE TABLE posts (id serial PRIMARY KEY, body text NOT NULL)');
    await cluster.waitForReplay('syd');
    const output: string[] = [];
    apps = await LocalApps.start({
      command: `exec "${process.execPath}" --conditions=regional-source --import tsx server.ts`,
      cluster,
      cwd: folder,
      mode: 'fly-replay',
      onOutput: (region, line) => output.push(`${region}: ${line}`),
    });
    edge = await LocalEdge.start({ apps: apps.edgeApps(), links: cluster });

    const reader = new Client(edge.url('syd'));
    const first = await reader.send('GET', '/posts');
    expect(first.status, output.join('\n')).toBe(200);
    expect(first.header('x-regional-region')).toBe('syd');

    const writer = new Client(edge.url('syd'));
    for (let i = 1; i <= 10; i++) {
      const posted = await writer.send('POST', '/posts', { json: { body: `hello ${i}` } });
      expect(posted.status, `${posted.text}\n${output.join('\n')}`).toBe(200);
      // Replayed: the write ran in the primary region.
      expect(posted.header('x-regional-region')).toBe('iad');
      const [post] = posted.json<Array<{ id: number; body: string }>>();
      // Read straight back in syd, from syd's replica: the token makes it wait for the post.
      const read = await writer.send('GET', '/posts');
      expect(read.header('x-regional-region')).toBe('syd');
      expect(read.json<Array<{ id: number }>>().map((p) => p.id)).toContain(post?.id);
    }
    expect(apps.exits()).toEqual([]);
  });
});
