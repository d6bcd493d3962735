/** The driver behaviour suite over `RegionalPostgres` (postgres.js), through tagged templates. */
import postgres from 'postgres';
import { driverBehaviourSuite } from '../../test/support/driver-suite.js';
import { RegionalPostgres } from './index.js';

type Row = { value: number; r: boolean };

driverBehaviourSuite({
  name: 'regional/postgres (postgres.js)',
  open(options, connections) {
    const database = new RegionalPostgres({
      ...options,
      postgres: { max: connections, onnotice: () => {} },
    });
    const { sql } = database;
    // Reading the replica without Regional: postgres.js on its URL.
    const plain = postgres(options.replicaUrl ?? '', { max: connections, onnotice: () => {} });
    const served = (row: Row | undefined) => ({
      value: row?.value as number,
      inRecovery: row?.r as boolean,
    });
    return {
      bump: async (id) =>
        (
          (
            await sql<Row[]>`update counters set value = value + 1 where id = ${id} returning value`
          )[0] as Row
        ).value,
      read: async (id) => (await sql<Row[]>`select value from counters where id = ${id}`)[0]?.value,
      inRecovery: async () => ((await sql<Row[]>`select pg_is_in_recovery() as r`)[0] as Row).r,
      writeInRecovery: async (body) =>
        (
          (
            await sql<Row[]>`insert into notes ${sql({ body })} returning pg_is_in_recovery() as r`
          )[0] as Row
        ).r,
      callWritingFunction: async (id) =>
        served(
          (await sql<Row[]>`select bump_counter(${id}) as value, pg_is_in_recovery() as r`)[0],
        ),
      nextval: async () => {
        const [row] = await sql<
          { value: string; r: boolean }[]
        >`select nextval('tickets') as value, pg_is_in_recovery() as r`;
        return { value: Number(row?.value), inRecovery: row?.r as boolean };
      },
      readWriteTransaction: (id) =>
        sql.begin(async (tx) => {
          const [written] = await tx<
            Row[]
          >`update counters set value = value + 1 where id = ${id} returning value`;
          const [seen] = await tx<
            Row[]
          >`select value, pg_is_in_recovery() as r from counters where id = ${id}`;
          return {
            written: written?.value as number,
            seen: { value: seen?.value, inRecovery: seen?.r as boolean },
          };
        }) as Promise<{
          written: number;
          seen: { value: number | undefined; inRecovery: boolean };
        }>,
      readOnlyTransaction: (id) =>
        sql.begin('read only', async (tx) => {
          const [seen] = await tx<
            Row[]
          >`select value, pg_is_in_recovery() as r from counters where id = ${id}`;
          return { value: seen?.value, inRecovery: seen?.r as boolean };
        }) as Promise<{ value: number | undefined; inRecovery: boolean }>,
      failingTransaction: (id, failure) =>
        sql.begin(async (tx) => {
          await tx`update counters set value = value + 1 where id = ${id}`;
          if (failure === 'throw') throw new Error('changed my mind');
          await tx`insert into counters (id, value) values (${id}, 0)`;
        }),
      stats: () => database.stats(),
      naiveRead: async (id) =>
        (await plain<Row[]>`select value from counters where id = ${id}`)[0]?.value,
      end: async () => {
        await Promise.all([database.end(), plain.end({ timeout: 1 })]);
      },
    };
  },
});
