import { checkProtocolObject } from "../_checks.ts";
import type { BaseProtocol } from "../protocols/base_protocol.ts";
import {
  type ByteSinkLike,
  type ByteSourceLike,
  toByteSink,
  toByteSource,
} from "./_byte_io.ts";
import { checkFactory } from "./_conn.ts";
import type { ByteSource } from "./_read_side.ts";
import { checkProtocol, StreamTransport } from "./_stream_transport.ts";
import type { ByteSink } from "./_write_side.ts";
import type {
  ErrorHandler,
  ReadTransport,
  StreamProtocol,
  WriteTransport,
} from "./transport.ts";

export type { ByteSinkLike, ByteSourceLike } from "./_byte_io.ts";

/** Options for {@linkcode connectReadPipe}. */
export interface ConnectReadPipeOptions {
  /** Receives errors thrown by protocol callbacks; default: stderr. */
  onError?: ErrorHandler;
}

/** Options for {@linkcode connectWritePipe}. */
export interface ConnectWritePipeOptions {
  /** Receives errors thrown by protocol callbacks; default: stderr. */
  onError?: ErrorHandler;
}

/**
 * Drives a protocol from any byte source: asyncio's
 * `loop.connect_read_pipe()`. The source is `Deno.stdin`, a `Deno.FsFile`
 * (a FIFO, a character device, a file), anything with
 * `read(p: Uint8Array): Promise<number | null>`, or a
 * `ReadableStream<Uint8Array>`.
 *
 * The protocol gets what a socket's would: `connectionMade`,
 * `dataReceived` (or `getBuffer`/`bufferUpdated`), `eofReceived` at the
 * source's end, then `connectionLost`. `pauseReading()` and
 * `resumeReading()` work as on a socket; `close()` closes the source.
 * `getExtraInfo("pipe")` is the source. The transport it gets is a
 * {@linkcode ReadTransport}: it cannot write. An object literal's
 * `connectionMade(t)` gets `t` typed so; a class keeps it as
 * `this.transport` by extending `ProtocolBase<ReadTransport>` (or
 * `BufferedProtocolBase<ReadTransport>`).
 *
 * Deno cannot cancel a read in flight on every kind of file: closing a
 * terminal's stdin, for one, waits for the next line.
 *
 * A `ReadableStream` is locked only once the protocol is made, so a call
 * that fails before (bad arguments, a factory that throws or makes no
 * protocol) leaves the source as it was. If `connectionMade` throws, the
 * transport closes the source, as asyncio closes the pipe: a stream is
 * cancelled.
 *
 * @param factory Makes the protocol.
 * @param source What to read.
 * @param options Error reporting.
 * @returns The transport and the protocol, once `connectionMade` has run.
 * @throws {TypeError} If `factory` is not a function or makes no protocol
 * (a Promise of one, from an async factory, is none), or `source` cannot be
 * read or is a locked stream.
 *
 * @example Count the lines of a stream
 * ```ts
 * import { connectReadPipe, ProtocolBase, type ReadTransport } from "@aio/protocols";
 * import assert from "node:assert/strict";
 *
 * class LineCounter extends ProtocolBase<ReadTransport> {
 *   lines = 0;
 *   done = Promise.withResolvers<void>();
 *   override dataReceived(data: Uint8Array): void {
 *     this.lines += data.filter((byte) => byte === 0x0a).length;
 *   }
 *   override connectionLost(): void {
 *     this.done.resolve();
 *   }
 * }
 *
 * const source = ReadableStream.from([new TextEncoder().encode("a\nb\nc\n")]);
 * const [, counter] = await connectReadPipe(() => new LineCounter(), source);
 * await counter.done.promise;
 * assert.equal(counter.lines, 3);
 * ```
 */
export function connectReadPipe<P extends StreamProtocol<ReadTransport>>(
  factory: () => P,
  source: ByteSourceLike,
  options?: ConnectReadPipeOptions,
): Promise<[ReadTransport, P]> {
  const cannot = "Cannot connect read pipe";
  try {
    checkFactory(factory, "connect read pipe");
    const open = sourceOpener(source, cannot);
    return start(
      factory,
      checkProtocol,
      (protocol, made) =>
        new StreamTransport({ source: open() }, protocol, {
          onError: options?.onError,
          extra: { pipe: source },
          events: { made },
        }),
    );
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * Gives a protocol a write transport over any byte sink: asyncio's
 * `loop.connect_write_pipe()`. The sink is `Deno.stdout`, `Deno.stderr`, a
 * `Deno.FsFile`, anything with `write(p: Uint8Array): Promise<number>`, or
 * a `WritableStream<Uint8Array>`.
 *
 * The transport has a socket's write buffer, coalescing and flow control
 * (`pauseWriting` over the high-water mark, `resumeWriting` at the low
 * one); `close()` flushes then closes the sink, `writeEof()` is the same
 * as `close()` (a pipe's EOF is its close), `abort()` drops the buffer.
 * `getExtraInfo("pipe")` is the sink.
 *
 * A `WritableStream` is locked only once the protocol is made, so a call
 * that fails before (bad arguments, a factory that throws or makes no
 * protocol) leaves the sink as it was. If `connectionMade` throws, the
 * transport closes the sink, as asyncio closes the pipe: a stream is
 * aborted.
 *
 * @param factory Makes the protocol: any object, with the callbacks every
 * protocol has (`connectionMade`, `pauseWriting`, `resumeWriting`,
 * `connectionLost`); `connectionMade` gets a {@linkcode WriteTransport}, and
 * a class keeps it as `this.transport` by extending
 * `BaseProtocolBase<WriteTransport>`.
 * @param sink Where to write.
 * @param options Error reporting.
 * @returns The transport and the protocol, once `connectionMade` has run.
 * @throws {TypeError} If `factory` is not a function or makes no protocol
 * (an object; a Promise of one, from an async factory, is none), or `sink`
 * cannot be written or is a locked stream.
 *
 * @example Write lines with flow control
 * ```ts
 * import {
 *   BaseProtocolBase,
 *   connectWritePipe,
 *   type WriteTransport,
 * } from "@aio/protocols";
 *
 * const chunks: Uint8Array[] = [];
 * const sink = new WritableStream<Uint8Array>({
 *   write(chunk) {
 *     chunks.push(chunk.slice());
 *   },
 * });
 * const [transport, protocol] = await connectWritePipe(
 *   () => new BaseProtocolBase<WriteTransport>(),
 *   sink,
 * );
 * for (let i = 0; i < 3; i++) {
 *   transport.write(new TextEncoder().encode(`line ${i}\n`));
 *   await protocol.drain();
 * }
 * transport.close();
 * ```
 */
export function connectWritePipe<P extends BaseProtocol<WriteTransport>>(
  factory: () => P,
  sink: ByteSinkLike,
  options?: ConnectWritePipeOptions,
): Promise<[WriteTransport, P]> {
  const cannot = "Cannot connect write pipe";
  try {
    checkFactory(factory, "connect write pipe");
    const open = sinkOpener(sink, cannot);
    return start(
      factory,
      checkProtocolObject,
      (protocol, made) =>
        // A write pipe reads nothing: any protocol object will do.
        new StreamTransport(
          { sink: open() },
          protocol as unknown as StreamProtocol,
          {
            onError: options?.onError,
            extra: { pipe: sink },
            events: { made },
          },
        ),
    );
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * Checks `source` and returns what adapts it. A stream is locked only when
 * adapted, once the protocol is made.
 */
function sourceOpener(
  source: unknown,
  cannot: string,
): () => ByteSource & { close(): void } {
  if (source instanceof ReadableStream) {
    checkUnlocked(source, "source", cannot);
    return () => toByteSource(source, cannot);
  }
  const adapted = toByteSource(source, cannot);
  return () => adapted;
}

/**
 * Checks `sink` and returns what adapts it. A stream is locked only when
 * adapted, once the protocol is made.
 */
function sinkOpener(sink: unknown, cannot: string): () => ByteSink {
  if (sink instanceof WritableStream) {
    checkUnlocked(sink, "sink", cannot);
    return () => toByteSink(sink, cannot);
  }
  const adapted = toByteSink(sink, cannot);
  return () => adapted;
}

function checkUnlocked(
  stream: { readonly locked: boolean },
  name: string,
  cannot: string,
): void {
  if (stream.locked) {
    throw new TypeError(
      `${cannot}: the ${name} stream is locked (a reader or writer holds it)`,
    );
  }
}

/**
 * Makes the protocol and checks it, then its transport; resolves once
 * `connectionMade` ran.
 */
function start<P extends object, T>(
  factory: () => P,
  check: (protocol: unknown) => void,
  make: (
    protocol: P,
    made: (transport: unknown, error: Error | undefined) => void,
  ) => T,
): Promise<[T, P]> {
  const protocol = factory();
  check(protocol);
  const done = Promise.withResolvers<[T, P]>();
  const transport = make(protocol, (_, error) => {
    if (error === undefined) done.resolve([transport, protocol]);
    else done.reject(error);
  });
  return done.promise;
}
