import type { ReadTransport, Transport } from "../transports/transport.ts";
import type { BaseProtocol } from "./base_protocol.ts";
import { BaseProtocolBase } from "./base_protocol.ts";

/**
 * Callbacks for a byte stream that the transport reads straight into the
 * protocol's own memory, with no copy: a zero-copy receive.
 *
 * For each read the transport calls `getBuffer(sizeHint)`, reads into the
 * returned `Uint8Array`, then calls `bufferUpdated(nbytes)`. Each
 * `bufferUpdated(n)` refers to the buffer returned by the `getBuffer` call
 * just before it, and the bytes are at its start: `buffer.subarray(0, n)`.
 * Return a `subarray` to have the transport read at an offset.
 *
 * ```text
 * connectionMade → (getBuffer → bufferUpdated?)* → eofReceived? → connectionLost
 * ```
 *
 * @typeParam T The transport `connectionMade` gets: a `Transport` from a
 * socket, a `ReadTransport` from `connectReadPipe`.
 *
 * @example Read fixed-size records into one reused buffer
 * ```ts
 * import type { BufferedProtocol } from "@aio/protocols";
 *
 * const RECORD = 16;
 * const buffer = new Uint8Array(RECORD);
 * let filled = 0;
 * const records: BufferedProtocol = {
 *   getBuffer: () => buffer.subarray(filled),
 *   bufferUpdated(nbytes) {
 *     filled += nbytes;
 *     if (filled === RECORD) {
 *       console.log("record", buffer);
 *       filled = 0;
 *     }
 *   },
 * };
 * ```
 */
export interface BufferedProtocol<T extends ReadTransport = Transport>
  extends BaseProtocol<T> {
  /** Called once, first, with the transport that now drives this protocol. */
  connectionMade?(transport: T): void;
  /**
   * Returns the buffer for the next read, never empty. `sizeHint` is the
   * size the transport would like (-1: any size); a smaller buffer is fine.
   */
  getBuffer(sizeHint: number): Uint8Array;
  /** Called with the number of bytes read into the last buffer, never 0. */
  bufferUpdated(nbytes: number): void;
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
 * A {@linkcode BufferedProtocol} with a buffer of its own and no-op
 * callbacks: override `bufferUpdated` to use the bytes in `buffer`.
 *
 * @typeParam T The transport kept as `this.transport`:
 * `BufferedProtocolBase<ReadTransport>` for `connectReadPipe`.
 *
 * @example Sum the bytes of a stream without copying them
 * ```ts
 * import { BufferedProtocolBase } from "@aio/protocols";
 * import assert from "node:assert/strict";
 *
 * class Summer extends BufferedProtocolBase {
 *   sum = 0;
 *   override bufferUpdated(nbytes: number): void {
 *     for (const byte of this.buffer.subarray(0, nbytes)) this.sum += byte;
 *   }
 * }
 *
 * const summer = new Summer(4);
 * summer.getBuffer(-1).set([1, 2, 3]);
 * summer.bufferUpdated(3);
 * assert.equal(summer.sum, 6);
 * ```
 */
export class BufferedProtocolBase<T extends ReadTransport = Transport>
  extends BaseProtocolBase<T>
  implements BufferedProtocol<T> {
  /** The memory every read goes into. */
  readonly buffer: Uint8Array;

  /**
   * Makes a protocol with a buffer of its own.
   *
   * @param size The buffer's size in bytes (default 64 KiB).
   * @throws {RangeError} Unless `size` is a positive integer.
   */
  constructor(size = 64 * 1024) {
    super();
    if (!Number.isInteger(size) || size <= 0) {
      throw new RangeError(
        `Cannot create buffered protocol: size (${size}) must be a positive integer`,
      );
    }
    this.buffer = new Uint8Array(size);
  }

  /** Returns the whole of {@linkcode buffer}. */
  getBuffer(_sizeHint: number): Uint8Array {
    return this.buffer;
  }

  /** Does nothing; override to use `buffer.subarray(0, nbytes)`. */
  bufferUpdated(_nbytes: number): void {}

  /** Returns `false`, so the transport closes after the peer's EOF. */
  eofReceived(): boolean | void {
    return false;
  }
}
