import { checkNumber } from "../_checks.ts";
/** Sets TCP_NODELAY on a TCP conn, as asyncio and uvloop do; others pass. */
export function setNoDelay(
  conn: Deno.Conn,
  noDelay: boolean | undefined,
): void {
  if (noDelay === false) return;
  const tcp = conn as Partial<Deno.TcpConn>;
  if (typeof tcp.setNoDelay !== "function") return;
  try {
    tcp.setNoDelay(true);
  } catch {
    // A conn the peer already reset: the transport will see it on read.
  }
}

/** Sets SO_KEEPALIVE on a TCP conn when asked; others pass. */
export function setKeepAlive(
  conn: Deno.Conn,
  keepAlive: boolean | undefined,
): void {
  if (keepAlive === undefined) return;
  const tcp = conn as Partial<Deno.TcpConn>;
  if (typeof tcp.setKeepAlive !== "function") return;
  try {
    tcp.setKeepAlive(keepAlive);
  } catch {
    // A conn the peer already reset: the transport will see it on read.
  }
}

/** Checks that `factory` is callable before any socket is opened. */
export function checkFactory(factory: unknown, what: string): void {
  if (typeof factory !== "function") {
    throw new TypeError(
      `Cannot ${what}: the protocol factory must be a function, not ${typeof factory}`,
    );
  }
}

/**
 * Checks an `idleTimeout` option (milliseconds, 0 for none).
 *
 * @throws {TypeError} Unless it is a number.
 * @throws {RangeError} Unless it is from 0 to 2^31 - 1.
 */
export function checkIdleTimeout(
  value: unknown,
  what: string,
): number | undefined {
  if (value === undefined) return undefined;
  return checkNumber(value, "idleTimeout", what, 0);
}

/** Checks a TCP port number. */
export function checkPort(port: unknown, what: string): number {
  if (typeof port !== "number" || !Number.isInteger(port)) {
    throw new TypeError(`Cannot ${what}: port must be an integer`);
  }
  if (port < 0 || port > 65535) {
    throw new RangeError(
      `Cannot ${what}: port (${port}) must be between 0 and 65535`,
    );
  }
  return port;
}

/** Closes `resource`, which the peer or Deno may have closed already. */
export function closeQuietly(resource: { close(): void }): void {
  try {
    resource.close();
  } catch {
    // Already closed.
  }
}
