import type { DatagramProtocol } from "../protocols/datagram_protocol.ts";
import { checkBoolean, checkObject, checkOnError } from "../_checks.ts";
import {
  checkHostname,
  formatAddress,
  resolveListenHostnames,
  withAddress,
} from "./_address.ts";
import { checkFactory, closeQuietly } from "./_conn.ts";
import {
  canonicalHost,
  checkAddress,
  DatagramEndpoint,
  pairAddresses,
} from "./_datagram_transport.ts";
import type { DatagramTransport, ErrorHandler } from "./transport.ts";

/** An address to bind to or send to: a hostname (or IP) and a port. */
export interface DatagramAddress {
  /** A hostname or an IP address; default for `localAddr`: all interfaces. */
  hostname?: string;
  /** The UDP port; 0 (for `localAddr`) picks a free one. */
  port: number;
}

/** Options for {@linkcode createDatagramEndpoint}. */
export interface CreateDatagramEndpointOptions {
  /**
   * Where to bind. Default (and without a hostname): all interfaces of
   * `remoteAddr`'s address family, on port 0 by default. With
   * `remoteAddr`, it must share an address family with it; the IPv6
   * wildcard `::` reaches IPv4 peers too.
   */
  localAddr?: DatagramAddress;
  /**
   * The peer: `sendto(data)` sends there, `sendto` to any other address
   * throws, and datagrams from other senders are dropped, as for a
   * connected socket in asyncio (Deno has no connected UDP sockets). A
   * name is resolved once, here, to an address of `localAddr`'s family.
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
 * @throws {TypeError} Before any socket is opened: if `factory` is not a
 * function, `options` is not an object, an address is not `{ hostname,
 * port }` with a non-empty hostname string and an integer port,
 * `reuseAddress`, `loopback` or `broadcast` is not a boolean, `onError` is
 * not a function, neither `localAddr` nor `remoteAddr` is given, or the
 * two have no address family in common (an IPv4 `localAddr` with an IPv6
 * `remoteAddr`). Also if the factory makes no datagram protocol (a Promise
 * of one, from an async factory, is none).
 * @throws {RangeError} For a port out of range.
 *
 * @example Ask a UDP echo server and wait for the answer
 * ```ts
 * import { createDatagramEndpoint, DatagramProtocolBase } from "@aio/protocols";
 * import assert from "node:assert/strict";
 *
 * class Echo extends DatagramProtocolBase {
 *   override datagramReceived(data: Uint8Array, addr: Deno.NetAddr): void {
 *     this.transport?.sendto(data, addr);
 *   }
 * }
 * const [server] = await createDatagramEndpoint(() => new Echo(), {
 *   localAddr: { hostname: "127.0.0.1", port: 0 },
 * });
 * const { port } = server.getExtraInfo("sockname")!;
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
  options: CreateDatagramEndpointOptions,
): Promise<[DatagramTransport, P]> {
  const what = "create datagram endpoint";
  const cannot = `Cannot ${what}`;
  checkFactory(factory, what);
  checkObject(options, "options", what);
  const localAddr = options.localAddr === undefined
    ? undefined
    : checkEndpointAddress(options.localAddr, "localAddr", what);
  const remoteAddr = options.remoteAddr === undefined
    ? undefined
    : checkEndpointAddress(options.remoteAddr, "remoteAddr", what);
  checkBoolean(options.reuseAddress, "reuseAddress", what);
  checkBoolean(options.loopback, "loopback", what);
  checkBoolean(options.broadcast, "broadcast", what);
  const onError = checkOnError(options.onError, what);
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
  if (localAddr === undefined && remoteAddr === undefined) {
    throw new TypeError(`${cannot}: give localAddr, remoteAddr or both`);
  }
  const { local, remote } = await chooseAddresses(
    localAddr,
    remoteAddr,
    cannot,
  );
  let conn: Deno.DatagramConn;
  try {
    conn = Deno.listenDatagram({
      transport: "udp",
      hostname: local.hostname,
      port: local.port,
      ...(options.reuseAddress === undefined
        ? {}
        : { reuseAddress: options.reuseAddress }),
      ...(options.loopback === undefined ? {} : { loopback: options.loopback }),
    });
  } catch (error) {
    throw withAddress(
      error,
      `listen on ${formatAddress(local.hostname, local.port)}`,
    );
  }
  let protocol: P;
  let transport: DatagramEndpoint;
  const made = Promise.withResolvers<Error | undefined>();
  try {
    protocol = factory();
    transport = new DatagramEndpoint(conn, protocol, {
      remoteAddr: remote,
      onError,
      events: { made: (_, error) => made.resolve(error) },
    });
  } catch (error) {
    closeQuietly(conn);
    throw error;
  }
  // A failed connectionMade closes the endpoint, and its socket.
  const failed = await made.promise;
  if (failed !== undefined) throw failed;
  return [transport, protocol];
}

/**
 * Checks `localAddr` or `remoteAddr`: `{ hostname, port }`, where the
 * hostname is a non-empty string (and may be missing for `localAddr`).
 */
function checkEndpointAddress(
  addr: unknown,
  name: "remoteAddr",
  what: string,
): { hostname: string; port: number };
function checkEndpointAddress(
  addr: unknown,
  name: "localAddr",
  what: string,
): { hostname: string | undefined; port: number };
function checkEndpointAddress(
  addr: unknown,
  name: "localAddr" | "remoteAddr",
  what: string,
): { hostname: string | undefined; port: number } {
  const { port } = checkAddress(
    addr,
    `Cannot ${what}`,
    name === "localAddr",
    name,
  );
  const hostname = checkHostname((addr as DatagramAddress).hostname, what);
  return { hostname, port };
}

/**
 * Where to bind, and the peer as an IP address. Without a peer,
 * `localAddr` as given (all interfaces without a hostname). With one,
 * both are resolved and paired by address family, as asyncio does: a
 * remote name resolves to `localAddr`'s family, and without `localAddr`
 * (or its hostname) the socket binds all interfaces of the peer's family,
 * IPv4 first.
 *
 * @throws {TypeError} If `localAddr` and `remoteAddr` have no address
 * family in common: an IPv4 socket cannot send to an IPv6 peer, nor an
 * IPv6 one (other than the wildcard `::`) to an IPv4 peer.
 */
async function chooseAddresses(
  localAddr: { hostname: string | undefined; port: number } | undefined,
  remoteAddr: { hostname: string; port: number } | undefined,
  cannot: string,
): Promise<{
  local: { hostname: string; port: number };
  remote: Deno.NetAddr | undefined;
}> {
  const port = localAddr?.port ?? 0;
  if (remoteAddr === undefined) {
    return {
      local: { hostname: localAddr?.hostname ?? "0.0.0.0", port },
      remote: undefined,
    };
  }
  const remotes = await resolveListenHostnames(remoteAddr.hostname);
  const locals = localAddr?.hostname === undefined
    ? ["0.0.0.0", "::"]
    : await resolveListenHostnames(localAddr.hostname);
  const pair = pairAddresses(locals, remotes);
  if (pair === undefined) {
    throw new TypeError(
      `${cannot}: localAddr ${localAddr?.hostname} is ${
        families(locals)
      } and remoteAddr ${remoteAddr.hostname} is ${
        families(remotes)
      }; they have no address family in common`,
    );
  }
  return {
    local: { hostname: pair[0], port },
    remote: {
      transport: "udp",
      hostname: canonicalHost(pair[1]),
      port: remoteAddr.port,
    },
  };
}

/** Names the address families of `addresses`: `IPv4`, `IPv6`, or both. */
function families(addresses: readonly string[]): string {
  const ipv6 = addresses.filter((address) => address.includes(":")).length;
  if (ipv6 === 0) return "IPv4";
  return ipv6 === addresses.length ? "IPv6" : "IPv4 and IPv6";
}
