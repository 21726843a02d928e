/**
 * Python asyncio's protocol/transport layer for Deno: write callback
 * protocols (`connectionMade`, `dataReceived`, `eofReceived`,
 * `pauseWriting`/`resumeWriting`, `connectionLost`, or the zero-copy
 * `BufferedProtocol`) and let the transports drive them over `Deno.Conn`
 * (TCP, Unix, TLS), `Deno.DatagramConn` (UDP) and `Deno.Command` (child
 * processes), with asyncio's exact flow control. Framing protocols
 * (`LineProtocol`, `LengthPrefixedProtocol`) and asyncio's streams
 * (`openConnection`, `startServer`) build on them.
 *
 * ```ts
 * import { createConnection, createServer, ProtocolBase, type Transport } from "@aio/protocols";
 * import assert from "node:assert/strict";
 *
 * await using server = await createServer(() => {
 *   let transport: Transport;
 *   return {
 *     connectionMade(t) { transport = t; },
 *     dataReceived(data) { transport.write(data); },
 *   };
 * }, { hostname: "127.0.0.1", port: 0 });
 *
 * const { port } = server.addrs[0]!;
 * const { promise, resolve } = Promise.withResolvers<string>();
 * class Client extends ProtocolBase {
 *   override dataReceived(data: Uint8Array): void {
 *     resolve(new TextDecoder().decode(data));
 *     this.transport?.close();
 *   }
 * }
 * const [transport] = await createConnection(() => new Client(), { port });
 * transport.write(new TextEncoder().encode("ping"));
 * assert.equal(await promise, "ping");
 * ```
 *
 * @module
 */
export * from "./protocols/mod.ts";
export * from "./transports/mod.ts";
export * from "./streams/mod.ts";
