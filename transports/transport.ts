import type { BaseProtocol } from "../protocols/base_protocol.ts";
import type { BufferedProtocol } from "../protocols/buffered_protocol.ts";
import type { DatagramProtocol } from "../protocols/datagram_protocol.ts";
import type { Protocol } from "../protocols/protocol.ts";
import type { SubprocessProtocol } from "../protocols/subprocess_protocol.ts";

/**
 * What a transport passes to an {@linkcode ErrorHandler} with the error.
 *
 * @example Describe where an error came from
 * ```ts
 * import type { ErrorContext } from "@aio/protocols";
 *
 * function where(context: ErrorContext): string {
 *   const peer = context.transport?.getExtraInfo("peername");
 *   return peer === undefined
 *     ? context.message
 *     : `${context.message} (peer ${JSON.stringify(peer)})`;
 * }
 * ```
 */
export interface ErrorContext {
  /** What failed, e.g. `"protocol.dataReceived() call failed"`. */
  message: string;
  /** The transport the error came from, if any. */
  transport?: BaseTransport;
  /** The protocol whose callback threw, if any. */
  protocol?: BaseProtocol;
}

/**
 * Receives errors that a protocol callback threw, and other errors no caller
 * can catch (asyncio's `loop.call_exception_handler`). The default reports
 * them on stderr.
 *
 * @example Count a server's errors, and log them in one line each
 * ```ts
 * import { createServer, type ErrorHandler, ProtocolBase } from "@aio/protocols";
 *
 * let errors = 0;
 * const onError: ErrorHandler = (error, context) => {
 *   errors++;
 *   console.error(`${context.message}: ${error}`);
 * };
 * await using server = await createServer(() => new ProtocolBase(), {
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   onError,
 * });
 * ```
 */
export type ErrorHandler = (error: unknown, context: ErrorContext) => void;

/**
 * The write buffer's flow-control marks, in bytes.
 *
 * @example Buffer more before pausing, for bulk transfers
 * ```ts
 * import type { WriteBufferLimits, WriteTransport } from "@aio/protocols";
 *
 * const BULK: WriteBufferLimits = { high: 1024 * 1024, low: 256 * 1024 };
 * function forBulk(transport: WriteTransport): void {
 *   transport.setWriteBufferLimits(BULK);
 * }
 * ```
 */
export interface WriteBufferLimits {
  /** At or below this, a paused protocol gets `resumeWriting`. */
  low: number;
  /** Strictly over this, the protocol gets `pauseWriting`. */
  high: number;
}

/**
 * What {@linkcode Transport.getExtraInfo} knows about a connection, by
 * name: `getExtraInfo("peername")` is a `Deno.Addr`.
 *
 * @example The protocol a TLS client and server agreed on
 * ```ts
 * import type { StreamExtraInfo, Transport } from "@aio/protocols";
 *
 * function alpn(transport: Transport): StreamExtraInfo["alpnProtocol"] {
 *   return transport.getExtraInfo("alpnProtocol") ?? null;
 * }
 * ```
 */
export interface StreamExtraInfo {
  /** The peer's address (sockets). */
  peername: Deno.Addr;
  /** The local address (sockets). */
  sockname: Deno.Addr;
  /** The `Deno.Conn` (sockets). */
  conn: Deno.Conn;
  /** The protocol agreed by ALPN, or `null` (TLS only). */
  alpnProtocol: string | null;
}

/**
 * What {@linkcode DatagramTransport.getExtraInfo} knows, by name.
 *
 * @example The port a datagram endpoint bound
 * ```ts
 * import { createDatagramEndpoint, type DatagramExtraInfo, DatagramProtocolBase } from "@aio/protocols";
 * import assert from "node:assert/strict";
 *
 * const [transport] = await createDatagramEndpoint(() => new DatagramProtocolBase(), {
 *   localAddr: { hostname: "127.0.0.1", port: 0 },
 * });
 * const sockname: DatagramExtraInfo["sockname"] = transport.getExtraInfo("sockname")!;
 * assert.ok(sockname.port > 0);
 * transport.close();
 * ```
 */
export interface DatagramExtraInfo {
  /** The `remoteAddr`, if the endpoint has one. */
  peername: Deno.NetAddr;
  /** The bound address. */
  sockname: Deno.NetAddr;
  /** The `Deno.DatagramConn`. */
  conn: Deno.DatagramConn;
}

/**
 * What {@linkcode SubprocessTransport.getExtraInfo} knows, by name.
 *
 * @example The child's process id
 * ```ts
 * import type { SubprocessExtraInfo, SubprocessTransport } from "@aio/protocols";
 *
 * function pid(transport: SubprocessTransport): SubprocessExtraInfo["pid"] {
 *   return transport.getExtraInfo("pid") ?? transport.getPid();
 * }
 * ```
 */
export interface SubprocessExtraInfo {
  /** The child's process id. */
  pid: number;
  /** The `Deno.ChildProcess`. */
  subprocess: Deno.ChildProcess;
}

/**
 * What every transport offers: extra information, closing, and the protocol
 * it drives.
 *
 * @example Close a transport that is not closing yet
 * ```ts
 * import type { BaseTransport } from "@aio/protocols";
 *
 * function closeOnce(transport: BaseTransport): void {
 *   if (!transport.isClosing()) transport.close();
 * }
 * ```
 */
export interface BaseTransport {
  /**
   * Returns transport-specific information: `peername`, `sockname`, `conn`
   * and others by transport kind; `defaultValue` for an unknown name.
   */
  getExtraInfo(name: string, defaultValue?: unknown): unknown;
  /** Returns `true` once the transport is closing or closed. */
  isClosing(): boolean;
  /** Flushes what is buffered, then closes; idempotent. */
  close(): void;
  /** Switches the protocol that gets the next callbacks. */
  setProtocol(protocol: BaseProtocol): void;
  /** Returns the protocol that gets the callbacks. */
  getProtocol(): BaseProtocol;
}

/**
 * The read side of a transport: pause and resume delivery.
 *
 * @example Stop reading while the application catches up
 * ```ts
 * import type { ReadTransport } from "@aio/protocols";
 *
 * async function throttle(transport: ReadTransport, work: Promise<void>) {
 *   transport.pauseReading();
 *   await work;
 *   transport.resumeReading();
 * }
 * ```
 */
export interface ReadTransport extends BaseTransport {
  /** Returns `true` while the transport delivers data. */
  isReading(): boolean;
  /** Stops delivering data until `resumeReading()`; no byte is lost. */
  pauseReading(): void;
  /** Delivers data again, first any that arrived while paused. */
  resumeReading(): void;
}

/**
 * The write side of a transport: buffered writes with flow control.
 *
 * @example Write a reply and half-close
 * ```ts
 * import type { WriteTransport } from "@aio/protocols";
 *
 * function reply(transport: WriteTransport, body: Uint8Array): void {
 *   transport.write(body);
 *   if (transport.canWriteEof()) transport.writeEof();
 * }
 * ```
 */
export interface WriteTransport extends BaseTransport {
  /**
   * Queues `data` and never blocks. Returns `false` while the buffer is over
   * the high-water mark. The caller must not change `data` until
   * `getWriteBufferSize()` is 0.
   */
  write(data: Uint8Array): boolean;
  /** Queues every chunk so that they go out together. */
  writelines(chunks: Iterable<Uint8Array>): boolean;
  /** Flushes what is buffered, then half-closes the write side. */
  writeEof(): void;
  /** Returns `true` if `writeEof()` is possible. */
  canWriteEof(): boolean;
  /** Closes at once and drops the buffer; idempotent. */
  abort(): void;
  /** Returns the bytes accepted by `write()` and not yet written. */
  getWriteBufferSize(): number;
  /** Returns the flow-control marks. */
  getWriteBufferLimits(): WriteBufferLimits;
  /**
   * Sets the flow-control marks: `high` defaults to `4 * low` (64 KiB when
   * neither is given) and `low` to `high / 4`.
   */
  setWriteBufferLimits(limits?: Partial<WriteBufferLimits>): void;
}

/**
 * A bidirectional byte stream: a TCP, Unix or TLS connection.
 *
 * @example Echo back, and tell who the peer is
 * ```ts
 * import type { Protocol, Transport } from "@aio/protocols";
 *
 * function echo(): Protocol {
 *   let transport: Transport;
 *   return {
 *     connectionMade(t) {
 *       transport = t;
 *       const peer: Deno.Addr | undefined = t.getExtraInfo("peername");
 *       console.log("connection from", peer);
 *     },
 *     dataReceived(data) { transport.write(data); },
 *   };
 * }
 * ```
 */
export interface Transport extends ReadTransport, WriteTransport {
  /**
   * Returns `peername`, `sockname` (`Deno.Addr`), `conn` (the `Deno.Conn`)
   * and, over TLS, `alpnProtocol`; `defaultValue` for an unknown name.
   */
  getExtraInfo<K extends keyof StreamExtraInfo>(
    name: K,
    defaultValue?: StreamExtraInfo[K],
  ): StreamExtraInfo[K] | undefined;
  /** Returns `defaultValue` for a name the transport does not know. */
  getExtraInfo(name: string, defaultValue?: unknown): unknown;
  /** Returns the protocol that gets the callbacks. */
  getProtocol(): StreamProtocol;
  /** Switches the protocol, between `Protocol` and `BufferedProtocol` too. */
  setProtocol(protocol: StreamProtocol): void;
  /**
   * Calls the protocol's `idleTimedOut()` once nothing was read or written
   * for `ms` milliseconds, counted from now (the transport closes if the
   * protocol has no `idleTimedOut`); 0 turns it off. After it fired, the
   * next read or write starts the count again. While the transport is
   * closing (flushing after `close()`), an idle period with nothing written
   * aborts it instead: the peer stopped reading.
   *
   * @throws {TypeError} Unless `ms` is a number.
   * @throws {RangeError} Unless it is from 0 to 2^31 - 1.
   */
  setIdleTimeout(ms: number): void;
}

/**
 * A protocol a stream transport can drive: a {@linkcode Protocol} or a
 * {@linkcode BufferedProtocol} (an object with `getBuffer`).
 *
 * @typeParam T The transport `connectionMade` gets: a `Transport` from a
 * socket, a `ReadTransport` from `connectReadPipe`.
 *
 * @example A factory that picks the protocol kind
 * ```ts
 * import {
 *   BufferedProtocolBase,
 *   createServer,
 *   ProtocolBase,
 *   type StreamProtocol,
 * } from "@aio/protocols";
 *
 * const zeroCopy = true;
 * const factory = (): StreamProtocol =>
 *   zeroCopy ? new BufferedProtocolBase() : new ProtocolBase();
 * await using server = await createServer(factory, {
 *   hostname: "127.0.0.1",
 *   port: 0,
 * });
 * ```
 */
export type StreamProtocol<T extends ReadTransport = Transport> =
  | Protocol<T>
  | BufferedProtocol<T>;

/**
 * Where `sendto()` sends a datagram: the `Deno.NetAddr` a datagram came
 * from, or a hostname (or IP address) and a port.
 */
export interface DatagramDestination {
  /** A hostname or an IP address. */
  hostname: string;
  /** The UDP port. */
  port: number;
  /** `"udp"`, as in a `Deno.NetAddr`; not needed. */
  transport?: Deno.NetAddr["transport"];
}

/**
 * A datagram (UDP) endpoint: sends whole datagrams with flow control and
 * delivers each one received to `datagramReceived` with its sender.
 *
 * @example Answer each datagram with the same bytes
 * ```ts
 * import type { DatagramProtocol, DatagramTransport } from "@aio/protocols";
 *
 * function echo(): DatagramProtocol {
 *   let transport: DatagramTransport;
 *   return {
 *     connectionMade(t) { transport = t; },
 *     datagramReceived(data, addr) { transport.sendto(data, addr); },
 *   };
 * }
 * ```
 */
export interface DatagramTransport extends ReadTransport {
  /**
   * Returns `peername` (the `remoteAddr`, or `undefined`), `sockname` (the
   * bound address) and `conn` (the `Deno.DatagramConn`).
   */
  getExtraInfo<K extends keyof DatagramExtraInfo>(
    name: K,
    defaultValue?: DatagramExtraInfo[K],
  ): DatagramExtraInfo[K] | undefined;
  /** Returns `defaultValue` for a name the transport does not know. */
  getExtraInfo(name: string, defaultValue?: unknown): unknown;
  /**
   * Queues one datagram to `addr`, or to the endpoint's `remoteAddr` when
   * `addr` is omitted, and returns at once. `data` is copied (as asyncio's
   * `bytes(data)`): the caller may reuse it at once.
   */
  sendto(data: Uint8Array, addr?: DatagramDestination): void;
  /** Closes at once and drops the queued datagrams; idempotent. */
  abort(): void;
  /** Returns the size of the queued datagrams: bytes plus 8 for each. */
  getWriteBufferSize(): number;
  /** Returns the flow-control marks. */
  getWriteBufferLimits(): WriteBufferLimits;
  /** Sets the flow-control marks, as for a stream transport. */
  setWriteBufferLimits(limits?: Partial<WriteBufferLimits>): void;
  /** Returns the protocol that gets the callbacks. */
  getProtocol(): DatagramProtocol;
  /** Switches the protocol that gets the next callbacks. */
  setProtocol(protocol: DatagramProtocol): void;
}

/**
 * A child process and its pipes: asyncio's `SubprocessTransport`.
 *
 * @example Stop a child that runs too long
 * ```ts
 * import type { SubprocessTransport } from "@aio/protocols";
 *
 * // Returns what to call from processExited().
 * function stopAfter(transport: SubprocessTransport, ms: number): () => void {
 *   const timer = setTimeout(() => transport.terminate(), ms);
 *   return () => clearTimeout(timer);
 * }
 * ```
 */
export interface SubprocessTransport extends BaseTransport {
  /** Returns `pid` and `subprocess` (the `Deno.ChildProcess`). */
  getExtraInfo<K extends keyof SubprocessExtraInfo>(
    name: K,
    defaultValue?: SubprocessExtraInfo[K],
  ): SubprocessExtraInfo[K] | undefined;
  /** Returns `defaultValue` for a name the transport does not know. */
  getExtraInfo(name: string, defaultValue?: unknown): unknown;
  /** Returns the child's process id. */
  getPid(): number;
  /**
   * Returns the exit code once the child exited, `-N` if signal `N` ended
   * it, and `null` while it runs.
   */
  getReturncode(): number | null;
  /**
   * Returns the transport of the child's stdin, or `undefined` if it is
   * not piped.
   */
  getPipeTransport(fd: 0): WriteTransport | undefined;
  /**
   * Returns the transport of the child's stdout (1) or stderr (2), or
   * `undefined` if it is not piped.
   */
  getPipeTransport(fd: 1 | 2): ReadTransport | undefined;
  /**
   * Returns the transport of a piped stream, or `undefined`; `undefined`
   * too for an `fd` other than 0, 1 or 2, as asyncio's `None`.
   */
  getPipeTransport(fd: 0 | 1 | 2): WriteTransport | ReadTransport | undefined;
  /** Sends `signal` to the child; does nothing once it exited. */
  sendSignal(signal: Deno.Signal): void;
  /** Sends SIGTERM; does nothing once the child exited. */
  terminate(): void;
  /** Sends SIGKILL; does nothing once the child exited. */
  kill(): void;
  /** Returns the protocol that gets the callbacks. */
  getProtocol(): SubprocessProtocol;
  /** Switches the protocol that gets the next callbacks. */
  setProtocol(protocol: SubprocessProtocol): void;
}
