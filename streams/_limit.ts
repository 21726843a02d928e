/** asyncio's `_DEFAULT_LIMIT`: 64 KiB. */
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
