import type {
  StreamExtraInfo,
  WriteTransport,
} from "../transports/transport.ts";
import type { DrainSource } from "./_stream_protocol.ts";
import type { StreamReader } from "./stream_reader.ts";

/**
 * The write side of a connection with awaitable flow control: asyncio's
 * `StreamWriter`. `write()` never waits; `await drain()` waits while the
 * transport's buffer is over its high-water mark.
 *
 * {@linkcode openConnection}, {@linkcode startServer} and
 * {@linkcode createSubprocessExec} make writers.
 *
 * @example Write, wait for the buffer, half-close
 * ```ts
 * import { openConnection, startServer } from "@aio/protocols";
 * import assert from "node:assert/strict";
 *
 * const received = Promise.withResolvers<string>();
 * await using server = await startServer(async (reader, writer) => {
 *   received.resolve(new TextDecoder().decode(await reader.read()));
 *   writer.close();
 * }, { hostname: "127.0.0.1", port: 0 });
 *
 * const [, writer] = await openConnection({ port: server.addrs[0]!.port });
 * const encoder = new TextEncoder();
 * writer.writelines([encoder.encode("GET "), encoder.encode("/\r\n")]);
 * await writer.drain();
 * writer.writeEof(); // the server reads to EOF
 * assert.equal(await received.promise, "GET /\r\n");
 * writer.close();
 * await writer.waitClosed();
 * ```
 */
export class StreamWriter {
  /** The transport it writes to. */
  readonly transport: WriteTransport;
  #protocol: DrainSource;
  #reader: StreamReader | undefined;
  #writable: WritableStream<Uint8Array> | undefined;

  /**
   * Makes a writer for `transport`.
   *
   * @param transport The transport.
   * @param protocol What tells when writing may go on and when the
   * connection is lost: the protocol that drives `reader`.
   * @param reader The read side, whose error `drain()` reports.
   */
  constructor(
    transport: WriteTransport,
    protocol: DrainSource,
    reader?: StreamReader,
  ) {
    this.transport = transport;
    this.#protocol = protocol;
    this.#reader = reader;
  }

  /** Queues `data`; see the transport's `write()`. */
  write(data: Uint8Array): void {
    this.transport.write(data);
  }

  /** Queues every chunk to go out together. */
  writelines(chunks: Iterable<Uint8Array>): void {
    this.transport.writelines(chunks);
  }

  /** Flushes, then half-closes the write side. */
  writeEof(): void {
    this.transport.writeEof();
  }

  /** Returns `true` if `writeEof()` is possible. */
  canWriteEof(): boolean {
    return this.transport.canWriteEof();
  }

  /** Flushes, then closes the connection. */
  close(): void {
    this.transport.close();
  }

  /** Returns `true` once closing. */
  isClosing(): boolean {
    return this.transport.isClosing();
  }

  /** Resolves once the connection is lost; rejects with its error if any. */
  waitClosed(): Promise<void> {
    return this.#protocol.closed();
  }

  /**
   * Returns the transport's extra info: for a connection `peername`,
   * `sockname`, `conn` and, over TLS, `alpnProtocol`.
   */
  getExtraInfo<K extends keyof StreamExtraInfo>(
    name: K,
    defaultValue?: StreamExtraInfo[K],
  ): StreamExtraInfo[K] | undefined;
  /** Returns `defaultValue` for a name the transport does not know. */
  getExtraInfo(name: string, defaultValue?: unknown): unknown;
  getExtraInfo(name: string, defaultValue?: unknown): unknown {
    return this.transport.getExtraInfo(name, defaultValue);
  }

  /**
   * Resolves once the write buffer is at or below the low-water mark.
   * On a closing transport it first yields to the event loop, as asyncio's
   * `sleep(0)`, so that a loss in progress is seen: a loop of `write()`
   * and `drain()` against a peer that went away ends with a rejection,
   * and timers keep firing meanwhile.
   *
   * @throws The read side's error, or `Deno.errors.ConnectionReset` if the
   * connection was lost (`Deno.errors.BrokenPipe` for a child's stdin).
   */
  async drain(): Promise<void> {
    const exc = this.#reader?.exception();
    if (exc !== undefined) throw exc;
    if (this.transport.isClosing()) {
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
    await this.#protocol.drainHelper();
  }

  /**
   * The same connection as a Web `WritableStream`: each write waits for
   * `drain()`; closing it half-closes (`writeEof()`) where possible, or
   * closes the connection once the read side is at EOF too (so
   * `reader.readable.pipeTo(writer.writable)` ends the connection when the
   * peer's data is all echoed); aborting it aborts the transport.
   */
  get writable(): WritableStream<Uint8Array> {
    return this.#writable ??= new WritableStream<Uint8Array>({
      write: async (chunk) => {
        this.write(chunk);
        await this.drain();
      },
      close: async () => {
        if (this.canWriteEof() && !this.#reader?.atEof()) {
          this.writeEof();
          await this.drain();
        } else {
          this.close();
        }
      },
      abort: () => {
        this.transport.abort();
      },
    });
  }
}
