import { checkNumber, checkProtocolObject } from "../_checks.ts";
import { closeQuietly } from "./_conn.ts";
import { IdleTimer } from "./_idle_timer.ts";
import { ProtocolCaller, type TransportEvents } from "./_protocol_caller.ts";
import { PROBE_READ_SIZE, TLS_PROBE_READ_SIZE } from "./_read_memory.ts";
import {
  type ByteSource,
  isBuffered,
  ReadSide,
  type ReadSideOwner,
} from "./_read_side.ts";
import { isTlsConn } from "./_tls.ts";
import {
  type ByteSink,
  WriteSide,
  type WriteSideOwner,
} from "./_write_side.ts";
import type { BaseProtocol } from "../protocols/base_protocol.ts";
import type {
  ErrorHandler,
  StreamExtraInfo,
  StreamProtocol,
  Transport,
  WriteBufferLimits,
} from "./transport.ts";

/**
 * What a stream transport reads and writes: a socket (`conn`, both ways),
 * one end of a pipe (`source` or `sink` alone), or memory (`sink` and
 * `pushed`: what it reads is given with `push()`).
 */
export type StreamEnds =
  | {
    conn: Deno.Conn;
    source?: undefined;
    sink?: undefined;
    pushed?: undefined;
  }
  | {
    conn?: undefined;
    source: ByteSource & { close(): void };
    sink?: undefined;
    pushed?: undefined;
  }
  | { conn?: undefined; source?: undefined; sink: ByteSink; pushed?: boolean };

/** Options for {@linkcode StreamTransport}. */
export interface StreamTransportOptions {
  /** Receives errors thrown by protocol callbacks; default: stderr. */
  onError?: ErrorHandler | undefined;
  /** Who made the transport and wants to know how it goes. */
  events?: TransportEvents<Transport> | undefined;
  /** More `getExtraInfo()` entries (`alpnProtocol`, `pipe`). */
  extra?: Record<string, unknown> | undefined;
  /** Takes over a protocol already made (after `startTls`): no `connectionMade`. */
  upgraded?: boolean | undefined;
  /**
   * Leaves `connectionMade` to {@linkcode StreamTransport.start}, for a
   * wrapper that calls it once it is built itself, so that the protocol is
   * made before the wrapper's constructor returns (the in-memory test
   * transport), not a microtask later.
   */
  immediate?: boolean | undefined;
  /**
   * The transport the protocol is given, if not this one: an object that
   * wraps this one (the in-memory test transport).
   */
  facade?: Transport | undefined;
  /** Write buffer limits to start with (default asyncio's). */
  limits?: WriteBufferLimits | undefined;
  /** Milliseconds of no reading or writing before `idleTimedOut` (0: never). */
  idleTimeout?: number | undefined;
  /**
   * For a child's pipe: `getProtocol()` and `setProtocol()` are the
   * subprocess transport's.
   */
  protocolOwner?: {
    getProtocol(): BaseProtocol;
    setProtocol(protocol: never): void;
  } | undefined;
}

/** A socket hands over its conn for an upgrade (`startTls`). */
export interface DetachedConn {
  /** The conn, with nothing in flight on it. */
  conn: Deno.Conn;
  /** The write buffer limits, to carry over. */
  limits: WriteBufferLimits;
  /** The error hook, to carry over. */
  onError: ErrorHandler;
  /** The maker's events, to carry over. */
  events: TransportEvents<Transport> | undefined;
  /** The idle timeout, to carry over. */
  idleTimeout: number;
  /** Ends the protocol's connection with `exc`, once, as the transport would. */
  lose(exc: Error | undefined): void;
  /**
   * Aborted when the old transport is closed or aborted while the new one
   * is not made yet (a server's `abortClients()` during `startTls`): the
   * hand-over must then fail.
   */
  signal: AbortSignal;
}

/**
 * A byte-stream transport: TCP, Unix and TLS sockets, and pipes. It holds
 * the three pieces every transport is made of:
 *
 * - a {@linkcode ProtocolCaller}, which calls the protocol with asyncio's
 *   rules;
 * - a {@linkcode ReadSide} over what it reads (unless a write pipe);
 * - a {@linkcode WriteSide} over what it writes (unless a read pipe);
 *
 * and owns the lifecycle: `connectionMade` one microtask after it is built,
 * then reading; `close()` stops reading, flushes, then closes; `abort()`
 * and failures close at once; `connectionLost` once nothing is in flight.
 */
export class StreamTransport implements Transport {
  /** What the caller and the sides tell the transport. */
  static #Owner = class implements ReadSideOwner, WriteSideOwner {
    #transport: StreamTransport;

    constructor(transport: StreamTransport) {
      this.#transport = transport;
    }

    fatal(exc: Error): void {
      this.#transport.#finish(exc);
    }

    eof(keepOpen: boolean): void {
      const transport = this.#transport;
      if (!keepOpen || transport.#writer === undefined) transport.close();
    }

    flushed(): void {
      this.#transport.#finish(undefined);
    }

    failed(error: Error): void {
      this.#transport.#finish(error);
    }

    active(): void {
      this.#transport.#idle?.touch();
    }
  };

  #conn: Deno.Conn | undefined;
  #source: (ByteSource & { close(): void }) | undefined;
  #sink: ByteSink | undefined;
  #caller: ProtocolCaller<StreamProtocol, Transport>;
  #reader: ReadSide | undefined;
  #writer: WriteSide | undefined;
  #extra: Record<string, unknown> | undefined;
  /** Set by `detach()`: aborts the hand-over (see {@linkcode DetachedConn}). */
  #handOver: AbortController | undefined;
  /** The idle timer, once an idle timeout was set. */
  #idle: IdleTimer | undefined;
  #protocolOwner: StreamTransportOptions["protocolOwner"];
  /** Settles once `connectionMade` has run (or was skipped). */
  #started: Promise<void>;
  /** `close()`, `abort()` or a failure: no more reading, writes dropped. */
  #closing = false;
  /** Built with `immediate`, and `start()` not called yet. */
  #startPending = false;

  /**
   * Starts driving `protocol` over `ends`, which the transport owns from
   * now on.
   */
  constructor(
    ends: StreamEnds,
    protocol: StreamProtocol,
    options: StreamTransportOptions = {},
  ) {
    if (ends.sink === undefined) checkProtocol(protocol);
    else checkProtocolObject(protocol);
    this.#conn = ends.conn;
    this.#source = ends.conn ?? ends.source;
    this.#sink = ends.conn ?? ends.sink;
    this.#extra = options.extra;
    this.#protocolOwner = options.protocolOwner;
    // One small object answers the caller and both sides, so that an
    // idle connection holds no closure per event.
    const owner = new StreamTransport.#Owner(this);
    this.#caller = new ProtocolCaller(options.facade ?? this, protocol, {
      onError: options.onError,
      events: options.events,
      owner,
    });
    if (this.#source !== undefined || ends.pushed) {
      const probe = ends.conn !== undefined && isTlsConn(ends.conn)
        ? TLS_PROBE_READ_SIZE
        : PROBE_READ_SIZE;
      this.#reader = new ReadSide(this.#source, this.#caller, owner, probe);
    }
    if (this.#sink !== undefined) {
      this.#writer = new WriteSide(
        this.#sink,
        this.#caller,
        owner,
        ends.conn !== undefined || ends.pushed ? "transport" : "pipe",
        options.limits,
      );
    }
    if (options.immediate) {
      this.#started = Promise.resolve();
      this.#startPending = true;
    } else {
      this.#started = this.#start(options.upgraded === true);
    }
    if (options.idleTimeout) this.setIdleTimeout(options.idleTimeout);
  }

  /**
   * Returns `peername`, `sockname` (`Deno.Addr`) and `conn` for a socket,
   * `alpnProtocol` over TLS, `pipe` for a pipe, or `defaultValue`.
   */
  getExtraInfo<K extends keyof StreamExtraInfo>(
    name: K,
    defaultValue?: StreamExtraInfo[K],
  ): StreamExtraInfo[K] | undefined;
  getExtraInfo(name: string, defaultValue?: unknown): unknown;
  getExtraInfo(name: string, defaultValue?: unknown): unknown {
    const extra = this.#extra;
    if (extra !== undefined && Object.hasOwn(extra, name)) return extra[name];
    const conn = this.#conn;
    if (conn !== undefined) {
      if (name === "peername") return conn.remoteAddr;
      if (name === "sockname") return conn.localAddr;
      if (name === "conn") return conn;
    }
    return defaultValue;
  }

  /** Returns `true` once `close()` or `abort()` was called, or the connection was lost. */
  isClosing(): boolean {
    return this.#closing;
  }

  /** Switches the protocol for the next callbacks; buffered or not. */
  setProtocol(protocol: StreamProtocol): void {
    if (this.#protocolOwner !== undefined) {
      this.#protocolOwner.setProtocol(protocol as never);
      return;
    }
    if (this.#reader === undefined) checkProtocolObject(protocol);
    else checkProtocol(protocol);
    this.#caller.protocol = protocol;
    this.#reader?.protocolChanged();
  }

  /** Returns the protocol that gets the callbacks. */
  getProtocol(): StreamProtocol {
    return (this.#protocolOwner?.getProtocol() as StreamProtocol) ??
      this.#caller.protocol;
  }

  /** Returns `true` while data is delivered: not paused, closing or at EOF. */
  isReading(): boolean {
    return !this.#closing && (this.#reader?.isReading() ?? false);
  }

  /** Stops delivering data; a read already in flight is held, not lost. */
  pauseReading(): void {
    if (!this.#closing) this.#reader?.pause();
  }

  /** Delivers data again, first what arrived while paused. */
  resumeReading(): void {
    if (!this.#closing) this.#reader?.resume();
  }

  /**
   * Queues `data` for writing and returns at once. Returns `false` while
   * the write buffer is over the high-water mark. Large chunks are not
   * copied: do not change `data` until `getWriteBufferSize()` is 0.
   *
   * @throws {TypeError} If `data` is not a `Uint8Array`, after
   * `writeEof()`, or on a read pipe.
   */
  write(data: Uint8Array): boolean {
    return this.#writeSide("write").write(data);
  }

  /**
   * Queues every chunk so that they go out in one write.
   *
   * @throws {TypeError} If a chunk is not a `Uint8Array` (nothing is
   * written then), after `writeEof()`, or on a read pipe.
   */
  writelines(chunks: Iterable<Uint8Array>): boolean {
    return this.#writeSide("write lines").writelines(chunks);
  }

  /**
   * Flushes what is buffered, then half-closes the write side
   * (`conn.closeWrite()`); on a pipe, closes it.
   */
  writeEof(): void {
    const writer = this.#writer;
    if (writer === undefined) return;
    writer.writeEof();
    if (this.#reader === undefined) this.close();
  }

  /** Returns `true` unless this is a read pipe. */
  canWriteEof(): boolean {
    return this.#writer !== undefined;
  }

  /** Stops reading, flushes every buffered byte, then closes. */
  close(): void {
    if (this.#stopHandOver()) return;
    if (this.#closing) return;
    this.#closing = true;
    this.#reader?.stop();
    const writer = this.#writer;
    if (writer === undefined) {
      this.#finish(undefined);
      return;
    }
    // A write pipe's close is its EOF.
    writer.close(this.#reader === undefined);
  }

  /** Closes at once and drops the write buffer. */
  abort(): void {
    // Once flushed for a hand-over, the hand-over is all there is to end.
    if (this.#stopHandOver() && this.#caller.ending) return;
    this.#finish(undefined);
  }

  /**
   * Fails a hand-over in progress (`detach()` was called, and the new
   * transport is not made yet); `false` if there is none.
   */
  #stopHandOver(): boolean {
    const handOver = this.#handOver;
    if (handOver === undefined) return false;
    handOver.abort(
      new Deno.errors.ConnectionAborted(
        "The connection was closed while it was handed over",
      ),
    );
    return true;
  }

  /** Returns the bytes accepted by `write()` and not yet written. */
  getWriteBufferSize(): number {
    return this.#writer?.size ?? 0;
  }

  /** Returns the flow-control marks. */
  getWriteBufferLimits(): WriteBufferLimits {
    return this.#writeSide("get write buffer limits").limits();
  }

  /**
   * Sets the flow-control marks as asyncio does and re-checks the buffer
   * against them at once.
   *
   * @throws {RangeError} Unless `high >= low >= 0`.
   */
  setWriteBufferLimits(limits?: Partial<WriteBufferLimits>): void {
    this.#writeSide("set write buffer limits").setLimits(limits);
  }

  /**
   * Calls the protocol's `idleTimedOut()` once nothing was read or written
   * for `ms` milliseconds (counted from now), or closes the transport if
   * the protocol has none; 0 turns it off. While closing, an idle period
   * with nothing written aborts the transport.
   *
   * @throws {RangeError} Unless `ms` is a number from 0 to 2^31 - 1.
   */
  setIdleTimeout(ms: number): void {
    checkNumber(ms, "the idle time", "set idle timeout", 0);
    if (this.#caller.ending) return;
    this.#idle ??= new IdleTimer(() => this.#idleTimedOut());
    this.#idle.set(ms);
  }

  /**
   * Stops at an upgrade point (`startTls`): flushes the write buffer, then
   * reads and writes nothing more, and hands the conn over without closing
   * it or calling `connectionLost`.
   *
   * @throws {TypeError} If the transport is closing, a read is in flight,
   * or data read while paused would be lost.
   */
  async detach(): Promise<DetachedConn> {
    const cannot = "Cannot detach the connection";
    const conn = this.#conn;
    const reader = this.#reader!;
    const writer = this.#writer!;
    if (conn === undefined) throw new TypeError(`${cannot}: not a socket`);
    if (this.#closing) throw new TypeError(`${cannot}: transport is closing`);
    if (writer.eof) throw new TypeError(`${cannot}: write side is closed`);
    if (reader.readPending) {
      throw new TypeError(
        `${cannot}: a read is in flight; call it from dataReceived(), or after pauseReading() from there`,
      );
    }
    if (reader.holding) {
      throw new TypeError(
        `${cannot}: data read while paused would be lost; resume reading first`,
      );
    }
    this.#closing = true;
    // From now on, closing this transport fails the hand-over (after the
    // flush), and aborting it too.
    const handOver = this.#handOver = new AbortController();
    reader.stop();
    if (!await writer.detach()) {
      this.#handOver = undefined;
      throw new TypeError(`${cannot}: the connection was lost while flushing`);
    }
    this.#caller.end();
    const idleTimeout = this.#idle?.ms ?? 0;
    this.#idle?.clear();
    this.#caller.stop();
    await reader.idle;
    return {
      conn,
      limits: writer.limits(),
      onError: this.#caller.onError,
      events: this.#caller.events,
      idleTimeout,
      lose: (exc) => {
        this.#handOver = undefined;
        closeQuietly(conn);
        this.#caller.lose(exc);
      },
      signal: handOver.signal,
    };
  }

  /**
   * Calls `connectionMade` now and starts reading, for a transport built
   * with `immediate` (once; later calls do nothing).
   */
  start(): void {
    if (!this.#startPending) return;
    this.#startPending = false;
    if (this.#caller.connectionMade()) this.#reader?.start();
  }

  /** Delivers `data` as if read (memory ends only). */
  push(data: Uint8Array): void {
    if (!this.#closing) this.#reader?.push(data);
  }

  /** Delivers the peer's EOF (memory ends only). */
  pushEof(): void {
    if (!this.#closing) this.#reader?.pushEof();
  }

  /** Loses the connection with `error`, as a failed read would. */
  fail(error: Error): void {
    this.#finish(error);
  }

  async #start(upgraded: boolean): Promise<void> {
    await undefined;
    if (this.#caller.connectionMade(upgraded)) this.#reader?.start();
  }

  #idleTimedOut(): void {
    if (this.#caller.ending) return;
    if (this.#closing) {
      // close() wrote nothing for a whole idle period: the peer stopped
      // reading, and the flush would wait for ever.
      this.abort();
      return;
    }
    const protocol = this.#caller.protocol as { idleTimedOut?: unknown };
    if (typeof protocol.idleTimedOut === "function") {
      this.#caller.call("idleTimedOut");
    } else {
      this.close();
    }
    // A close that waits to flush gets one more idle period to progress.
    if (this.#closing && !this.#caller.ending) this.#idle?.touch();
  }

  #writeSide(what: string): WriteSide {
    if (this.#writer === undefined) {
      throw new TypeError(`Cannot ${what}: this is a read pipe`);
    }
    return this.#writer;
  }

  /**
   * Ends the transport, once: after a flushed close (`exc` undefined),
   * `abort()`, or a failure. Closes the ends, then reports the loss once
   * nothing is in flight.
   */
  #finish(exc: Error | undefined): void {
    if (!this.#caller.end()) return;
    this.#closing = true;
    this.#idle?.clear();
    this.#reader?.stop();
    this.#writer?.stop();
    if (this.#source !== undefined) closeQuietly(this.#source);
    if (this.#sink !== undefined && this.#sink !== this.#conn) {
      closeQuietly(this.#sink);
    }
    // No write is in flight once the writer is idle: lent blocks can be
    // reused.
    const release = () => this.#writer?.release();
    if (this.#conn !== undefined) {
      // Closing a socket ends what is in flight on it at once.
      this.#caller.loseAfter(
        this.#started.then(() =>
          Promise.all([this.#reader?.idle, this.#writer?.idle])
        ),
        exc,
        release,
      );
      return;
    }
    // Closing a pipe may not end a read or write in flight on it (a write
    // waits until the other end reads), so the loss does not wait for
    // them: as asyncio, `abort()` ends a pipe at once.
    this.#caller.loseAfter(this.#started, exc);
    this.#started.then(() => this.#writer?.idle).then(release);
  }
}

/** Checks a stream protocol's shape. */
export function checkProtocol(protocol: unknown): void {
  checkProtocolObject(protocol);
  if (isBuffered(protocol)) {
    if (typeof protocol.bufferUpdated !== "function") {
      throw new TypeError(
        "Cannot use protocol: it has getBuffer() but no bufferUpdated()",
      );
    }
    return;
  }
  if (
    typeof (protocol as { dataReceived?: unknown }).dataReceived !== "function"
  ) {
    throw new TypeError(
      "Cannot use protocol: it needs dataReceived(), or getBuffer() and bufferUpdated()",
    );
  }
}
