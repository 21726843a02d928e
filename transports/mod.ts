/**
 * Transports: I/O over Deno's APIs that drives protocols. Servers and
 * connections run a `Protocol` or `BufferedProtocol` over TCP, Unix
 * sockets or TLS; datagram endpoints a `DatagramProtocol` over UDP;
 * subprocesses a `SubprocessProtocol` over a child's pipes.
 *
 * ```ts
 * import { createConnection, createServer } from "@aio/protocols/transports";
 * import { ProtocolBase } from "@aio/protocols/protocols";
 *
 * await using server = await createServer(() => new ProtocolBase(), {
 *   hostname: "127.0.0.1",
 *   port: 0,
 * });
 * const [transport] = await createConnection(() => new ProtocolBase(), {
 *   port: server.addrs[0]!.port,
 * });
 * transport.close();
 * ```
 *
 * @module
 */
export * from "./transport.ts";
export * from "./errors.ts";
export * from "./server.ts";
export * from "./create_connection.ts";
export * from "./start_tls.ts";
export * from "./create_datagram_endpoint.ts";
export * from "./subprocess_exec.ts";
export * from "./connect_read_pipe.ts";
export * from "./relay.ts";
export * from "./sendfile.ts";
export * from "./create_reconnecting_connection.ts";
