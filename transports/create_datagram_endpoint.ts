import type { DatagramProtocol } from "../protocols/datagram_protocol.ts";
import {
  formatAddress,
  resolveListenHostnames,
  withAddress,
} from "./_address.ts";
import { checkFactory, closeQuietly } from "./_conn.ts";
import {
  canonicalHost,
  checkAddress,
  DatagramEndpoint,
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
   * Where to bind. Default: port 0 on all interfaces of `remoteAddr`'s
   * address family.
   */
  localAddr?: DatagramAddress;
  /**
   * The peer: `sendto(data)` sends there, `sendto` to any other address
   * throws, and datagrams from other senders are dropped, as for a
   * connected socket in asyncio (Deno has no connected UDP sockets; a name
   * is resolved once, here).
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
 * @throws {TypeError} Without `localAddr` and `remoteAddr`, or with a
 * malformed address; or if `factory` is not a function or makes no
 * datagram protocol (a Promise of one, from an async factory, is none).
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
  const cannot = "Cannot create datagram endpoint";
  checkFactory(factory, "create datagram endpoint");
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`${cannot}: options must be an object`);
  }
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
  if (options.localAddr === undefined && options.remoteAddr === undefined) {
    throw new TypeError(`${cannot}: give localAddr, remoteAddr or both`);
  }
  const remote = options.remoteAddr === undefined
    ? undefined
    : await resolveRemote(checkAddress(options.remoteAddr, cannot));
  const local = options.localAddr === undefined
    ? { hostname: remote!.hostname.includes(":") ? "::" : "0.0.0.0", port: 0 }
    : checkAddress(options.localAddr, cannot, true);
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
      onError: options.onError,
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

/** Resolves a remote name to one IP address, once. */
async function resolveRemote(
  addr: { hostname: string; port: number },
): Promise<Deno.NetAddr> {
  const [hostname] = await resolveListenHostnames(addr.hostname);
  return {
    transport: "udp",
    hostname: canonicalHost(hostname!),
    port: addr.port,
  };
}
