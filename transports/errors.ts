import { reportToStderr } from "../_report.ts";
import type { ErrorHandler } from "./transport.ts";

/**
 * The module's own error classes: the cases callers need to tell apart.
 * Each extends the closest built-in error and sets `name`.
 *
 * @module
 */

/**
 * A line or frame longer than the protocol allows. Thrown from
 * `dataReceived` by default, it closes the connection with this error.
 *
 * @example An over-long line throws it
 * ```ts
 * import { FrameTooLongError, LineProtocol } from "@aio/protocols";
 * import assert from "node:assert/strict";
 *
 * class Short extends LineProtocol {
 *   constructor() {
 *     super({ maxLineLength: 4 });
 *   }
 *   override lineReceived(_line: Uint8Array): void {}
 * }
 *
 * const line = new TextEncoder().encode("too long\n");
 * assert.throws(() => new Short().dataReceived(line), (error) => {
 *   assert.ok(error instanceof FrameTooLongError);
 *   assert.equal(error.limit, 4);
 *   return true;
 * });
 * ```
 */
export class FrameTooLongError extends RangeError {
  /** The length seen, or at least this many bytes without a delimiter. */
  readonly length: number;
  /** The most the protocol allows. */
  readonly limit: number;

  /**
   * Makes the error for a message of `length` bytes over `limit`.
   *
   * @param length The length seen.
   * @param limit The most allowed.
   */
  constructor(length: number, limit: number) {
    super(`Frame of ${length} bytes is over the limit of ${limit}`);
    this.name = "FrameTooLongError";
    this.length = length;
    this.limit = limit;
  }
}

/**
 * EOF came before a read got what it needed; `partial` is what there was.
 *
 * @example Keep what came before EOF
 * ```ts
 * import { IncompleteReadError, StreamReader } from "@aio/protocols";
 * import assert from "node:assert/strict";
 *
 * const reader = new StreamReader();
 * reader.feedData(new TextEncoder().encode("abc"));
 * reader.feedEof();
 * const error = await reader.readexactly(5).catch((error) => error);
 * assert.ok(error instanceof IncompleteReadError);
 * assert.equal(new TextDecoder().decode(error.partial), "abc");
 * assert.equal(error.expected, 5);
 * ```
 */
export class IncompleteReadError extends Error {
  /** The bytes read before EOF. */
  readonly partial: Uint8Array;
  /** The bytes expected, or `null` when reading up to a separator. */
  readonly expected: number | null;

  /**
   * Makes the error for a read that got `partial` before EOF.
   *
   * @param partial The bytes read before EOF.
   * @param expected The bytes expected, or `null`.
   */
  constructor(partial: Uint8Array, expected: number | null) {
    super(
      `${partial.byteLength} bytes read on a total of ${
        expected ?? "undefined"
      } expected bytes`,
    );
    this.name = "IncompleteReadError";
    this.partial = partial;
    this.expected = expected;
  }
}

/**
 * A separator was not found within the reader's limit. The data stays in
 * the buffer (except after `readline()`, which drops it).
 *
 * @example Skip a line over the limit and read on
 * ```ts
 * import { LimitOverrunError, StreamReader } from "@aio/protocols";
 * import assert from "node:assert/strict";
 *
 * const reader = new StreamReader(8);
 * reader.feedData(new TextEncoder().encode("far too long a line\nok\n"));
 * await assert.rejects(reader.readline(), LimitOverrunError);
 * assert.equal(new TextDecoder().decode(await reader.readline()), "ok\n");
 * ```
 */
export class LimitOverrunError extends RangeError {
  /** How many bytes to consume to get past the over-long part. */
  readonly consumed: number;

  /**
   * Makes the error for a separator not found within the limit.
   *
   * @param message What overran.
   * @param consumed How many bytes to consume to get past it.
   */
  constructor(message: string, consumed: number) {
    super(message);
    this.name = "LimitOverrunError";
    this.consumed = consumed;
  }
}

/**
 * The default `onError` of every server, connection and endpoint: reports
 * the error on stderr with what it concerns, as asyncio's
 * `loop.default_exception_handler()` does.
 *
 * @example Count errors, then report them as usual
 * ```ts
 * import { defaultErrorHandler, type ErrorHandler } from "@aio/protocols";
 *
 * let failures = 0;
 * const onError: ErrorHandler = (error, context) => {
 *   failures++;
 *   defaultErrorHandler(error, context);
 * };
 * ```
 */
export const defaultErrorHandler: ErrorHandler = reportToStderr;
