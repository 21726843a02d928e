import { describeValue } from "../_checks.ts";
import { promises as dns } from "node:dns";
import { isIP } from "node:net";
import { closeQuietly } from "./_conn.ts";

/** How many times {@linkcode listenAll} tries with port 0 before it gives up. */
const LISTEN_ATTEMPTS = 5;

/**
 * Formats a host and port the way a URL does: an IPv6 address goes in
 * brackets, so that its colons cannot be read as the port's.
 *
 * @param hostname A name, an IPv4 address or an IPv6 address (bare or
 *   already in brackets).
 * @param port The port number.
 * @returns `hostname:port`, or `[hostname]:port` for IPv6.
 *
 * @example Format IPv4 and IPv6 addresses
 * ```ts
 * import { formatAddress } from "./_address.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(formatAddress("127.0.0.1", 80), "127.0.0.1:80");
 * assert.equal(formatAddress("::1", 80), "[::1]:80");
 * ```
 */
export function formatAddress(hostname: string, port: number): string {
  return hostname.includes(":") && !hostname.startsWith("[")
    ? `[${hostname}]:${port}`
    : `${hostname}:${port}`;
}

/**
 * Checks a `hostname` option before anything is resolved or opened.
 *
 * @param hostname The option's value; `undefined` means the caller's default.
 * @param what What could not be done: `"create server"`.
 * @returns `hostname`, now known to be a non-empty string, or `undefined`.
 * @throws {TypeError} Unless `hostname` is `undefined` or a non-empty string.
 *
 * @example Reject a number given as a hostname
 * ```ts
 * import { checkHostname } from "./_address.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(checkHostname("::1", "connect"), "::1");
 * assert.throws(
 *   () => checkHostname(127, "connect"),
 *   { name: "TypeError", message: "Cannot connect: hostname must be a string, not number" },
 * );
 * ```
 */
export function checkHostname(
  hostname: unknown,
  what: string,
): string | undefined {
  if (hostname === undefined) return undefined;
  if (typeof hostname !== "string") {
    throw new TypeError(
      `Cannot ${what}: hostname must be a string, not ${
        describeValue(hostname)
      }`,
    );
  }
  if (hostname === "") {
    throw new TypeError(`Cannot ${what}: hostname is empty`);
  }
  return hostname;
}

/**
 * Checks a Unix socket's `path`.
 *
 * @throws {TypeError} Unless it is a non-empty string (an empty one would
 * make a socket nothing can connect to).
 */
export function checkSocketPath(
  path: unknown,
  what: string,
): asserts path is string {
  if (typeof path === "string" && path !== "") return;
  throw new TypeError(
    `Cannot ${what}: path must be a non-empty string, not ${
      path === "" ? "an empty one" : describeValue(path)
    }`,
  );
}

/**
 * Says which address a failed Deno call was about: the error comes back as a
 * copy whose message starts with `Cannot <what>: `, as
 * `Cannot connect to 127.0.0.1:1: Connection refused (os error 111)`.
 *
 * The copy keeps what callers test: its class (`instanceof
 * Deno.errors.ConnectionRefused`), its `name`, its own fields such as
 * `code`, and the stack frames of the original, which becomes its `cause`.
 * Values that are not errors come back unchanged, and so does a
 * `DOMException`, whose fields a copy cannot have. Pass only errors that the
 * Deno call raised: an abort reason must reach the caller as it is.
 *
 * @param error What the Deno call threw or rejected with.
 * @param what The operation and its address: `"connect to 127.0.0.1:1"`,
 *   `"listen on [::1]:8080"`, `"listen on /tmp/x.sock"`.
 * @returns The copy that names the address, or `error` itself.
 *
 * @example Name the address a connection was refused by
 * ```ts
 * import { withAddress } from "./_address.ts";
 * import assert from "node:assert/strict";
 *
 * const refused = new Deno.errors.ConnectionRefused("Connection refused");
 * const error = withAddress(refused, "connect to 127.0.0.1:1") as Error;
 * assert.ok(error instanceof Deno.errors.ConnectionRefused);
 * assert.equal(error.message, "Cannot connect to 127.0.0.1:1: Connection refused");
 * assert.equal(error.cause, refused);
 * ```
 */
export function withAddress(error: unknown, what: string): unknown {
  if (!(error instanceof Error) || error instanceof DOMException) return error;
  const message = error.message === ""
    ? `Cannot ${what}`
    : `Cannot ${what}: ${error.message}`;
  const wrapped = new Error(message, { cause: error });
  Object.setPrototypeOf(wrapped, Object.getPrototypeOf(error));
  for (
    const [key, descriptor] of Object.entries(
      Object.getOwnPropertyDescriptors(error),
    )
  ) {
    if (key === "message" || key === "stack" || key === "cause") continue;
    Object.defineProperty(wrapped, key, descriptor);
  }
  Object.defineProperty(wrapped, "stack", {
    value: restack(error, wrapped, message),
    writable: true,
    enumerable: false,
    configurable: true,
  });
  return wrapped;
}

/**
 * The addresses to listen on for `hostname`, one socket each, as asyncio's
 * `create_server()` does: `"localhost"` gives 127.0.0.1, and ::1 too where
 * the system resolves it so.
 *
 * An IP address gives itself alone (an IPv6 one in brackets, without them);
 * so do the wildcards `"0.0.0.0"` and `"::"`. A name is looked up with the
 * system resolver (`getaddrinfo()`, which reads `/etc/hosts`, unlike
 * `Deno.resolveDns()`); this needs net access to the name. Its distinct
 * addresses come back IPv4 first, then IPv6, each in the resolver's order.
 *
 * @param hostname A name or an IP address.
 * @returns At least one address.
 * @throws {TypeError} If `hostname` is empty.
 * @throws {Deno.errors.NotCapable} If net access to `hostname` is not
 *   granted.
 * @throws {Error} The failed lookup's error, as `Cannot resolve <hostname>:
 *   getaddrinfo ENOTFOUND <hostname>`, with its `code`.
 *
 * @example Resolve localhost
 * ```ts
 * import { resolveListenHostnames } from "./_address.ts";
 * import assert from "node:assert/strict";
 *
 * const addresses = await resolveListenHostnames("localhost");
 * assert.ok(addresses.includes("127.0.0.1"));
 * assert.deepEqual(await resolveListenHostnames("[::1]"), ["::1"]);
 * ```
 */
export async function resolveListenHostnames(
  hostname: string,
): Promise<string[]> {
  if (hostname === "") {
    throw new TypeError("Cannot resolve hostname: hostname is empty");
  }
  if (hostname.startsWith("[") && hostname.endsWith("]")) {
    const inner = hostname.slice(1, -1);
    if (isIP(inner) === 6) return [inner];
  }
  if (isIP(hostname) !== 0) return [hostname];
  let found: { address: string; family: number }[];
  try {
    found = await dns.lookup(hostname, { all: true });
  } catch (error) {
    throw lookupError(error, hostname);
  }
  const ipv4 = new Set<string>();
  const ipv6 = new Set<string>();
  for (const { address, family } of found) {
    (family === 6 ? ipv6 : ipv4).add(address);
  }
  const addresses = [...ipv4, ...ipv6];
  if (addresses.length === 0) {
    throw new Deno.errors.NotFound(
      `Cannot resolve ${hostname}: no address found`,
    );
  }
  return addresses;
}

/** Whether this machine has IPv6 loopback, once known. */
let ipv6Loopback: boolean | undefined;

/**
 * The addresses a server given `hostname` listens on:
 * {@linkcode resolveListenHostnames}, and for `localhost` both loopback
 * addresses where the machine has them, since clients try `::1` for
 * `localhost` whatever the hosts file says (RFC 6761).
 */
export async function listenHostnames(hostname: string): Promise<string[]> {
  const addresses = await resolveListenHostnames(hostname);
  if (hostname.toLowerCase() !== "localhost") return addresses;
  const loopbacks = ["127.0.0.1"];
  ipv6Loopback ??= hasIpv6Loopback();
  if (ipv6Loopback) loopbacks.push("::1");
  for (const address of addresses) {
    if (!loopbacks.includes(address)) loopbacks.push(address);
  }
  return loopbacks;
}

function hasIpv6Loopback(): boolean {
  try {
    Deno.listen({ hostname: "::1", port: 0 }).close();
    return true;
  } catch {
    return false;
  }
}

/**
 * Listens on every address in `hostnames`, all on one port, and returns the
 * listeners in the same order.
 *
 * With port 0 the first listener takes a free port and the others take the
 * same one (asyncio gives each its own). If a later address has that port in
 * use already, all listeners are closed and the whole thing starts over on a
 * fresh port, up to 5 times. Any other failure closes the listeners opened
 * so far and throws the error with its address, as
 * `Cannot listen on [::1]:8080: Address already in use (os error 98)`.
 *
 * On Linux, `"::"` also takes IPv4 (Deno sets no `IPV6_V6ONLY`), so `"::"`
 * together with `"0.0.0.0"` or another IPv4 address fails with `AddrInUse`.
 *
 * @typeParam L The listener type: `Deno.Listener`, `Deno.TlsListener`, or
 *   anything with a network address and `close()`.
 * @param hostnames The addresses, as from {@linkcode resolveListenHostnames}.
 * @param port The port for all of them; 0 for a free one.
 * @param listen Opens one listener, as `Deno.listen({ hostname, port })`
 *   does.
 * @returns One listener per hostname.
 * @throws {TypeError} If `hostnames` is empty or a listener has no port.
 *
 * @example Listen on every address of localhost, on one port
 * ```ts
 * import { listenAll, resolveListenHostnames } from "./_address.ts";
 * import assert from "node:assert/strict";
 *
 * const listeners = listenAll(
 *   await resolveListenHostnames("localhost"),
 *   0,
 *   (hostname, port) => Deno.listen({ hostname, port }),
 * );
 * const ports = listeners.map((listener) => listener.addr.port);
 * assert.equal(new Set(ports).size, 1);
 * for (const listener of listeners) listener.close();
 * ```
 */
export function listenAll<
  L extends { readonly addr: Deno.Addr; close(): void },
>(
  hostnames: readonly string[],
  port: number,
  listen: (hostname: string, port: number) => L,
): L[] {
  if (hostnames.length === 0) {
    throw new TypeError(`Cannot listen on port ${port}: no hostnames given`);
  }
  for (let attempt = 1;; attempt++) {
    const retry = port === 0 && attempt < LISTEN_ATTEMPTS;
    const listeners = listenOnce(hostnames, port, listen, retry);
    if (listeners !== undefined) return listeners;
  }
}

/**
 * One try of {@linkcode listenAll}: the listeners, or `undefined` when
 * `retry` is set and a later address has the first one's port in use.
 */
function listenOnce<L extends { readonly addr: Deno.Addr; close(): void }>(
  hostnames: readonly string[],
  port: number,
  listen: (hostname: string, port: number) => L,
  retry: boolean,
): L[] | undefined {
  const listeners: L[] = [];
  let sharedPort = port;
  for (const hostname of hostnames) {
    let listener: L;
    try {
      listener = listen(hostname, sharedPort);
    } catch (error) {
      for (const listener of listeners) closeQuietly(listener);
      if (
        retry && listeners.length > 0 &&
        error instanceof Deno.errors.AddrInUse
      ) {
        return undefined;
      }
      throw withAddress(
        error,
        `listen on ${formatAddress(hostname, sharedPort)}`,
      );
    }
    listeners.push(listener);
    const addr = listener.addr;
    if (addr.transport !== "tcp" && addr.transport !== "udp") {
      for (const listener of listeners) closeQuietly(listener);
      throw new TypeError(
        `Cannot listen on ${
          formatAddress(hostname, sharedPort)
        }: the listener has no port (transport ${addr.transport})`,
      );
    }
    sharedPort = addr.port;
  }
  return listeners;
}

/**
 * The stack of `wrapped`: the original's frames under the new message, or
 * the frames of `wrapped` itself if the original's stack has an odd form.
 */
function restack(error: Error, wrapped: Error, message: string): string {
  const header = errorHeader(error.name, message);
  const original = errorHeader(error.name, error.message);
  if (typeof error.stack === "string" && error.stack.startsWith(original)) {
    return header + error.stack.slice(original.length);
  }
  const own = errorHeader("Error", message);
  const stack = wrapped.stack ?? own;
  return stack.startsWith(own) ? header + stack.slice(own.length) : stack;
}

/** The first line(s) of a stack as V8 writes them. */
function errorHeader(name: string, message: string): string {
  if (message === "") return name;
  return name === "" ? message : `${name}: ${message}`;
}

/**
 * The error for a failed `dns.lookup()`. Deno turns a missing permission
 * into code `EPERM`; it becomes the `NotCapable` that `Deno.listen()` throws.
 */
function lookupError(error: unknown, hostname: string): unknown {
  if ((error as { code?: unknown } | null)?.code === "EPERM") {
    return new Deno.errors.NotCapable(
      `Cannot resolve ${hostname}: Requires net access to "${hostname}", run again with the --allow-net flag`,
      { cause: error },
    );
  }
  return withAddress(error, `resolve ${hostname}`);
}
