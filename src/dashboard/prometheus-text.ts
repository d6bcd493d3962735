/**
 * A strict reader of the Prometheus text exposition format (0.0.4), for the local dashboard and
 * the tests that scrape `/metrics`. Only what a scrape of an app holds: `# HELP`, `# TYPE`,
 * `# UNIT` and sample lines with labels and an optional timestamp. A line it does not
 * understand is an error, not skipped: the dashboard would otherwise show nothing, silently.
 *
 * (The npm parser `parse-prometheus-text-format` 1.1.1 was tried first: given the
 * OpenTelemetry exporter's histograms, which list `_count` and `_sum` before the buckets, it
 * drops their labels, count and sum.)
 */

export interface Sample {
  /** The sample's own name: `x_total`, `x_bucket`, `x_sum`, … */
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface MetricFamily {
  name: string;
  /** `counter`, `gauge`, `histogram`, `summary`, `untyped`. */
  type: string;
  help: string;
  unit: string;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const SUFFIXES: Record<string, readonly string[]> = {
  counter: ['_total', '_created', ''],
  histogram: ['_bucket', '_count', '_sum', '_created'],
  summary: ['_count', '_sum', '_created', ''],
};

export class ExpositionError extends Error {
  override name = 'ExpositionError';
  constructor(line: number, message: string) {
    super(`line ${line}: ${message}`);
  }
}

function parseValue(text: string, line: number): number {
  if (text === '+Inf' || text === 'Inf') return Number.POSITIVE_INFINITY;
  if (text === '-Inf') return Number.NEGATIVE_INFINITY;
  if (text === 'NaN') return Number.NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text))
    throw new ExpositionError(line, `"${text}" is not a number`);
  return Number(text);
}

/** Reads `{a="x",b="y"}` starting at `text[start]` (the `{`); returns the labels and the index after `}`. */
function parseLabels(
  text: string,
  start: number,
  line: number,
): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = {};
  let i = start + 1;
  for (;;) {
    while (text[i] === ' ') i++;
    if (text[i] === '}') return { labels, end: i + 1 };
    const eq = text.indexOf('=', i);
    if (eq < 0) throw new ExpositionError(line, 'a label without "="');
    const name = text.slice(i, eq).trim();
    if (!LABEL_NAME.test(name)) throw new ExpositionError(line, `bad label name "${name}"`);
    if (name in labels) throw new ExpositionError(line, `label "${name}" given twice`);
    if (text[eq + 1] !== '"') throw new ExpositionError(line, `label "${name}": value not quoted`);
    let value = '';
    let j = eq + 2;
    for (;;) {
      const c = text[j];
      if (c === undefined) throw new ExpositionError(line, `label "${name}": unterminated value`);
      if (c === '"') break;
      if (c === '\\') {
        const next = text[j + 1];
        if (next === 'n') value += '\n';
        else if (next === '\\' || next === '"') value += next;
        else throw new ExpositionError(line, `label "${name}": bad escape "\\${next ?? ''}"`);
        j += 2;
        continue;
      }
      value += c;
      j++;
    }
    labels[name] = value;
    i = j + 1;
    while (text[i] === ' ') i++;
    if (text[i] === ',') i++;
    else if (text[i] !== '}') throw new ExpositionError(line, 'labels: expected "," or "}"');
  }
}

/** The family a sample named `name` belongs to, among those declared so far. */
function familyOf(families: Map<string, MetricFamily>, name: string): MetricFamily | undefined {
  const exact = families.get(name);
  if (exact && (SUFFIXES[exact.type] ?? ['']).includes('')) return exact;
  for (const family of families.values()) {
    const suffixes = SUFFIXES[family.type] ?? [''];
    for (const suffix of suffixes) {
      if (suffix !== '' && name === family.name + suffix) return family;
    }
  }
  return undefined;
}

/**
 * Parses a scrape into its metric families, in the order they appear. Throws an
 * {@link ExpositionError} naming the line for anything malformed.
 *
 * @example
 * const families = parsePrometheusText(await (await fetch(`${url}/metrics`)).text());
 * const lag = families.get('regional_replica_lag')?.samples[0]?.value;
 */
export function parsePrometheusText(text: string): Map<string, MetricFamily> {
  const families = new Map<string, MetricFamily>();
  const declare = (name: string, line: number): MetricFamily => {
    if (!NAME.test(name)) throw new ExpositionError(line, `bad metric name "${name}"`);
    let family = families.get(name);
    if (!family) {
      family = { name, type: 'untyped', help: '', unit: '', samples: [] };
      families.set(name, family);
    }
    return family;
  };
  const lines = text.split('\n');
  for (const [index, raw] of lines.entries()) {
    const line = index + 1;
    const text = raw.trimEnd();
    if (text === '') continue;
    if (text.startsWith('#')) {
      const meta = /^#\s+(HELP|TYPE|UNIT)\s+(\S+)(?:\s(.*))?$/.exec(text);
      if (!meta) continue; // a comment
      const [, keyword, name, rest = ''] = meta as unknown as [string, string, string, string?];
      const family = declare(name, line);
      if (keyword === 'HELP') family.help = rest.replace(/\\n/g, '\n').replace(/\\\\/g, '\\');
      else if (keyword === 'UNIT') family.unit = rest.trim();
      else {
        const type = rest.trim();
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(type))
          throw new ExpositionError(line, `unknown type "${type}"`);
        if (family.samples.length > 0)
          throw new ExpositionError(line, `# TYPE ${name} after its samples`);
        family.type = type;
      }
      continue;
    }
    const nameEnd = text.search(/[{ ]/);
    if (nameEnd <= 0) throw new ExpositionError(line, `not a sample: "${text}"`);
    const name = text.slice(0, nameEnd);
    if (!NAME.test(name)) throw new ExpositionError(line, `bad metric name "${name}"`);
    let labels: Record<string, string> = {};
    let rest = text.slice(nameEnd);
    if (rest.startsWith('{')) {
      const parsed = parseLabels(text, nameEnd, line);
      labels = parsed.labels;
      rest = text.slice(parsed.end);
    }
    const fields = rest.trim().split(/\s+/);
    if (fields.length < 1 || fields.length > 2 || fields[0] === '')
      throw new ExpositionError(line, `expected a value (and a timestamp) after "${name}"`);
    if (fields[1] !== undefined && !/^-?\d+$/.test(fields[1]))
      throw new ExpositionError(line, `bad timestamp "${fields[1]}"`);
    const value = parseValue(fields[0] as string, line);
    const family = familyOf(families, name) ?? declare(name, line);
    family.samples.push({ name, labels, value });
  }
  return families;
}

/**
 * The samples named `name` (a family's own name or one with a suffix, `x_sum`) whose labels
 * include all of `where`.
 */
export function samples(
  families: Map<string, MetricFamily>,
  name: string,
  where: Record<string, string> = {},
): Sample[] {
  const out: Sample[] = [];
  for (const family of families.values()) {
    for (const sample of family.samples) {
      if (sample.name !== name) continue;
      if (Object.entries(where).every(([k, v]) => sample.labels[k] === v)) out.push(sample);
    }
  }
  return out;
}

/** The sum of the values of {@link samples}`(families, name, where)` (0 if there are none). */
export function total(
  families: Map<string, MetricFamily>,
  name: string,
  where: Record<string, string> = {},
): number {
  return samples(families, name, where).reduce((sum, s) => sum + s.value, 0);
}
