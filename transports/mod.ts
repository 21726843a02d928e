/**
 * Transports: I/O over Deno's APIs that drives protocols. A stream
 * transport runs a `Protocol` or `BufferedProtocol` over a `Deno.Conn`;
 * the server and the connect functions make them.
 *
 * ```ts
 * import { createConnection, createServer } from "@aio/protocols/transports";
 * import { ProtocolBase } from "@aio/protocols/protocols";
 *
 * await using server = await createServer(() => new ProtocolBase(), {
 *   hostname: "127.0.0.1",
 *   port: 0,
 * });
 * const { port } = server.addrs[0] as Deno.NetAddr;
 * const [transport] = await createConnection(() => new ProtocolBase(), { port });
 * transport.close();
 * server.closeClients();
 * ```
 *
 * @module
 */
export * from "./transport.ts";
export * from "./stream_transport.ts";
export * from "./server.ts";
export * from "./create_connection.ts";
export * from "./start_tls.ts";
export * from "./datagram_transport.ts";
export * from "./subprocess_transport.ts";
