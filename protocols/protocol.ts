import type { ReadTransport, Transport } from "../transports/transport.ts";
import type { BaseProtocol } from "./base_protocol.ts";
import { BaseProtocolBase } from "./base_protocol.ts";

/**
 * Callbacks for a byte stream: a TCP, Unix or TLS connection.
 *
 * A transport calls them in this order:
 *
 * ```text
 * connectionMade → dataReceived* → eofReceived? → connectionLost
 * ```
 *
 * @typeParam T The transport `connectionMade` gets: a `Transport` from a
 * socket, a `ReadTransport` from `connectReadPipe`.
 *
 * @example Echo what arrives
 * ```ts
 * import { createServer, type Protocol, type Transport } from "@aio/protocols";
 *
 * await using server = await createServer((): Protocol => {
 *   let transport: Transport;
 *   return {
 *     connectionMade(t) { transport = t; },
 *     dataReceived(data) { transport.write(data); },
 *   };
 * }, { hostname: "127.0.0.1", port: 0 });
 * ```
 */
export interface Protocol<T extends ReadTransport = Transport>
  extends BaseProtocol<T> {
  /** Called once, first, with the transport that now drives this protocol. */
  connectionMade?(transport: T): void;
  /**
   * Called with each chunk read, never empty. The chunking is arbitrary and
   * the protocol owns `data`: the transport never writes into it again,
   * unless the protocol declares {@linkcode Protocol.transientData}.
   */
  dataReceived(data: Uint8Array): void;
  /**
   * `true` if `dataReceived` is done with `data` when it returns: it parses
   * or copies what it needs, and keeps no view of it. The transport may
   * then read into the same memory again, which makes bulk reads as fast
   * as a raw loop's reused buffer (see the README's bench table). Writing
   * `data` to any stream transport is safe: the transport does not reuse
   * the memory until that write is done. Default `false`: `data` is the
   * protocol's to keep.
   */
  readonly transientData?: boolean;
  /**
   * Called at most once, when the peer half-closes. A truthy return keeps
   * the transport open for writing; otherwise it closes after flushing.
   */
  eofReceived?(): boolean | void;
  /**
   * Called when nothing was read or written for the transport's idle
   * timeout (the `idleTimeout` option, or `setIdleTimeout()`). What to do
   * is the protocol's choice; without this callback, the transport closes.
   */
  idleTimedOut?(): void;
}

/**
 * A {@linkcode Protocol} whose callbacks all do nothing: extend it and
 * override what you need.
 *
 * @typeParam T The transport kept as `this.transport`: `ProtocolBase<ReadTransport>`
 * for `connectReadPipe`, whose transport cannot write.
 *
 * @example Count lines as they arrive
 * ```ts
 * import { ProtocolBase } from "@aio/protocols";
 * import assert from "node:assert/strict";
 *
 * class LineCounter extends ProtocolBase {
 *   lines = 0;
 *   override dataReceived(data: Uint8Array): void {
 *     this.lines += data.filter((byte) => byte === 0x0a).length;
 *   }
 * }
 *
 * const counter = new LineCounter();
 * counter.dataReceived(new TextEncoder().encode("one\ntwo\n"));
 * assert.equal(counter.lines, 2);
 * ```
 */
export class ProtocolBase<T extends ReadTransport = Transport>
  extends BaseProtocolBase<T>
  implements Protocol<T> {
  /**
   * `false`: the protocol keeps the chunks it gets. A subclass that is done
   * with each chunk when `dataReceived` returns sets it to `true` (see
   * {@linkcode Protocol.transientData}).
   */
  readonly transientData: boolean = false;
  /** Does nothing; override to handle data. */
  dataReceived(_data: Uint8Array): void {}
  /** Returns `false`, so the transport closes after the peer's EOF. */
  eofReceived(): boolean | void {
    return false;
  }
}
