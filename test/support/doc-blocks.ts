/**
 * The code blocks of the project's Markdown (README.md, docs/**), written out as TypeScript
 * files and type-checked with the repository's own compiler settings, so that an example that
 * stops compiling fails a test instead of misleading a reader.
 *
 * A block is checked when its info string starts with `ts` or `typescript`; words after the
 * language are attributes:
 *
 * - `fragment`: deliberately not a whole module (a line of a config, a method); not checked.
 * - `file=NAME.ts`: written under that name, so other blocks of the same Markdown file can
 *   import it (`import { pool } from './db.js'`).
 *
 * A `diff` block with `file=NAME.ts` is checked on both sides: the lines after the change
 * (context and `+`) as `NAME.ts`, the lines before it (context and `-`) as `NAME.before.ts`.
 *
 * Every Markdown file gets a folder of its own. Each folder also holds
 * `generated/prisma/client.ts`, standing for the client `prisma generate` makes in an app: it
 * re-exports the client generated from `test/fixtures/prisma/schema.prisma`.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

export const ROOT = path.resolve(import.meta.dirname, '../..');

export interface CodeBlock {
  /** The Markdown file, relative to the repository. */
  file: string;
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  attributes: ReadonlyMap<string, string | true>;
  /** The block's lines, the fence's indentation removed. */
  lines: string[];
}

/** A TypeScript file written from a block, and where each of its lines came from. */
export interface WrittenBlock {
  block: CodeBlock;
  path: string;
  /** `sourceLines[i]`: the Markdown line of the file's line `i` (0-based). */
  sourceLines: number[];
}

/** README.md and every Markdown file under docs/, repository-relative, sorted. */
export function markdownFiles(root = ROOT): string[] {
  const found = ['README.md'];
  const walk = (dir: string) => {
    for (const entry of readdirSync(path.join(root, dir), { withFileTypes: true })) {
      const relative = path.posix.join(dir, entry.name);
      if (entry.isDirectory()) walk(relative);
      else if (entry.name.endsWith('.md')) found.push(relative);
    }
  };
  walk('docs');
  return found.sort();
}

const FENCE = /^(\s*)(`{3,}|~{3,})(.*)$/;

/** The fenced code blocks of a Markdown file. */
export function codeBlocks(file: string, root = ROOT): CodeBlock[] {
  const text = readFileSync(path.join(root, file), 'utf8').split('\n');
  const blocks: CodeBlock[] = [];
  for (let i = 0; i < text.length; i++) {
    const open = FENCE.exec(text[i] as string);
    if (!open) continue;
    const [, indent = '', fence = '', info = ''] = open;
    const [lang = '', ...words] = info.trim().split(/\s+/);
    const attributes = new Map<string, string | true>();
    for (const word of words) {
      const eq = word.indexOf('=');
      if (eq === -1) attributes.set(word, true);
      else attributes.set(word.slice(0, eq), word.slice(eq + 1));
    }
    const lines: string[] = [];
    let j = i + 1;
    for (; j < text.length; j++) {
      const line = text[j] as string;
      const close = FENCE.exec(line);
      const closes =
        close?.[2]?.startsWith(fence[0] as string) &&
        close[2].length >= fence.length &&
        !close[3]?.trim();
      if (closes) break;
      lines.push(line.startsWith(indent) ? line.slice(indent.length) : line.trimStart());
    }
    blocks.push({ file, line: i + 1, lang: lang.toLowerCase(), attributes, lines });
    i = j;
  }
  return blocks;
}

const isTypeScript = (block: CodeBlock) => block.lang === 'ts' || block.lang === 'typescript';

/** Whether the block is one the check writes out (TypeScript or a TypeScript diff, not a fragment). */
export function isChecked(block: CodeBlock): boolean {
  if (block.attributes.has('fragment')) return false;
  if (isTypeScript(block)) return true;
  return block.lang === 'diff' && typeof block.attributes.get('file') === 'string';
}

/** One side of a diff: `after` keeps context and `+` lines, `before` context and `-` lines. */
function diffSide(block: CodeBlock, side: 'before' | 'after'): { lines: string[]; from: number[] } {
  const lines: string[] = [];
  const from: number[] = [];
  const dropped = side === 'after' ? '-' : '+';
  block.lines.forEach((line, i) => {
    if (line.startsWith('@@') || line.startsWith(dropped)) return;
    lines.push(line.slice(1));
    from.push(block.line + 1 + i);
  });
  return { lines, from };
}

/** The folder a Markdown file's blocks are written to, under `dir`. */
export const folderOf = (dir: string, file: string) =>
  path.join(dir, file.replace(/\.md$/, '').replaceAll('/', '__'));

/**
 * Writes every checked block of `blocks` under `dir` (a folder inside the repository, so that
 * `regional/...` resolves to this package and other imports to its node_modules).
 */
export function writeBlocks(blocks: readonly CodeBlock[], dir: string): WrittenBlock[] {
  const written: WrittenBlock[] = [];
  const names = new Set<string>();
  const write = (block: CodeBlock, name: string, lines: string[], from: number[]) => {
    const folder = folderOf(dir, block.file);
    const file = path.join(folder, name);
    if (names.has(file))
      throw new Error(`${block.file}:${block.line}: a second block named ${name} in this file`);
    names.add(file);
    mkdirSync(path.dirname(file), { recursive: true });
    // Every block is a module of its own: its names do not clash with other blocks', and it
    // may await at the top level.
    writeFileSync(file, `${lines.join('\n')}\nexport {};\n`);
    written.push({ block, path: file, sourceLines: from });
  };
  const folders = new Set<string>();
  for (const block of blocks) {
    if (!isChecked(block)) continue;
    const folder = folderOf(dir, block.file);
    if (!folders.has(folder)) {
      folders.add(folder);
      const stub = path.join(folder, 'generated/prisma/client.ts');
      mkdirSync(path.dirname(stub), { recursive: true });
      const target = path.relative(
        path.dirname(stub),
        path.join(ROOT, 'test/fixtures/prisma/client/client.js'),
      );
      writeFileSync(stub, `export * from '${target}';\n`);
    }
    const name = block.attributes.get('file');
    if (block.lang === 'diff') {
      const base = (name as string).replace(/\.ts$/, '');
      for (const side of ['after', 'before'] as const) {
        const { lines, from } = diffSide(block, side);
        write(block, side === 'after' ? `${base}.ts` : `${base}.before.ts`, lines, from);
      }
    } else {
      const from = block.lines.map((_, i) => block.line + 1 + i);
      write(block, typeof name === 'string' ? name : `block-${block.line}.ts`, block.lines, from);
    }
  }
  return written;
}

/** The repository's compiler options (tsconfig.json), for type-checking only. */
function compilerOptions(): ts.CompilerOptions {
  const configFile = path.join(ROOT, 'tsconfig.json');
  const { config, error } = ts.readConfigFile(configFile, ts.sys.readFile);
  if (error) throw new Error(ts.flattenDiagnosticMessageText(error.messageText, '\n'));
  const parsed = ts.parseJsonConfigFileContent(config, ts.sys, ROOT, undefined, configFile);
  return { ...parsed.options, noEmit: true, incremental: false };
}

/**
 * Type-checks the written blocks as one program and returns one line per problem, located in
 * the Markdown (`docs/x.md:12: TS2304 Cannot find name 'pool'.`). Empty when all compile.
 */
export function typeCheck(written: readonly WrittenBlock[]): string[] {
  const program = ts.createProgram({
    rootNames: written.map((w) => w.path),
    options: compilerOptions(),
  });
  const problems: string[] = [];
  for (const diagnostic of program.getOptionsDiagnostics())
    problems.push(`tsconfig: ${ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')}`);
  for (const w of written) {
    const source = program.getSourceFile(w.path);
    if (!source) {
      problems.push(`${w.block.file}:${w.block.line}: not in the program`);
      continue;
    }
    const diagnostics = [
      ...program.getSyntacticDiagnostics(source),
      ...program.getSemanticDiagnostics(source),
    ];
    for (const diagnostic of diagnostics) {
      const { line } = source.getLineAndCharacterOfPosition(diagnostic.start ?? 0);
      const at = w.sourceLines[line] ?? w.block.line;
      const side = w.path.endsWith('.before.ts') ? ' (the diff, before)' : '';
      problems.push(
        `${w.block.file}:${at}${side}: TS${diagnostic.code} ${ts.flattenDiagnosticMessageText(diagnostic.messageText, ' ')}`,
      );
    }
  }
  return problems;
}
