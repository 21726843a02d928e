import { checkInteger } from "../_checks.ts";
import { copyOf } from "../_bytes.ts";
import { isLent } from "./_read_memory.ts";
import type { ByteSource } from "./_read_side.ts";
import type { ByteSink } from "./_write_side.ts";

/**
 * A `ReadableStream` as a {@linkcode ByteSource}: each read copies what
 * the stream gave into the caller's buffer, and keeps what does not fit
 * for the next read. Closing cancels the stream.
 */
export class ReadableSource implements ByteSource {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  /** What the last chunk had left. */
  #rest: Uint8Array | undefined;

  /** @param stream The stream; it is locked from now on. */
  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.getReader();
  }

  /** Reads into `p`; `null` at the stream's end. */
  async read(p: Uint8Array): Promise<number | null> {
    let chunk = this.#rest;
    this.#rest = undefined;
    while (chunk === undefined || chunk.byteLength === 0) {
      const result = await this.#reader.read();
      if (result.done) return null;
      chunk = result.value;
    }
    const nbytes = Math.min(chunk.byteLength, p.byteLength);
    p.set(chunk.subarray(0, nbytes));
    if (nbytes < chunk.byteLength) this.#rest = chunk.subarray(nbytes);
    return nbytes;
  }

  /** Cancels the stream; a read in flight ends with `null`. */
  close(): void {
    this.#rest = undefined;
    this.#reader.cancel().catch(() => {});
  }
}

/**
 * A `WritableStream` as a {@linkcode ByteSink}: each write is written
 * whole. `closeWrite()` closes the stream; `close()` aborts it. A view of
 * a lent read block is copied first: a stream's sink may keep its chunks.
 */
export class WritableSink implements ByteSink {
  #writer: WritableStreamDefaultWriter<Uint8Array>;

  /** @param stream The stream; it is locked from now on. */
  constructor(stream: WritableStream<Uint8Array>) {
    this.#writer = stream.getWriter();
  }

  /** Writes all of `p`. */
  async write(p: Uint8Array): Promise<number> {
    await this.#writer.write(isLent(p) ? copyOf(p) : p);
    return p.byteLength;
  }

  /** Closes the stream once what was written is done. */
  closeWrite(): Promise<void> {
    return this.#writer.close();
  }

  /** Aborts the stream (nothing happens once it is closed). */
  close(): void {
    this.#writer.abort().catch(() => {});
  }
}

/**
 * Checks what a reader object's `read(p)` resolved with: `null` or `0` is
 * its end (as a pipe's read of 0 bytes is in asyncio), anything else must
 * be a whole count of at most `p.byteLength`. A bad count must never reach
 * the shared read memory.
 *
 * @throws {TypeError} Unless `nbytes` is a number or `null`.
 * @throws {RangeError} Unless it is an integer from 0 to `p.byteLength`.
 */
export function checkReadCount(
  nbytes: unknown,
  p: Uint8Array,
  what: string,
): number | null {
  if (nbytes === null || nbytes === 0) return null;
  return checkCount(nbytes, p, `${what}.read(p)`);
}

/**
 * Checks what a writer object's `write(p)` resolved with: a whole count
 * from 1 to `p.byteLength` (a writer that makes no progress would be
 * called for ever).
 *
 * @throws {TypeError} Unless `nbytes` is a number.
 * @throws {RangeError} Unless it is an integer from 1 to `p.byteLength`.
 */
export function checkWriteCount(
  nbytes: unknown,
  p: Uint8Array,
  what: string,
): number {
  return checkCount(nbytes, p, `${what}.write(p)`);
}

/** Checks that `call` resolved with a whole count from 1 to `p.byteLength`. */
function checkCount(nbytes: unknown, p: Uint8Array, call: string): number {
  return checkInteger(
    nbytes,
    "the count",
    `use what ${call} resolved with`,
    1,
    p.byteLength,
  );
}

/** Something a read pipe can read: a reader object, or a web stream. */
export type ByteSourceLike =
  | { read(p: Uint8Array): Promise<number | null>; close?(): void }
  | ReadableStream<Uint8Array>;

/** Something a write pipe can write: a writer object, or a web stream. */
export type ByteSinkLike =
  | { write(p: Uint8Array): Promise<number>; close?(): void }
  | WritableStream<Uint8Array>;

/**
 * Adapts what `connectReadPipe` was given.
 *
 * @throws {TypeError} Unless it has `read()` or is a `ReadableStream`.
 */
export function toByteSource(
  source: unknown,
  cannot: string,
): ByteSource & { close(): void } {
  if (source instanceof ReadableStream) return new ReadableSource(source);
  const reader = source as { read?: unknown; close?: unknown } | null;
  if (
    typeof reader !== "object" || reader === null ||
    typeof reader.read !== "function"
  ) {
    throw new TypeError(
      `${cannot}: the source needs read(p), or must be a ReadableStream`,
    );
  }
  const read = reader.read as (p: Uint8Array) => Promise<unknown>;
  const close = reader.close as (() => void) | undefined;
  return {
    read: async (p) => checkReadCount(await read.call(reader, p), p, "source"),
    close: () => close?.call(reader),
  };
}

/**
 * Adapts what `connectWritePipe` was given. Ending its write direction
 * closes it.
 *
 * @throws {TypeError} Unless it has `write()` or is a `WritableStream`.
 */
export function toByteSink(sink: unknown, cannot: string): ByteSink {
  if (sink instanceof WritableStream) return new WritableSink(sink);
  const writer = sink as { write?: unknown; close?: unknown } | null;
  if (
    typeof writer !== "object" || writer === null ||
    typeof writer.write !== "function"
  ) {
    throw new TypeError(
      `${cannot}: the sink needs write(p), or must be a WritableStream`,
    );
  }
  const write = writer.write as (p: Uint8Array) => Promise<unknown>;
  const close = writer.close as (() => void) | undefined;
  let closed = false;
  const closeOnce = () => {
    if (closed) return;
    closed = true;
    close?.call(writer);
  };
  return {
    write: async (p) => checkWriteCount(await write.call(writer, p), p, "sink"),
    closeWrite: () => Promise.resolve(closeOnce()),
    close: closeOnce,
  };
}
