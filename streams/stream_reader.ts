import { checkBytes, describeValue } from "../_checks.ts";
import { concat, copyOf } from "../_bytes.ts";
import {
  IncompleteReadError,
  LimitOverrunError,
} from "../transports/errors.ts";
import type { ReadTransport } from "../transports/transport.ts";
import { checkLimit, DEFAULT_LIMIT } from "./_limit.ts";

export { DEFAULT_LIMIT };

const NEWLINE = new Uint8Array([0x0a]);
const NEWLINE_ONLY = [NEWLINE];
const EMPTY = new Uint8Array(0);

/** Options of a {@linkcode StreamReader} read. */
export interface ReadOptions {
  /**
   * Cancels the read when aborted: it rejects with the signal's reason,
   * and the reader stays usable (the next read gets the next data).
   */
  signal?: AbortSignal;
}

/**
 * The read side of a connection as awaitable calls: asyncio's
 * `StreamReader`.
 *
 * The buffer holds what arrived and was not read yet; over twice `limit`
 * the transport stops reading until reads bring it back to `limit`, so a
 * fast peer cannot fill memory. One read may wait at a time.
 *
 * {@linkcode openConnection} and {@linkcode startServer} make readers; a
 * protocol of your own can feed one with `feedData` and `feedEof`.
 *
 * @example Read lines, then the rest
 * ```ts
 * import { StreamReader } from "@aio/protocols";
 * import assert from "node:assert/strict";
 *
 * const reader = new StreamReader();
 * reader.feedData(new TextEncoder().encode("one\ntwo\nrest"));
 * reader.feedEof();
 *
 * const decoder = new TextDecoder();
 * assert.equal(decoder.decode(await reader.readline()), "one\n");
 * assert.equal(decoder.decode(await reader.readuntil()), "two\n");
 * assert.equal(decoder.decode(await reader.read()), "rest");
 * assert.ok(reader.atEof());
 * ```
 *
 * @example Pipe a connection into a Web stream
 * ```ts
 * import { openConnection, startServer } from "@aio/protocols";
 * import assert from "node:assert/strict";
 *
 * await using server = await startServer(async (_reader, writer) => {
 *   writer.write(new TextEncoder().encode("hello"));
 *   await writer.drain();
 *   writer.close();
 * }, { hostname: "127.0.0.1", port: 0 });
 *
 * const [reader, writer] = await openConnection({ port: server.addrs[0]!.port });
 * const text = reader.readable.pipeThrough(new TextDecoderStream());
 * assert.equal((await Array.fromAsync(text)).join(""), "hello");
 * writer.close();
 * await writer.waitClosed();
 * ```
 */
export class StreamReader {
  /** The most a separator search may look through. */
  readonly limit: number;
  #buffer = new ByteBuffer();
  #eof = false;
  #exception: Error | undefined;
  #waiter: PromiseWithResolvers<void> | undefined;
  #transport: ReadTransport | undefined;
  #paused = false;
  #readable: ReadableStream<Uint8Array> | undefined;

  /**
   * Makes an empty reader; a protocol feeds it.
   *
   * @param limit The buffer limit (default 64 KiB).
   * @throws {RangeError} Unless `limit` is a positive integer.
   */
  constructor(limit: number = DEFAULT_LIMIT) {
    this.limit = checkLimit(limit);
  }

  /** Returns `true` once EOF was fed and the buffer is empty. */
  atEof(): boolean {
    return this.#eof && this.#buffer.length === 0;
  }

  /** Returns the error the connection was lost with, if any. */
  exception(): Error | undefined {
    return this.#exception;
  }

  /** Sets the transport that flow control pauses and resumes. */
  setTransport(transport: ReadTransport): void {
    this.#transport = transport;
  }

  /**
   * Adds bytes to the buffer, as a protocol does when data arrives. The
   * reader owns `data` from now on: it may hand it out as it is.
   *
   * @throws {TypeError} If `data` is not a `Uint8Array`; nothing is added.
   */
  feedData(data: Uint8Array): void {
    checkBytes(data, "data", "feed data");
    if (data.byteLength === 0) return;
    this.#buffer.append(data);
    this.#wake();
    if (
      this.#transport !== undefined && !this.#paused &&
      this.#buffer.length > 2 * this.limit
    ) {
      this.#paused = true;
      this.#transport.pauseReading();
    }
  }

  /** Marks EOF: reads return what is buffered, then empty. */
  feedEof(): void {
    this.#eof = true;
    this.#wake();
  }

  /** Makes every read fail with `exc` from now on. */
  setException(exc: Error): void {
    this.#exception = exc;
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.reject(exc);
  }

  /**
   * Reads up to `n` bytes as soon as any are there; with `n < 0` (the
   * default), reads until EOF. Returns an empty array at EOF.
   *
   * @param n The most bytes to read; negative: everything until EOF.
   * @param options `signal` cancels the read: it rejects with the signal's
   * reason and the reader stays usable, with no byte lost.
   * @throws {TypeError} If `n` is not a number.
   * @throws {RangeError} If `n` is not an integer.
   */
  async read(n = -1, options?: ReadOptions): Promise<Uint8Array> {
    checkSize(n, "read", true);
    this.#throwIfFailed();
    const signal = options?.signal;
    signal?.throwIfAborted();
    if (n === 0) return EMPTY;
    if (n < 0) {
      const blocks: Uint8Array[] = [];
      try {
        for (;;) {
          const block = await this.read(this.limit, options);
          if (block.byteLength === 0) break;
          blocks.push(block);
        }
      } catch (error) {
        // Cancelled (or failed) half-way: what was read stays readable.
        if (blocks.length > 0) this.#unread(concat(blocks));
        throw error;
      }
      return blocks.length === 1 ? blocks[0]! : concat(blocks);
    }
    if (this.#buffer.length === 0 && !this.#eof) {
      await this.#waitForData("read", signal);
    }
    const data = this.#buffer.take(Math.min(n, this.#buffer.length));
    this.#maybeResume();
    return data;
  }

  /**
   * Reads one line, `\n` included. At EOF, returns what is left (maybe
   * without `\n`, maybe empty).
   *
   * @param options `signal` cancels the read, as for {@linkcode read}.
   * @throws {LimitOverrunError} If a line is longer than `limit`; the line
   * is dropped (up to its `\n` if it arrived).
   */
  async readline(options?: ReadOptions): Promise<Uint8Array> {
    try {
      return await this.readuntil(NEWLINE, options);
    } catch (error) {
      if (error instanceof IncompleteReadError) return error.partial;
      if (error instanceof LimitOverrunError) {
        if (this.#buffer.startsWith(NEWLINE, error.consumed)) {
          this.#buffer.skip(error.consumed + NEWLINE.byteLength);
        } else {
          this.#buffer.clear();
        }
        this.#maybeResume();
      }
      throw error;
    }
  }

  /**
   * Reads up to and including `separator`, or of several, the one whose
   * match ends first (at the same end, the shortest), as asyncio does.
   *
   * @throws {IncompleteReadError} At EOF before a separator; the buffer is
   * emptied into `partial`.
   * @param separator One separator, or several.
   * @param options `signal` cancels the read, as for {@linkcode read}.
   * @throws {LimitOverrunError} If no separator is within `limit` bytes;
   * the data stays buffered.
   * @throws {TypeError} Unless `separator` is a non-empty `Uint8Array`, or
   * a non-empty array of them.
   */
  async readuntil(
    separator: Uint8Array | readonly Uint8Array[] = NEWLINE,
    options?: ReadOptions,
  ): Promise<Uint8Array> {
    const separators = separator === NEWLINE
      ? NEWLINE_ONLY
      : checkSeparators(separator);
    const signal = options?.signal;
    signal?.throwIfAborted();
    const longest = separators.at(-1)!.byteLength;
    let offset = 0;
    for (;;) {
      this.#throwIfFailed();
      const found = this.#buffer.find(separators, offset);
      if (found !== undefined) {
        if (found.at > this.limit) {
          throw new LimitOverrunError(
            "Separator is found, but chunk is longer than limit",
            found.at,
          );
        }
        const chunk = this.#buffer.take(found.at + found.length);
        this.#maybeResume();
        return chunk;
      }
      offset = Math.max(0, this.#buffer.length + 1 - longest);
      if (offset > this.limit) {
        throw new LimitOverrunError(
          "Separator is not found, and chunk exceed the limit",
          offset,
        );
      }
      if (this.#eof) {
        const partial = this.#buffer.take(this.#buffer.length);
        this.#maybeResume();
        throw new IncompleteReadError(partial, null);
      }
      await this.#waitForData("readuntil", signal);
    }
  }

  /**
   * Reads exactly `n` bytes.
   *
   * @throws {IncompleteReadError} At EOF before `n` bytes; the buffer is
   * emptied into `partial`.
   * @param n How many bytes.
   * @param options `signal` cancels the read, as for {@linkcode read}.
   * @throws {TypeError} If `n` is not a number.
   * @throws {RangeError} If `n` is not an integer, or is negative.
   */
  async readexactly(n: number, options?: ReadOptions): Promise<Uint8Array> {
    checkSize(n, "readexactly", false);
    this.#throwIfFailed();
    const signal = options?.signal;
    signal?.throwIfAborted();
    if (n === 0) return EMPTY;
    while (this.#buffer.length < n) {
      if (this.#eof) {
        const partial = this.#buffer.take(this.#buffer.length);
        this.#maybeResume();
        throw new IncompleteReadError(partial, n);
      }
      await this.#waitForData("readexactly", signal);
    }
    const data = this.#buffer.take(n);
    this.#maybeResume();
    return data;
  }

  /** Yields lines, as `readline()`, until EOF. */
  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    for (;;) {
      const line = await this.readline();
      if (line.byteLength === 0) return;
      yield line;
    }
  }

  /**
   * The same bytes as a Web `ReadableStream`: each pull reads up to
   * `limit` bytes; it closes at EOF and errors with the connection's error.
   * Do not mix it with direct reads.
   */
  get readable(): ReadableStream<Uint8Array> {
    return this.#readable ??= new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        const chunk = await this.read(this.limit);
        if (chunk.byteLength === 0) controller.close();
        else controller.enqueue(chunk);
      },
      cancel: () => {
        this.#transport?.close();
      },
    }, { highWaterMark: 0 });
  }

  #throwIfFailed(): void {
    if (this.#exception !== undefined) throw this.#exception;
  }

  async #waitForData(what: string, signal?: AbortSignal): Promise<void> {
    // Aborted or failed since the read began or last woke: what arrived
    // stays buffered.
    signal?.throwIfAborted();
    this.#throwIfFailed();
    if (this.#waiter !== undefined) {
      throw new TypeError(
        `Cannot ${what}(): another read is already waiting for data`,
      );
    }
    if (this.#paused) {
      this.#paused = false;
      this.#transport?.resumeReading();
    }
    const waiter = this.#waiter = Promise.withResolvers<void>();
    const onAbort = () => waiter.reject(signal!.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      await waiter.promise;
    } finally {
      signal?.removeEventListener("abort", onAbort);
      if (this.#waiter === waiter) this.#waiter = undefined;
    }
  }

  /** Puts `data` back at the front of the buffer. */
  #unread(data: Uint8Array): void {
    this.#buffer.prepend(data);
    if (
      this.#transport !== undefined && !this.#paused &&
      this.#buffer.length > 2 * this.limit
    ) {
      this.#paused = true;
      this.#transport.pauseReading();
    }
  }

  #wake(): void {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.resolve();
  }

  #maybeResume(): void {
    if (this.#paused && this.#buffer.length <= this.limit) {
      this.#paused = false;
      this.#transport?.resumeReading();
    }
  }
}

/**
 * Checks a read's byte count `n`.
 *
 * @param what The read, for the message.
 * @param negative Whether `n` may be negative.
 * @throws {TypeError} If `n` is not a number.
 * @throws {RangeError} If `n` is not an integer, or is negative where it
 * may not be.
 */
function checkSize(n: unknown, what: string, negative: boolean): void {
  if (typeof n !== "number") {
    throw new TypeError(
      `Cannot ${what}(): n must be a number, not ${describeValue(n)}`,
    );
  }
  if (!Number.isInteger(n) || (!negative && n < 0)) {
    throw new RangeError(
      `Cannot ${what}(): n must be ${
        negative ? "an" : "a non-negative"
      } integer, not ${n}`,
    );
  }
}

/**
 * Checks `readuntil()`'s separator, one or an array; returns the
 * separators sorted shortest first, as asyncio does.
 *
 * @throws {TypeError} Unless it is a non-empty `Uint8Array`, or a
 * non-empty array of them.
 */
function checkSeparators(separator: unknown): Uint8Array[] {
  const cannot = "Cannot readuntil()";
  if (!(separator instanceof Uint8Array) && !Array.isArray(separator)) {
    throw new TypeError(
      `${cannot}: separator must be a Uint8Array or an array of them, not ${
        describeValue(separator)
      }`,
    );
  }
  const separators: unknown[] = separator instanceof Uint8Array
    ? [separator]
    : [...separator];
  for (const sep of separators) {
    checkBytes(sep, "each separator", "readuntil()");
  }
  const checked = separators as Uint8Array[];
  if (checked.length === 0 || checked.some((sep) => sep.byteLength === 0)) {
    throw new TypeError(
      `${cannot}: separator must be at least one non-empty Uint8Array`,
    );
  }
  return checked.sort((a, b) => a.byteLength - b.byteLength);
}

/** A growable byte buffer read from the front, as asyncio's `bytearray`. */
class ByteBuffer {
  #bytes: Uint8Array = new Uint8Array(0);
  #start = 0;
  #end = 0;
  /**
   * `#bytes` is a chunk taken over whole, not our own array: it is never
   * written into, and what is taken from it is handed out as a view.
   */
  #adopted = false;

  get length(): number {
    return this.#end - this.#start;
  }

  /** Adds `data`, which the buffer owns from now on. */
  append(data: Uint8Array): void {
    if (this.length === 0) {
      // Take the chunk over: a read of all of it then copies nothing.
      this.#bytes = data;
      this.#start = 0;
      this.#end = data.byteLength;
      this.#adopted = true;
      return;
    }
    if (
      this.#adopted || this.#end + data.byteLength > this.#bytes.byteLength
    ) {
      const length = this.length;
      if (
        !this.#adopted && length + data.byteLength <= this.#bytes.byteLength / 2
      ) {
        this.#bytes.copyWithin(0, this.#start, this.#end);
      } else {
        const grown = new Uint8Array(
          Math.max(2 * (length + data.byteLength), 4096),
        );
        grown.set(this.#bytes.subarray(this.#start, this.#end));
        this.#bytes = grown;
        this.#adopted = false;
      }
      this.#start = 0;
      this.#end = length;
    }
    this.#bytes.set(data, this.#end);
    this.#end += data.byteLength;
  }

  /** Puts `data` before what the buffer holds. */
  prepend(data: Uint8Array): void {
    if (this.length === 0) {
      this.append(data);
      return;
    }
    const rest = this.#bytes.subarray(this.#start, this.#end);
    const joined = new Uint8Array(
      Math.max(2 * (data.byteLength + rest.byteLength), 4096),
    );
    joined.set(data);
    joined.set(rest, data.byteLength);
    this.#bytes = joined;
    this.#start = 0;
    this.#end = data.byteLength + rest.byteLength;
    this.#adopted = false;
  }

  /**
   * Removes and returns the first `n` bytes: a view of a chunk taken over,
   * otherwise a copy.
   */
  take(n: number): Uint8Array {
    const data = this.#adopted
      ? this.#bytes.subarray(this.#start, this.#start + n)
      : copyOf(this.#bytes.subarray(this.#start, this.#start + n));
    this.skip(n);
    return data;
  }

  skip(n: number): void {
    this.#start += n;
    if (this.#start === this.#end) this.clear();
  }

  clear(): void {
    this.#start = this.#end = 0;
    // Let go of a chunk taken over, and of a large buffer once drained.
    if (this.#adopted || this.#bytes.byteLength > 1024 * 1024) {
      this.#bytes = new Uint8Array(0);
      this.#adopted = false;
    }
  }

  startsWith(prefix: Uint8Array, at: number): boolean {
    if (at + prefix.byteLength > this.length) return false;
    const from = this.#start + at;
    for (let i = 0; i < prefix.byteLength; i++) {
      if (this.#bytes[from + i] !== prefix[i]) return false;
    }
    return true;
  }

  /**
   * Finds the separator match that ends first, as asyncio does, so that
   * the result does not depend on how the data arrived; at the same end,
   * the shortest (`separators` are sorted shortest first). Returns where
   * it starts, and its length.
   */
  find(
    separators: Uint8Array[],
    offset: number,
  ): { at: number; length: number } | undefined {
    let best: { at: number; length: number } | undefined;
    for (const separator of separators) {
      const first = separator[0]!;
      const last = this.#end - separator.byteLength;
      for (
        let i = this.#bytes.indexOf(first, this.#start + offset);
        i >= 0 && i <= last;
        i = this.#bytes.indexOf(first, i + 1)
      ) {
        const at = i - this.#start;
        if (
          best !== undefined &&
          at + separator.byteLength >= best.at + best.length
        ) {
          break;
        }
        if (this.startsWith(separator, at)) {
          best = { at, length: separator.byteLength };
          break;
        }
      }
    }
    return best;
  }
}
