import type { BaseProtocol } from "../protocols/base_protocol.ts";
import type { BufferedProtocol } from "../protocols/buffered_protocol.ts";
import type { Protocol } from "../protocols/protocol.ts";
import { closeQuietly } from "./_conn.ts";
import { WriteFlowControl } from "./_flow_control.ts";
import { checkBytes, joinLines, WriteQueue } from "./_write_queue.ts";
import {
  commit,
  drop,
  hold,
  lendBlock,
  type Loan,
  PROBE_READ_SIZE,
  ReadSizer,
  release,
  releaseBlock,
  reserve,
  reserveBlock,
  SMALL_MAX,
  TLS_PROBE_READ_SIZE,
} from "./_read_buffer.ts";
import { isTlsConn } from "./_tls.ts";
import {
  callReporting,
  describeValue,
  reportCallbackError,
  reportToStderr,
  toError,
  warnDroppedWrites,
} from "./_report.ts";
import {
  type DetachedConn,
  provideDetach,
  streamHooks,
} from "./_stream_internals.ts";
import type {
  ErrorHandler,
  StreamProtocol,
  Transport,
  WriteBufferLimits,
} from "./transport.ts";

/** Options for {@linkcode StreamTransport}. */
export interface StreamTransportOptions {
  /** Receives errors thrown by protocol callbacks; default: stderr. */
  onError?: ErrorHandler;
  /** More `getExtraInfo()` entries, beside `peername`, `sockname`, `conn`. */
  extra?: Record<string, unknown>;
}

/** One read's result, delivered now or held while reading is paused. */
type Read =
  | { kind: "data"; data: Uint8Array; loan: Loan | undefined }
  | {
    kind: "buffer";
    protocol: BufferedProtocol;
    nbytes: number;
    buffer: Uint8Array;
  }
  | { kind: "eof" };

const EOF: Read = { kind: "eof" };

/**
 * A byte-stream transport over a `Deno.Conn`: TCP, Unix or TLS.
 *
 * One read loop feeds the protocol: a `Protocol` gets views carved out of
 * shared read memory, a `BufferedProtocol` gets reads straight into its own
 * buffer. One write pump drains the write buffer in order, coalescing small
 * chunks into one `conn.write`, while the next read is already in flight.
 * Write-side flow control follows asyncio exactly.
 *
 * Most code gets a transport from {@linkcode createServer} or
 * {@linkcode createConnection}; construct one directly to drive a
 * `Deno.Conn` you already have. `connectionMade` runs in a microtask after
 * construction, then reading starts.
 *
 * @example Drive a connection you opened yourself
 * ```ts
 * import { ProtocolBase, StreamTransport } from "@aio/protocols";
 *
 * using server = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const conn = await Deno.connect({ port: server.addr.port });
 * const accepted = await server.accept();
 * const transport = new StreamTransport(conn, new ProtocolBase());
 * transport.write(new TextEncoder().encode("hello"));
 * transport.close();
 * accepted.close();
 * ```
 */
export class StreamTransport implements Transport {
  #conn: Deno.Conn;
  #protocol: StreamProtocol;
  #buffered: boolean;
  /** Extra info beside `peername`, `sockname` and `conn`, if any. */
  #extra: Record<string, unknown> | undefined;
  #onError: ErrorHandler;
  #flow: WriteFlowControl;

  #queue = new WriteQueue();
  #pump: Promise<void> | undefined;
  #reader: Promise<void>;
  #readActive = false;
  #readPending = false;
  #readPaused = false;
  #sizer: ReadSizer;
  #held: Read | undefined;
  #eofRead = false;
  #eofWritten = false;
  #closing = false;
  #detaching = false;
  #finishing = false;
  #made = false;
  #lostWrites = 0;

  static {
    provideDetach((transport) => transport.#detach());
  }

  /**
   * Starts driving `protocol` over `conn`.
   *
   * @param conn The connection; the transport owns it from now on.
   * @param protocol A `Protocol` or, if it has `getBuffer`, a
   * `BufferedProtocol`.
   * @param options Error reporting and extra info.
   */
  constructor(
    conn: Deno.Conn,
    protocol: StreamProtocol,
    options: StreamTransportOptions = {},
  ) {
    this.#buffered = checkProtocol(protocol);
    this.#conn = conn;
    this.#protocol = protocol;
    this.#onError = options.onError ?? reportToStderr;
    this.#extra = options.extra;
    this.#sizer = new ReadSizer(
      isTlsConn(conn) ? TLS_PROBE_READ_SIZE : PROBE_READ_SIZE,
    );
    this.#flow = new WriteFlowControl(
      () => this.#callFlowControl("pauseWriting"),
      () => this.#callFlowControl("resumeWriting"),
    );
    this.#reader = this.#readLoop();
  }

  /**
   * Returns `peername`, `sockname` (`Deno.Addr`), `conn` (the `Deno.Conn`),
   * or `defaultValue` for a name the transport does not know.
   */
  getExtraInfo(name: string, defaultValue?: unknown): unknown {
    const extra = this.#extra;
    if (extra !== undefined && Object.hasOwn(extra, name)) return extra[name];
    switch (name) {
      case "peername":
        return this.#conn.remoteAddr;
      case "sockname":
        return this.#conn.localAddr;
      case "conn":
        return this.#conn;
      default:
        return defaultValue;
    }
  }

  /** Returns `true` once `close()` or `abort()` was called, or the connection was lost. */
  isClosing(): boolean {
    return this.#closing;
  }

  /** Switches the protocol for the next callbacks; buffered or not. */
  setProtocol(protocol: StreamProtocol): void {
    this.#buffered = checkProtocol(protocol);
    this.#protocol = protocol;
  }

  /** Returns the protocol that gets the callbacks. */
  getProtocol(): StreamProtocol {
    return this.#protocol;
  }

  /** Returns `true` while data is delivered: not paused, closing or at EOF. */
  isReading(): boolean {
    return !this.#closing && !this.#readPaused && !this.#eofRead;
  }

  /** Stops delivering data; a read already in flight is held, not lost. */
  pauseReading(): void {
    if (this.#closing || this.#readPaused) return;
    this.#readPaused = true;
  }

  /** Delivers data again, first what arrived while paused. */
  resumeReading(): void {
    if (this.#closing || !this.#readPaused) return;
    this.#readPaused = false;
    if (!this.#readActive) this.#reader = this.#readLoop();
  }

  /**
   * Queues `data` for writing and returns at once. Returns `false` while
   * the write buffer is over the high-water mark. Large chunks are not
   * copied: do not change `data` until `getWriteBufferSize()` is 0.
   *
   * @throws {TypeError} If `data` is not a `Uint8Array`, or after `writeEof()`.
   */
  write(data: Uint8Array): boolean {
    checkBytes(data, "Cannot write to transport");
    if (this.#closing) {
      this.#dropWrite();
    } else if (this.#eofWritten) {
      throw new TypeError("Cannot write to transport: write side is closed");
    } else if (data.byteLength > 0) {
      this.#enqueue(data);
    }
    return this.#queue.size <= this.#flow.high;
  }

  /**
   * Queues every chunk so that they go out in one `conn.write`.
   *
   * @throws {TypeError} If a chunk is not a `Uint8Array` (nothing is
   * written then), or after `writeEof()`.
   */
  writeLines(chunks: Iterable<Uint8Array>): boolean {
    return this.write(joinLines(chunks, "Cannot write lines to transport"));
  }

  /** Flushes what is buffered, then half-closes with `conn.closeWrite()`. */
  writeEof(): void {
    if (this.#closing || this.#eofWritten) return;
    this.#eofWritten = true;
    this.#pump ??= this.#runPump();
  }

  /** Returns `true`: every `Deno.Conn` can half-close. */
  canWriteEof(): boolean {
    return true;
  }

  /** Stops reading, flushes every buffered byte, then closes. */
  close(): void {
    if (this.#closing) return;
    this.#closing = true;
    this.#dropHeld();
    if (this.#pump === undefined) this.#finish(undefined);
  }

  /** Closes at once and drops the write buffer. */
  abort(): void {
    this.#forceClose(undefined);
  }

  /** Returns the bytes accepted by `write()` and not yet written. */
  getWriteBufferSize(): number {
    return this.#queue.size;
  }

  /** Returns the flow-control marks. */
  getWriteBufferLimits(): WriteBufferLimits {
    return this.#flow.limits();
  }

  /**
   * Sets the flow-control marks as asyncio does and re-checks the buffer
   * against them at once.
   *
   * @throws {RangeError} Unless `high >= low >= 0`.
   */
  setWriteBufferLimits(limits?: Partial<WriteBufferLimits>): void {
    this.#flow.setLimits(limits, this.#queue.size);
  }

  // Read side.

  /** Calls `connectionMade`; `false` if it threw and the transport closes. */
  #connect(): boolean {
    const hooks = streamHooks.get(this);
    try {
      if (!hooks?.skipConnectionMade) this.#protocol.connectionMade?.(this);
    } catch (error) {
      this.#fail(error, "connectionMade");
      hooks?.made?.(toError(error));
      return false;
    }
    this.#made = true;
    // A write() before connectionMade may have gone over the high mark.
    if (this.#flow.paused) this.#callFlowControl("pauseWriting");
    hooks?.made?.(undefined);
    return true;
  }

  /**
   * Reads until paused, closing or EOF; the first run calls
   * `connectionMade` first, one microtask after construction.
   */
  async #readLoop(): Promise<void> {
    this.#readActive = true;
    try {
      if (!this.#made) {
        await undefined;
        if (!this.#connect()) return;
      }
      const held = this.#held;
      if (held !== undefined) {
        this.#held = undefined;
        await undefined;
        if (this.#closing) {
          if (held.kind === "data" && held.loan) drop(held.loan);
          return;
        }
        // Paused again in the task that resumed.
        if (this.#readPaused) {
          this.#held = held;
          return;
        }
        if (!this.#deliver(held)) return;
      }
      while (!this.#closing && !this.#readPaused && !this.#eofRead) {
        const protocol = this.#protocol;
        const fromArena = !this.#buffered;
        const size = this.#sizer.size;
        const lending = fromArena && size > SMALL_MAX &&
          (protocol as Protocol).transientData === true;
        let buffer: Uint8Array;
        if (lending) {
          buffer = reserveBlock(size);
        } else if (fromArena) {
          buffer = reserve(size);
        } else {
          try {
            buffer = getBuffer(protocol as BufferedProtocol, size);
          } catch (error) {
            this.#fail(error, "getBuffer");
            return;
          }
        }
        let nbytes: number | null;
        this.#readPending = true;
        try {
          nbytes = await this.#conn.read(buffer);
        } catch (error) {
          this.#readPending = false;
          if (lending) releaseBlock(buffer);
          else if (fromArena) release(buffer);
          if (!this.#closing) this.#forceClose(toError(error));
          return;
        }
        this.#readPending = false;
        if (nbytes === null || this.#closing) {
          if (lending) releaseBlock(buffer);
          else if (fromArena) release(buffer);
          if (this.#closing) return;
          if (this.#readPaused) this.#held = EOF;
          else this.#receiveEof();
          return;
        }
        this.#sizer.update(nbytes, buffer.byteLength);
        if (fromArena) {
          let data: Uint8Array;
          let loan: Loan | undefined;
          if (lending) {
            const lent = lendBlock(buffer, nbytes);
            if (lent instanceof Uint8Array) {
              data = lent;
            } else {
              loan = lent;
              data = buffer.subarray(0, nbytes);
            }
          } else {
            data = commit(buffer, nbytes);
          }
          if (this.#readPaused) {
            this.#held = { kind: "data", data, loan };
            return;
          }
          const more = this.#feed(data, loan !== undefined);
          if (loan !== undefined) drop(loan);
          if (!more) return;
        } else if (this.#readPaused || protocol !== this.#protocol) {
          const read: Read = {
            kind: "buffer",
            protocol: protocol as BufferedProtocol,
            nbytes,
            buffer,
          };
          if (this.#readPaused) {
            this.#held = read;
            return;
          }
          if (!this.#deliver(read)) return;
        } else {
          try {
            (protocol as BufferedProtocol).bufferUpdated(nbytes);
          } catch (error) {
            this.#fail(error, "bufferUpdated");
            return;
          }
        }
      }
    } finally {
      this.#readActive = false;
    }
  }

  /** Hands a read to the protocol; `false` when reading must stop. */
  #deliver(read: Read): boolean {
    if (read.kind === "eof") {
      this.#receiveEof();
      return false;
    }
    if (read.kind === "data") {
      const more = this.#feed(read.data, read.loan !== undefined);
      if (read.loan !== undefined) drop(read.loan);
      return more;
    }
    if (read.protocol !== this.#protocol) {
      return this.#feed(read.buffer.slice(0, read.nbytes));
    }
    try {
      read.protocol.bufferUpdated(read.nbytes);
    } catch (error) {
      this.#fail(error, "bufferUpdated");
      return false;
    }
    return !this.#closing;
  }

  /**
   * Gives `data` to whichever protocol is current, copying if buffered, or
   * if `data` is `lent` and the protocol keeps what it gets.
   */
  #feed(data: Uint8Array, lent = false): boolean {
    const protocol = this.#protocol;
    if (!this.#buffered) {
      try {
        (protocol as Protocol).dataReceived(
          lent && (protocol as Protocol).transientData !== true
            ? data.slice()
            : data,
        );
      } catch (error) {
        this.#fail(error, "dataReceived");
        return false;
      }
      return !this.#closing;
    }
    const buffered = protocol as BufferedProtocol;
    let offset = 0;
    while (offset < data.byteLength) {
      const rest = data.byteLength - offset;
      let step = "getBuffer";
      try {
        const buffer = getBuffer(buffered, rest);
        const nbytes = Math.min(buffer.byteLength, rest);
        buffer.set(data.subarray(offset, offset + nbytes));
        offset += nbytes;
        step = "bufferUpdated";
        buffered.bufferUpdated(nbytes);
      } catch (error) {
        this.#fail(error, step);
        return false;
      }
      if (this.#closing) return false;
      if (offset === data.byteLength) break;
      if (this.#readPaused) {
        this.#held = {
          kind: "data",
          data: data.subarray(offset),
          loan: lent ? hold(data) : undefined,
        };
        return false;
      }
      if (this.#protocol !== buffered) {
        return this.#feed(data.subarray(offset), lent);
      }
    }
    return !this.#closing;
  }

  #receiveEof(): void {
    this.#eofRead = true;
    let keepOpen: boolean | void;
    try {
      keepOpen = this.#protocol.eofReceived?.();
    } catch (error) {
      this.#fail(error, "eofReceived");
      return;
    }
    if (!keepOpen) this.close();
  }

  // Write side.

  #enqueue(data: Uint8Array): void {
    this.#queue.push(data);
    this.#pump ??= this.#runPump();
    this.#flow.grew(this.#queue.size);
  }

  async #runPump(): Promise<void> {
    // Start after the current task, so that every write it makes is
    // coalesced into the first conn.write.
    await undefined;
    try {
      const queue = this.#queue;
      while (!queue.empty) {
        const chunk = queue.take();
        let offset = 0;
        while (offset < chunk.byteLength) {
          const written = await this.#conn.write(
            offset === 0 ? chunk : chunk.subarray(offset),
          );
          if (this.#finishing) return;
          offset += written;
          queue.wrote(written);
          this.#flow.shrank(queue.size);
        }
        queue.done();
      }
      if (this.#eofWritten && !this.#finishing) await this.#conn.closeWrite();
    } catch (error) {
      if (!this.#finishing) this.#forceClose(toError(error));
      return;
    }
    this.#pump = undefined;
    if (this.#closing && !this.#detaching) this.#finish(undefined);
  }

  /** Forgets data held while paused, ending its loan. */
  #dropHeld(): void {
    const held = this.#held;
    this.#held = undefined;
    if (held?.kind === "data" && held.loan !== undefined) drop(held.loan);
  }

  #dropWrite(): void {
    warnDroppedWrites(++this.#lostWrites, "StreamTransport.write()");
  }

  // Upgrading.

  async #detach(): Promise<DetachedConn> {
    const cannot = "Cannot detach the connection";
    if (this.#closing) throw new TypeError(`${cannot}: transport is closing`);
    if (this.#eofWritten) {
      throw new TypeError(`${cannot}: write side is closed`);
    }
    if (this.#readPending) {
      throw new TypeError(
        `${cannot}: a read is in flight; call it from dataReceived(), or after pauseReading() from there`,
      );
    }
    if (this.#held !== undefined) {
      throw new TypeError(
        `${cannot}: data read while paused would be lost; resume reading first`,
      );
    }
    const readPaused = this.#readPaused;
    this.#closing = true;
    this.#detaching = true;
    await this.#pump;
    if (this.#finishing) {
      throw new TypeError(`${cannot}: the connection was lost while flushing`);
    }
    this.#finishing = true;
    await this.#reader;
    let lost = false;
    return {
      conn: this.#conn,
      readPaused,
      limits: this.#flow.limits(),
      onError: this.#onError,
      lose: (exc) => {
        if (lost) return;
        lost = true;
        closeQuietly(this.#conn);
        this.#connectionLost(exc);
      },
    };
  }

  // Closing.

  /** Reports what a protocol callback threw and closes with it. */
  #fail(error: unknown, callback: string): void {
    reportCallbackError(this.#onError, error, callback, true, {
      transport: this,
      protocol: this.#protocol,
    });
    this.#forceClose(toError(error));
  }

  #forceClose(exc: Error | undefined): void {
    if (this.#finishing) return;
    this.#closing = true;
    this.#dropHeld();
    this.#queue.clear();
    this.#finish(exc);
  }

  /** Closes the conn, waits for the read and write in flight, then reports. */
  #finish(exc: Error | undefined): void {
    if (this.#finishing) return;
    this.#finishing = true;
    this.#closing = true;
    closeQuietly(this.#conn);
    Promise.all([this.#reader, this.#pump]).then(() => {
      // No write is in flight now: lent blocks can be reused.
      this.#queue.release();
      this.#connectionLost(exc);
    });
  }

  #connectionLost(exc: Error | undefined): void {
    callReporting(this.#onError, this, this.#protocol, "connectionLost", exc);
    streamHooks.get(this)?.lost?.();
  }

  #callFlowControl(callback: "pauseWriting" | "resumeWriting"): void {
    // After abort() or a failure, connectionLost is the only callback left.
    // Before connectionMade, the pause is told right after it.
    if (this.#finishing || !this.#made) return;
    callReporting(this.#onError, this, this.#protocol, callback);
  }
}

/** Returns `true` if `protocol` is a `BufferedProtocol` (has `getBuffer`). */
export function isBuffered(
  protocol: BaseProtocol,
): protocol is BufferedProtocol {
  return typeof (protocol as BufferedProtocol).getBuffer === "function";
}

/** Checks the protocol's shape; returns `true` if it is buffered. */
function checkProtocol(protocol: unknown): boolean {
  if (typeof protocol !== "object" || protocol === null) {
    throw new TypeError(
      `Cannot use protocol: expected an object, not ${describeValue(protocol)}`,
    );
  }
  if (isBuffered(protocol)) {
    if (typeof protocol.bufferUpdated !== "function") {
      throw new TypeError(
        "Cannot use protocol: it has getBuffer() but no bufferUpdated()",
      );
    }
    return true;
  }
  if (typeof (protocol as Protocol).dataReceived !== "function") {
    throw new TypeError(
      "Cannot use protocol: it needs dataReceived(), or getBuffer() and bufferUpdated()",
    );
  }
  return false;
}

function getBuffer(protocol: BufferedProtocol, sizeHint: number): Uint8Array {
  const buffer = protocol.getBuffer(sizeHint);
  if (!(buffer instanceof Uint8Array)) {
    throw new TypeError(
      `getBuffer() must return a Uint8Array, not ${describeValue(buffer)}`,
    );
  }
  if (buffer.byteLength === 0) {
    throw new RangeError("getBuffer() returned an empty buffer");
  }
  return buffer;
}
