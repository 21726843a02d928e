import type { DatagramProtocol } from "../protocols/datagram_protocol.ts";
import { checkFactory, checkPort, closeQuietly } from "./_conn.ts";
import { WriteFlowControl } from "./_flow_control.ts";
import { copyOut } from "./_read_buffer.ts";
import { checkBytes } from "./_write_queue.ts";
import {
  callReporting,
  describeValue,
  report,
  reportCallbackError,
  reportToStderr,
  toError,
  warnDroppedWrites,
} from "./_report.ts";
import type {
  DatagramTransport,
  ErrorHandler,
  WriteBufferLimits,
} from "./transport.ts";

/** An address to bind to or send to: a hostname (or IP) and a port. */
export interface DatagramAddress {
  /** A hostname or an IP address; default for `localAddr`: all interfaces. */
  hostname?: string;
  /** The UDP port; 0 (for `localAddr`) picks a free one. */
  port: number;
}

/** Options for {@linkcode createDatagramEndpoint}. */
export interface DatagramEndpointOptions {
  /**
   * Where to bind. Default: port 0 on all interfaces of `remoteAddr`'s
   * address family.
   */
  localAddr?: DatagramAddress;
  /**
   * The peer: `sendto(data)` sends there, `sendto` to any other address
   * throws, and datagrams from other senders are dropped, as for a
   * connected socket in asyncio (Deno has no connected UDP sockets; a name
   * is resolved once, here).
   */
  remoteAddr?: DatagramAddress & { hostname: string };
  /** Binds even if another socket is bound to the address (SO_REUSEADDR). */
  reuseAddress?: boolean;
  /** Loops sent multicast datagrams back to this socket. */
  loopback?: boolean;
  /**
   * asyncio's `allow_broadcast`. Deno enables SO_BROADCAST on every UDP
   * socket, so `true` changes nothing and `false` throws
   * `Deno.errors.NotSupported`.
   */
  broadcast?: boolean;
  /** Receives errors thrown by protocol callbacks; default: stderr. */
  onError?: ErrorHandler;
}

/** The largest UDP payload (over IPv6; 65,507 bytes over IPv4). */
const MAX_DATAGRAM = 65_535 - 8;
/** What each queued datagram counts for beyond its bytes, as asyncio. */
const HEADER_SIZE = 8;
/** Receive errors in a row after which the endpoint gives up and closes. */
const MAX_RECEIVE_ERRORS = 16;

/** One queued datagram. */
interface Outgoing {
  data: Uint8Array;
  addr: Deno.NetAddr;
}

/** Settles once an endpoint's `connectionMade` has run: with what it threw. */
const madeOf = new WeakMap<DatagramEndpoint, Promise<Error | undefined>>();

/**
 * A datagram transport over a `Deno.DatagramConn` (UDP): asyncio's
 * datagram transport.
 *
 * One receive loop delivers each datagram, copied into memory the protocol
 * owns, to `datagramReceived` with its sender. `sendto` queues; one pump
 * sends the queue in order, with asyncio's flow control on the bytes
 * queued. A failed send or receive goes to `errorReceived` and the
 * endpoint goes on.
 *
 * Most code gets one from {@linkcode createDatagramEndpoint}.
 * `connectionMade` runs in a microtask after construction, then receiving
 * starts.
 */
export class DatagramEndpoint implements DatagramTransport {
  #conn: Deno.DatagramConn;
  #protocol: DatagramProtocol;
  #remote: Deno.NetAddr | undefined;
  #extra: Record<string, unknown>;
  #onError: ErrorHandler;
  #flow: WriteFlowControl;

  #queue: (Outgoing | undefined)[] = [];
  #queueHead = 0;
  #size = 0;
  #pump: Promise<void> | undefined;
  #reader: Promise<void>;
  #buffer: Uint8Array | undefined;
  #receiving = false;
  #paused = false;
  /** A datagram received while paused, delivered on resume. */
  #held: { data: Uint8Array; sender: Deno.NetAddr } | undefined;
  #closing = false;
  #finishing = false;
  #made = false;
  #lostWrites = 0;

  /**
   * Starts driving `protocol` over `conn`.
   *
   * @param conn A UDP socket; the transport owns it from now on.
   * @param protocol The protocol.
   * @param options `remoteAddr` (an IP address, not a name) and error
   * reporting.
   */
  constructor(
    conn: Deno.DatagramConn,
    protocol: DatagramProtocol,
    options: { remoteAddr?: Deno.NetAddr; onError?: ErrorHandler } = {},
  ) {
    checkProtocol(protocol);
    this.#conn = conn;
    this.#protocol = protocol;
    this.#remote = options.remoteAddr;
    this.#onError = options.onError ?? reportToStderr;
    this.#extra = { peername: this.#remote, sockname: conn.addr, conn };
    this.#flow = new WriteFlowControl(
      () => this.#callFlowControl("pauseWriting"),
      () => this.#callFlowControl("resumeWriting"),
    );
    const made = Promise.withResolvers<Error | undefined>();
    madeOf.set(this, made.promise);
    this.#reader = this.#start(made.resolve);
  }

  /**
   * Returns `peername` (the `remoteAddr`, or `undefined`), `sockname` (the
   * bound `Deno.NetAddr`), `conn` (the `Deno.DatagramConn`), or
   * `defaultValue`.
   */
  getExtraInfo(name: string, defaultValue?: unknown): unknown {
    return Object.hasOwn(this.#extra, name) ? this.#extra[name] : defaultValue;
  }

  /** Returns `true` once `close()` or `abort()` was called. */
  isClosing(): boolean {
    return this.#closing;
  }

  /** Returns `true` while datagrams are delivered: not paused or closing. */
  isReading(): boolean {
    return !this.#closing && !this.#paused;
  }

  /**
   * Stops delivering datagrams until `resumeReading()`. A receive already
   * in flight is held; later datagrams wait in the socket's buffer, where
   * the kernel drops what does not fit, as UDP does.
   */
  pauseReading(): void {
    if (this.#closing) return;
    this.#paused = true;
  }

  /** Delivers datagrams again, first the one held while paused. */
  resumeReading(): void {
    if (this.#closing || !this.#paused) return;
    this.#paused = false;
    if (this.#made && !this.#receiving) this.#reader = this.#receiveLoop();
  }

  /** Switches the protocol for the next callbacks. */
  setProtocol(protocol: DatagramProtocol): void {
    checkProtocol(protocol);
    this.#protocol = protocol;
  }

  /** Returns the protocol that gets the callbacks. */
  getProtocol(): DatagramProtocol {
    return this.#protocol;
  }

  /**
   * Queues one datagram and returns at once. Without `addr` it goes to
   * `remoteAddr`. Dropped after `close()`.
   *
   * @throws {TypeError} If `data` is not a `Uint8Array`, `addr` is not an
   * address, `addr` is not `remoteAddr` when one is set, or neither is
   * given.
   * @throws {RangeError} If `data` is larger than a UDP datagram can be.
   */
  sendto(data: Uint8Array, addr?: Deno.NetAddr): void {
    checkBytes(data, "Cannot send datagram");
    if (data.byteLength > MAX_DATAGRAM) {
      throw new RangeError(
        `Cannot send datagram: ${data.byteLength} bytes is over the UDP limit of ${MAX_DATAGRAM}`,
      );
    }
    const to = this.#destination(addr);
    if (this.#closing) {
      this.#dropWrite();
      return;
    }
    this.#queue.push({ data, addr: to });
    this.#size += data.byteLength + HEADER_SIZE;
    this.#pump ??= this.#runPump();
    this.#flow.grew(this.#size);
  }

  /** Stops receiving, sends every queued datagram, then closes. */
  close(): void {
    if (this.#closing) return;
    this.#closing = true;
    this.#held = undefined;
    if (this.#pump === undefined) this.#finish(undefined);
  }

  /** Closes at once and drops the queued datagrams. */
  abort(): void {
    this.#forceClose(undefined);
  }

  /**
   * Returns the size of the datagrams queued and not yet sent: their bytes
   * plus 8 for each, as asyncio counts.
   */
  getWriteBufferSize(): number {
    return this.#size;
  }

  /** Returns the flow-control marks. */
  getWriteBufferLimits(): WriteBufferLimits {
    return this.#flow.limits();
  }

  /**
   * Sets the flow-control marks as asyncio does and re-checks the queue
   * against them at once.
   *
   * @throws {RangeError} Unless `high >= low >= 0`.
   */
  setWriteBufferLimits(limits?: Partial<WriteBufferLimits>): void {
    this.#flow.setLimits(limits, this.#size);
  }

  /** Checks `addr` against `remoteAddr`; returns where to send. */
  #destination(addr: Deno.NetAddr | undefined): Deno.NetAddr {
    const cannot = "Cannot send datagram";
    if (addr !== undefined) {
      const { hostname, port } = checkAddress(addr, cannot);
      addr = { transport: "udp", hostname, port };
    }
    const remote = this.#remote;
    if (remote === undefined) {
      if (addr === undefined) {
        throw new TypeError(
          `${cannot}: no address given and the endpoint has no remoteAddr`,
        );
      }
      return addr;
    }
    if (addr !== undefined && !sameAddress(addr, remote)) {
      throw new TypeError(
        `${cannot}: the endpoint sends only to its remoteAddr ${
          formatAddress(remote)
        }, not ${formatAddress(addr)}`,
      );
    }
    return remote;
  }

  // Receive side.

  async #start(made: (error: Error | undefined) => void): Promise<void> {
    await undefined;
    try {
      this.#protocol.connectionMade?.(this);
    } catch (error) {
      this.#fail(error, "connectionMade");
      made(toError(error));
      return;
    }
    this.#made = true;
    // A sendto() before connectionMade may have gone over the high mark.
    if (this.#flow.paused) this.#callFlowControl("pauseWriting");
    made(undefined);
    await this.#receiveLoop();
  }

  async #receiveLoop(): Promise<void> {
    this.#receiving = true;
    try {
      await this.#receive();
    } finally {
      this.#receiving = false;
    }
  }

  async #receive(): Promise<void> {
    const held = this.#held;
    if (held !== undefined) {
      this.#held = undefined;
      await undefined;
      if (this.#closing) return;
      if (this.#paused) {
        this.#held = held;
        return;
      }
      if (!this.#deliver(held.data, held.sender)) return;
    }
    const buffer = this.#buffer ??= new Uint8Array(MAX_DATAGRAM);
    let errors = 0;
    while (!this.#closing && !this.#paused) {
      let received: [Uint8Array, Deno.Addr];
      try {
        received = await this.#conn.receive(buffer);
      } catch (error) {
        if (this.#closing) return;
        if (
          error instanceof Deno.errors.BadResource ||
          ++errors > MAX_RECEIVE_ERRORS
        ) {
          this.#forceClose(toError(error));
          return;
        }
        if (!this.#errorReceived(error, "receive")) return;
        continue;
      }
      errors = 0;
      if (this.#closing) return;
      const [view, from] = received;
      const sender = from as Deno.NetAddr;
      if (this.#remote !== undefined && !sameAddress(sender, this.#remote)) {
        continue;
      }
      const data = copyOut(view, view.byteLength);
      if (this.#paused) {
        this.#held = { data, sender };
        return;
      }
      if (!this.#deliver(data, sender)) return;
    }
  }

  /** Hands one datagram to the protocol; `false` if that threw. */
  #deliver(data: Uint8Array, sender: Deno.NetAddr): boolean {
    try {
      this.#protocol.datagramReceived(data, sender);
    } catch (error) {
      this.#fail(error, "datagramReceived");
      return false;
    }
    return true;
  }

  /** Tells the protocol a send or receive failed; `false` if that threw. */
  #errorReceived(error: unknown, during: string): boolean {
    const exc = toError(error);
    if (this.#protocol.errorReceived === undefined) {
      report(this.#onError, exc, {
        message:
          `Error: datagram ${during} failed (the protocol has no errorReceived)`,
        transport: this,
        protocol: this.#protocol,
      });
      return true;
    }
    try {
      this.#protocol.errorReceived(exc);
    } catch (thrown) {
      this.#fail(thrown, "errorReceived");
      return false;
    }
    return true;
  }

  // Send side.

  async #runPump(): Promise<void> {
    // Start after the current task, as the stream transport's pump does.
    await undefined;
    while (this.#queueHead < this.#queue.length) {
      const outgoing = this.#queue[this.#queueHead]!;
      this.#queue[this.#queueHead++] = undefined;
      try {
        await this.#conn.send(outgoing.data, outgoing.addr);
      } catch (error) {
        if (this.#finishing) return;
        if (error instanceof Deno.errors.BadResource) {
          this.#forceClose(toError(error));
          return;
        }
        if (!this.#errorReceived(error, "send")) return;
      }
      if (this.#finishing) return;
      this.#size -= outgoing.data.byteLength + HEADER_SIZE;
      this.#flow.shrank(this.#size);
    }
    this.#queue = [];
    this.#queueHead = 0;
    this.#pump = undefined;
    if (this.#closing) this.#finish(undefined);
  }

  #dropWrite(): void {
    warnDroppedWrites(++this.#lostWrites, "DatagramEndpoint.sendto()");
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
    this.#held = undefined;
    this.#queue = [];
    this.#queueHead = 0;
    this.#size = 0;
    this.#finish(exc);
  }

  /** Closes the socket, waits for the receive and send in flight, reports. */
  #finish(exc: Error | undefined): void {
    if (this.#finishing) return;
    this.#finishing = true;
    this.#closing = true;
    closeQuietly(this.#conn);
    Promise.all([this.#reader, this.#pump]).then(() => {
      callReporting(this.#onError, this, this.#protocol, "connectionLost", exc);
    });
  }

  #callFlowControl(callback: "pauseWriting" | "resumeWriting"): void {
    if (this.#finishing || !this.#made) return;
    callReporting(this.#onError, this, this.#protocol, callback);
  }
}

/**
 * Opens a UDP socket and drives a protocol from `factory` over it:
 * asyncio's `loop.create_datagram_endpoint()`.
 *
 * Needs Deno's unstable UDP API: run with `--unstable-net`, or put
 * `"unstable": ["net"]` in deno.json. Resolves once `connectionMade` has
 * run; rejects if binding fails or `connectionMade` throws.
 *
 * @param factory Makes the protocol.
 * @param options Where to bind, the peer, and socket options.
 * @returns The transport and the protocol.
 * @throws {Deno.errors.NotSupported} Without `--unstable-net`, or with
 * `broadcast: false`.
 * @throws {TypeError} Without `localAddr` and `remoteAddr`, or with a
 * malformed address.
 *
 * @example Ask a UDP echo server and wait for the answer
 * ```ts
 * import { createDatagramEndpoint, DatagramProtocolBase } from "@aio/protocols";
 * import assert from "node:assert/strict";
 *
 * class Echo extends DatagramProtocolBase {
 *   override datagramReceived(data: Uint8Array, addr: Deno.NetAddr): void {
 *     server.sendto(data, addr);
 *   }
 * }
 * const [server] = await createDatagramEndpoint(() => new Echo(), {
 *   localAddr: { hostname: "127.0.0.1", port: 0 },
 * });
 * const { port } = server.getExtraInfo("sockname") as Deno.NetAddr;
 *
 * const answer = Promise.withResolvers<string>();
 * class Client extends DatagramProtocolBase {
 *   override datagramReceived(data: Uint8Array): void {
 *     answer.resolve(new TextDecoder().decode(data));
 *   }
 * }
 * const [client] = await createDatagramEndpoint(() => new Client(), {
 *   remoteAddr: { hostname: "127.0.0.1", port },
 * });
 * client.sendto(new TextEncoder().encode("ping"));
 * assert.equal(await answer.promise, "ping");
 * client.close();
 * server.close();
 * ```
 */
export async function createDatagramEndpoint<P extends DatagramProtocol>(
  factory: () => P,
  options: DatagramEndpointOptions,
): Promise<[DatagramTransport, P]> {
  const cannot = "Cannot create datagram endpoint";
  checkFactory(factory, "create datagram endpoint");
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`${cannot}: options must be an object`);
  }
  if (typeof Deno.listenDatagram !== "function") {
    throw new Deno.errors.NotSupported(
      `${cannot}: Deno's UDP API is unstable; run with --unstable-net, or add "unstable": ["net"] to deno.json`,
    );
  }
  if (options.broadcast === false) {
    throw new Deno.errors.NotSupported(
      `${cannot}: Deno enables broadcast (SO_BROADCAST) on every UDP socket and cannot turn it off`,
    );
  }
  if (options.localAddr === undefined && options.remoteAddr === undefined) {
    throw new TypeError(`${cannot}: give localAddr, remoteAddr or both`);
  }
  const remote = options.remoteAddr === undefined
    ? undefined
    : await resolveRemote(checkAddress(options.remoteAddr, cannot));
  const local = options.localAddr === undefined
    ? { hostname: remote!.hostname.includes(":") ? "::" : "0.0.0.0", port: 0 }
    : checkAddress(options.localAddr, cannot, true);
  const conn = Deno.listenDatagram({
    transport: "udp",
    hostname: local.hostname,
    port: local.port,
    ...(options.reuseAddress === undefined
      ? {}
      : { reuseAddress: options.reuseAddress }),
    ...(options.loopback === undefined ? {} : { loopback: options.loopback }),
  });
  let protocol: P;
  try {
    protocol = factory();
    const transport = new DatagramEndpoint(conn, protocol, {
      ...(remote === undefined ? {} : { remoteAddr: remote }),
      ...(options.onError === undefined ? {} : { onError: options.onError }),
    });
    const failed = await madeOf.get(transport);
    if (failed !== undefined) throw failed;
    return [transport, protocol];
  } catch (error) {
    closeQuietly(conn);
    throw error;
  }
}

function checkProtocol(protocol: unknown): void {
  if (
    typeof protocol !== "object" || protocol === null ||
    typeof (protocol as DatagramProtocol).datagramReceived !== "function"
  ) {
    throw new TypeError(
      `Cannot use protocol: a datagram protocol needs datagramReceived(), got ${
        describeValue(protocol)
      }`,
    );
  }
}

/** Checks an address; `hostname` may be missing only when `local`. */
function checkAddress(
  addr: unknown,
  cannot: string,
  local = false,
): { hostname: string; port: number } {
  if (typeof addr !== "object" || addr === null) {
    throw new TypeError(
      `${cannot}: an address must be { hostname, port }, not ${
        describeValue(addr)
      }`,
    );
  }
  const { hostname, port } = addr as Partial<DatagramAddress>;
  if (typeof hostname !== "string" && !(local && hostname === undefined)) {
    throw new TypeError(`${cannot}: an address needs a hostname string`);
  }
  return {
    hostname: hostname ?? "0.0.0.0",
    port: checkPort(port, cannot.replace(/^Cannot /, "")),
  };
}

/** Resolves a remote name to one IP address, once. */
async function resolveRemote(
  addr: { hostname: string; port: number },
): Promise<Deno.NetAddr> {
  let hostname = addr.hostname;
  if (hostname === "localhost") {
    hostname = "127.0.0.1";
  } else if (!isIpLiteral(hostname)) {
    const found = await Deno.resolveDns(hostname, "A")
      .catch(() => [] as string[]);
    const addresses = found.length > 0
      ? found
      : await Deno.resolveDns(hostname, "AAAA");
    if (addresses.length === 0) {
      throw new Deno.errors.NotFound(
        `Cannot create datagram endpoint: ${hostname} has no address`,
      );
    }
    hostname = addresses[0]!;
  }
  return {
    transport: "udp",
    hostname: canonicalHost(hostname),
    port: addr.port,
  };
}

function isIpLiteral(hostname: string): boolean {
  return hostname.includes(":") || /^\d{1,3}(\.\d{1,3}){3}$/.test(hostname);
}

/** Writes an IP address as Deno reports senders: `::1`, `127.0.0.1`. */
function canonicalHost(hostname: string): string {
  if (!isIpLiteral(hostname)) return hostname;
  try {
    const host = new URL(
      hostname.includes(":") ? `http://[${hostname}]` : `http://${hostname}`,
    ).hostname;
    return host.startsWith("[") ? host.slice(1, -1) : host;
  } catch {
    return hostname;
  }
}

function sameAddress(a: Deno.NetAddr, b: Deno.NetAddr): boolean {
  return a.port === b.port &&
    (a.hostname === b.hostname ||
      canonicalHost(a.hostname) === canonicalHost(b.hostname));
}

function formatAddress(addr: Deno.NetAddr): string {
  return addr.hostname.includes(":")
    ? `[${addr.hostname}]:${addr.port}`
    : `${addr.hostname}:${addr.port}`;
}
