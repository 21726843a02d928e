import { checkBytes, checkProtocolObject, describeValue } from "../_checks.ts";
import { toError, warnDroppedWrites } from "../_report.ts";
import type { DatagramProtocol } from "../protocols/datagram_protocol.ts";
import { formatAddress } from "./_address.ts";
import { closeQuietly } from "./_conn.ts";
import { WriteFlowControl } from "./_flow_control.ts";
import {
  FAILED,
  ProtocolCaller,
  type TransportEvents,
} from "./_protocol_caller.ts";
import { copyOut } from "./_read_memory.ts";
import type {
  DatagramDestination,
  DatagramExtraInfo,
  DatagramTransport,
  ErrorHandler,
  WriteBufferLimits,
} from "./transport.ts";

/** The largest UDP payload (over IPv6; 65,507 bytes over IPv4). */
export const MAX_DATAGRAM = 65_535 - 8;
/** What each queued datagram counts for beyond its bytes, as asyncio. */
const HEADER_SIZE = 8;
/** Receive errors in a row after which the endpoint gives up and closes. */
const MAX_RECEIVE_ERRORS = 16;

/** One queued datagram. */
interface Outgoing {
  data: Uint8Array;
  addr: Deno.NetAddr;
}

/**
 * What a datagram endpoint sends and receives through: a
 * `Deno.DatagramConn`, or a memory stand-in that can send at once.
 */
export type DatagramSocket =
  & Pick<Deno.DatagramConn, "addr" | "receive" | "send" | "close">
  & {
    /** Sends at once if it can; `false` leaves the datagram queued. */
    trySend?(data: Uint8Array, addr: Deno.NetAddr): boolean;
  };

/** Options for {@linkcode DatagramEndpoint}. */
export interface DatagramEndpointOptions {
  /** Datagrams come only from {@linkcode DatagramEndpoint.push}: no receive loop. */
  pushed?: boolean | undefined;
  /**
   * Leaves `connectionMade` to {@linkcode DatagramEndpoint.start}, for a
   * wrapper that calls it once it is built itself (the in-memory test
   * transport), not a microtask later.
   */
  immediate?: boolean | undefined;
  /** The transport the protocol is given, if not this one (a wrapper). */
  facade?: DatagramTransport | undefined;
  /** The peer, as an IP address: the default destination and the only sender heard. */
  remoteAddr?: Deno.NetAddr | undefined;
  /** Receives errors thrown by protocol callbacks; default: stderr. */
  onError?: ErrorHandler | undefined;
  /** Who made the transport. */
  events?: TransportEvents | undefined;
}

/**
 * A datagram transport over a `Deno.DatagramConn` (UDP): asyncio's
 * datagram transport.
 *
 * It holds a {@linkcode ProtocolCaller} and a {@linkcode WriteFlowControl}.
 * One receive loop delivers each datagram, copied into memory the protocol
 * owns, to `datagramReceived` with its sender. `sendto` copies and queues;
 * one pump sends the queue in order, with asyncio's flow control on the
 * bytes queued. A failed send or receive goes to `errorReceived` and the
 * endpoint goes on.
 */
export class DatagramEndpoint implements DatagramTransport {
  #conn: DatagramSocket;
  #pushed: boolean;
  #caller: ProtocolCaller<DatagramProtocol>;
  #remote: Deno.NetAddr | undefined;
  #flow: WriteFlowControl;

  #queue: (Outgoing | undefined)[] = [];
  #queueHead = 0;
  #size = 0;
  /** The send pump, while it runs. */
  #pump: Promise<void> | undefined;
  /** The receive loop, while it runs. */
  #reader: Promise<void> | undefined;
  #started: Promise<void>;
  #buffer: Uint8Array | undefined;
  #paused = false;
  /**
   * Datagrams received while paused, delivered on resume: at most one from
   * a socket (the kernel keeps the rest), any number pushed.
   */
  #held: { data: Uint8Array; sender: Deno.NetAddr }[] = [];
  #closing = false;
  #lostWrites = 0;
  /** Built with `immediate`, and `start()` not called yet. */
  #startPending = false;

  /**
   * Starts driving `protocol` over `conn`, which the transport owns from
   * now on.
   */
  constructor(
    conn: DatagramSocket,
    protocol: DatagramProtocol,
    options: DatagramEndpointOptions = {},
  ) {
    checkProtocol(protocol);
    this.#conn = conn;
    this.#pushed = options.pushed === true;
    this.#remote = options.remoteAddr;
    this.#caller = new ProtocolCaller(options.facade ?? this, protocol, {
      onError: options.onError,
      events: options.events,
      owner: { fatal: (exc) => this.#finish(exc) },
    });
    this.#flow = new WriteFlowControl(this.#caller);
    if (options.immediate) {
      this.#started = Promise.resolve();
      this.#startPending = true;
    } else {
      this.#started = this.#start();
    }
  }

  /**
   * Returns `peername` (the `remoteAddr`, or `undefined`), `sockname` (the
   * bound `Deno.NetAddr`), `conn` (the `Deno.DatagramConn`), or
   * `defaultValue`.
   */
  getExtraInfo<K extends keyof DatagramExtraInfo>(
    name: K,
    defaultValue?: DatagramExtraInfo[K],
  ): DatagramExtraInfo[K] | undefined;
  getExtraInfo(name: string, defaultValue?: unknown): unknown;
  getExtraInfo(name: string, defaultValue?: unknown): unknown {
    if (name === "peername") return this.#remote;
    if (name === "sockname") return this.#conn.addr;
    if (name === "conn") return this.#conn;
    return defaultValue;
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
    if (!this.#closing) this.#paused = true;
  }

  /** Delivers datagrams again, first the one held while paused. */
  resumeReading(): void {
    if (this.#closing || !this.#paused) return;
    this.#paused = false;
    if (this.#caller.made && this.#reader === undefined) {
      this.#reader = this.#receiveLoop();
    }
  }

  /**
   * Delivers a datagram now, as if received (an endpoint made with
   * `pushed`): held while paused, dropped once closing.
   */
  push(data: Uint8Array, sender: Deno.NetAddr): void {
    if (this.#closing) return;
    if (this.#remote !== undefined && !sameAddress(sender, this.#remote)) {
      return;
    }
    const copy = copyOut(data, data.byteLength);
    if (this.#paused || this.#held.length > 0 || !this.#caller.made) {
      this.#held.push({ data: copy, sender });
      return;
    }
    this.#deliver(copy, sender);
  }

  /** Tells the protocol a receive failed, as the socket would. */
  pushError(error: Error): void {
    if (!this.#closing) this.#errorReceived(error, "receive");
  }

  /** Switches the protocol for the next callbacks. */
  setProtocol(protocol: DatagramProtocol): void {
    checkProtocol(protocol);
    this.#caller.protocol = protocol;
  }

  /** Returns the protocol that gets the callbacks. */
  getProtocol(): DatagramProtocol {
    return this.#caller.protocol;
  }

  /**
   * Copies `data` into the queue as one datagram and returns at once.
   * Without `addr` it goes to `remoteAddr`. Dropped after `close()`.
   *
   * @throws {TypeError} If `data` is not a `Uint8Array`, `addr` is not an
   * address, `addr` is not `remoteAddr` when one is set, or neither is
   * given.
   * @throws {RangeError} If `data` is larger than a UDP datagram can be.
   */
  sendto(data: Uint8Array, addr?: DatagramDestination): void {
    checkBytes(data, "data", "send datagram");
    if (data.byteLength > MAX_DATAGRAM) {
      throw new RangeError(
        `Cannot send datagram: ${data.byteLength} bytes is over the UDP limit of ${MAX_DATAGRAM}`,
      );
    }
    const to = this.#destination(addr);
    if (this.#closing) {
      warnDroppedWrites(++this.#lostWrites, "DatagramTransport.sendto()");
      return;
    }
    // A copy, as asyncio's bytes(data): the caller may reuse its buffer.
    const copy = copyOut(data, data.byteLength);
    const trySend = this.#conn.trySend;
    if (
      trySend !== undefined && this.#pump === undefined &&
      trySend.call(this.#conn, copy, to)
    ) {
      return;
    }
    this.#queue.push({ data: copy, addr: to });
    this.#size += data.byteLength + HEADER_SIZE;
    this.#pump ??= this.#runPump();
    this.#flow.grew(this.#size);
  }

  /** Stops receiving, sends every queued datagram, then closes. */
  close(): void {
    if (this.#closing) return;
    this.#closing = true;
    this.#held = [];
    if (this.#pump === undefined) this.#finish(undefined);
  }

  /** Closes at once and drops the queued datagrams. */
  abort(): void {
    this.#finish(undefined);
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
  #destination(to: DatagramDestination | undefined): Deno.NetAddr {
    const cannot = "Cannot send datagram";
    const addr = to === undefined ? undefined : toUdpAddress(to, cannot);
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
          formatAddress(remote.hostname, remote.port)
        }, not ${formatAddress(addr.hostname, addr.port)}`,
      );
    }
    return remote;
  }

  /**
   * Calls `connectionMade` now and starts receiving, for an endpoint built
   * with `immediate` (once; later calls do nothing).
   */
  start(): void {
    if (!this.#startPending) return;
    this.#startPending = false;
    this.#made();
  }

  // Receive side.

  async #start(): Promise<void> {
    await undefined;
    this.#made();
  }

  /** Calls `connectionMade`, then starts receiving. */
  #made(): void {
    if (!this.#caller.connectionMade() || this.#closing || this.#paused) return;
    if (!this.#pushed || this.#held.length > 0) {
      this.#reader = this.#receiveLoop();
    }
  }

  /**
   * Receives until paused or closing. The loop marks itself done in the
   * same task as it stops, so that a `resumeReading()` right after finds
   * no loop and starts one.
   */
  async #receiveLoop(): Promise<void> {
    try {
      await this.#receive();
    } finally {
      this.#reader = undefined;
    }
    // Resumed while the loop was ending: go on.
    if (
      !this.#closing && !this.#paused &&
      (!this.#pushed || this.#held.length > 0)
    ) {
      this.#reader = this.#receiveLoop();
    }
  }

  async #receive(): Promise<void> {
    if (this.#held.length > 0) {
      // Deliver in a later task than the resumeReading() call.
      await undefined;
      while (this.#held.length > 0) {
        if (this.#closing || this.#paused) return;
        const held = this.#held.shift()!;
        if (!this.#deliver(held.data, held.sender)) return;
      }
    }
    if (this.#pushed) return;
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
          this.#finish(toError(error));
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
        this.#held.push({ data, sender });
        return;
      }
      if (!this.#deliver(data, sender)) return;
    }
  }

  /** Hands one datagram to the protocol; `false` if that failed. */
  #deliver(data: Uint8Array, sender: Deno.NetAddr): boolean {
    return this.#caller.call("datagramReceived", data, sender) !== FAILED;
  }

  /** Tells the protocol a send or receive failed; `false` if that failed. */
  #errorReceived(error: unknown, during: string): boolean {
    const exc = toError(error);
    if (this.#caller.protocol.errorReceived === undefined) {
      this.#caller.report(
        exc,
        `Error: datagram ${during} failed (the protocol has no errorReceived)`,
      );
      return true;
    }
    return this.#caller.call("errorReceived", exc) !== FAILED;
  }

  // Send side.

  async #runPump(): Promise<void> {
    // Sends at once: datagrams are never joined, so waiting for the rest
    // of the task would gain nothing.
    while (this.#queueHead < this.#queue.length) {
      const outgoing = this.#queue[this.#queueHead]!;
      this.#queue[this.#queueHead++] = undefined;
      try {
        await this.#conn.send(outgoing.data, outgoing.addr);
      } catch (error) {
        if (this.#caller.ending) return;
        if (error instanceof Deno.errors.BadResource) {
          this.#finish(toError(error));
          return;
        }
        if (!this.#errorReceived(error, "send")) return;
      }
      if (this.#caller.ending) return;
      this.#size -= outgoing.data.byteLength + HEADER_SIZE;
      this.#flow.shrank(this.#size);
    }
    this.#queue = [];
    this.#queueHead = 0;
    this.#pump = undefined;
    if (this.#closing) this.#finish(undefined);
  }

  // Closing.

  /**
   * Ends the endpoint, once: after `close()` sent the queue (`exc`
   * undefined), `abort()`, or a failure. Closes the socket, then reports
   * the loss once the receive and send in flight are done.
   */
  #finish(exc: Error | undefined): void {
    if (!this.#caller.end()) return;
    this.#closing = true;
    this.#held = [];
    this.#queue = [];
    this.#queueHead = 0;
    this.#size = 0;
    closeQuietly(this.#conn);
    this.#caller.loseAfter(
      this.#started.then(() => Promise.all([this.#reader, this.#pump])),
      exc,
    );
  }
}

/** Checks a datagram protocol's shape. */
function checkProtocol(protocol: unknown): void {
  checkProtocolObject(protocol);
  if (
    typeof (protocol as DatagramProtocol).datagramReceived !== "function"
  ) {
    throw new TypeError(
      `Cannot use protocol: a datagram protocol needs datagramReceived(), got ${
        describeValue(protocol)
      }`,
    );
  }
}

/**
 * `true` for a well-formed UDP address, such as the sender Deno reports:
 * it can be used as it is.
 */
function isUdpAddress(addr: unknown): addr is Deno.NetAddr {
  if (typeof addr !== "object" || addr === null) return false;
  const { transport, hostname, port } = addr as Partial<Deno.NetAddr>;
  return transport === "udp" && typeof hostname === "string" &&
    typeof port === "number" && Number.isInteger(port) && port >= 0 &&
    port <= 65535;
}

/**
 * Returns `addr` as a UDP address: itself when well formed, else made from
 * its hostname and port.
 *
 * @param cannot The start of the message, e.g. `"Cannot send datagram"`.
 * @throws {TypeError} Unless `addr` is an object with a hostname string and
 * an integer port.
 * @throws {RangeError} For a port out of range.
 */
export function toUdpAddress(addr: unknown, cannot: string): Deno.NetAddr {
  if (isUdpAddress(addr)) return addr;
  const { hostname, port } = checkAddress(addr, cannot);
  return { transport: "udp", hostname, port };
}

/**
 * Checks an address; `hostname` may be missing only when `local`.
 *
 * @param name The argument, for the messages: `addr`, `localAddr`.
 */
export function checkAddress(
  addr: unknown,
  cannot: string,
  local = false,
  name = "addr",
): { hostname: string; port: number } {
  if (typeof addr !== "object" || addr === null) {
    throw new TypeError(
      `${cannot}: ${name} must be { hostname, port }, not ${
        describeValue(addr)
      }`,
    );
  }
  const { hostname, port } = addr as { hostname?: unknown; port?: unknown };
  if (typeof hostname !== "string" && !(local && hostname === undefined)) {
    throw new TypeError(
      `${cannot}: ${name}.hostname must be a string, not ${
        describeValue(hostname)
      }`,
    );
  }
  if (typeof port !== "number" || !Number.isInteger(port)) {
    throw new TypeError(`${cannot}: ${name}.port must be an integer`);
  }
  if (port < 0 || port > 65535) {
    throw new RangeError(
      `${cannot}: ${name}.port (${port}) must be between 0 and 65535`,
    );
  }
  return { hostname: hostname ?? "0.0.0.0", port };
}

function isIpLiteral(hostname: string): boolean {
  return hostname.includes(":") || /^\d{1,3}(\.\d{1,3}){3}$/.test(hostname);
}

/**
 * Writes an IP address as Deno reports senders: `::1`, `127.0.0.1`; an
 * IPv6 address given in brackets (`[::1]`) loses them.
 */
export function canonicalHost(hostname: string): string {
  const bare = hostname.startsWith("[") && hostname.endsWith("]")
    ? hostname.slice(1, -1)
    : hostname;
  if (!isIpLiteral(bare)) return hostname;
  try {
    const host = new URL(
      bare.includes(":") ? `http://[${bare}]` : `http://${bare}`,
    ).hostname;
    return host.startsWith("[") ? host.slice(1, -1) : host;
  } catch {
    return hostname;
  }
}

/**
 * Picks where to bind and where to send among the IP addresses a local
 * and a remote address resolve to, as asyncio pairs them: the first local
 * address, in order, with a remote address of its family (the first one).
 * The IPv6 wildcard `::` also reaches IPv4 peers (as IPv4-mapped
 * addresses), so without an IPv6 remote it takes an IPv4 one.
 *
 * @param locals Where the endpoint may bind, in order of preference.
 * @param remotes Where its peer is, in order of preference.
 * @returns `[local, remote]`, or `undefined` if no two addresses fit.
 */
export function pairAddresses(
  locals: readonly string[],
  remotes: readonly string[],
): [string, string] | undefined {
  for (const local of locals) {
    const ipv6 = local.includes(":");
    const remote = remotes.find((remote) => remote.includes(":") === ipv6) ??
      (canonicalHost(local) === "::" ? remotes[0] : undefined);
    if (remote !== undefined) return [local, remote];
  }
  return undefined;
}

/**
 * `true` for the same host and port. An IPv4-mapped IPv6 address
 * (`::ffff:127.0.0.1`, how a dual-stack socket bound to `::` sees an IPv4
 * peer) is the same as the IPv4 address.
 */
function sameAddress(a: Deno.NetAddr, b: Deno.NetAddr): boolean {
  return a.port === b.port &&
    (a.hostname === b.hostname ||
      unmapped(canonicalHost(a.hostname)) ===
        unmapped(canonicalHost(b.hostname)));
}

/** `::ffff:1.2.3.4` (or `::ffff:102:304`) as `1.2.3.4`; others as they are. */
function unmapped(hostname: string): string {
  const dotted = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(hostname);
  if (dotted !== null) return dotted[1]!;
  const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(hostname);
  if (hex === null) return hostname;
  const high = parseInt(hex[1]!, 16);
  const low = parseInt(hex[2]!, 16);
  return `${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`;
}
