import {
  checkBoolean,
  checkNumber,
  checkObject,
  checkOnError,
  checkSignal,
} from "../_checks.ts";
import {
  checkHostname,
  formatAddress,
  resolveListenHostnames,
  withAddress,
} from "./_address.ts";
import {
  checkFactory,
  checkIdleTimeout,
  checkPort,
  setKeepAlive,
  setNoDelay,
} from "./_conn.ts";
import type { TransportEvents } from "./_protocol_caller.ts";
import { StreamTransport } from "./_stream_transport.ts";
import {
  checkClientTls,
  checkHandshakeTimeout,
  upgradeClient,
} from "./_tls.ts";
import type {
  ConnectAcceptedConnOptions,
  CreateConnectionOptions,
} from "./create_connection.ts";
import type { StreamProtocol, Transport } from "./transport.ts";

/**
 * Connects over TCP (or TLS) and drives a protocol: `createConnection()`,
 * with the maker's events (a reconnecting client learns whether
 * `connectionMade` failed, and of the loss).
 */
export async function connectTcp<P extends StreamProtocol>(
  factory: () => P,
  options: CreateConnectionOptions,
  events?: TransportEvents<Transport>,
): Promise<[Transport, P]> {
  checkFactory(factory, "create connection");
  const { hostname, port, timeoutMs } = checkConnectOptions(
    options,
    "create connection",
  );
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({
      hostname,
      port,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      ...(options.happyEyeballsDelay === undefined
        ? {}
        : { autoSelectFamilyAttemptDelay: options.happyEyeballsDelay }),
    });
  } catch (error) {
    if (options.signal?.aborted && error === options.signal.reason) {
      throw error;
    }
    // Deno's failed lookup is a plain Error: a name that does not resolve
    // gets the error a server gets for it (with its `code`, ENOTFOUND).
    if ((error as object | null)?.constructor === Error) {
      await resolveListenHostnames(hostname);
    }
    throw withAddress(error, `connect to ${formatAddress(hostname, port)}`);
  }
  if (options.tls === undefined) {
    return await drive(factory, conn, options, undefined, events);
  }
  // Deno's TlsConn has no setNoDelay(): set it on the TCP conn first.
  setNoDelay(conn, options.noDelay);
  setKeepAlive(conn, options.keepAlive);
  const tls = await upgradeClient(conn, {
    hostname: options.tls.serverName ?? hostname,
    caCerts: options.tls.caCerts,
    alpnProtocols: options.tls.alpnProtocols,
    timeoutMs,
    signal: options.signal,
  });
  return await drive(factory, tls.conn, options, tls.extra, events);
}

/**
 * Checks {@linkcode createConnection}'s options before any socket is opened
 * (a reconnecting client runs the same checks once, up front).
 *
 * @returns The host to connect to (default `"127.0.0.1"`), the port and
 * the handshake timeout.
 * @throws {TypeError} For an option of the wrong type, or `handshakeTimeout`
 * without `tls`.
 * @throws {RangeError} For a port, a timeout or a delay out of range.
 */
export function checkConnectOptions(
  options: CreateConnectionOptions,
  what: string,
): { hostname: string; port: number; timeoutMs: number } {
  checkObject(options, "options", what);
  const port = checkPort(options.port, what);
  const hostname = checkHostname(options.hostname, what) ?? "127.0.0.1";
  checkSignal(options.signal, what);
  if (options.happyEyeballsDelay !== undefined) {
    checkNumber(options.happyEyeballsDelay, "happyEyeballsDelay", what, 0);
  }
  if (options.tls !== undefined) {
    checkObject(options.tls, "tls", what);
    checkClientTls(options.tls, what, "tls.");
  }
  checkTlsOnly(options, what);
  const timeoutMs = checkStreamOptions(options, what);
  return { hostname, port, timeoutMs };
}

/**
 * Checks the options that every stream connection takes, served or
 * connected: `noDelay`, `keepAlive`, `idleTimeout`, `onError` and
 * `handshakeTimeout`.
 *
 * @returns The handshake timeout, or its default.
 * @throws {TypeError} For an option of the wrong type.
 * @throws {RangeError} For a timeout out of range.
 */
export function checkStreamOptions(
  options: ConnectAcceptedConnOptions,
  what: string,
): number {
  checkBoolean(options.noDelay, "noDelay", what);
  checkBoolean(options.keepAlive, "keepAlive", what);
  checkIdleTimeout(options.idleTimeout, what);
  checkOnError(options.onError, what);
  return checkHandshakeTimeout(options.handshakeTimeout, what);
}

/**
 * Checks that TLS-only options come with TLS, as asyncio does.
 *
 * @throws {TypeError} For `handshakeTimeout` without `tls`.
 */
export function checkTlsOnly(
  options: { handshakeTimeout?: number | undefined; tls?: unknown },
  what: string,
): void {
  if (options.handshakeTimeout !== undefined && options.tls === undefined) {
    throw new TypeError(
      `Cannot ${what}: handshakeTimeout is for TLS only, and there is no tls`,
    );
  }
}

/**
 * Starts a transport over `conn`; resolves once `connectionMade` ran. The
 * caller has checked `factory` and `options`.
 */
export function drive<P extends StreamProtocol>(
  factory: () => P,
  conn: Deno.Conn,
  options: ConnectAcceptedConnOptions,
  extra: Record<string, unknown> | undefined,
  events?: TransportEvents<Transport>,
): Promise<[Transport, P]> {
  let transport: StreamTransport;
  let protocol: P;
  const made = Promise.withResolvers<[Transport, P]>();
  try {
    setNoDelay(conn, options.noDelay);
    setKeepAlive(conn, options.keepAlive);
    protocol = factory();
    transport = new StreamTransport({ conn }, protocol, {
      onError: options.onError,
      extra,
      idleTimeout: options.idleTimeout,
      events: {
        made(_, error) {
          events?.made?.(transport, error);
          if (error === undefined) made.resolve([transport, protocol]);
          else made.reject(error);
        },
        lost(lost) {
          events?.lost?.(lost);
        },
        replaced(old, upgraded) {
          events?.replaced?.(old, upgraded);
        },
      },
    });
  } catch (error) {
    conn.close();
    return Promise.reject(error);
  }
  return made.promise;
}
