import { report } from "../_report.ts";
import { ProtocolBase } from "../protocols/protocol.ts";
import type { ErrorHandler, Transport } from "../transports/transport.ts";
import { defaultErrorHandler } from "../transports/errors.ts";
import { Loss } from "./_loss.ts";
import type { ClientConnected } from "./open_connection.ts";
import type { StreamReader } from "./stream_reader.ts";
import { StreamWriter } from "./stream_writer.ts";

/** What a {@linkcode StreamWriter} waits on: its protocol's side. */
export interface DrainSource {
  /** Waits while writing is paused; throws once the connection is lost. */
  drainHelper(): Promise<void>;
  /** Resolves once the connection is lost; rejects with its error. */
  closed(): Promise<void>;
}

/**
 * The `Protocol` between a transport and a {@linkcode StreamReader}:
 * asyncio's `StreamReaderProtocol`. With `clientConnected`, it makes the
 * writer and calls it once the connection is made.
 */
export class StreamReaderProtocol extends ProtocolBase implements DrainSource {
  /** The reader it feeds. */
  readonly reader: StreamReader;
  /** The writer, once the connection is made. */
  writer: StreamWriter | undefined;
  #clientConnected: ClientConnected | undefined;
  #onError: ErrorHandler;
  #loss = new Loss(() => new Deno.errors.ConnectionReset("Connection lost"));

  /**
   * Makes the protocol that feeds `reader`.
   *
   * @param reader The reader to feed.
   * @param clientConnected For servers: called with the reader and writer.
   * @param onError Receives what `clientConnected` throws or rejects with.
   */
  constructor(
    reader: StreamReader,
    clientConnected?: ClientConnected,
    onError: ErrorHandler = defaultErrorHandler,
  ) {
    super();
    this.reader = reader;
    this.#clientConnected = clientConnected;
    this.#onError = onError;
  }

  /** Makes the writer, and calls `clientConnected` if given. */
  override connectionMade(transport: Transport): void {
    super.connectionMade(transport);
    const stream = transport;
    this.reader.setTransport(stream);
    this.writer = new StreamWriter(stream, this, this.reader);
    const clientConnected = this.#clientConnected;
    if (clientConnected === undefined) return;
    let result: void | Promise<void>;
    try {
      result = clientConnected(this.reader, this.writer);
    } catch (error) {
      this.#failed(error, stream);
      return;
    }
    if (result instanceof Promise) {
      result.catch((error) => this.#failed(error, stream));
    }
  }

  /** Feeds `data` to the reader. */
  override dataReceived(data: Uint8Array): void {
    this.reader.feedData(data);
  }

  /** Feeds EOF and keeps the write side open, as asyncio does over TCP. */
  override eofReceived(): boolean {
    this.reader.feedEof();
    return true;
  }

  /** Feeds EOF, or the error, to the reader, and wakes `drain()` waiters. */
  override connectionLost(exc: Error | undefined): void {
    this.#loss.lose(exc);
    if (exc === undefined) this.reader.feedEof();
    else this.reader.setException(exc);
    super.connectionLost(exc);
  }

  /** Resolves once the connection is lost; rejects with its error. */
  closed(): Promise<void> {
    return this.#loss.closed();
  }

  /** Waits while writing is paused; throws once the connection is lost. */
  drainHelper(): Promise<void> {
    return this.#loss.drain(() => this.drain());
  }

  #failed(error: unknown, transport: Transport): void {
    report(this.#onError, error, {
      message: "Unhandled error in the clientConnected callback",
      transport,
      protocol: this,
    });
    transport.close();
  }
}
