import {
  createConnection,
  type CreateConnectionOptions,
  createUnixConnection,
  type CreateUnixConnectionOptions,
} from "../transports/create_connection.ts";
import {
  createServer,
  type CreateServerOptions,
  createUnixServer,
  type CreateUnixServerOptions,
  type Server,
} from "../transports/server.ts";
import type { ErrorHandler } from "../transports/transport.ts";
import { checkLimit } from "./_limit.ts";
import { StreamReaderProtocol } from "./_stream_protocol.ts";
import { StreamReader } from "./stream_reader.ts";
import type { StreamWriter } from "./stream_writer.ts";

/**
 * Called for each connection a stream server accepts, with its reader and
 * writer. What it throws or rejects with goes to `onError` and closes that
 * connection; what `onError` throws in turn goes to stderr.
 *
 * @example Greet each client, then close
 * ```ts
 * import { type ClientConnected, startServer } from "@aio/protocols";
 *
 * const greet: ClientConnected = async (_reader, writer) => {
 *   writer.write(new TextEncoder().encode("hello\n"));
 *   await writer.drain();
 *   writer.close();
 * };
 * await using server = await startServer(greet, {
 *   hostname: "127.0.0.1",
 *   port: 0,
 * });
 * ```
 */
export type ClientConnected = (
  reader: StreamReader,
  writer: StreamWriter,
) => void | Promise<void>;

/**
 * Options for {@linkcode openConnection}: those of `createConnection`, and
 * the reader's buffer limit.
 *
 * @example Connect with a 1 MiB line limit
 * ```ts
 * import type { OpenConnectionOptions } from "@aio/protocols";
 *
 * const options: OpenConnectionOptions = {
 *   hostname: "127.0.0.1",
 *   port: 6379,
 *   limit: 1024 * 1024,
 * };
 * ```
 */
export interface OpenConnectionOptions extends CreateConnectionOptions {
  /** The reader's buffer limit (default 64 KiB). */
  limit?: number;
}

/**
 * Options for {@linkcode openUnixConnection}: those of
 * `createUnixConnection`, and the reader's buffer limit.
 *
 * @example Connect to a Unix socket with a 1 MiB line limit
 * ```ts
 * import type { OpenUnixConnectionOptions } from "@aio/protocols";
 *
 * const options: OpenUnixConnectionOptions = {
 *   path: "/run/app.sock",
 *   limit: 1024 * 1024,
 * };
 * ```
 */
export interface OpenUnixConnectionOptions extends CreateUnixConnectionOptions {
  /** The reader's buffer limit (default 64 KiB). */
  limit?: number;
}

/**
 * Connects over TCP (or TLS) and returns a reader and a writer: asyncio's
 * `asyncio.open_connection()`.
 *
 * @param options Where to connect, as for `createConnection`, and `limit`.
 * @returns The reader and the writer.
 * @throws {TypeError} If `onError` is not a function; nothing is connected.
 * @throws {RangeError} If `limit` is not a positive integer.
 *
 * @example Send a line and read the answer
 * ```ts
 * import { openConnection, startServer } from "@aio/protocols";
 * import assert from "node:assert/strict";
 *
 * await using server = await startServer(async (reader, writer) => {
 *   const line = await reader.readline();
 *   writer.write(line);
 *   await writer.drain();
 *   writer.close();
 * }, { hostname: "127.0.0.1", port: 0 });
 *
 * const { port } = server.addrs[0]!;
 * const [reader, writer] = await openConnection({ port });
 * writer.write(new TextEncoder().encode("hello\n"));
 * assert.equal(new TextDecoder().decode(await reader.read()), "hello\n");
 * writer.close();
 * await writer.waitClosed();
 * ```
 */
export async function openConnection(
  options: OpenConnectionOptions,
): Promise<[StreamReader, StreamWriter]> {
  const { limit, ...connect } = options;
  const reader = new StreamReader(limit);
  const [, protocol] = await createConnection(
    () => new StreamReaderProtocol(reader),
    connect,
  );
  return [reader, protocol.writer!];
}

/**
 * Connects to a Unix socket and returns a reader and a writer: asyncio's
 * `asyncio.open_unix_connection()`.
 *
 * @param options The socket's path, and `limit`.
 * @returns The reader and the writer.
 * @throws {TypeError} If `onError` is not a function; nothing is connected.
 * @throws {RangeError} If `limit` is not a positive integer.
 *
 * @example Ask a Unix socket server for one line
 * ```ts
 * import { openUnixConnection, startUnixServer } from "@aio/protocols";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * const path = `${dir}/time.sock`;
 * const server = await startUnixServer(async (_reader, writer) => {
 *   writer.write(new TextEncoder().encode("12:00\n"));
 *   await writer.drain();
 *   writer.close();
 * }, { path });
 *
 * const [reader, writer] = await openUnixConnection({ path });
 * assert.equal(new TextDecoder().decode(await reader.readline()), "12:00\n");
 * writer.close();
 * await writer.waitClosed();
 * server.close();
 * await server.waitClosed();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function openUnixConnection(
  options: OpenUnixConnectionOptions,
): Promise<[StreamReader, StreamWriter]> {
  const { limit, ...connect } = options;
  const reader = new StreamReader(limit);
  const [, protocol] = await createUnixConnection(
    () => new StreamReaderProtocol(reader),
    connect,
  );
  return [reader, protocol.writer!];
}

/**
 * Options for {@linkcode startServer}: those of `createServer`, and each
 * reader's buffer limit.
 *
 * @example Serve on all interfaces with a 16 KiB line limit
 * ```ts
 * import type { StartServerOptions } from "@aio/protocols";
 *
 * const options: StartServerOptions = {
 *   hostname: "0.0.0.0",
 *   port: 8888,
 *   limit: 16 * 1024,
 * };
 * ```
 */
export interface StartServerOptions extends CreateServerOptions {
  /** Each reader's buffer limit (default 64 KiB). */
  limit?: number;
}

/**
 * Options for {@linkcode startUnixServer}: those of `createUnixServer`,
 * and each reader's buffer limit.
 *
 * @example Serve a Unix socket with a 16 KiB line limit
 * ```ts
 * import type { StartUnixServerOptions } from "@aio/protocols";
 *
 * const options: StartUnixServerOptions = {
 *   path: "/run/app.sock",
 *   limit: 16 * 1024,
 * };
 * ```
 */
export interface StartUnixServerOptions extends CreateUnixServerOptions {
  /** Each reader's buffer limit (default 64 KiB). */
  limit?: number;
}

/**
 * Serves TCP (or TLS) and calls `clientConnected(reader, writer)` for each
 * connection: asyncio's `asyncio.start_server()`. What it throws or
 * rejects with goes to `onError` and closes that connection; what
 * `onError` throws in turn goes to stderr.
 *
 * @param clientConnected Called for each connection.
 * @param options Where to listen, as for `createServer`, and `limit`.
 * @returns The server.
 * @throws {TypeError} If `clientConnected` or `onError` is not a function;
 * nothing listens.
 * @throws {RangeError} If `limit` is not a positive integer.
 *
 * @example A line echo server, and a client
 * ```ts
 * import { openConnection, startServer } from "@aio/protocols";
 * import assert from "node:assert/strict";
 *
 * await using server = await startServer(async (reader, writer) => {
 *   for await (const line of reader) {
 *     writer.write(line);
 *     await writer.drain();
 *   }
 *   writer.close();
 * }, { hostname: "127.0.0.1", port: 0 });
 *
 * const [reader, writer] = await openConnection({ port: server.addrs[0]!.port });
 * writer.write(new TextEncoder().encode("ping\n"));
 * assert.equal(new TextDecoder().decode(await reader.readline()), "ping\n");
 * writer.close();
 * await writer.waitClosed();
 * ```
 */
export async function startServer(
  clientConnected: ClientConnected,
  options: StartServerOptions,
): Promise<Server<Deno.NetAddr>> {
  const { limit, ...serve } = options;
  return await createServer(
    streamFactory(clientConnected, limit, options.onError),
    serve,
  );
}

/**
 * Serves a Unix socket and calls `clientConnected(reader, writer)` for
 * each connection: asyncio's `asyncio.start_unix_server()`. What it
 * throws or rejects with goes to `onError`, as for {@linkcode startServer}.
 *
 * @param clientConnected Called for each connection.
 * @param options The socket's path, as for `createUnixServer`, and `limit`.
 * @returns The server.
 * @throws {TypeError} If `clientConnected` or `onError` is not a function;
 * nothing listens.
 * @throws {RangeError} If `limit` is not a positive integer.
 *
 * @example Echo over a Unix socket
 * ```ts
 * import { openUnixConnection, startUnixServer } from "@aio/protocols";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * const path = `${dir}/echo.sock`;
 * const server = await startUnixServer(async (reader, writer) => {
 *   await reader.readable.pipeTo(writer.writable); // closes once all is echoed
 * }, { path });
 *
 * const [reader, writer] = await openUnixConnection({ path });
 * writer.write(new TextEncoder().encode("hi"));
 * assert.equal(new TextDecoder().decode(await reader.read(2)), "hi");
 * writer.close();
 * await writer.waitClosed();
 * server.close();
 * await server.waitClosed();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function startUnixServer(
  clientConnected: ClientConnected,
  options: StartUnixServerOptions,
): Promise<Server<Deno.UnixAddr>> {
  const { limit, ...serve } = options;
  return await createUnixServer(
    streamFactory(clientConnected, limit, options.onError),
    serve,
  );
}

/** Checks a server's arguments; returns its protocol factory. */
function streamFactory(
  clientConnected: ClientConnected,
  limit: number | undefined,
  onError: ErrorHandler | undefined,
): () => StreamReaderProtocol {
  checkCallback(clientConnected);
  checkLimit(limit);
  return () =>
    new StreamReaderProtocol(new StreamReader(limit), clientConnected, onError);
}

function checkCallback(clientConnected: unknown): void {
  if (typeof clientConnected !== "function") {
    throw new TypeError(
      `Cannot start server: clientConnected must be a function, not ${typeof clientConnected}`,
    );
  }
}
