import { checkBytes } from "../_checks.ts";
import type { DatagramProtocol } from "../protocols/datagram_protocol.ts";
import {
  DatagramEndpoint,
  type DatagramSocket,
  toUdpAddress,
} from "./_datagram_transport.ts";
import { HeldWrites } from "./_held_writes.ts";
import type {
  DatagramDestination,
  DatagramExtraInfo,
  DatagramTransport,
  ErrorHandler,
  WriteBufferLimits,
} from "./transport.ts";

/** Options for {@linkcode MemoryDatagramTransport}. */
export interface MemoryDatagramTransportOptions {
  /** The address the endpoint is bound to (default 127.0.0.1:9). */
  localAddr?: Deno.NetAddr;
  /**
   * The peer: `sendto(data)` goes there, and only its datagrams are
   * delivered, as with `createDatagramEndpoint`'s `remoteAddr`.
   */
  remoteAddr?: Deno.NetAddr;
  /**
   * `false`: sent datagrams stay queued and flow control applies, as when
   * the socket cannot send (default `true`; see
   * {@linkcode MemoryDatagramTransport.setSending}).
   */
  sending?: boolean;
  /** Receives errors thrown by protocol callbacks; default: stderr. */
  onError?: ErrorHandler;
}

/** One datagram the protocol sent. */
export interface SentDatagram {
  /** Its bytes (a copy). */
  data: Uint8Array;
  /** Where it went. */
  addr: Deno.NetAddr;
}

/** A socket in memory: it keeps what is sent and receives nothing itself. */
class MemoryDatagramSocket implements DatagramSocket {
  readonly addr: Deno.NetAddr;
  sent: SentDatagram[] = [];
  sending: boolean;
  closed = false;
  #waiting = new HeldWrites<SentDatagram>();

  constructor(addr: Deno.NetAddr, sending: boolean) {
    this.addr = addr;
    this.sending = sending;
  }

  trySend(data: Uint8Array, addr: Deno.NetAddr): boolean {
    if (!this.sending || this.closed) return false;
    this.sent.push({ data: data.slice(), addr });
    return true;
  }

  send(data: Uint8Array, addr: Deno.NetAddr): Promise<number> {
    if (this.closed) {
      return Promise.reject(
        new Deno.errors.BadResource("The socket is closed"),
      );
    }
    if (this.trySend(data, addr)) return Promise.resolve(data.byteLength);
    return this.#waiting.hold({ data: data.slice(), addr });
  }

  receive(): Promise<[Uint8Array<ArrayBuffer>, Deno.Addr]> {
    return Promise.reject(
      new Deno.errors.NotSupported("Memory sockets are fed"),
    );
  }

  close(): void {
    this.closed = true;
    this.#waiting.drop();
  }

  setSending(sending: boolean): void {
    this.sending = sending;
    if (!sending) return;
    this.#waiting.release((datagram) => {
      this.sent.push(datagram);
      return datagram.data.byteLength;
    });
  }
}

/**
 * A `DatagramTransport` in memory, for testing a datagram protocol without
 * a socket: it calls `connectionMade` at once, keeps every datagram the
 * protocol sends ({@linkcode sent}), and lets the test deliver datagrams
 * and receive errors ({@linkcode receive}, {@linkcode receiveError}).
 *
 * It is the module's datagram transport over a socket in memory, so the
 * rest is as over UDP: `remoteAddr` filtering, pausing, flow control on
 * queued datagrams (bytes plus 8 each) while {@linkcode setSending} is
 * `false`, and `connectionLost` once, last. While sends go out, each
 * datagram is taken at once: nothing is queued and `pauseWriting` does not
 * fire, where a busy socket may queue some.
 *
 * @example Test an echo protocol
 * ```ts
 * import { DatagramProtocolBase } from "@aio/protocols";
 * import { MemoryDatagramTransport } from "@aio/protocols/testing";
 * import assert from "node:assert/strict";
 *
 * class Echo extends DatagramProtocolBase {
 *   override datagramReceived(data: Uint8Array, addr: Deno.NetAddr): void {
 *     this.transport?.sendto(data, addr);
 *   }
 * }
 *
 * const transport = new MemoryDatagramTransport(new Echo());
 * const peer: Deno.NetAddr = { transport: "udp", hostname: "10.0.0.2", port: 53 };
 * transport.receive(new Uint8Array([1, 2]), peer);
 * assert.deepEqual(transport.sent(), [{ data: new Uint8Array([1, 2]), addr: peer }]);
 * ```
 */
export class MemoryDatagramTransport implements DatagramTransport {
  #socket: MemoryDatagramSocket;
  #inner: DatagramEndpoint;
  #taken = 0;

  /**
   * Drives `protocol` in memory; `connectionMade` runs before this
   * returns, with the transport ready for use.
   *
   * @param protocol The datagram protocol.
   * @param options The addresses, whether sends go out, error reporting.
   */
  constructor(
    protocol: DatagramProtocol,
    options?: MemoryDatagramTransportOptions,
  ) {
    this.#socket = new MemoryDatagramSocket(
      options?.localAddr ??
        { transport: "udp", hostname: "127.0.0.1", port: 9 },
      options?.sending ?? true,
    );
    this.#inner = new DatagramEndpoint(this.#socket, protocol, {
      remoteAddr: options?.remoteAddr,
      onError: options?.onError,
      pushed: true,
      immediate: true,
      facade: this,
    });
    // Now that this transport is whole, the protocol may use it.
    this.#inner.start();
  }

  /**
   * Returns the datagrams sent since the last `sent({ clear: true })`.
   *
   * @param options `clear: true` forgets them afterwards.
   */
  sent(options?: { clear?: boolean }): SentDatagram[] {
    const sent = this.#socket.sent.slice(this.#taken);
    if (options?.clear) this.#taken = this.#socket.sent.length;
    return sent;
  }

  /**
   * Delivers a datagram from `addr`: `datagramReceived` runs now unless
   * paused. The transport copies `data`.
   *
   * @throws {TypeError} Unless `data` is a `Uint8Array` and `addr` an
   * address (`{ hostname, port }`).
   * @throws {RangeError} For a port out of range.
   */
  receive(data: Uint8Array, addr: Deno.NetAddr): void {
    const cannot = "Cannot receive datagram";
    checkBytes(data, "data", "receive datagram");
    this.#inner.push(data, toUdpAddress(addr, cannot));
  }

  /** Tells the protocol a receive failed: `errorReceived(error)`. */
  receiveError(error: Error): void {
    this.#inner.pushError(error);
  }

  /**
   * Says whether sends go out. While they do not, datagrams stay queued
   * (`getWriteBufferSize()` grows, `pauseWriting` over the high mark).
   */
  setSending(sending: boolean): void {
    this.#socket.setSending(sending);
  }

  /** Returns `sockname`, `peername` (the `remoteAddr`), or `defaultValue`. */
  getExtraInfo<K extends keyof DatagramExtraInfo>(
    name: K,
    defaultValue?: DatagramExtraInfo[K],
  ): DatagramExtraInfo[K] | undefined;
  getExtraInfo(name: string, defaultValue?: unknown): unknown;
  getExtraInfo(name: string, defaultValue?: unknown): unknown {
    return name === "conn"
      ? defaultValue
      : this.#inner.getExtraInfo(name, defaultValue);
  }

  /** Returns `true` once closing. */
  isClosing(): boolean {
    return this.#inner.isClosing();
  }

  /** Sends what is queued, then closes. */
  close(): void {
    this.#inner.close();
  }

  /** Closes at once, dropping the queue. */
  abort(): void {
    this.#inner.abort();
  }

  /** Returns `true` while datagrams are delivered. */
  isReading(): boolean {
    return this.#inner.isReading();
  }

  /** Holds what `receive()` gives until `resumeReading()`. */
  pauseReading(): void {
    this.#inner.pauseReading();
  }

  /** Delivers what was held, in a later microtask. */
  resumeReading(): void {
    this.#inner.resumeReading();
  }

  /** Switches the protocol. */
  setProtocol(protocol: DatagramProtocol): void {
    this.#inner.setProtocol(protocol);
  }

  /** Returns the protocol. */
  getProtocol(): DatagramProtocol {
    return this.#inner.getProtocol();
  }

  /** Copies and queues one datagram, as over UDP. */
  sendto(data: Uint8Array, addr?: DatagramDestination): void {
    this.#inner.sendto(data, addr);
  }

  /** Returns the queued datagrams' size: bytes plus 8 each. */
  getWriteBufferSize(): number {
    return this.#inner.getWriteBufferSize();
  }

  /** Returns the flow-control marks. */
  getWriteBufferLimits(): WriteBufferLimits {
    return this.#inner.getWriteBufferLimits();
  }

  /** Sets the flow-control marks. */
  setWriteBufferLimits(limits?: Partial<WriteBufferLimits>): void {
    this.#inner.setWriteBufferLimits(limits);
  }
}
