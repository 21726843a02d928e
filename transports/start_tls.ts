import { checkObject } from "../_checks.ts";
import { toError } from "../_report.ts";
import { checkProtocol, StreamTransport } from "./_stream_transport.ts";
import {
  checkClientTls,
  checkHandshakeTimeout,
  isTlsConn,
  type TlsClientOptions,
  upgradeClient,
} from "./_tls.ts";
import type { StreamProtocol, Transport } from "./transport.ts";

export type { TlsClientOptions, TlsServerOptions } from "./_tls.ts";

/**
 * Options for {@linkcode startTls}: the `tls` settings of
 * {@linkcode createConnection}, and the handshake timeout.
 *
 * @example Verify the mail server's name, and give up after 10 s
 * ```ts
 * import type { StartTlsOptions } from "@aio/protocols";
 *
 * const options: StartTlsOptions = {
 *   serverName: "mail.example",
 *   handshakeTimeout: 10_000,
 * };
 * ```
 */
export interface StartTlsOptions extends TlsClientOptions {
  /**
   * Milliseconds the handshake may take (default 60 000, asyncio's
   * `ssl_handshake_timeout`); then it fails with `Deno.errors.TimedOut`.
   */
  handshakeTimeout?: number;
}

/**
 * Upgrades a live plaintext TCP transport to TLS, as a client: asyncio's
 * `loop.start_tls()`, for STARTTLS in SMTP, IMAP, XMPP or PostgreSQL.
 *
 * It flushes what `transport` has buffered, stops it (it reads and writes
 * nothing more), runs the TLS handshake over the same socket, and returns
 * a new transport that drives `protocol` over TLS. The protocol keeps its
 * place in the conversation: it gets no second `connectionMade`, and no
 * byte is lost across the switch. The new transport keeps the old one's
 * write buffer limits and error hook, and reads, as asyncio's does, even if
 * the old one was paused to wait for the go-ahead; a server that tracked
 * the old transport tracks the new one. `getExtraInfo("alpnProtocol")` is
 * the protocol agreed by ALPN, or `null`.
 *
 * Call it from `dataReceived` when the server's go-ahead arrives (or
 * call `pauseReading()` there, and `startTls` later): a read in flight
 * cannot be cancelled, and `Deno.startTls` fails while one is pending.
 *
 * Only the client side is possible: Deno has no server-side `startTls`.
 *
 * @experimental **UNSTABLE**: New API, yet to be vetted.
 *
 * @param transport A live TCP transport from this module.
 * @param protocol The protocol to drive over TLS; usually the same one.
 * @param options The server name to verify (default: the peer's IP
 * address), extra root CAs, ALPN and the handshake timeout.
 * @returns The TLS transport, once the handshake has completed.
 * @throws {TypeError} If the transport is not a TCP transport of this
 * module, is closing, or has a read in flight; if the protocol has neither
 * `dataReceived()` nor `getBuffer()` and `bufferUpdated()`; or if an option
 * has the wrong type. All of this is checked before the connection is
 * touched: the transport is left as it was, still usable.
 * @throws {RangeError} For a `handshakeTimeout` out of range, likewise.
 * @throws {Error} If the handshake fails or times out; the connection is
 * lost then, and the protocol gets `connectionLost(error)`.
 * @throws {Deno.errors.ConnectionAborted} If `transport` is closed or
 * aborted during the handshake (a server's `abortClients()` or
 * `shutdown()`), likewise.
 *
 * @example Upgrade when the server says go ahead
 * ```ts ignore
 * import { ProtocolBase, startTls } from "@aio/protocols";
 *
 * class SmtpClient extends ProtocolBase {
 *   override dataReceived(data: Uint8Array): void {
 *     const line = new TextDecoder().decode(data);
 *     if (line.startsWith("220 Ready to start TLS") && this.transport) {
 *       startTls(this.transport, this, { serverName: "mail.example" })
 *         .then((tls) => {
 *           this.transport = tls;
 *           tls.write(new TextEncoder().encode("EHLO me\r\n"));
 *         }, () => {}); // connectionLost(error) reports a failure
 *     }
 *   }
 * }
 * ```
 */
export async function startTls(
  transport: Transport,
  protocol: StreamProtocol,
  options?: StartTlsOptions,
): Promise<Transport> {
  options ??= {};
  const cannot = "Cannot start TLS";
  if (!(transport instanceof StreamTransport)) {
    throw new TypeError(
      `${cannot}: transport must be a TCP transport of this module`,
    );
  }
  checkProtocol(protocol);
  checkObject(options, "options", "start TLS");
  checkClientTls(options, "start TLS", "");
  const conn = transport.getExtraInfo("conn");
  if (conn === undefined) {
    throw new TypeError(`${cannot}: the transport is not a socket`);
  }
  if (isTlsConn(conn)) {
    throw new TypeError(`${cannot}: the connection already uses TLS`);
  }
  if (conn.remoteAddr.transport !== "tcp") {
    throw new TypeError(`${cannot}: Deno.startTls() needs a TCP connection`);
  }
  const timeoutMs = checkHandshakeTimeout(
    options.handshakeTimeout,
    "start TLS",
  );

  const detached = await transport.detach();
  let upgraded: StreamTransport;
  try {
    const tls = await upgradeClient(detached.conn, {
      hostname: options.serverName ?? conn.remoteAddr.hostname,
      caCerts: options.caCerts,
      alpnProtocols: options.alpnProtocols,
      timeoutMs,
      signal: detached.signal,
    });
    try {
      upgraded = new StreamTransport({ conn: tls.conn }, protocol, {
        onError: detached.onError,
        events: detached.events,
        extra: tls.extra,
        upgraded: true,
        limits: detached.limits,
        idleTimeout: detached.idleTimeout,
      });
    } catch (error) {
      tls.conn.close();
      throw error;
    }
  } catch (error) {
    const exc = toError(error);
    detached.lose(exc);
    throw exc;
  }
  detached.events?.replaced?.(transport, upgraded);
  return upgraded;
}
