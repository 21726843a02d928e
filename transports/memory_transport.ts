import { checkBytes } from "../_checks.ts";
import { concat } from "../_bytes.ts";
import { resolveLimits } from "./_flow_control.ts";
import { HeldWrites } from "./_held_writes.ts";
import type { ByteSink } from "./_write_side.ts";
import { StreamTransport } from "./_stream_transport.ts";
import type {
  ErrorHandler,
  StreamExtraInfo,
  StreamProtocol,
  Transport,
  WriteBufferLimits,
} from "./transport.ts";

/** Options for {@linkcode MemoryTransport}. */
export interface MemoryTransportOptions {
  /**
   * `false`: the peer does not read, so writes stay in the write buffer
   * and flow control applies, as over a socket whose peer stopped reading
   * (default `true`; see {@linkcode MemoryTransport.setPeerReading}).
   */
  peerReading?: boolean;
  /** What `getExtraInfo()` answers, `peername` for instance. */
  extra?: Partial<StreamExtraInfo> & Record<string, unknown>;
  /** The write buffer limits to start with (default asyncio's). */
  limits?: Partial<WriteBufferLimits>;
  /** Receives errors thrown by protocol callbacks; default: stderr. */
  onError?: ErrorHandler;
}

/** What a memory transport's peer got: bytes, EOF, and the end. */
class MemorySink implements ByteSink {
  chunks: Uint8Array[] = [];
  eof = false;
  closed = false;
  reading: boolean;
  /** Writes waiting for the peer to read. */
  #waiting = new HeldWrites<Uint8Array>();

  constructor(reading: boolean) {
    this.reading = reading;
  }

  tryWrite(p: Uint8Array): number {
    if (!this.reading || this.closed) return 0;
    this.chunks.push(p.slice());
    return p.byteLength;
  }

  write(p: Uint8Array): Promise<number> {
    if (this.closed) {
      return Promise.reject(new Deno.errors.BadResource("The peer is gone"));
    }
    if (this.reading) return Promise.resolve(this.tryWrite(p));
    return this.#waiting.hold(p);
  }

  closeWrite(): Promise<void> {
    this.eof = true;
    return Promise.resolve();
  }

  close(): void {
    this.closed = true;
    this.#waiting.drop();
  }

  setReading(reading: boolean): void {
    this.reading = reading;
    if (reading) this.#waiting.release((p) => this.tryWrite(p));
  }
}

/**
 * A `Transport` in memory, for testing a protocol without a socket, as
 * Twisted's `StringTransport`: it calls `connectionMade` at once, keeps
 * what the protocol writes ({@linkcode written}), and lets the test feed
 * data, EOF and a loss ({@linkcode receive}, {@linkcode receiveEof},
 * {@linkcode lose}).
 *
 * It is the module's own stream transport over memory, so everything else
 * is as over a socket: the callback order, `pauseReading` holding what
 * arrives, `close()` flushing first, and `connectionLost` coming once, in
 * a later microtask. `log` records `close`, `abort`, `pauseReading`,
 * `resumeReading` and `writeEof` calls.
 *
 * Flow control is the socket transport's, with no socket buffer under it:
 * while the peer reads, it takes each write at once, so `write()` returns
 * `true`, `getWriteBufferSize()` stays 0 and `pauseWriting` does not fire.
 * With {@linkcode setPeerReading}`(false)` writes stay in the write buffer
 * and `pauseWriting`/`resumeWriting` fire at the transport's marks, where
 * a socket would first fill the kernel's buffers.
 *
 * @example Test a line protocol in a few lines
 * ```ts
 * import { LineProtocol } from "@aio/protocols";
 * import { MemoryTransport } from "@aio/protocols/testing";
 * import assert from "node:assert/strict";
 *
 * class Shout extends LineProtocol {
 *   override lineReceived(line: Uint8Array): void {
 *     this.sendLine(new TextDecoder().decode(line).toUpperCase());
 *   }
 * }
 *
 * const transport = new MemoryTransport(new Shout());
 * transport.receive(new TextEncoder().encode("hello\nwor"));
 * transport.receive(new TextEncoder().encode("ld\n"));
 * assert.equal(new TextDecoder().decode(transport.written()), "HELLO\nWORLD\n");
 * ```
 */
export class MemoryTransport implements Transport {
  /** The calls a test may want to check, in order. */
  readonly log: string[] = [];
  #sink: MemorySink;
  #inner: StreamTransport;
  #taken = 0;

  /**
   * Drives `protocol` in memory; `connectionMade` runs before this
   * returns, with the transport ready for use.
   *
   * @param protocol A `Protocol` or `BufferedProtocol`.
   * @param options The peer's reading, extra info, limits, error reporting.
   */
  constructor(protocol: StreamProtocol, options?: MemoryTransportOptions) {
    this.#sink = new MemorySink(options?.peerReading ?? true);
    this.#inner = new StreamTransport(
      { sink: this.#sink, pushed: true },
      protocol,
      {
        onError: options?.onError,
        extra: options?.extra,
        immediate: true,
        limits: options?.limits === undefined
          ? undefined
          : resolveLimits(options.limits),
        facade: this,
      },
    );
    // Now that this transport is whole, the protocol may use it.
    this.#inner.start();
  }

  /**
   * Returns every byte the protocol wrote that reached the peer since the
   * last `written({ clear: true })`.
   *
   * @param options `clear: true` forgets them afterwards.
   */
  written(options?: { clear?: boolean }): Uint8Array {
    const chunks = this.#sink.chunks.slice(this.#taken);
    if (options?.clear) this.#taken = this.#sink.chunks.length;
    return concat(chunks);
  }

  /** `true` once the protocol's EOF (`writeEof()`, or a pipe close) reached the peer. */
  get eofWritten(): boolean {
    return this.#sink.eof;
  }

  /** `true` once the transport closed its end. */
  get closed(): boolean {
    return this.#sink.closed;
  }

  /**
   * Delivers `data` as if the peer sent it: `dataReceived` (or
   * `getBuffer`/`bufferUpdated`) runs now, unless reading is paused; then
   * on `resumeReading()`. The transport copies `data`.
   *
   * @throws {TypeError} Unless `data` is a `Uint8Array`.
   */
  receive(data: Uint8Array): void {
    checkBytes(data, "data", "receive");
    this.#inner.push(data);
  }

  /** Delivers the peer's EOF: `eofReceived`, after any held data. */
  receiveEof(): void {
    this.#inner.pushEof();
  }

  /**
   * Loses the connection as a network failure would: the buffer is
   * dropped and `connectionLost(error)` follows (`undefined` without one).
   */
  lose(error?: Error): void {
    if (error === undefined) this.#inner.abort();
    else this.#inner.fail(error);
  }

  /**
   * Says whether the peer reads. While it does not, writes stay in the
   * write buffer (`getWriteBufferSize()` grows, `pauseWriting` fires over
   * the high mark); once it reads again they reach it, and
   * `resumeWriting` fires at the low mark.
   */
  setPeerReading(reading: boolean): void {
    this.#sink.setReading(reading);
  }

  /**
   * Returns extra info given in the options (`peername`, ...), or
   * `defaultValue`.
   */
  getExtraInfo<K extends keyof StreamExtraInfo>(
    name: K,
    defaultValue?: StreamExtraInfo[K],
  ): StreamExtraInfo[K] | undefined;
  getExtraInfo(name: string, defaultValue?: unknown): unknown;
  getExtraInfo(name: string, defaultValue?: unknown): unknown {
    return this.#inner.getExtraInfo(name, defaultValue);
  }

  /** Returns `true` once closing. */
  isClosing(): boolean {
    return this.#inner.isClosing();
  }

  /** Flushes, then closes: the peer sees EOF. */
  close(): void {
    this.log.push("close");
    this.#inner.close();
  }

  /** Closes at once, dropping the buffer. */
  abort(): void {
    this.log.push("abort");
    this.#inner.abort();
  }

  /** Switches the protocol. */
  setProtocol(protocol: StreamProtocol): void {
    this.#inner.setProtocol(protocol);
  }

  /** Returns the protocol. */
  getProtocol(): StreamProtocol {
    return this.#inner.getProtocol();
  }

  /** Returns `true` while data is delivered. */
  isReading(): boolean {
    return this.#inner.isReading();
  }

  /** Holds what `receive()` gives until `resumeReading()`. */
  pauseReading(): void {
    this.log.push("pauseReading");
    this.#inner.pauseReading();
  }

  /** Delivers what was held, in a later microtask, and what comes next. */
  resumeReading(): void {
    this.log.push("resumeReading");
    this.#inner.resumeReading();
  }

  /** Queues `data`; see {@linkcode Transport.write}. */
  write(data: Uint8Array): boolean {
    return this.#inner.write(data);
  }

  /** Queues every chunk to go out together. */
  writelines(chunks: Iterable<Uint8Array>): boolean {
    return this.#inner.writelines(chunks);
  }

  /** Flushes, then sends EOF to the peer. */
  writeEof(): void {
    this.log.push("writeEof");
    this.#inner.writeEof();
  }

  /** Returns `true`. */
  canWriteEof(): boolean {
    return this.#inner.canWriteEof();
  }

  /** Returns the bytes written and not yet taken by the peer. */
  getWriteBufferSize(): number {
    return this.#inner.getWriteBufferSize();
  }

  /** Returns the flow-control marks. */
  getWriteBufferLimits(): WriteBufferLimits {
    return this.#inner.getWriteBufferLimits();
  }

  /** Sets the flow-control marks, as on a socket. */
  setWriteBufferLimits(limits?: Partial<WriteBufferLimits>): void {
    this.#inner.setWriteBufferLimits(limits);
  }

  /** Sets the idle timeout, as on a socket. */
  setIdleTimeout(ms: number): void {
    this.#inner.setIdleTimeout(ms);
  }
}
