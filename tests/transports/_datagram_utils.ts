import assert from "node:assert/strict";
import type { DatagramProtocol } from "../../protocols/datagram_protocol.ts";
import {
  createDatagramEndpoint,
  type CreateDatagramEndpointOptions,
} from "../../transports/create_datagram_endpoint.ts";
import type { DatagramTransport } from "../../transports/transport.ts";
import { BaseRecorder, text, within } from "../_test_utils.ts";

/** The loopback addresses of both families. */
export const HOSTS = ["127.0.0.1", "::1"] as const;
/** The largest UDP payload over IPv4. */
export const MAX_DATAGRAM = 65_507;
/** The largest UDP payload at all: over IPv6. */
export const MAX_UDP_PAYLOAD = 65_527;

/** Names of the callbacks {@linkcode RecordingDatagramProtocol} records. */
export type CallbackName =
  | "connectionMade"
  | "datagramReceived"
  | "errorReceived"
  | "pauseWriting"
  | "resumeWriting"
  | "connectionLost";

/** One datagram as the protocol got it. */
export interface Received {
  data: Uint8Array;
  addr: Deno.NetAddr;
}

/**
 * A `DatagramProtocol` that records each callback's name in `calls`, keeps
 * every datagram and error it gets, and can wait for a callback.
 */
export class RecordingDatagramProtocol
  extends BaseRecorder<CallbackName, DatagramTransport>
  implements DatagramProtocol {
  datagrams: Received[] = [];
  errors: Error[] = [];

  /** Resolves once `name` has been called `count` times; fails at the deadline. */
  override waitFor(name: CallbackName, count = 1): Promise<void> {
    return within(
      super.waitFor(name, count),
      `${name} #${count} (calls: ${this.calls.join(" ")})`,
    );
  }

  datagramReceived(data: Uint8Array, addr: Deno.NetAddr): void {
    this.datagrams.push({ data, addr });
    this.record("datagramReceived");
  }
  errorReceived(exc: Error): void {
    this.errors.push(exc);
    this.record("errorReceived");
  }
  /** The datagrams received so far, decoded as text. */
  texts(): string[] {
    return this.datagrams.map(({ data }) => text(data));
  }
}

/** An endpoint from `createDatagramEndpoint`; disposing aborts it. */
export interface Endpoint<P extends RecordingDatagramProtocol>
  extends AsyncDisposable {
  transport: DatagramTransport;
  protocol: P;
  /** The bound address. */
  addr: Deno.NetAddr;
}

/** Opens an endpoint for `protocol`, by default on a loopback address. */
export async function open<P extends RecordingDatagramProtocol>(
  protocol: P,
  options: CreateDatagramEndpointOptions,
): Promise<Endpoint<P>> {
  const [transport, made] = await createDatagramEndpoint(
    () => protocol,
    options,
  );
  assert.equal(made, protocol);
  const addr = transport.getExtraInfo("sockname");
  assert.ok(addr, "the endpoint is bound");
  return {
    transport,
    protocol,
    addr,
    async [Symbol.asyncDispose]() {
      transport.abort();
      await protocol.waitFor("connectionLost");
    },
  };
}

/** Options that bind to port 0 on `hostname`. */
export function on(
  hostname: string,
  options: Omit<CreateDatagramEndpointOptions, "localAddr"> = {},
): CreateDatagramEndpointOptions {
  return { localAddr: { hostname, port: 0 }, ...options };
}

/** A plain UDP socket; `using` closes it. */
export interface Socket extends Disposable {
  conn: Deno.DatagramConn;
  addr: Deno.NetAddr;
}

export function socket(hostname: string, port = 0): Socket {
  const conn = Deno.listenDatagram({ transport: "udp", hostname, port });
  return {
    conn,
    addr: conn.addr as Deno.NetAddr,
    [Symbol.dispose]() {
      try {
        conn.close();
      } catch {
        // Closed already.
      }
    },
  };
}

/** Receives one datagram on a plain socket, within the deadline. */
export async function receive(socket: Socket): Promise<Received> {
  const [data, addr] = await within(socket.conn.receive(), "a datagram");
  return { data, addr: addr as Deno.NetAddr };
}

/** `addr` as a plain object, for `deepEqual` (Deno's have no prototype). */
export function plain(
  addr: Deno.NetAddr | undefined,
): Deno.NetAddr | undefined {
  if (addr === undefined) return undefined;
  return {
    transport: addr.transport,
    hostname: addr.hostname,
    port: addr.port,
  };
}

/** Checks that `addr` is where `socket` is bound. */
export function assertFrom(
  addr: Deno.NetAddr,
  from: { addr: Deno.NetAddr },
): void {
  assert.deepEqual(plain(addr), plain(from.addr));
}

/**
 * Gives the event loop a few turns of real I/O: a datagram round trip over
 * a pair of plain sockets. Datagrams already queued to an endpoint are by
 * then in its hands.
 */
export async function ioTurns(count = 3): Promise<void> {
  using a = socket("127.0.0.1");
  using b = socket("127.0.0.1");
  for (let i = 0; i < count; i++) {
    await a.conn.send(new Uint8Array([i]), b.addr);
    await receive(b);
  }
}
