import type { BaseProtocol } from "../protocols/base_protocol.ts";
import type { BufferedProtocol } from "../protocols/buffered_protocol.ts";
import type { DatagramProtocol } from "../protocols/datagram_protocol.ts";
import type { Protocol } from "../protocols/protocol.ts";
import type { SubprocessProtocol } from "../protocols/subprocess_protocol.ts";

/** What a transport passes to an {@linkcode ErrorHandler} with the error. */
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
 */
export type ErrorHandler = (error: unknown, context: ErrorContext) => void;

/** The write buffer's flow-control marks, in bytes. */
export interface WriteBufferLimits {
  /** At or below this, a paused protocol gets `resumeWriting`. */
  low: number;
  /** Strictly over this, the protocol gets `pauseWriting`. */
  high: number;
}

/**
 * What every transport offers: extra information, closing, and the protocol
 * it drives.
 *
 * @example Read the peer's address
 * ```ts
 * import type { BaseTransport } from "@aio/protocols";
 *
 * function describe(transport: BaseTransport): string {
 *   const peer = transport.getExtraInfo("peername") as Deno.NetAddr;
 *   return `${peer.hostname}:${peer.port}`;
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
  writeLines(chunks: Iterable<Uint8Array>): boolean;
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
 * A bidirectional byte stream.
 *
 * @example Echo back and close on EOF
 * ```ts
 * import type { Protocol, Transport } from "@aio/protocols";
 *
 * function echo(): Protocol {
 *   let transport: Transport;
 *   return {
 *     connectionMade(t) { transport = t as Transport; },
 *     dataReceived(data) { transport.write(data); },
 *   };
 * }
 * ```
 */
export interface Transport extends ReadTransport, WriteTransport {
  /** Returns the protocol that gets the callbacks. */
  getProtocol(): StreamProtocol;
  /** Switches the protocol, between `Protocol` and `BufferedProtocol` too. */
  setProtocol(protocol: StreamProtocol): void;
}

/** A protocol a stream transport can drive. */
export type StreamProtocol = Protocol | BufferedProtocol;

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
 *     connectionMade(t) { transport = t as DatagramTransport; },
 *     datagramReceived(data, addr) { transport.sendto(data, addr); },
 *   };
 * }
 * ```
 */
export interface DatagramTransport extends ReadTransport {
  /**
   * Queues one datagram to `addr`, or to the endpoint's `remoteAddr` when
   * `addr` is omitted, and returns at once. The caller must not change
   * `data` until `getWriteBufferSize()` is 0.
   */
  sendto(data: Uint8Array, addr?: Deno.NetAddr): void;
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
  /** Returns the child's process id. */
  getPid(): number;
  /**
   * Returns the exit code once the child exited, `-N` if signal `N` ended
   * it, and `null` while it runs.
   */
  getReturncode(): number | null;
  /**
   * Returns the transport of the child's stdin (0, a `WriteTransport`),
   * stdout (1) or stderr (2, `ReadTransport`s), or `undefined` if that
   * stream is not piped.
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
