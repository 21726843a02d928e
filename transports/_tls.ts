import { describeValue, MAX_TIMEOUT_MS } from "../_checks.ts";
import { closeQuietly } from "./_conn.ts";
import { formatAddress, withAddress } from "./_address.ts";

/** asyncio's `SSL_HANDSHAKE_TIMEOUT`: 60 s for a handshake to complete. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 60_000;

/**
 * TLS settings for a server: {@linkcode createServer}'s `tls` option, passed
 * on to `Deno.listenTls`.
 *
 * @example Serve TLS with ALPN
 * ```ts ignore
 * import { createServer, ProtocolBase, type TlsServerOptions } from "@aio/protocols";
 *
 * const tls: TlsServerOptions = {
 *   cert: await Deno.readTextFile("server.pem"),
 *   key: await Deno.readTextFile("server_key.pem"),
 *   alpnProtocols: ["h2", "http/1.1"],
 * };
 * await using server = await createServer(() => new ProtocolBase(), {
 *   port: 8443,
 *   tls,
 * });
 * ```
 */
export interface TlsServerOptions {
  /** The certificate chain, PEM. */
  cert: string;
  /** The certificate's private key, PEM (PKCS#8, PKCS#1 or SEC1). */
  key: string;
  /** Application protocols to offer by ALPN, most preferred first. */
  alpnProtocols?: string[];
}

/**
 * TLS settings for a client: {@linkcode createConnection}'s `tls` option,
 * passed on to `Deno.startTls`.
 *
 * @example Trust a private CA
 * ```ts ignore
 * import { createConnection, ProtocolBase, type TlsClientOptions } from "@aio/protocols";
 *
 * const tls: TlsClientOptions = {
 *   caCerts: [await Deno.readTextFile("ca.pem")],
 *   serverName: "db.internal",
 * };
 * const [transport] = await createConnection(() => new ProtocolBase(), {
 *   hostname: "10.0.0.7",
 *   port: 5433,
 *   tls,
 * });
 * transport.close();
 * ```
 */
export interface TlsClientOptions {
  /** Root certificates (PEM) trusted beside the default ones. */
  caCerts?: string[];
  /**
   * The name the server's certificate must carry, also sent by SNI
   * (default: the `hostname` connected to).
   */
  serverName?: string;
  /** Application protocols to ask for by ALPN, most preferred first. */
  alpnProtocols?: string[];
}

/** What a completed handshake adds to a transport's extra info. */
export interface TlsExtra extends Record<string, unknown> {
  /** The protocol agreed by ALPN, or `null`. */
  alpnProtocol: string | null;
}

/** Returns `true` for a `Deno.TlsConn` (it has `handshake()`). */
export function isTlsConn(conn: Deno.Conn): conn is Deno.TlsConn {
  return typeof (conn as Partial<Deno.TlsConn>).handshake === "function";
}

/**
 * Checks a `handshakeTimeout` option (milliseconds) and returns it, or the
 * 60 s default.
 */
export function checkHandshakeTimeout(value: unknown, what: string): number {
  if (value === undefined) return DEFAULT_HANDSHAKE_TIMEOUT_MS;
  if (typeof value !== "number") {
    throw new TypeError(
      `Cannot ${what}: handshakeTimeout must be a number of milliseconds`,
    );
  }
  if (!(value > 0 && value <= MAX_TIMEOUT_MS)) {
    throw new RangeError(
      `Cannot ${what}: handshakeTimeout (${value}) must be > 0 and <= ${MAX_TIMEOUT_MS} ms`,
    );
  }
  return value;
}

/**
 * Runs the TLS handshake on `conn` to completion, or closes `conn` and
 * rejects: with the handshake's error, with `Deno.errors.TimedOut` after
 * `timeoutMs`, or with `signal.reason`. The timer is always cleared.
 */
export async function handshake(
  conn: Deno.TlsConn,
  timeoutMs: number,
  signal?: AbortSignal,
  peer?: string,
): Promise<TlsExtra> {
  const withPeer = peer === undefined ? "" : ` with ${peer}`;
  let cause: unknown;
  let stopped = false;
  const stop = (reason: unknown): void => {
    if (stopped) return;
    stopped = true;
    cause = reason;
    closeQuietly(conn);
  };
  const onAbort = (): void => stop(signal?.reason);
  const timer = setTimeout(
    () =>
      stop(
        new Deno.errors.TimedOut(
          `Cannot complete TLS handshake${withPeer}: it took longer than ${timeoutMs} ms`,
        ),
      ),
    timeoutMs,
  );
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    if (signal?.aborted) stop(signal.reason);
    const info = await conn.handshake();
    if (stopped) throw cause;
    return { alpnProtocol: info.alpnProtocol ?? null };
  } catch (error) {
    closeQuietly(conn);
    if (stopped) throw cause;
    throw peer === undefined
      ? error
      : withAddress(error, `complete TLS handshake${withPeer}`);
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
  }
}

/**
 * Upgrades a connected TCP conn to TLS as a client and completes the
 * handshake. On failure the conn is closed.
 */
export async function upgradeClient(
  conn: Deno.Conn,
  options: {
    hostname: string;
    caCerts?: string[] | undefined;
    alpnProtocols?: string[] | undefined;
    timeoutMs: number;
    signal?: AbortSignal | undefined;
  },
): Promise<{ conn: Deno.TlsConn; extra: TlsExtra }> {
  const remote = conn.remoteAddr as Deno.NetAddr;
  const peer = formatAddress(remote.hostname, remote.port);
  let tls: Deno.TlsConn;
  try {
    options.signal?.throwIfAborted();
    tls = await Deno.startTls(conn as Deno.TcpConn, {
      hostname: options.hostname,
      ...(options.caCerts === undefined ? {} : { caCerts: options.caCerts }),
      ...(options.alpnProtocols === undefined
        ? {}
        : { alpnProtocols: options.alpnProtocols }),
    });
  } catch (error) {
    closeQuietly(conn);
    if (options.signal?.aborted && error === options.signal.reason) throw error;
    throw withAddress(error, `start TLS with ${peer}`);
  }
  const extra = await handshake(
    tls,
    options.timeoutMs,
    options.signal,
    peer,
  );
  return { conn: tls, extra };
}

/**
 * Checks {@linkcode createServer}'s `tls` option before anything listens.
 *
 * @throws {TypeError} Unless `cert` and `key` are strings and
 * `alpnProtocols`, if given, is an array of strings.
 */
export function checkServerTls(tls: TlsServerOptions, what: string): void {
  if (typeof tls?.cert !== "string" || typeof tls.key !== "string") {
    throw new TypeError(
      `Cannot ${what}: tls.cert and tls.key must be PEM strings`,
    );
  }
  checkStrings(tls.alpnProtocols, "tls.alpnProtocols", what);
}

/**
 * Checks a client's TLS settings ({@linkcode createConnection}'s `tls`, or
 * {@linkcode startTls}'s options) before any socket is opened or upgraded:
 * Deno would only reject them once the connection is taken apart.
 *
 * @param tls The settings, an object.
 * @param what What could not be done: `"start TLS"`.
 * @param prefix How the settings are named in the caller's options: `"tls."`
 * for `createConnection`, `""` for `startTls`.
 * @throws {TypeError} Unless `caCerts` and `alpnProtocols`, if given, are
 * arrays of strings and `serverName`, if given, is a non-empty string.
 */
export function checkClientTls(
  tls: TlsClientOptions,
  what: string,
  prefix: string,
): void {
  checkStrings(tls.caCerts, `${prefix}caCerts`, what);
  checkStrings(tls.alpnProtocols, `${prefix}alpnProtocols`, what);
  const serverName: unknown = tls.serverName;
  if (
    serverName !== undefined &&
    (typeof serverName !== "string" || serverName === "")
  ) {
    throw new TypeError(
      `Cannot ${what}: ${prefix}serverName must be a non-empty string, not ${
        serverName === "" ? "an empty one" : describeValue(serverName)
      }`,
    );
  }
}

/** Checks an option that must be an array of strings, if given. */
function checkStrings(value: unknown, name: string, what: string): void {
  if (value === undefined) return;
  if (!Array.isArray(value)) {
    throw new TypeError(
      `Cannot ${what}: ${name} must be an array of strings, not ${
        describeValue(value)
      }`,
    );
  }
  const index = value.findIndex((item) => typeof item !== "string");
  if (index !== -1) {
    throw new TypeError(
      `Cannot ${what}: ${name}[${index}] must be a string, not ${
        describeValue(value[index])
      }`,
    );
  }
}

/** Opens a TLS listener for {@linkcode createServer}'s `tls` option. */
export function listenTls(
  options: { hostname: string; port: number; reusePort?: boolean | undefined },
  tls: TlsServerOptions,
): Deno.TlsListener {
  return Deno.listenTls({
    hostname: options.hostname,
    port: options.port,
    cert: tls.cert,
    key: tls.key,
    ...(tls.alpnProtocols === undefined
      ? {}
      : { alpnProtocols: tls.alpnProtocols }),
    ...(options.reusePort === undefined
      ? {}
      : { reusePort: options.reusePort }),
  });
}

/** Describes a conn's peer for an error message: `"127.0.0.1:4433"`. */
export function describePeer(conn: Deno.TlsConn): string {
  try {
    const addr = conn.remoteAddr;
    return `${addr.hostname}:${addr.port}`;
  } catch {
    return "a client";
  }
}
