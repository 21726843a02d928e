/**
 * Protocols tested in memory, with no socket: `MemoryTransport` (Twisted's
 * `StringTransport`) records what a protocol writes and feeds it data,
 * `MemoryDatagramTransport` does the same for datagrams, and `connectPair`
 * (Twisted's `iosim`) connects two protocols with chunking and stepping
 * under the test's control. They are the module's own transports over
 * memory: callback order is that of real sockets, and so is flow control,
 * but with no socket buffer: a peer that reads takes each write at once,
 * so writes back up and `pauseWriting` fires only while it does not read.
 *
 * ```ts
 * import { ProtocolBase } from "@aio/protocols";
 * import { MemoryTransport } from "@aio/protocols/testing";
 * import assert from "node:assert/strict";
 *
 * class Echo extends ProtocolBase {
 *   override dataReceived(data: Uint8Array): void {
 *     this.transport?.write(data);
 *   }
 * }
 * const transport = new MemoryTransport(new Echo());
 * transport.receive(new Uint8Array([1, 2, 3]));
 * assert.deepEqual(transport.written(), new Uint8Array([1, 2, 3]));
 * ```
 *
 * @module
 */
export * from "../transports/memory_transport.ts";
export * from "../transports/memory_datagram_transport.ts";
export * from "./connect_pair.ts";
