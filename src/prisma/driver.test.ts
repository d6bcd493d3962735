/**
 * The driver behaviour suite over Prisma 7 on `PrismaRegional`, through Prisma's model API (raw
 * queries where a statement must also return `pg_is_in_recovery()`).
 */
import { PrismaPg } from '@prisma/adapter-pg';
import { readReplicas } from '@prisma/extension-read-replicas';
import { PrismaClient } from '../../test/fixtures/prisma/client/client.js';
import { driverBehaviourSuite } from '../../test/support/driver-suite.js';
import { RegionalPool } from '../pg/pool.js';
import { PrismaRegional, readOnly, regionalExtension } from './index.js';

type Row = { value: number; r: boolean };

driverBehaviourSuite({
  name: 'regional/prisma (Prisma 7 on RegionalPool)',
  open(options, connections) {
    const pool = new RegionalPool({ ...options, pool: { max: connections } });
    const prisma = new PrismaClient({ adapter: new PrismaRegional(pool) }).$extends(
      regionalExtension,
    );
    // Prisma's own read replicas extension, over plain adapter-pg clients.
    const primary = new PrismaClient({
      adapter: new PrismaPg({ connectionString: options.databaseUrl, max: connections }),
    });
    const replica = new PrismaClient({
      adapter: new PrismaPg({ connectionString: options.replicaUrl ?? '', max: connections }),
    });
    const naive = primary.$extends(readReplicas({ replicas: [replica] }));
    const served = (row: Row | undefined) => ({
      value: row?.value as number,
      inRecovery: row?.r as boolean,
    });
    return {
      bump: async (id) =>
        (await prisma.counter.update({ where: { id }, data: { value: { increment: 1 } } })).value,
      read: async (id) => (await prisma.counter.findUnique({ where: { id } }))?.value,
      inRecovery: async () =>
        ((await prisma.$queryRaw<Row[]>`SELECT pg_is_in_recovery() AS r`)[0] as Row).r,
      writeInRecovery: async (body) =>
        (
          (
            await prisma.$queryRaw<
              Row[]
            >`INSERT INTO notes (body) VALUES (${body}) RETURNING pg_is_in_recovery() AS r`
          )[0] as Row
        ).r,
      callWritingFunction: async (id) =>
        served(
          (
            await prisma.$queryRaw<
              Row[]
            >`SELECT bump_counter(${id}) AS value, pg_is_in_recovery() AS r`
          )[0],
        ),
      nextval: async () =>
        served(
          (
            await prisma.$queryRaw<
              Row[]
            >`SELECT nextval('tickets')::int AS value, pg_is_in_recovery() AS r`
          )[0],
        ),
      readWriteTransaction: (id) =>
        prisma.$transaction(async (tx) => {
          const written = await tx.counter.update({
            where: { id },
            data: { value: { increment: 1 } },
          });
          const [seen] = await tx.$queryRaw<
            Row[]
          >`SELECT value, pg_is_in_recovery() AS r FROM counters WHERE id = ${id}`;
          return { written: written.value, seen: served(seen) };
        }),
      readOnlyTransaction: (id) =>
        readOnly(() =>
          prisma.$transaction(async (tx) =>
            served(
              (
                await tx.$queryRaw<
                  Row[]
                >`SELECT value, pg_is_in_recovery() AS r FROM counters WHERE id = ${id}`
              )[0],
            ),
          ),
        ),
      failingTransaction: (id, failure) =>
        prisma.$transaction(async (tx) => {
          await tx.counter.update({ where: { id }, data: { value: { increment: 1 } } });
          if (failure === 'throw') throw new Error('changed my mind');
          await tx.counter.create({ data: { id, value: 0 } });
        }),
      stats: () => pool.stats(),
      naiveRead: async (id) => (await naive.counter.findUnique({ where: { id } }))?.value,
      end: async () => {
        await Promise.all([prisma.$disconnect(), primary.$disconnect(), replica.$disconnect()]);
        await pool.end();
      },
    };
  },
});
