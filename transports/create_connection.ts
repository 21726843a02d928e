import { checkObject, checkSignal, describeValue } from "../_checks.ts";
import { checkSocketPath, withAddress } from "./_address.ts";
import { checkFactory } from "./_conn.ts";
import { handshake, isTlsConn, type TlsClientOptions } from "./_tls.ts";
import {
  checkStreamOptions,
  checkTlsOnly,
  connectTcp,
  drive,
} from "./_connect.ts";
import type { ErrorHandler, StreamProtocol, Transport } from "./transport.ts";

/** Options for {@linkcode createConnection}. */
export interface CreateConnectionOptions {
  /** The host to connect to (default `"127.0.0.1"`). */
  hostname?: string;
  /** The TCP port to connect to. */
  port: number;
  /** `false` leaves Nagle's algorithm on (default: TCP_NODELAY set). */
  noDelay?: boolean;
  /** `true` sets TCP keepalive (SO_KEEPALIVE), as asyncio's `keep_alive`. */
  keepAlive?: boolean;
  /**
   * Milliseconds the connection may stay idle (nothing read or written)
   * before the protocol's `idleTimedOut()` is called, or it is closed if
   * the protocol has none (default: no limit).
   */
  idleTimeout?: number;
  /** Cancels the connect. */
  signal?: AbortSignal;
  /**
   * Happy Eyeballs: milliseconds before the next address family is tried
   * (Deno's default: 250).
   */
  happyEyeballsDelay?: number;
  /** Receives errors thrown by protocol callbacks; default: stderr. */
  onError?: ErrorHandler;
  /**
   * Connect with TLS: the handshake completes before `connectionMade`,
   * and a failed one rejects.
   */
  tls?: TlsClientOptions;
  /**
   * TLS only: milliseconds the handshake may take (default 60 000,
   * asyncio's `ssl_handshake_timeout`); then it rejects with
   * `Deno.errors.TimedOut`.
   */
  handshakeTimeout?: number;
}

/** Options for {@linkcode createUnixConnection}. */
export interface CreateUnixConnectionOptions {
  /** The socket's path. */
  path: string;
  /** Cancels the connect. */
  signal?: AbortSignal;
  /** Receives errors thrown by protocol callbacks; default: stderr. */
  onError?: ErrorHandler;
  /**
   * Milliseconds the connection may stay idle (nothing read or written)
   * before the protocol's `idleTimedOut()` is called, or it is closed if
   * the protocol has none (default: no limit).
   */
  idleTimeout?: number;
}

/** Options for {@linkcode connectAcceptedConn}. */
export interface ConnectAcceptedConnOptions {
  /** `false` leaves Nagle's algorithm on (default: TCP_NODELAY set). */
  noDelay?: boolean;
  /** `true` sets TCP keepalive (SO_KEEPALIVE), as asyncio's `keep_alive`. */
  keepAlive?: boolean;
  /**
   * Milliseconds the connection may stay idle (nothing read or written)
   * before the protocol's `idleTimedOut()` is called, or it is closed if
   * the protocol has none (default: no limit).
   */
  idleTimeout?: number;
  /** Receives errors thrown by protocol callbacks; default: stderr. */
  onError?: ErrorHandler;
  /**
   * For a `Deno.TlsConn`: milliseconds the handshake may take (default
   * 60 000); then it rejects with `Deno.errors.TimedOut`.
   */
  handshakeTimeout?: number;
}

/**
 * Connects over TCP and drives a protocol from `factory` over the
 * connection: asyncio's `loop.create_connection()`.
 *
 * Resolves once `connectionMade` has run; rejects if the connect fails, the
 * TLS handshake fails or times out, or `connectionMade` throws (the
 * connection is closed then). With `tls`, the transport's
 * `getExtraInfo("alpnProtocol")` is the protocol agreed by ALPN, or `null`.
 *
 * @param factory Makes the protocol: a `Protocol`, or a `BufferedProtocol`.
 * @param options Where to connect, and how.
 * @returns The transport and the protocol.
 * @throws {TypeError} If `factory` is not a function, an option has the wrong
 * type, or `handshakeTimeout` comes without `tls`; no socket is opened then.
 * @throws {RangeError} For a `port`, `idleTimeout`, `handshakeTimeout` or
 * `happyEyeballsDelay` out of range.
 *
 * @example Send a line and print the reply
 * ```ts
 * import { createConnection, createServer, ProtocolBase } from "@aio/protocols";
 *
 * await using server = await createServer(() => ({
 *   connectionMade(t) { t.close(); },
 *   dataReceived() {},
 * }), { hostname: "127.0.0.1", port: 0 });
 * const { port } = server.addrs[0]!;
 * const [transport] = await createConnection(() => new ProtocolBase(), {
 *   hostname: "127.0.0.1",
 *   port,
 * });
 * transport.write(new TextEncoder().encode("hello\n"));
 * transport.close();
 * ```
 *
 * @example Connect with TLS to a server with a private CA
 * ```ts ignore
 * import { createConnection, ProtocolBase } from "@aio/protocols";
 *
 * const [transport] = await createConnection(() => new ProtocolBase(), {
 *   hostname: "127.0.0.1",
 *   port: 8443,
 *   tls: {
 *     caCerts: [await Deno.readTextFile("ca.pem")],
 *     serverName: "localhost",
 *     alpnProtocols: ["h2", "http/1.1"],
 *   },
 * });
 * console.log(transport.getExtraInfo("alpnProtocol"));
 * transport.close();
 * ```
 */
export function createConnection<P extends StreamProtocol>(
  factory: () => P,
  options: CreateConnectionOptions,
): Promise<[Transport, P]> {
  return connectTcp(factory, options);
}

/**
 * Connects to a Unix stream socket and drives a protocol from `factory`
 * over it: asyncio's `loop.create_unix_connection()`.
 *
 * @param factory Makes the protocol: a `Protocol`, or a `BufferedProtocol`.
 * @param options The socket's path.
 * @returns The transport and the protocol, once `connectionMade` has run.
 * @throws {TypeError} If `factory` is not a function or an option has the
 * wrong type; no socket is opened then.
 * @throws {RangeError} For an `idleTimeout` out of range.
 *
 * @example Connect to a Unix socket
 * ```ts ignore
 * import { createUnixConnection, ProtocolBase } from "@aio/protocols";
 *
 * const [transport] = await createUnixConnection(() => new ProtocolBase(), {
 *   path: "/tmp/app.sock",
 * });
 * transport.close();
 * ```
 */
export async function createUnixConnection<P extends StreamProtocol>(
  factory: () => P,
  options: CreateUnixConnectionOptions,
): Promise<[Transport, P]> {
  const what = "create Unix connection";
  checkFactory(factory, what);
  checkObject(options, "options", what);
  checkSocketPath(options.path, what);
  checkSignal(options.signal, what);
  checkStreamOptions(options, what);
  // No TLS over a Unix socket: a handshakeTimeout is refused before connecting.
  const { handshakeTimeout } = options as ConnectAcceptedConnOptions;
  checkTlsOnly({ handshakeTimeout }, what);
  if (options.signal?.aborted) throw options.signal.reason;
  let conn: Deno.UnixConn;
  try {
    conn = await Deno.connect({ transport: "unix", path: options.path });
  } catch (error) {
    throw withAddress(error, `connect to ${options.path}`);
  }
  if (options.signal?.aborted) {
    conn.close();
    throw options.signal.reason;
  }
  return await connectAcceptedConn(factory, conn, options);
}

/**
 * Drives a protocol from `factory` over a `Deno.Conn` you already have,
 * for instance one you accepted yourself: asyncio's
 * `loop.connect_accepted_socket()`.
 *
 * A `Deno.TlsConn` (from your own `Deno.listenTls`, say) completes its TLS
 * handshake first, and the transport's `getExtraInfo("alpnProtocol")` is
 * the protocol agreed by ALPN, or `null`; a failed handshake closes the
 * conn and rejects.
 *
 * @param factory Makes the protocol: a `Protocol`, or a `BufferedProtocol`.
 * @param conn The connection; the transport owns it from now on.
 * @param options TCP_NODELAY, error reporting and the TLS handshake timeout.
 * @returns The transport and the protocol, once `connectionMade` has run.
 * @throws {TypeError} If `conn` is not a `Deno.Conn`; or, closing `conn`, if
 * `factory` is not a function, an option has the wrong type, or
 * `handshakeTimeout` is given for a conn that is not TLS.
 * @throws {RangeError} For an `idleTimeout` or `handshakeTimeout` out of
 * range; `conn` is closed.
 *
 * @example Wrap a connection from your own accept loop
 * ```ts
 * import { connectAcceptedConn, ProtocolBase } from "@aio/protocols";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ port: listener.addr.port });
 * const [transport] = await connectAcceptedConn(
 *   () => new ProtocolBase(),
 *   await listener.accept(),
 * );
 * transport.close();
 * client.close();
 * ```
 */
export async function connectAcceptedConn<P extends StreamProtocol>(
  factory: () => P,
  conn: Deno.Conn,
  options?: ConnectAcceptedConnOptions,
): Promise<[Transport, P]> {
  const what = "connect accepted conn";
  checkConn(conn, what);
  options ??= {};
  const tls = isTlsConn(conn);
  let timeoutMs: number;
  try {
    checkFactory(factory, what);
    checkObject(options, "options", what);
    timeoutMs = checkStreamOptions(options, what);
    if (!tls) {
      checkTlsOnly({ handshakeTimeout: options.handshakeTimeout }, what);
    }
  } catch (error) {
    conn.close();
    throw error;
  }
  const extra = tls ? await handshake(conn, timeoutMs) : undefined;
  return await drive(factory, conn, options, extra);
}

/**
 * Checks that `conn` is a connection: something that reads, writes and
 * closes.
 *
 * @throws {TypeError} Otherwise.
 */
function checkConn(conn: unknown, what: string): asserts conn is Deno.Conn {
  const methods = conn as Partial<Deno.Conn> | null | undefined;
  if (
    typeof methods?.read !== "function" ||
    typeof methods.write !== "function" ||
    typeof methods.close !== "function"
  ) {
    throw new TypeError(
      `Cannot ${what}: conn must be a Deno.Conn, not ${describeValue(conn)}`,
    );
  }
}
