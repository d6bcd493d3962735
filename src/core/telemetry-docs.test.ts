/** docs/observability.md names exactly what Regional reports: no name missing, none invented. */
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { ROUTE_REASONS, TELEMETRY } from './telemetry.js';

const docs = readFileSync(new URL('../../docs/observability.md', import.meta.url), 'utf8');
/** Names in backticks in the docs' tables (rows start with `|`). */
const documented = new Set(
  docs
    .split('\n')
    .filter((line) => line.startsWith('|'))
    .flatMap((line) => [...line.matchAll(/`([a-z_.]+)`/g)].map((match) => match[1] as string)),
);

it('every span, metric and attribute name is documented', () => {
  const names = [
    ...Object.values(TELEMETRY.spans),
    ...Object.values(TELEMETRY.metrics),
    ...Object.values(TELEMETRY.attributes),
    ...ROUTE_REASONS,
  ];
  expect(names.filter((name) => !documented.has(name))).toEqual([]);
});

it('every regional.* name the docs list exists', () => {
  const known = new Set<string>([
    ...Object.values(TELEMETRY.spans),
    ...Object.values(TELEMETRY.metrics),
    ...Object.values(TELEMETRY.attributes),
    'regional.via',
  ]);
  const invented = [...documented].filter(
    (name) => name.startsWith('regional.') && !known.has(name),
  );
  expect(invented).toEqual([]);
});
