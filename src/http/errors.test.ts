import { describe, expect, it } from 'vitest';
import { PrimaryUnavailableError, RegionalError, ReplicationTimeoutError } from '../core/errors.js';
import { clientError } from './errors.js';

describe('clientError: what a client is told when a request ends in one of Regional’s errors', () => {
  it('a retryable Regional error: its status and code, and a message without internals', () => {
    const error = new ReplicationTimeoutError(1000, '0/3000060', '0/3000000');
    expect(clientError(error)).toEqual({
      status: 503,
      code: 'REGIONAL_REPLICATION_TIMEOUT',
      message: "This region has not caught up with this client's latest change yet. Retry shortly.",
    });
  });

  it('wrapped by an ORM as the cause (Drizzle): found and answered the same', () => {
    const wrapped = new Error('Failed query: select …', {
      cause: new PrimaryUnavailableError('write', false, {
        cause: new Error('ECONNREFUSED 10.0.0.1:5432'),
      }),
    });
    expect(clientError(wrapped)).toEqual({
      status: 503,
      code: 'REGIONAL_PRIMARY_UNAVAILABLE',
      message: 'The database is unreachable right now; nothing was changed. Retry shortly.',
    });
  });

  it("copied by an ORM into its own error (Prisma keeps the code): answered from the code, never the ORM's message", () => {
    const prisma = Object.assign(
      new Error('Invalid `prisma.post.findMany()` invocation in /app/src/posts.ts:12:3 … 10.0.0.1'),
      { code: 'REGIONAL_QUERY_TIMEOUT', meta: { modelName: 'Post' } },
    );
    const answer = clientError(prisma);
    expect(answer).toMatchObject({ status: 504, code: 'REGIONAL_QUERY_TIMEOUT' });
    expect(answer?.message).not.toMatch(/prisma|10\.0\.0\.1|posts\.ts/);
  });

  it('anything else stays the app’s: SQL errors, Regional errors without a status, unknown codes', () => {
    expect(clientError(Object.assign(new Error('duplicate key'), { code: '23505' }))).toBeNull();
    expect(
      clientError(new RegionalError('REGIONAL_TRANSACTION_ON_POOL', 'use a client')),
    ).toBeNull();
    expect(
      clientError(Object.assign(new Error('x'), { code: 'REGIONAL_SOMETHING_ELSE' })),
    ).toBeNull();
    expect(clientError('a string')).toBeNull();
  });
});
