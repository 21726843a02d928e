/**
 * A TCP proxy that a test runs between a client and a server on 127.0.0.1,
 * injecting one fault per proxied connection. It forwards bytes as they
 * are (TLS included: it never looks inside them) and passes each EOF on
 * (half-close), unless its fault says otherwise.
 *
 * It is made of `node:net` sockets, for one reason: a reset. `Deno.Conn`
 * cannot send one. Its `close()` shuts the write side down first (tokio's
 * write half sends FIN when dropped), so closing with unread data sends
 * FIN then RST: the peer reads a clean EOF, and only a write after it
 * meets the reset (EPIPE), which a peer that has nothing left to send never
 * sees. `node:net`'s `resetAndDestroy()` sets SO_LINGER to 0 before the
 * close, so the peer gets RST alone, whatever is unread: its reads return
 * what had arrived, then fail with `ConnectionReset`.
 *
 * It is bounded: it proxies at most `maxConnections` connections (later
 * ones are closed as soon as they are accepted), and resets any connection
 * still open after `maxLifetimeMs`. `close()` resets every connection still
 * open; it and `settled()` resolve only once every socket and timer the
 * proxy made is gone, so Deno's sanitizers stay on.
 *
 * @module
 */

import net from "node:net";

/** Which way bytes go through the proxy. */
export type Direction = "toServer" | "toClient";

/**
 * What the proxy does to one connection. `afterBytes` counts the bytes
 * forwarded in `direction` before the fault strikes.
 *
 * - `forward`: passes bytes and EOFs on unchanged.
 * - `delay`: waits `ms` before writing each chunk it read, both ways.
 * - `fragment`: writes one byte per write, each written before the next,
 *   both ways (the sockets have TCP_NODELAY: one byte per segment).
 * - `stall`: stops forwarding from the sender in `direction` for `ms`, or
 *   until the connection is reset when `ms` is left out. The other
 *   direction goes on. The proxy reads ahead one stream buffer at most,
 *   then the sender meets backpressure once the socket buffers are full.
 * - `reset`: stops forwarding both ways, waits `settleMs` for the bytes
 *   written to reach their receivers, then resets both sockets (RST).
 * - `closeWrite`: half-closes the socket towards the receiver in
 *   `direction` (it reads EOF), then reads and drops what the sender sends
 *   that way, so that the sender never blocks.
 */
export type Fault =
  | { kind: "forward" }
  | { kind: "delay"; ms: number }
  | { kind: "fragment" }
  | { kind: "stall"; direction: Direction; afterBytes: number; ms?: number }
  | { kind: "reset"; direction: Direction; afterBytes: number }
  | { kind: "closeWrite"; direction: Direction; afterBytes: number };

/** Options for {@linkcode startFaultProxy}. */
export interface FaultProxyOptions {
  /** The server's port on 127.0.0.1. */
  port: number;
  /** The fault of every connection, or of the connection numbered `index`. */
  fault: Fault | ((index: number) => Fault);
  /** Connections proxied at most; later ones are closed (default 64). */
  maxConnections?: number;
  /** A connection still open after this long is reset (default 10 s). */
  maxLifetimeMs?: number;
  /** `reset`: how long written bytes have to land (default 20 ms). */
  settleMs?: number;
}

/** What happened to one proxied connection, for assertions. */
export interface ProxiedConnection {
  /** 0 for the first connection the proxy accepted, and so on. */
  readonly index: number;
  readonly fault: Fault;
  /** Bytes written towards the receiver in each direction. */
  readonly forwarded: Readonly<Record<Direction, number>>;
  /** Resolves once the fault strikes (`forward`, `delay`, `fragment`: never). */
  readonly struck: Promise<void>;
  /** It was reset because it outlived `maxLifetimeMs`. */
  readonly expired: boolean;
  /** Resolves once both sockets are closed and every timer is cleared. */
  readonly ended: Promise<void>;
}

/** A running proxy; `await using` closes it. */
export interface FaultProxy extends AsyncDisposable {
  /** The port clients connect to, on 127.0.0.1. */
  readonly port: number;
  /** Every connection proxied so far, in the order they were accepted. */
  readonly connections: readonly ProxiedConnection[];
  /** Connections closed at once because `maxConnections` were proxied. */
  readonly refused: number;
  /**
   * Resolves with the connection numbered `index` once it is accepted: a
   * client's connect can complete before the proxy's accept returns.
   */
  connection(index: number): Promise<ProxiedConnection>;
  /** Resolves once every connection accepted so far has ended. */
  settled(): Promise<void>;
  /**
   * Stops accepting, resets every connection still open, and resolves once
   * nothing the proxy made is left.
   */
  close(): Promise<void>;
}

const HOSTNAME = "127.0.0.1";

/** Starts a proxy on 127.0.0.1, on a free port, to `options.port`. */
export async function startFaultProxy(
  options: FaultProxyOptions,
): Promise<FaultProxy> {
  const listener = new Listener(options);
  await listener.listening;
  return listener;
}

class Listener implements FaultProxy {
  readonly connections: Link[] = [];
  refused = 0;
  readonly listening: Promise<void>;
  #server: net.Server;
  #options: FaultProxyOptions;
  #closed: Promise<void> | undefined;
  #accepted: { index: number; resolve: (link: Link) => void }[] = [];

  constructor(options: FaultProxyOptions) {
    this.#options = options;
    this.#server = net.createServer(
      { allowHalfOpen: true, pauseOnConnect: true },
      (socket) => this.#accept(socket),
    );
    this.listening = new Promise((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(0, HOSTNAME, () => {
        this.#server.off("error", reject);
        resolve();
      });
    });
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  connection(index: number): Promise<ProxiedConnection> {
    const link = this.connections[index];
    if (link !== undefined) return Promise.resolve(link);
    return new Promise((resolve) => this.#accepted.push({ index, resolve }));
  }

  async settled(): Promise<void> {
    await Promise.all(this.connections.map((link) => link.ended));
  }

  close(): Promise<void> {
    this.#closed ??= new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      for (const link of this.connections) link.reset();
    }).then(() => this.settled());
    return this.#closed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #accept(socket: net.Socket): void {
    const max = this.#options.maxConnections ?? 64;
    if (this.#closed !== undefined || this.connections.length >= max) {
      socket.on("error", () => {});
      socket.destroy();
      this.refused++;
      return;
    }
    const index = this.connections.length;
    const fault = typeof this.#options.fault === "function"
      ? this.#options.fault(index)
      : this.#options.fault;
    const link = new Link(index, fault, socket, this.#options);
    this.connections.push(link);
    this.#accepted = this.#accepted.filter((waiter) => {
      if (waiter.index !== index) return true;
      waiter.resolve(link);
      return false;
    });
  }
}

/** One proxied connection: the client's socket, the server's, two pumps. */
class Link implements ProxiedConnection {
  readonly index: number;
  readonly fault: Fault;
  readonly forwarded: Record<Direction, number> = { toServer: 0, toClient: 0 };
  expired = false;
  readonly struck: Promise<void>;
  readonly ended: Promise<void>;
  #strike: () => void;
  #hasStruck = false;
  #client: net.Socket;
  #server: net.Socket;
  #options: FaultProxyOptions;
  /** Pending sleeps: each one's timer (none if endless) and waker. */
  #sleeps = new Set<{ timer?: ReturnType<typeof setTimeout>; wake(): void }>();
  /** A reset struck or the link is torn down: nothing more is forwarded. */
  #stopped = false;
  /** `reset()` was called: a new sleep ends at once. */
  #down = false;

  constructor(
    index: number,
    fault: Fault,
    client: net.Socket,
    options: FaultProxyOptions,
  ) {
    this.index = index;
    this.fault = fault;
    this.#options = options;
    const { promise, resolve } = Promise.withResolvers<void>();
    this.struck = promise;
    this.#strike = () => {
      this.#hasStruck = true;
      resolve();
    };
    this.#client = client;
    this.#server = net.connect({
      host: HOSTNAME,
      port: options.port,
      allowHalfOpen: true,
      noDelay: true,
    });
    for (const socket of [client, this.#server]) {
      // Errors end the pumps; the link resets what is left.
      socket.on("error", () => this.reset());
    }
    this.ended = this.#run();
  }

  /** Resets both sockets now and ends every sleep. */
  reset(): void {
    for (const socket of [this.#client, this.#server]) {
      if (!socket.destroyed) socket.resetAndDestroy();
    }
    this.#wakeAll();
  }

  /** Forwards nothing more, clears every timer and wakes every sleeper. */
  #wakeAll(): void {
    this.#stopped = true;
    this.#down = true;
    for (const sleep of this.#sleeps) {
      clearTimeout(sleep.timer);
      sleep.wake();
    }
    this.#sleeps.clear();
  }

  async #run(): Promise<void> {
    const closed = Promise.all(
      [this.#client, this.#server].map((socket) =>
        new Promise((resolve) => socket.once("close", resolve))
      ),
    );
    const lifetime = this.#sleep(this.#options.maxLifetimeMs ?? 10_000).then(
      () => {
        if (this.#stopped) return;
        this.expired = true;
        this.reset();
      },
    );
    const connected = await new Promise<boolean>((resolve) => {
      this.#server.once("connect", () => resolve(true));
      this.#server.once("close", () => resolve(false));
    });
    if (connected) {
      this.#client.setNoDelay(true);
      await Promise.all([
        this.#pump("toServer", this.#client, this.#server),
        this.#pump("toClient", this.#server, this.#client),
      ]);
    } else {
      this.reset();
    }
    await closed;
    this.#wakeAll();
    await lifetime;
  }

  /** Forwards `from` → `to` with the fault, until EOF, an error or a reset. */
  async #pump(
    direction: Direction,
    from: net.Socket,
    to: net.Socket,
  ): Promise<void> {
    const fault = this.fault;
    const strikesHere = "direction" in fault && fault.direction === direction;
    /** After `closeWrite`: what is read is dropped. */
    let dropping = false;
    try {
      if (strikesHere && fault.afterBytes === 0) {
        dropping = await this.#strikeNow(fault, to);
      }
      // Not destroyed at EOF: its write side may still be in use.
      const reads = from.iterator({ destroyOnReturn: false });
      for await (const data of reads as AsyncIterable<Uint8Array>) {
        if (this.#stopped || dropping) continue;
        let chunk = data;
        if (strikesHere && !this.#hasStruck) {
          const left = fault.afterBytes - this.forwarded[direction];
          if (chunk.byteLength >= left) {
            await this.#write(direction, to, chunk.subarray(0, left));
            chunk = chunk.subarray(left);
            dropping = await this.#strikeNow(fault, to);
            if (this.#stopped || dropping) continue;
          }
        }
        await this.#write(direction, to, chunk);
      }
      if (!dropping && !this.#stopped) to.end();
    } catch {
      // A socket failed or was reset: reset whatever is left.
      this.reset();
    }
  }

  /**
   * Strikes: a reset stops both pumps, a stall waits here, a closeWrite
   * half-closes `to`. Returns `true` when the rest is to be dropped.
   */
  async #strikeNow(fault: Fault, to: net.Socket): Promise<boolean> {
    this.#strike();
    switch (fault.kind) {
      case "reset":
        this.#stopped = true;
        await this.#sleep(this.#options.settleMs ?? 20);
        this.reset();
        return true;
      case "stall":
        await this.#sleep(fault.ms ?? Infinity);
        return false;
      case "closeWrite":
        to.end();
        return true;
      default:
        return false;
    }
  }

  /** Writes `chunk` with the fault, each write flushed before the next. */
  async #write(
    direction: Direction,
    to: net.Socket,
    chunk: Uint8Array,
  ): Promise<void> {
    if (chunk.byteLength === 0 || this.#stopped) return;
    if (this.fault.kind === "delay") {
      await this.#sleep(this.fault.ms);
      if (this.#stopped) return;
    }
    const step = this.fault.kind === "fragment" ? 1 : chunk.byteLength;
    for (let offset = 0; offset < chunk.byteLength; offset += step) {
      const piece = chunk.subarray(offset, offset + step);
      await new Promise<void>((resolve, reject) =>
        to.write(piece, (error) => error ? reject(error) : resolve())
      );
      this.forwarded[direction] += piece.byteLength;
    }
  }

  /** Resolves after `ms`, or as soon as the link is reset. */
  #sleep(ms: number): Promise<void> {
    if (this.#down) return Promise.resolve();
    return new Promise((resolve) => {
      const sleep: { timer?: ReturnType<typeof setTimeout>; wake(): void } = {
        wake: resolve,
      };
      // An endless stall has no timer: only the reset ends it.
      if (ms !== Infinity) {
        sleep.timer = setTimeout(() => {
          this.#sleeps.delete(sleep);
          resolve();
        }, ms);
      }
      this.#sleeps.add(sleep);
    });
  }
}
