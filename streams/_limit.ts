/**
 * asyncio's `_DEFAULT_LIMIT`, 64 KiB: the buffer limit of a
 * {@linkcode StreamReader} made without one.
 *
 * @example A reader with four times the default limit
 * ```ts
 * import { DEFAULT_LIMIT, StreamReader } from "@aio/protocols";
 * import assert from "node:assert/strict";
 *
 * assert.equal(new StreamReader().limit, DEFAULT_LIMIT);
 * const reader = new StreamReader(4 * DEFAULT_LIMIT);
 * assert.equal(reader.limit, 256 * 1024);
 * ```
 */
export const DEFAULT_LIMIT = 64 * 1024;

/**
 * Checks a stream reader's buffer limit.
 *
 * @throws {RangeError} Unless `limit` is a positive integer.
 */
export function checkLimit(limit: number = DEFAULT_LIMIT): number {
  if (!Number.isInteger(limit) || limit <= 0) {
    throw new RangeError(`Limit must be a positive integer, not ${limit}`);
  }
  return limit;
}
