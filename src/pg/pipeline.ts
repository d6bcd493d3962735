import pg from 'pg';
import pgUtils from 'pg/lib/utils.js';

/**
 * One statement of the caller's, with small probe statements before and after it, sent as a
 * single pipeline (extended protocol, one Sync): one round trip for all of them.
 *
 * node-postgres accepts any object with `submit(connection)` as a query (as pg-cursor does);
 * this one writes every message at once and reads the results back in order. The caller's
 * statement fills the result (with the client's type parsers, `rowMode` and `types`); each
 * probe's first column of its first row is kept as text.
 */

/** A probe: a fixed statement run before or after the caller's, on the same connection. */
export interface Probe {
  text: string;
  /** True if it returns a row whose first column is kept. */
  returnsRow: boolean;
}

/** Opens a transaction block in a pipeline (the statement runs inside it, then {@link COMMIT}). */
export const BEGIN: Probe = { text: 'BEGIN', returnsRow: false };
export const COMMIT: Probe = { text: 'COMMIT', returnsRow: false };

/** The subset of pg's wire connection that a submittable query uses. */
interface WireConnection {
  stream: { cork?: () => void; uncork?: () => void };
  /** Named statements prepared on this connection, by name: node-postgres keeps this. */
  parsedStatements: Record<string, string | undefined>;
  parse(message: { text: string; name?: string }): void;
  bind(message: { statement?: string; values: unknown[]; binary?: boolean }): void;
  describe(message: { type: 'P'; name: string }): void;
  execute(message: { portal: string }): void;
  sync(): void;
  sendCopyFail(message: string): void;
}

interface WireField {
  name: string;
  dataTypeID: number;
  format?: string;
}

type ResultInternals = pg.Result & {
  addFields(fields: WireField[]): void;
  parseRow(fields: unknown[]): unknown;
  addRow(row: unknown): void;
  addCommandComplete(message: unknown): void;
};

/** What a finished pipeline gives: the statement's result and each probe's value, in order. */
export interface PipelineOutcome {
  result: pg.QueryResult;
  probes: (string | null)[];
}

export class Pipeline {
  readonly text: string;
  /** The caller's statement's name, when it is a named (prepared) statement. */
  private readonly statementName: string | undefined;
  private readonly values: unknown[];
  private readonly binary: boolean;
  private readonly steps: (Probe | null)[];
  private readonly probeIndex: number[];
  /** Called once with the outcome; node-postgres wraps it for `query_timeout`. */
  callback: ((error: Error | null, outcome?: PipelineOutcome) => void) | undefined;
  /** The statement's own result; node-postgres gives it the client's type parsers. */
  readonly _result: ResultInternals;
  private step = 0;
  private readonly probes: (string | null)[];
  /**
   * The step that failed (index in before + statement + after), if one did; -1 when it
   * failed before anything was sent.
   */
  failedStep: number | null = null;

  constructor(
    config: pg.QueryConfig & { rowMode?: 'array'; binary?: boolean },
    before: readonly Probe[],
    after: readonly Probe[],
  ) {
    this.text = config.text;
    this.statementName = config.name || undefined;
    this.values = config.values ?? [];
    this.binary = config.binary === true;
    this.steps = [...before, null, ...after];
    this.probes = [...before, ...after].map(() => null);
    // Step index → probe index (the statement's own step maps to -1).
    let next = 0;
    this.probeIndex = this.steps.map((step) => (step === null ? -1 : next++));
    const Result = (
      pg as unknown as { Result: new (rowMode?: string, types?: unknown) => pg.Result }
    ).Result;
    this._result = new Result(
      config.rowMode,
      (config as { types?: unknown }).types,
    ) as ResultInternals;
  }

  /**
   * True if a step before `probe` failed: when `probe` is the pipeline's {@link COMMIT}, the
   * connection is left inside an aborted transaction block and must be rolled back.
   */
  failedBefore(probe: Probe): boolean {
    return (
      this.failedStep !== null &&
      this.failedStep >= 0 &&
      this.failedStep < this.steps.indexOf(probe)
    );
  }

  /** True if the caller's statement itself failed (every probe before it succeeded). */
  failedAtStatement(): boolean {
    return this.failedStep !== null && this.failedStep === this.steps.indexOf(null);
  }

  /** Probe number `index`'s value so far: kept also when a later step fails. */
  probe(index: number): string | null {
    return this.probes[index] ?? null;
  }

  /** True if `probe` itself failed (every step before it succeeded). */
  failedAt(probe: Probe): boolean {
    return (
      this.failedStep !== null &&
      this.failedStep >= 0 &&
      this.failedStep === this.steps.indexOf(probe)
    );
  }

  /**
   * node-postgres reads `name` when the server confirms a Parse, to remember that the named
   * statement is now prepared on the connection: so only the caller's own step answers it.
   */
  get name(): string | undefined {
    return this.steps[this.step] === null ? this.statementName : undefined;
  }

  submit(connection: WireConnection): Error | null {
    const name = this.statementName;
    const prepared = name === undefined ? undefined : connection.parsedStatements[name];
    if (prepared !== undefined && prepared !== this.text) {
      this.failedStep = -1;
      // node-postgres's own words for the same mistake.
      return new Error(
        `Prepared statements must be unique - '${name}' was used for a different statement`,
      );
    }
    let values: unknown[];
    try {
      // Serialise first, so a value that cannot be sent fails before anything is written.
      values = this.values.map((value) => pgUtils.prepareValue(value));
    } catch (error) {
      this.failedStep = -1;
      return error as Error;
    }
    connection.stream.cork?.();
    try {
      for (const step of this.steps) {
        if (step === null) {
          // A named statement is parsed once per connection, then only bound.
          if (prepared === undefined) connection.parse({ text: this.text, name });
          connection.bind({ statement: name, values, binary: this.binary });
          connection.describe({ type: 'P', name: '' });
        } else {
          connection.parse({ text: step.text });
          connection.bind({ values: [] });
          if (step.returnsRow) connection.describe({ type: 'P', name: '' });
        }
        connection.execute({ portal: '' });
      }
      connection.sync();
    } finally {
      connection.stream.uncork?.();
    }
    return null;
  }

  handleRowDescription(message: { fields: WireField[] }): void {
    if (this.steps[this.step] === null) this._result.addFields(message.fields);
  }

  handleDataRow(message: { fields: (string | null)[] }): void {
    const probe = this.probeIndex[this.step] ?? -1;
    if (probe < 0) this._result.addRow(this._result.parseRow(message.fields));
    else if (this.probes[probe] === null) this.probes[probe] = message.fields[0] ?? null;
  }

  handleCommandComplete(message: { text?: string; command?: string }): void {
    if (this.steps[this.step] === null) this._result.addCommandComplete(message);
    this.step++;
  }

  handleEmptyQuery(): void {
    this.step++;
  }

  handleError(error: Error): void {
    // Already -1 when node-postgres reports what submit() refused.
    this.failedStep ??= this.step;
    this.callback?.(error);
    this.callback = undefined;
  }

  handleReadyForQuery(): void {
    this.callback?.(null, { result: this._result as pg.QueryResult, probes: this.probes });
    this.callback = undefined;
  }

  handlePortalSuspended(): void {}

  handleCopyInResponse(connection: WireConnection): void {
    connection.sendCopyFail(
      'COPY FROM STDIN is not supported through RegionalPool.query; use a client from connect()',
    );
  }

  handleCopyData(): void {}
}

/** Runs `pipeline` on `client` (a checked-out connection). */
export function runPipeline(client: pg.PoolClient, pipeline: Pipeline): Promise<PipelineOutcome> {
  return new Promise((resolve, reject) => {
    pipeline.callback = (error, outcome) =>
      error ? reject(error) : resolve(outcome as PipelineOutcome);
    (client as unknown as { query(q: Pipeline): void }).query(pipeline);
  });
}
