/**
 * asyncio's streams on top of the protocol layer: `openConnection` and
 * `startServer` give a `StreamReader` (`read`, `readline`, `readuntil`,
 * `readexactly`, async iteration over lines) and a `StreamWriter` (`write`,
 * `drain`, `close`, `waitClosed`), each with a Web Streams view (`readable`,
 * `writable`). `createSubprocessExec` and `createSubprocessShell` give a
 * child process whose pipes are such streams.
 *
 * ```ts
 * import { openConnection, startServer } from "@aio/protocols/streams";
 *
 * await using server = await startServer(async (reader, writer) => {
 *   for await (const line of reader) writer.write(line);
 *   writer.close();
 * }, { hostname: "127.0.0.1", port: 0 });
 * const [, writer] = await openConnection({ port: server.addrs[0]!.port });
 * writer.close();
 * await writer.waitClosed();
 * ```
 *
 * @module
 */
export * from "./stream_reader.ts";
export * from "./stream_writer.ts";
export * from "./open_connection.ts";
export * from "./create_subprocess_exec.ts";
