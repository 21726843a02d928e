import type { BaseProtocol } from "../protocols/base_protocol.ts";
import { checkInteger } from "../_checks.ts";
import { checkReadCount } from "./_byte_io.ts";
import { drop, lendBlock, releaseBlock, reserveBlock } from "./_read_memory.ts";
import { StreamTransport } from "./_stream_transport.ts";
import { MemoryTransport } from "./memory_transport.ts";
import type { WriteTransport } from "./transport.ts";

/** How much of the file one read takes. */
const CHUNK_SIZE = 256 * 1024;

/** Options for {@linkcode sendfile}. */
export interface SendfileOptions {
  /** Where in the file to start (default 0). */
  offset?: number;
  /** How many bytes to send at most (default: to the end of the file). */
  count?: number;
}

/** A file `sendfile` can read: a `Deno.FsFile`, or anything like one. */
export interface SendfileSource {
  /**
   * Reads into `p`: the number of bytes read (an integer up to
   * `p.byteLength`), or `null` (or 0) at the end.
   */
  read(p: Uint8Array): Promise<number | null>;
  /** Moves to `offset` from the start. */
  seek(offset: number | bigint, whence: Deno.SeekMode): Promise<number>;
}

/**
 * Sends a file (or a range of it) through a write transport with flow
 * control: asyncio's `loop.sendfile()`. It reads 256 KiB at a time and
 * waits whenever the transport's write buffer is over its high-water mark,
 * so it never holds more than the high-water mark and one chunk, whatever
 * the file's size. Over this module's transports the chunks are reused
 * memory, taken back once written.
 *
 * As Node's `pipe()`, it goes by what `write()` returns: once a chunk
 * takes the buffer over the high-water mark (`write()` returns `false`),
 * it waits for `resumeWriting`, which comes at the low-water mark. A
 * transport still paused from earlier writes, with its buffer between the
 * marks, gets chunks until it is over the high-water mark again.
 *
 * While it runs, the transport's protocol is wrapped: every callback still
 * reaches it, and `sendfile` also learns of `pauseWriting`,
 * `resumeWriting` and `connectionLost`; the protocol is put back at the
 * end. Do not write to the transport meanwhile: the bytes would land in the
 * middle of the file's.
 *
 * @param transport A transport that writes: a connection, or a write pipe.
 * @param file The file, open for reading; `sendfile` does not close it.
 * @param options Where to start and how much to send.
 * @returns The number of bytes sent (queued; `close()` then flushes them).
 * @throws {TypeError} If the transport is closing.
 * @throws {TypeError} For an offset or count that is not a number.
 * @throws {RangeError} For an offset or count that is not a whole number
 * >= 0.
 * @throws {TypeError} If `file.read()` resolves with something that is not
 * a number or `null`.
 * @throws {RangeError} If it resolves with a count that is not a whole
 * number up to the size of the buffer it was given.
 * @throws The error the connection was lost with, if it is lost meanwhile.
 *
 * @example Serve a file to each client, then close
 * ```ts ignore
 * import { createServer, sendfile } from "@aio/protocols";
 *
 * await using server = await createServer(() => ({
 *   connectionMade(transport) {
 *     Deno.open("big.iso").then(async (file) => {
 *       using _file = file;
 *       await sendfile(transport, file);
 *       transport.close();
 *     });
 *   },
 *   dataReceived() {},
 * }), { port: 8000 });
 * ```
 */
export async function sendfile(
  transport: WriteTransport,
  file: SendfileSource,
  options?: SendfileOptions,
): Promise<number> {
  const cannot = "Cannot send file";
  const offset = checkInteger(options?.offset ?? 0, "offset", "send file", 0);
  const count = options?.count === undefined
    ? Infinity
    : checkInteger(options.count, "count", "send file", 0);
  if (transport.isClosing()) {
    throw new TypeError(`${cannot}: the transport is closing`);
  }
  if (offset > 0) await file.seek(offset, Deno.SeekMode.Start);
  const original = transport.getProtocol();
  const watch = new FlowWatch(transport);
  transport.setProtocol(wrap(original, watch));
  // This module's transports hold a lent block until they have written
  // it: reads then go into warm, reused memory.
  const lending = transport instanceof StreamTransport ||
    transport instanceof MemoryTransport;
  let sent = 0;
  try {
    while (sent < count) {
      await watch.writable();
      const size = Math.min(CHUNK_SIZE, count - sent);
      const chunk = lending ? reserveBlock(size) : new Uint8Array(size);
      let nbytes: number | null;
      try {
        nbytes = checkReadCount(await file.read(chunk), chunk, "file");
      } catch (error) {
        if (lending) releaseBlock(chunk);
        throw error;
      }
      if (nbytes === null) {
        if (lending) releaseBlock(chunk);
        break;
      }
      if (watch.lost || transport.isClosing()) {
        if (lending) releaseBlock(chunk);
        watch.throwIfLost();
      }
      let accepted: boolean;
      if (!lending) {
        accepted = transport.write(chunk.subarray(0, nbytes));
      } else {
        const lent = lendBlock(chunk, nbytes);
        if (lent instanceof Uint8Array) {
          accepted = transport.write(lent);
        } else {
          accepted = transport.write(chunk.subarray(0, nbytes));
          drop(lent);
        }
      }
      watch.wrote(accepted);
      sent += nbytes;
    }
    await watch.writable();
  } finally {
    if (transport.getProtocol() === watch.wrapper) {
      transport.setProtocol(original);
    }
  }
  return sent;
}

/**
 * Learns whether writing is paused, and whether the connection was lost.
 *
 * A transport pauses strictly over its high mark and resumes at or below
 * its low mark, and it has no query for its paused flag. So the watch
 * counts as paused only what is sure to be: a buffer over the high mark,
 * a `write()` that returned `false`, a `pauseWriting`. Each of them means
 * that the transport's flow control is paused, so `resumeWriting` will
 * come. A buffer between the marks may be paused or not: waiting there
 * could wait for a `resumeWriting` that never comes, so writing goes on
 * until the buffer is over the high mark.
 */
class FlowWatch {
  paused: boolean;
  lost = false;
  exc: Error | undefined;
  wrapper: BaseProtocol | undefined;
  #wake: (() => void) | undefined;
  #transport: WriteTransport;

  constructor(transport: WriteTransport) {
    this.#transport = transport;
    const limits = transport.getWriteBufferLimits();
    this.paused = transport.getWriteBufferSize() > limits.high;
  }

  pause(): void {
    this.paused = true;
  }

  /**
   * `accepted` is what `write()` returned: `false` over the high mark
   * (anything else, from a transport of another kind, is no pause).
   */
  wrote(accepted: boolean): void {
    if (accepted === false) this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.#wake?.();
  }

  lose(exc: Error | undefined): void {
    this.lost = true;
    this.exc = exc;
    this.#wake?.();
  }

  throwIfLost(): void {
    if (this.lost || this.#transport.isClosing()) {
      throw this.exc ??
        new Deno.errors.BrokenPipe(
          "Cannot send file: the connection was closed",
        );
    }
  }

  /** Resolves once writing may go on; throws once the connection is lost. */
  async writable(): Promise<void> {
    this.throwIfLost();
    while (this.paused) {
      await new Promise<void>((resolve) => this.#wake = resolve);
      this.#wake = undefined;
      this.throwIfLost();
    }
  }
}

/**
 * A protocol that passes every callback on to `original`, and tells `watch`
 * about flow control and the end of the transport: the stream's
 * `connectionLost`, or, when `original` is a child's protocol (a child's
 * stdin shares it), `pipeConnectionLost(0)`. Whatever else `original` has
 * (`dataReceived`, `getBuffer`, `transientData`, a child's pipe callbacks)
 * is read through to it, so nothing of it is lost while the file is sent.
 */
function wrap(original: BaseProtocol, watch: FlowWatch): BaseProtocol {
  const target = original as unknown as Record<PropertyKey, unknown>;
  const call = (name: string, ...args: unknown[]) =>
    (target[name] as ((...args: unknown[]) => unknown) | undefined)?.apply(
      original,
      args,
    );
  const hooks: Record<PropertyKey, unknown> = {
    pauseWriting() {
      watch.pause();
      return call("pauseWriting");
    },
    resumeWriting() {
      watch.resume();
      return call("resumeWriting");
    },
    connectionLost(exc: Error | undefined) {
      watch.lose(exc);
      return call("connectionLost", exc);
    },
  };
  if (typeof target.pipeConnectionLost === "function") {
    hooks.pipeConnectionLost = (fd: number, exc: Error | undefined) => {
      if (fd === 0) {
        watch.lose(
          exc ??
            new Deno.errors.BrokenPipe("Cannot send file: stdin was closed"),
        );
      }
      return call("pipeConnectionLost", fd, exc);
    };
  }
  /** Methods of `original`, bound to it, made once each. */
  const bound = new Map<PropertyKey, unknown>();
  // The proxy's target is an empty object of its own, not `original`: a
  // proxy may not answer for a frozen target's properties with anything
  // but their own values, and the hooks and bound methods are others.
  const wrapper = new Proxy({} as BaseProtocol, {
    getPrototypeOf: () => Object.getPrototypeOf(original),
    has: (_, key) => Object.hasOwn(hooks, key) || key in target,
    get(_, key) {
      if (Object.hasOwn(hooks, key)) return hooks[key];
      const value = target[key];
      if (typeof value !== "function") return value;
      let method = bound.get(key);
      if (method === undefined) {
        bound.set(
          key,
          method = (value as (...args: unknown[]) => unknown)
            .bind(original),
        );
      }
      return method;
    },
  });
  watch.wrapper = wrapper;
  return wrapper;
}
