import type { DatagramTransport } from "../transports/transport.ts";
import type { BaseProtocol } from "./base_protocol.ts";
import { BaseProtocolBase } from "./base_protocol.ts";

/**
 * Callbacks for datagrams (UDP): each `datagramReceived` is one whole
 * datagram with its sender.
 *
 * @experimental **UNSTABLE**: Deno's UDP API needs `--unstable-net`; see
 * `createDatagramEndpoint`.
 *
 * @example Answer each datagram with its length
 * ```ts
 * import type { DatagramProtocol } from "@aio/protocols";
 *
 * const lengths: DatagramProtocol = {
 *   datagramReceived(data, addr) {
 *     console.log(`${addr.hostname}:${addr.port} sent ${data.byteLength} bytes`);
 *   },
 *   errorReceived(exc) { console.error(exc); },
 * };
 * ```
 */
export interface DatagramProtocol extends BaseProtocol {
  /** Called once, first, with the transport that now drives this protocol. */
  connectionMade?(transport: DatagramTransport): void;
  /** Called with one whole datagram and the address it came from. */
  datagramReceived(data: Uint8Array, addr: Deno.NetAddr): void;
  /** Called when a send or receive failed; the transport goes on. */
  errorReceived?(exc: Error): void;
}

/**
 * A {@linkcode DatagramProtocol} whose callbacks all do nothing.
 *
 * @experimental **UNSTABLE**: New API, yet to be vetted.
 *
 * @example Count datagrams
 * ```ts
 * import { DatagramProtocolBase } from "@aio/protocols";
 * import assert from "node:assert/strict";
 *
 * class Counter extends DatagramProtocolBase {
 *   count = 0;
 *   override datagramReceived(_data: Uint8Array, _addr: Deno.NetAddr): void {
 *     this.count++;
 *   }
 * }
 *
 * const counter = new Counter();
 * counter.datagramReceived(new Uint8Array(1), {
 *   transport: "udp",
 *   hostname: "127.0.0.1",
 *   port: 9,
 * });
 * assert.equal(counter.count, 1);
 * ```
 */
export class DatagramProtocolBase extends BaseProtocolBase<DatagramTransport>
  implements DatagramProtocol {
  /** Does nothing; override to handle datagrams. */
  datagramReceived(_data: Uint8Array, _addr: Deno.NetAddr): void {}
  /** Does nothing; override to handle send and receive errors. */
  errorReceived(_exc: Error): void {}
}
