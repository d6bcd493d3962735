import { runDoctor } from '../doctor/index.js';

const MARK = { ok: '✓', warn: '!', fail: '✗' } as const;

/** `regional doctor`: prints one line per check (and what to do about each problem); exit 1 on problems. */
export async function doctorCommand(options: { peer?: string[]; json?: boolean }): Promise<void> {
  const { findings, problems } = await runDoctor({ peers: options.peer ?? [] });
  if (options.json) {
    process.stdout.write(`${JSON.stringify({ problems, findings })}\n`);
  } else {
    const lines = findings.map(
      (f) =>
        `${MARK[f.level]} ${f.check}: ${f.message}${f.fix && f.level !== 'ok' ? `\n    → ${f.fix}` : ''}`,
    );
    lines.push(
      '',
      problems === 0
        ? 'No problems found.'
        : `${problems} problem${problems > 1 ? 's' : ''} found.`,
    );
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  if (problems > 0) process.exitCode = 1;
}
