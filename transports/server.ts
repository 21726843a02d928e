import {
  checkBoolean,
  checkNumber,
  checkObject,
  checkSignal,
} from "../_checks.ts";
import { report, reportToStderr } from "../_report.ts";
import {
  checkHostname,
  checkSocketPath,
  formatAddress,
  listenAll,
  listenHostnames,
  withAddress,
} from "./_address.ts";
import {
  checkFactory,
  checkPort,
  closeQuietly,
  setKeepAlive,
  setNoDelay,
} from "./_conn.ts";
import { checkStreamOptions, checkTlsOnly } from "./_connect.ts";
import type { TransportEvents } from "./_protocol_caller.ts";
import {
  checkServerTls,
  describePeer,
  handshake,
  isTlsConn,
  listenTls,
  type TlsServerOptions,
} from "./_tls.ts";
import { StreamTransport } from "./_stream_transport.ts";
import type { ErrorHandler, StreamProtocol, Transport } from "./transport.ts";

/** asyncio's `ACCEPT_RETRY_DELAY`: wait before accepting again after an error. */
const ACCEPT_RETRY_DELAY_MS = 1000;
/** How long `shutdown()` lets connections flush before it aborts them. */
const SHUTDOWN_GRACE_MS = 30_000;
/** The grace period of `await using`: short, so that disposal never hangs. */
const DISPOSE_GRACE_MS = 1_000;

/** Options for {@linkcode Server.shutdown}. */
export interface ShutdownOptions {
  /**
   * Milliseconds connections have to flush and close before the rest are
   * aborted (default 30 000; `await using` gives 1 000).
   */
  gracePeriod?: number;
}

/** Options for a {@linkcode Server} over listeners you made. */
export interface ServerOptions {
  /** `false` leaves Nagle's algorithm on for TCP (default: TCP_NODELAY). */
  noDelay?: boolean;
  /**
   * `true` sets TCP keepalive (SO_KEEPALIVE) on each connection, as
   * asyncio's `keep_alive`; the system's probe intervals apply.
   */
  keepAlive?: boolean;
  /**
   * Milliseconds a connection may stay idle (nothing read or written)
   * before its protocol's `idleTimedOut()` is called, or it is closed if
   * the protocol has none (default: no limit). See
   * {@linkcode Transport.setIdleTimeout}.
   */
  idleTimeout?: number;
  /** Closes the server when aborted, as `close()` does. */
  signal?: AbortSignal;
  /** `false` binds but does not accept until `startServing()`. */
  startServing?: boolean;
  /**
   * Receives errors thrown by protocol callbacks and accept errors; default:
   * stderr.
   */
  onError?: ErrorHandler;
  /**
   * TLS only: milliseconds a client has to complete the handshake before
   * its connection is dropped (default 60 000, asyncio's
   * `ssl_handshake_timeout`).
   */
  handshakeTimeout?: number;
}

/** Options for {@linkcode createServer}. */
export interface CreateServerOptions extends ServerOptions {
  /** The address to listen on (default `"0.0.0.0"`). */
  hostname?: string;
  /** The TCP port; 0 picks a free one (see {@linkcode Server.addrs}). */
  port: number;
  /**
   * Lets several processes or workers listen on the same port (Linux;
   * needs `--unstable-net`).
   */
  reusePort?: boolean;
  /**
   * Serve TLS (`Deno.listenTls`): each connection completes its handshake
   * before the protocol's `connectionMade`; a failed handshake drops that
   * connection only and goes to `onError`.
   */
  tls?: TlsServerOptions;
}

/** Options for {@linkcode createUnixServer}. */
export interface CreateUnixServerOptions extends ServerOptions {
  /** The socket's path; a stale socket file there is removed first. */
  path: string;
}

/**
 * Accepts connections and drives a protocol from the factory over each:
 * asyncio's `Server`. Make one with {@linkcode createServer} or
 * {@linkcode createUnixServer}, or over a listener of your own.
 *
 * `close()` stops accepting and leaves the connections open;
 * `closeClients()` and `abortClients()` end them; `waitClosed()` resolves
 * once the server is closed and every connection it accepted has ended.
 * An error thrown by one connection's protocol closes that connection only.
 * Over a TLS listener (`Deno.listenTls`, or {@linkcode createServer}'s
 * `tls` option) each connection completes its handshake before
 * `connectionMade`; one that fails or times out (`handshakeTimeout`) is
 * dropped and reported to `onError`.
 *
 * @example Serve until told to stop
 * ```ts
 * import { ProtocolBase, Server } from "@aio/protocols";
 *
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const server = new Server(listener, () => new ProtocolBase());
 * setTimeout(() => server.close(), 10);
 * await server.serveForever();
 * ```
 */
export class Server<A extends Deno.Addr = Deno.Addr>
  implements AsyncDisposable {
  #listeners: Deno.Listener<Deno.Conn, A>[];
  #factory: () => StreamProtocol;
  #onError: ErrorHandler;
  #noDelay: boolean | undefined;
  #keepAlive: boolean | undefined;
  #idleTimeout: number | undefined;
  #signal: AbortSignal | undefined;
  #transports = new Set<Transport>();
  /** What every transport the server made tells it. */
  #events: TransportEvents<Transport> = {
    lost: (transport) => {
      this.#transports.delete(transport);
      this.#checkClosed();
    },
    replaced: (old, upgraded) => {
      this.#transports.delete(old);
      this.#transports.add(upgraded);
    },
  };
  #handshakes = new Set<Deno.TlsConn>();
  #handshakeTimeout: number;
  #retryTimers = new Map<ReturnType<typeof setTimeout>, () => void>();
  #serving = false;
  #servingForever = false;
  #closed = false;
  #closedWaiters: (() => void)[] = [];
  /** Unix listeners' socket files, by listener: the path and its inode. */
  #socketFiles = new Map<object, { path: string; ino: number | null }>();
  /** Another socket's file, kept aside while a listener on its path closes. */
  #asides = new Map<object, string>();
  /** The accept loop of each listener, while it runs. */
  #acceptLoops = new Map<object, Promise<void>>();

  /**
   * Serves protocols from `factory` on `listener` (one, or several).
   *
   * @param listener What to accept from: `Deno.listen()`, `Deno.listenTls()`
   * or a Unix listener; the server owns it from now on.
   * @param factory Makes a protocol for each connection.
   * @param options Accepting, TCP_NODELAY and error reporting.
   * @throws {TypeError} If `factory` is not a function, or an option has the
   * wrong type; the listeners are left to the caller then.
   * @throws {RangeError} For an `idleTimeout` or `handshakeTimeout` out of
   * range.
   */
  constructor(
    listener: Deno.Listener<Deno.Conn, A> | Deno.Listener<Deno.Conn, A>[],
    factory: () => StreamProtocol,
    options: ServerOptions = {},
  ) {
    checkFactory(factory, "create server");
    const checked = checkServerOptions(options, "create server");
    this.#handshakeTimeout = checked.handshakeTimeout;
    this.#listeners = Array.isArray(listener) ? [...listener] : [listener];
    for (const listener of this.#listeners) {
      const addr = listener.addr as Deno.Addr;
      if (addr.transport === "unix" && addr.path !== "") {
        this.#socketFiles.set(listener, {
          path: addr.path,
          ino: inodeOf(addr.path),
        });
      }
    }
    this.#factory = factory;
    this.#onError = checked.onError ?? reportToStderr;
    this.#noDelay = options.noDelay;
    this.#keepAlive = options.keepAlive;
    this.#idleTimeout = checked.idleTimeout;
    this.#signal = checked.signal;
    if (this.#signal?.aborted) {
      this.close();
      return;
    }
    this.#signal?.addEventListener("abort", this.#onAbort, { once: true });
    if (options.startServing !== false) this.#startAccepting();
  }

  /**
   * The addresses the server listens on: `Deno.NetAddr`s for TCP and TLS,
   * `Deno.UnixAddr`s for a Unix socket.
   */
  get addrs(): A[] {
    return this.#listeners.map((listener) => listener.addr);
  }

  /** Returns `true` while the server accepts connections. */
  isServing(): boolean {
    return this.#serving;
  }

  /** Starts accepting, if the server was made with `startServing: false`. */
  startServing(): Promise<void> {
    this.#startAccepting();
    return Promise.resolve();
  }

  /**
   * Accepts connections until the server is closed, then waits for every
   * connection to end, as {@linkcode waitClosed} does.
   *
   * @throws {Error} If the server is closed, or already serving forever.
   */
  async serveForever(): Promise<void> {
    if (this.#closed) {
      throw new Error(`Cannot serve forever: server is closed`);
    }
    if (this.#servingForever) {
      throw new Error(
        `Cannot serve forever: server is already serving forever`,
      );
    }
    this.#servingForever = true;
    this.#startAccepting();
    try {
      await this.waitClosed();
    } finally {
      this.#servingForever = false;
    }
  }

  /**
   * Stops accepting and closes the listeners; connections stay open.
   * Idempotent.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#serving = false;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    for (const listener of this.#listeners) this.#closeListener(listener);
    for (const [timer, wake] of this.#retryTimers) {
      clearTimeout(timer);
      wake();
    }
    this.#retryTimers.clear();
    this.#checkClosed();
  }

  /**
   * Closes every connection the server accepted, flushing each first;
   * TLS handshakes still in progress are dropped.
   */
  closeClients(): void {
    this.#dropHandshakes();
    for (const transport of [...this.#transports]) transport.close();
  }

  /**
   * Aborts every connection the server accepted, dropping their buffers;
   * TLS handshakes still in progress are dropped.
   */
  abortClients(): void {
    this.#dropHandshakes();
    for (const transport of [...this.#transports]) transport.abort();
  }

  /**
   * Resolves once the server is closed and every connection it accepted
   * has ended (TLS handshakes in progress included), whenever it is called.
   */
  waitClosed(): Promise<void> {
    if (this.#isClosed()) return Promise.resolve();
    return new Promise((resolve) => this.#closedWaiters.push(resolve));
  }

  /**
   * Stops the server gracefully: stops listening, closes every connection
   * (each flushes first), then aborts whatever is still open when the
   * grace period ends. Resolves once every connection has ended.
   *
   * @param options The grace period (default 30 s).
   * @throws {TypeError} For a grace period that is not a number.
   * @throws {RangeError} For a grace period below 0, or `NaN`.
   *
   * @example Stop on SIGTERM, giving clients 5 s
   * ```ts ignore
   * import { createServer, ProtocolBase } from "@aio/protocols";
   *
   * const server = await createServer(() => new ProtocolBase(), { port: 8888 });
   * Deno.addSignalListener("SIGTERM", () => {
   *   server.shutdown({ gracePeriod: 5_000 });
   * });
   * await server.serveForever();
   * ```
   */
  async shutdown(options?: ShutdownOptions): Promise<void> {
    const grace = checkNumber(
      options?.gracePeriod ?? SHUTDOWN_GRACE_MS,
      "gracePeriod",
      "shut down server",
      0,
      Infinity,
    );
    this.close();
    this.closeClients();
    if (this.#isClosed()) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const graceOver = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), Math.min(grace, 2 ** 31 - 1));
    });
    const closed = await Promise.race([
      this.waitClosed().then(() => true),
      graceOver,
    ]);
    clearTimeout(timer);
    if (!closed) {
      this.abortClients();
      await this.waitClosed();
    }
  }

  /**
   * `await using`: shuts the server down with a short grace period (1 s),
   * so that leaving the block never hangs on a connected client.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown({ gracePeriod: DISPOSE_GRACE_MS });
  }

  #onAbort = (): void => this.close();

  #startAccepting(): void {
    if (this.#closed || this.#serving) return;
    this.#serving = true;
    for (const listener of this.#listeners) {
      this.#acceptLoops.set(
        listener,
        this.#acceptLoop(listener).then(() => {
          // The listener is gone now: Deno has removed its socket file.
          this.#acceptLoops.delete(listener);
          this.#restoreSocketFile(listener);
          this.#checkClosed();
        }),
      );
    }
  }

  async #acceptLoop(listener: Deno.Listener<Deno.Conn, A>): Promise<void> {
    while (!this.#closed) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (this.#closed || error instanceof Deno.errors.BadResource) return;
        const addr = listener.addr as Deno.NetAddr | Deno.UnixAddr;
        const where = "path" in addr
          ? addr.path
          : formatAddress(addr.hostname, addr.port);
        report(this.#onError, error, {
          message: `Error: accept() on ${where} failed; retrying in 1 s`,
        });
        await this.#retryDelay();
        continue;
      }
      if (this.#closed) {
        conn.close();
        return;
      }
      this.#serve(conn);
    }
  }

  #retryDelay(): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#retryTimers.delete(timer);
        resolve();
      }, ACCEPT_RETRY_DELAY_MS);
      this.#retryTimers.set(timer, resolve);
    });
  }

  #serve(conn: Deno.Conn, extra?: Record<string, unknown>): void {
    if (extra === undefined && isTlsConn(conn)) {
      this.#handshakeThenServe(conn);
      return;
    }
    let transport: StreamTransport;
    try {
      setNoDelay(conn, this.#noDelay);
      setKeepAlive(conn, this.#keepAlive);
      transport = new StreamTransport({ conn }, this.#factory(), {
        onError: this.#onError,
        events: this.#events,
        extra,
        idleTimeout: this.#idleTimeout,
      });
    } catch (error) {
      conn.close();
      report(this.#onError, error, {
        message: "Error: protocol factory failed; connection closed",
      });
      return;
    }
    this.#transports.add(transport);
  }

  /** Serves a TLS conn once its handshake completes; drops it on failure. */
  async #handshakeThenServe(conn: Deno.TlsConn): Promise<void> {
    this.#handshakes.add(conn);
    try {
      const extra = await handshake(conn, this.#handshakeTimeout);
      if (this.#handshakes.has(conn)) this.#serve(conn, extra);
    } catch (error) {
      if (this.#handshakes.has(conn)) {
        report(this.#onError, error, {
          message: `Error: TLS handshake with ${
            describePeer(conn)
          } failed; connection closed`,
        });
      }
    } finally {
      this.#handshakes.delete(conn);
      this.#checkClosed();
    }
  }

  /**
   * Closes a listener. Deno removes a Unix socket's file by path once the
   * listener is gone (after its pending accept ends): if the path now
   * belongs to another socket, that socket's file is kept aside meanwhile,
   * and put back when the accept loop ends.
   */
  #closeListener(listener: Deno.Listener<Deno.Conn, A>): void {
    const file = this.#socketFiles.get(listener);
    const current = file === undefined ? null : inodeOf(file.path);
    if (file !== undefined && current !== null && current !== file.ino) {
      const aside = `${file.path}.${crypto.randomUUID()}`;
      try {
        Deno.linkSync(file.path, aside);
        this.#asides.set(listener, aside);
      } catch {
        // Not ours to keep, then.
      }
    }
    closeQuietly(listener);
    if (!this.#acceptLoops.has(listener)) this.#restoreSocketFile(listener);
  }

  /** Puts back a socket file kept aside by {@linkcode #closeListener}. */
  #restoreSocketFile(listener: Deno.Listener<Deno.Conn, A>): void {
    const aside = this.#asides.get(listener);
    const file = this.#socketFiles.get(listener);
    if (aside === undefined || file === undefined) return;
    this.#asides.delete(listener);
    try {
      if (inodeOf(file.path) === null) Deno.renameSync(aside, file.path);
      else Deno.removeSync(aside);
    } catch {
      // The directory changed under us: nothing more to do.
    }
  }

  #dropHandshakes(): void {
    for (const conn of this.#handshakes) closeQuietly(conn);
    this.#handshakes.clear();
  }

  #isClosed(): boolean {
    return this.#closed && this.#acceptLoops.size === 0 &&
      this.#transports.size === 0 && this.#handshakes.size === 0;
  }

  #checkClosed(): void {
    if (!this.#isClosed()) return;
    const waiters = this.#closedWaiters;
    this.#closedWaiters = [];
    for (const resolve of waiters) resolve();
  }
}

/**
 * Listens on TCP, or TLS with the `tls` option, and serves a protocol from
 * `factory` for each connection: asyncio's `loop.create_server()`.
 *
 * @param factory Makes a protocol for each connection.
 * @param options Where to listen, and how.
 * @returns The server, already accepting unless `startServing` is `false`.
 * @throws {TypeError} If `factory` is not a function, an option has the wrong
 * type, or `handshakeTimeout` comes without `tls`; nothing listens then.
 * @throws {RangeError} For a `port`, `idleTimeout` or `handshakeTimeout` out
 * of range.
 * @throws {Deno.errors.NotSupported} For `reusePort` without
 * `--unstable-net`.
 *
 * @example An echo server on a free port
 * ```ts
 * import { createServer, type Transport } from "@aio/protocols";
 *
 * await using server = await createServer(() => {
 *   let transport: Transport;
 *   return {
 *     connectionMade(t) { transport = t; },
 *     dataReceived(data) { transport.write(data); },
 *   };
 * }, { hostname: "127.0.0.1", port: 0 });
 * console.log("listening on", server.addrs[0]);
 * ```
 *
 * @example A TLS server with ALPN
 * ```ts ignore
 * import { createServer, ProtocolBase } from "@aio/protocols";
 *
 * await using server = await createServer(() => new ProtocolBase(), {
 *   port: 8443,
 *   tls: {
 *     cert: await Deno.readTextFile("server.pem"),
 *     key: await Deno.readTextFile("server_key.pem"),
 *     alpnProtocols: ["h2", "http/1.1"],
 *   },
 *   handshakeTimeout: 10_000,
 * });
 * ```
 */
export async function createServer<P extends StreamProtocol>(
  factory: () => P,
  options: CreateServerOptions,
): Promise<Server<Deno.NetAddr>> {
  const what = "create server";
  checkFactory(factory, what);
  const port = checkPort(options?.port, what);
  checkServerOptions(options, what);
  checkTlsOnly(options, what);
  const hostname = checkHostname(options.hostname, what) ?? "0.0.0.0";
  checkBoolean(options.reusePort, "reusePort", what);
  if (options.reusePort !== undefined && !unstableNet()) {
    throw new Deno.errors.NotSupported(
      `Cannot ${what}: reusePort needs Deno's unstable network API; run with --unstable-net, or add "unstable": ["net"] to deno.json`,
    );
  }
  if (options.tls !== undefined) checkServerTls(options.tls, what);
  const hostnames = await listenHostnames(hostname);
  const reusePort = options.reusePort === undefined
    ? {}
    : { reusePort: options.reusePort };
  const tls = options.tls;
  const listeners = listenAll(
    hostnames,
    port,
    (hostname, port): Deno.Listener<Deno.Conn, Deno.NetAddr> =>
      tls === undefined
        ? Deno.listen({ hostname, port, ...reusePort })
        : listenTls({ hostname, port, ...reusePort }, tls),
  );
  return serveOrClose(listeners, factory, options);
}

/** `true` with `--unstable-net`: only then does Deno have `listenDatagram`. */
function unstableNet(): boolean {
  return typeof (Deno as { listenDatagram?: unknown }).listenDatagram ===
    "function";
}

/**
 * Listens on a Unix stream socket and serves a protocol from `factory` for
 * each connection: asyncio's `loop.create_unix_server()`. The socket file
 * is removed when the server closes.
 *
 * @param factory Makes a protocol for each connection.
 * @param options The socket's path, and how to serve.
 * @returns The server, already accepting unless `startServing` is `false`.
 * @throws {TypeError} If `factory` is not a function, an option has the wrong
 * type, or `handshakeTimeout` is given (a Unix server has no TLS); nothing
 * listens then.
 * @throws {RangeError} For an `idleTimeout` out of range.
 *
 * @example Serve on a Unix socket
 * ```ts
 * import { createUnixServer, ProtocolBase } from "@aio/protocols";
 *
 * const dir = await Deno.makeTempDir();
 * await using server = await createUnixServer(() => new ProtocolBase(), {
 *   path: `${dir}/app.sock`,
 * });
 * console.log("listening on", server.addrs[0]);
 * ```
 */
export async function createUnixServer<P extends StreamProtocol>(
  factory: () => P,
  options: CreateUnixServerOptions,
): Promise<Server<Deno.UnixAddr>> {
  const what = "create Unix server";
  checkFactory(factory, what);
  checkSocketPath(options?.path, what);
  checkServerOptions(options, what);
  checkTlsOnly({ handshakeTimeout: options.handshakeTimeout }, what);
  await removeStaleSocket(options.path);
  let listener: Deno.UnixListener;
  try {
    listener = Deno.listen({ transport: "unix", path: options.path });
  } catch (error) {
    throw withAddress(error, `listen on ${options.path}`);
  }
  return serveOrClose([listener], factory, options);
}

/**
 * The options a {@linkcode Server} keeps, checked: every option is checked
 * before anything listens, so that a bad one leaves no socket bound.
 */
function checkServerOptions(options: ServerOptions, what: string): {
  idleTimeout: number | undefined;
  handshakeTimeout: number;
  signal: AbortSignal | undefined;
  onError: ErrorHandler | undefined;
} {
  checkObject(options, "options", what);
  const handshakeTimeout = checkStreamOptions(options, what);
  checkBoolean(options.startServing, "startServing", what);
  return {
    idleTimeout: options.idleTimeout,
    handshakeTimeout,
    signal: checkSignal(options.signal, what),
    onError: options.onError,
  };
}

/**
 * A server over `listeners`; if it cannot be made, the listeners are closed,
 * so that their port or socket file is not held for the process's life.
 */
function serveOrClose<A extends Deno.Addr>(
  listeners: Deno.Listener<Deno.Conn, A>[],
  factory: () => StreamProtocol,
  options: ServerOptions,
): Server<A> {
  try {
    return new Server(listeners, factory, options);
  } catch (error) {
    for (const listener of listeners) closeQuietly(listener);
    throw error;
  }
}

/**
 * Removes a socket file nothing listens on any more.
 *
 * @throws {Deno.errors.AddrInUse} If a server listens on `path`.
 */
async function removeStaleSocket(path: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch {
    return;
  }
  if (!info.isSocket) return;
  try {
    (await Deno.connect({ transport: "unix", path })).close();
  } catch (error) {
    // Only a refused connect says nothing listens there: a server whose
    // backlog is full, or another user's socket, refuses otherwise.
    if (error instanceof Deno.errors.ConnectionRefused) {
      await Deno.remove(path).catch(() => {});
      return;
    }
    throw new Deno.errors.AddrInUse(
      `Cannot listen on ${path}: its socket file is in use, or not ours to replace (${
        error instanceof Error ? error.message : String(error)
      })`,
      { cause: error },
    );
  }
  throw new Deno.errors.AddrInUse(
    `Cannot listen on ${path}: a server is listening there`,
  );
}

/** The inode of the file at `path`, or `null` if there is none. */
function inodeOf(path: string): number | null {
  try {
    return Deno.lstatSync(path).ino;
  } catch {
    return null;
  }
}
