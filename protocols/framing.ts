import { concat, copyOf, indexOfNeedle, startsWith } from "../_bytes.ts";
import { describeValue } from "../_checks.ts";
import { FrameTooLongError } from "../transports/errors.ts";
import type {
  ReadTransport,
  StreamProtocol,
  Transport,
} from "../transports/transport.ts";
import type { BufferedProtocol } from "./buffered_protocol.ts";
import { type Protocol, ProtocolBase } from "./protocol.ts";

/**
 * Options for {@linkcode LineProtocol}.
 *
 * @example RESP: lines end with CRLF, up to 512 KiB
 * ```ts
 * import { LineProtocol, type LineProtocolOptions } from "@aio/protocols";
 *
 * const RESP: LineProtocolOptions = {
 *   delimiter: "\r\n",
 *   maxLineLength: 512 * 1024,
 * };
 * class Resp extends LineProtocol {
 *   constructor() {
 *     super(RESP);
 *   }
 *   override lineReceived(_line: Uint8Array): void {
 *     this.sendLine("+OK");
 *   }
 * }
 * ```
 */
export interface LineProtocolOptions {
  /** What ends a line (default `"\n"`; `"\r\n"` for RESP, SMTP, HTTP). */
  delimiter?: string | Uint8Array;
  /** The longest line, delimiter excluded (default 64 KiB, asyncio's limit). */
  maxLineLength?: number;
}

const encoder = new TextEncoder();

/**
 * A {@linkcode LineProtocol} copies a piece of a line shorter than this,
 * rather than keeping a view of the chunk.
 */
const SMALL_PIECE = 256;

/**
 * A `Protocol` that splits the byte stream into lines: Twisted's
 * `LineReceiver`. Each `lineReceived(line)` gets one line without its
 * delimiter, as a view with no copy when the line arrived in one chunk.
 *
 * Memory stays bounded whatever the peer sends: a line longer than
 * `maxLineLength` calls {@linkcode LineProtocol.lineLengthExceeded}, which
 * by default throws {@linkcode FrameTooLongError} and so closes the
 * connection with it; an override that returns instead drops the line up to
 * its delimiter and goes on. A last line without a delimiter at EOF is not
 * delivered.
 *
 * To stop between lines, call the protocol's own
 * {@linkcode LineProtocol.pauseReading} (not the transport's, which stops
 * only the next chunk): the lines already read wait with the transport
 * paused, and {@linkcode LineProtocol.resumeReading} delivers them, then
 * reads again.
 *
 * A `lineReceived` (or `lineLengthExceeded`) that calls the transport's
 * `setProtocol(next)` ends this protocol's turn, as Twisted's `setRawMode`
 * does: once it returns, the bytes after that line go to `next` as the
 * transport gives bytes (`dataReceived`, or `getBuffer` and `bufferUpdated`
 * for a `BufferedProtocol`), and no line after it comes to this protocol,
 * which starts at a new line if it is set again. They all go over at once,
 * even if the line also paused or `next` pauses the transport meanwhile
 * (the transport then stays paused until resumed). Lines held by
 * `pauseReading()` when the switch is made later go over on
 * `resumeReading()`.
 *
 * Lines are the protocol's to keep, unless the subclass declares
 * `transientData` (then a line is valid only during `lineReceived`).
 *
 * @example A line-based echo server
 * ```ts
 * import { createServer, LineProtocol } from "@aio/protocols";
 *
 * class Echo extends LineProtocol {
 *   override lineReceived(line: Uint8Array): void {
 *     this.sendLine(line);
 *   }
 * }
 * await using server = await createServer(() => new Echo(), {
 *   hostname: "127.0.0.1",
 *   port: 0,
 * });
 * ```
 */
export abstract class LineProtocol<T extends ReadTransport = Transport>
  extends ProtocolBase<T> {
  /** What ends a line. */
  readonly delimiter: Uint8Array;
  /** The longest line, delimiter excluded. */
  readonly maxLineLength: number;
  /** The start of a line that has no delimiter yet, in pieces. */
  #parts: Uint8Array[] = [];
  #partLength = 0;
  /**
   * Memory of the protocol's own that the last piece is a view of, with
   * room to grow: small chunks are copied into it rather than kept as
   * pieces, so that a line dripped in tiny chunks costs about its length
   * in memory, not an array object per chunk.
   */
  #gather: Uint8Array | undefined;
  /** Dropping an over-long line until its delimiter. */
  #discarding = false;
  /** Lines held while paused; bytes handed over after a switch. */
  readonly #delivery: Delivery = new Delivery(
    this,
    (data) => this.#split(data),
    () => this.#reset(),
  );

  /**
   * Makes a line splitter.
   *
   * @param options The delimiter and the longest line.
   * @throws {TypeError} For a delimiter that is not a string or a
   * `Uint8Array`, or is empty.
   * @throws {RangeError} For a `maxLineLength` that is not a positive integer.
   */
  constructor(options: LineProtocolOptions = {}) {
    super();
    const delimiter: unknown = options.delimiter ?? "\n";
    if (typeof delimiter === "string") {
      this.delimiter = encoder.encode(delimiter);
    } else if (delimiter instanceof Uint8Array) {
      this.delimiter = copyOf(delimiter);
    } else {
      throw new TypeError(
        `Cannot make a LineProtocol: the delimiter must be a string or a Uint8Array, not ${
          describeValue(delimiter)
        }`,
      );
    }
    if (this.delimiter.byteLength === 0) {
      throw new TypeError("Cannot make a LineProtocol: the delimiter is empty");
    }
    this.maxLineLength = checkLimit(
      options.maxLineLength ?? 64 * 1024,
      "maxLineLength",
    );
  }

  /** Called with each line, without its delimiter. */
  abstract lineReceived(line: Uint8Array): void;

  /**
   * Called when a line is longer than `maxLineLength`; `length` is its
   * length, or how much arrived so far without a delimiter.
   *
   * @throws {FrameTooLongError} Unless overridden.
   */
  lineLengthExceeded(length: number): void {
    throw new FrameTooLongError(length, this.maxLineLength);
  }

  /**
   * Writes `line` and the delimiter in one write.
   *
   * @returns What `write()` returns: `false` while over the high mark.
   * @throws {TypeError} Before `connectionMade`, or as `write()` throws.
   */
  sendLine(line: Uint8Array | string): boolean {
    const bytes = typeof line === "string" ? encoder.encode(line) : line;
    return connected(this.transport, "send line").writelines([
      bytes,
      this.delimiter,
    ]);
  }

  /**
   * Stops delivering lines after the current one, and pauses the
   * transport; the rest of the chunk waits for `resumeReading()`.
   */
  pauseReading(): void {
    this.#delivery.pause();
  }

  /**
   * Delivers the lines held by `pauseReading()`, from within this call,
   * then resumes the transport unless a line paused it again. Once the
   * transport is closing, the held lines are dropped instead. A callback
   * that throws here aborts the connection, and the error is thrown from
   * this call.
   */
  resumeReading(): void {
    this.#delivery.resume();
  }

  /** Splits `data` into lines; keeps what has no delimiter yet. */
  override dataReceived(data: Uint8Array): void {
    this.#delivery.receive(data);
  }

  #split(data: Uint8Array): void {
    const delimiter = this.delimiter;
    let from = 0;
    let scan = 0;
    if (this.#partLength > 0 && delimiter.byteLength > 1) {
      const across = this.#delimiterAcross(data);
      if (across > 0) {
        const end = this.#partLength - (delimiter.byteLength - across);
        this.#endLine(this.#joinParts().subarray(0, end));
        from = scan = across;
        if (this.#delivery.stopsAt(data, from)) return;
      }
    }
    for (;;) {
      const at = indexOfNeedle(data, delimiter, scan);
      if (at < 0) break;
      const line = this.#partLength > 0
        ? this.#joinParts(data.subarray(from, at))
        : data.subarray(from, at);
      from = scan = at + delimiter.byteLength;
      this.#endLine(line);
      if (this.#delivery.stopsAt(data, from)) return;
    }
    this.#keep(data.subarray(from));
  }

  /**
   * Returns how many bytes at the start of `data` finish a delimiter that
   * the kept parts began, or 0.
   */
  #delimiterAcross(data: Uint8Array): number {
    const delimiter = this.delimiter;
    const tail = this.#keptTail(delimiter.byteLength - 1);
    for (let begun = tail.byteLength; begun >= 1; begun--) {
      const rest = delimiter.byteLength - begun;
      if (rest > data.byteLength) continue;
      if (
        startsWith(
          tail.subarray(tail.byteLength - begun),
          delimiter.subarray(0, begun),
        ) &&
        startsWith(data, delimiter.subarray(begun))
      ) {
        return rest;
      }
    }
    return 0;
  }

  /** Delivers a complete line. */
  #endLine(line: Uint8Array): void {
    this.#parts = [];
    this.#partLength = 0;
    this.#gather = undefined;
    if (this.#discarding) {
      this.#discarding = false;
    } else if (line.byteLength > this.maxLineLength) {
      this.lineLengthExceeded(line.byteLength);
    } else {
      this.lineReceived(line);
    }
  }

  /** Keeps the start of a line; over the limit, drops it. */
  #keep(rest: Uint8Array): void {
    if (rest.byteLength === 0) return;
    const length = this.#partLength + rest.byteLength;
    // The last bytes may begin a delimiter: they may not count yet.
    const unsure = this.delimiter.byteLength - 1;
    const exceeded = !this.#discarding && length - unsure > this.maxLineLength;
    if (this.#discarding || exceeded) {
      // Keep only what a delimiter across chunks needs.
      const all = this.#joinParts(rest);
      const keep = Math.min(all.byteLength, unsure);
      this.#parts = keep > 0 ? [all.slice(all.byteLength - keep)] : [];
      this.#partLength = keep;
      this.#gather = undefined;
      if (exceeded) {
        this.#discarding = true;
        this.lineLengthExceeded(length);
        // The line's bytes are spent; a switch there forgets the line.
        this.#delivery.stopsAt(EMPTY, 0);
      }
      return;
    }
    if (rest.byteLength < SMALL_PIECE) {
      this.#gatherPiece(rest);
    } else {
      this.#gather = undefined;
      this.#parts.push(this.transientData ? copyOf(rest) : rest);
    }
    this.#partLength = length;
  }

  /** Copies a small piece into the last piece, growing it as needed. */
  #gatherPiece(piece: Uint8Array): void {
    const parts = this.#parts;
    let gather = this.#gather;
    const filled = gather === undefined ? 0 : parts.at(-1)!.byteLength;
    const length = filled + piece.byteLength;
    if (gather === undefined || length > gather.byteLength) {
      const grown = new Uint8Array(Math.max(2 * length, 2 * SMALL_PIECE));
      if (gather === undefined) parts.push(grown);
      else grown.set(parts.at(-1)!);
      gather = this.#gather = grown;
    }
    gather.set(piece, filled);
    parts[parts.length - 1] = gather.subarray(0, length);
  }

  /** Forgets the line begun, after a switch to another protocol. */
  #reset(): void {
    this.#parts = [];
    this.#partLength = 0;
    this.#gather = undefined;
    this.#discarding = false;
  }

  /** Returns the kept parts joined, and `more` after them. */
  #joinParts(more?: Uint8Array): Uint8Array {
    const parts = more === undefined ? this.#parts : [...this.#parts, more];
    return parts.length === 1 ? parts[0]! : concat(parts);
  }

  /**
   * Returns the last `count` kept bytes (fewer if fewer are kept), copying
   * at most `count` bytes from the last parts: the cost of a chunk does not
   * grow with the line kept so far.
   */
  #keptTail(count: number): Uint8Array {
    const parts = this.#parts;
    const last = parts.at(-1)!;
    if (last.byteLength >= count) return last.subarray(last.byteLength - count);
    const tail = new Uint8Array(Math.min(count, this.#partLength));
    let end = tail.byteLength;
    for (let i = parts.length - 1; end > 0; i--) {
      const part = parts[i]!;
      const take = Math.min(part.byteLength, end);
      tail.set(part.subarray(part.byteLength - take), end - take);
      end -= take;
    }
    return tail;
  }
}

/**
 * Options for {@linkcode LengthPrefixedProtocol}.
 *
 * @example Frames of up to 64 KiB after a 2-byte length
 * ```ts
 * import type { LengthPrefixedProtocolOptions } from "@aio/protocols";
 *
 * const options: LengthPrefixedProtocolOptions = {
 *   prefixLength: 2,
 *   maxFrameLength: 65535,
 * };
 * ```
 */
export interface LengthPrefixedProtocolOptions {
  /** Bytes of the big-endian length before each frame: 1, 2 or 4 (default). */
  prefixLength?: 1 | 2 | 4;
  /** The longest frame, prefix excluded (default 1 MiB). */
  maxFrameLength?: number;
}

/**
 * A `Protocol` for frames that each start with their length: Twisted's
 * `IntNStringReceiver`. Each `frameReceived(frame)` gets one frame without
 * its prefix, as a view with no copy when the frame arrived in one chunk;
 * otherwise the frame is gathered in an array of its exact length.
 *
 * A prefix over `maxFrameLength` calls
 * {@linkcode LengthPrefixedProtocol.frameLengthExceeded}, which by default
 * throws {@linkcode FrameTooLongError} and so closes the connection; an
 * override that returns instead skips the frame and goes on. Memory stays
 * bounded by `maxFrameLength` whatever the peer sends.
 *
 * To stop between frames, call the protocol's own
 * {@linkcode LengthPrefixedProtocol.pauseReading} (not the transport's,
 * which stops only the next chunk); {@linkcode
 * LengthPrefixedProtocol.resumeReading} delivers the frames held meanwhile.
 *
 * A switch to another protocol with the transport's `setProtocol()` from
 * `frameReceived` or `frameLengthExceeded` hands the bytes after that frame
 * (or after the over-long prefix: the frame's bytes too) to the new
 * protocol, as {@linkcode LineProtocol} does after a line.
 *
 * @example Frames of up to 64 KiB with a 2-byte prefix
 * ```ts
 * import { LengthPrefixedProtocol } from "@aio/protocols";
 * import assert from "node:assert/strict";
 *
 * class Collect extends LengthPrefixedProtocol {
 *   frames: string[] = [];
 *   constructor() {
 *     super({ prefixLength: 2, maxFrameLength: 65535 });
 *   }
 *   override frameReceived(frame: Uint8Array): void {
 *     this.frames.push(new TextDecoder().decode(frame));
 *   }
 * }
 * const collect = new Collect();
 * collect.dataReceived(new Uint8Array([0, 2, 104, 105, 0, 1]));
 * collect.dataReceived(new Uint8Array([33]));
 * assert.deepEqual(collect.frames, ["hi", "!"]);
 * ```
 */
export abstract class LengthPrefixedProtocol<
  T extends ReadTransport = Transport,
> extends ProtocolBase<T> {
  /** Bytes of the length prefix. */
  readonly prefixLength: 1 | 2 | 4;
  /** The longest frame, prefix excluded. */
  readonly maxFrameLength: number;
  /** Prefix bytes gathered so far. */
  #prefix: Uint8Array;
  #prefixFilled = 0;
  /** The length of the frame being read, or -1 while reading a prefix. */
  #frameLength = -1;
  /** The frame gathered across chunks, made once it spans two. */
  #frame: Uint8Array | undefined;
  #frameFilled = 0;
  /** Bytes of an over-long frame still to skip. */
  #skip = 0;
  /** Frames held while paused; bytes handed over after a switch. */
  readonly #delivery: Delivery = new Delivery(
    this,
    (data) => this.#split(data),
    () => this.#reset(),
  );

  /**
   * Makes a frame splitter.
   *
   * @param options The prefix length and the longest frame.
   * @throws {RangeError} For a bad `prefixLength` or `maxFrameLength`.
   */
  constructor(options: LengthPrefixedProtocolOptions = {}) {
    super();
    const prefixLength = options.prefixLength ?? 4;
    if (prefixLength !== 1 && prefixLength !== 2 && prefixLength !== 4) {
      throw new RangeError(
        `Cannot make a LengthPrefixedProtocol: prefixLength must be 1, 2 or 4, not ${prefixLength}`,
      );
    }
    this.prefixLength = prefixLength;
    this.maxFrameLength = checkLimit(
      options.maxFrameLength ?? 1024 * 1024,
      "maxFrameLength",
    );
    this.#prefix = new Uint8Array(prefixLength);
  }

  /** Called with each frame, without its prefix. */
  abstract frameReceived(frame: Uint8Array): void;

  /**
   * Called when a prefix announces more than `maxFrameLength` bytes.
   *
   * @throws {FrameTooLongError} Unless overridden.
   */
  frameLengthExceeded(length: number): void {
    throw new FrameTooLongError(length, this.maxFrameLength);
  }

  /**
   * Writes the length prefix and `frame` in one write.
   *
   * @returns What `write()` returns: `false` while over the high mark.
   * @throws {RangeError} If the prefix cannot hold the frame's length.
   * @throws {TypeError} Before `connectionMade`, or as `write()` throws.
   */
  sendFrame(frame: Uint8Array): boolean {
    const max = 2 ** (8 * this.prefixLength) - 1;
    if (frame.byteLength > max) {
      throw new RangeError(
        `Cannot send frame: ${frame.byteLength} bytes do not fit a ${this.prefixLength}-byte prefix`,
      );
    }
    const prefix = new Uint8Array(this.prefixLength);
    writeLength(prefix, frame.byteLength);
    return connected(this.transport, "send frame").writelines([prefix, frame]);
  }

  /**
   * Stops delivering frames after the current one (or after the frame that
   * `frameLengthExceeded()` skips), and pauses the transport; the rest of
   * the chunk waits for `resumeReading()`.
   */
  pauseReading(): void {
    this.#delivery.pause();
  }

  /**
   * Delivers the frames held by `pauseReading()`, from within this call,
   * then resumes the transport unless a frame paused it again. Once the
   * transport is closing, the held frames are dropped instead. A callback
   * that throws here aborts the connection, and the error is thrown from
   * this call.
   */
  resumeReading(): void {
    this.#delivery.resume();
  }

  /** Splits `data` into frames; keeps a partial prefix or frame. */
  override dataReceived(data: Uint8Array): void {
    this.#delivery.receive(data);
  }

  #split(data: Uint8Array): void {
    let offset = 0;
    while (offset < data.byteLength) {
      if (this.#skip > 0) {
        const skipped = Math.min(this.#skip, data.byteLength - offset);
        this.#skip -= skipped;
        offset += skipped;
        continue;
      }
      if (this.#frameLength < 0) {
        offset = this.#readPrefix(data, offset);
        // After frameLengthExceeded(), as after a frame.
        if (this.#skip > 0 && this.#delivery.stopsAt(data, offset)) return;
        if (this.#frameLength !== 0) continue;
        this.#frameLength = -1;
        this.frameReceived(EMPTY);
        if (this.#delivery.stopsAt(data, offset)) return;
        continue;
      }
      const length = this.#frameLength;
      const available = data.byteLength - offset;
      if (this.#frame === undefined && available >= length) {
        // The whole frame is here: a view, no copy.
        this.#frameLength = -1;
        const view = data.subarray(offset, offset + length);
        offset += length;
        this.frameReceived(view);
        if (this.#delivery.stopsAt(data, offset)) return;
        continue;
      }
      const frame = this.#frame ??= new Uint8Array(length);
      const take = Math.min(length - this.#frameFilled, available);
      frame.set(data.subarray(offset, offset + take), this.#frameFilled);
      this.#frameFilled += take;
      offset += take;
      if (this.#frameFilled === length) {
        this.#frameLength = -1;
        this.#frame = undefined;
        this.#frameFilled = 0;
        this.frameReceived(frame);
        if (this.#delivery.stopsAt(data, offset)) return;
      }
    }
  }

  /** Forgets the prefix or frame begun, after a switch to another protocol. */
  #reset(): void {
    this.#prefixFilled = 0;
    this.#frameLength = -1;
    this.#frame = undefined;
    this.#frameFilled = 0;
    this.#skip = 0;
  }

  /**
   * Reads prefix bytes from `data` at `offset`; once the prefix is whole,
   * sets the frame's length (or a skip). Returns the new offset.
   */
  #readPrefix(data: Uint8Array, offset: number): number {
    const take = Math.min(
      this.prefixLength - this.#prefixFilled,
      data.byteLength - offset,
    );
    this.#prefix.set(data.subarray(offset, offset + take), this.#prefixFilled);
    this.#prefixFilled += take;
    if (this.#prefixFilled < this.prefixLength) return offset + take;
    this.#prefixFilled = 0;
    const length = readLength(this.#prefix);
    if (length > this.maxFrameLength) {
      this.#skip = length;
      this.frameLengthExceeded(length);
      return offset + take;
    }
    this.#frameLength = length;
    return offset + take;
  }
}

const EMPTY = new Uint8Array(0);

/**
 * How a framing protocol delivers its messages: it runs the protocol's
 * split on the bytes, which asks after each message whether to go on.
 *
 * - Its own pause: between two messages of a chunk, not only between
 *   chunks. While paused, the transport is paused too, and the bytes not
 *   yet split are held (copied if the protocol's data is transient).
 * - Closing: once the transport is closing, no message is delivered: what
 *   is held or not yet split is dropped, checked before each message.
 * - A switch: once a callback gave the transport another protocol, the
 *   bytes not yet split go to that protocol, and the framing protocol
 *   forgets any partial message.
 */
class Delivery {
  readonly #protocol: ProtocolBase<ReadTransport>;
  /** Splits bytes into messages and delivers them. */
  readonly #split: (data: Uint8Array) => void;
  /** Forgets a partial message. */
  readonly #reset: () => void;
  #paused = false;
  /** Bytes read and not yet split, while paused. */
  #held: Uint8Array | undefined;
  /** The transport's protocol when the bytes were held. */
  #heldFor: StreamProtocol | undefined;
  /**
   * The transport's protocol when the split began: a switch from it hands
   * the rest over. (Not always the framing protocol: another protocol may
   * feed it.)
   */
  #owner: StreamProtocol | undefined;
  /** Set while `#split` runs. */
  #splitting = false;

  constructor(
    protocol: ProtocolBase<ReadTransport>,
    split: (data: Uint8Array) => void,
    reset: () => void,
  ) {
    this.#protocol = protocol;
    this.#split = split;
    this.#reset = reset;
  }

  pause(): void {
    this.#paused = true;
    this.#protocol.transport?.pauseReading();
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    const held = this.#held;
    if (held !== undefined && !this.#splitting) {
      this.#held = undefined;
      try {
        if (!this.closing()) this.#deliver(held, this.#heldFor);
      } catch (error) {
        const transport = this.#protocol.transport;
        // A read pipe has no abort(): closing it ends it at once.
        if (transport !== undefined) {
          if (writes(transport)) transport.abort();
          else transport.close();
        }
        throw error;
      }
    }
    if (!this.#paused) this.#protocol.transport?.resumeReading();
  }

  /** Splits `data` after what is held, or holds it all while paused. */
  receive(data: Uint8Array): void {
    if (this.closing()) {
      this.#held = undefined;
      return;
    }
    const held = this.#held;
    let owner = this.#current();
    if (held !== undefined) {
      this.#held = undefined;
      data = concat([held, data]);
      owner = this.#heldFor;
    } else if (this.#paused) {
      data = this.#own(data);
    }
    if (this.#paused) {
      this.#held = data;
      this.#heldFor = owner;
      return;
    }
    this.#deliver(data, owner);
  }

  /**
   * Called after each message: `true` if the split stops there, because
   * the transport is closing (the rest is dropped), because the message
   * switched protocols (the rest, `data` from `from` on, is handed over) or
   * because it paused (the rest is held).
   */
  stopsAt(data: Uint8Array, from: number): boolean {
    if (this.closing()) return true;
    if (this.#switched()) {
      this.#handOver(data.subarray(from));
      return true;
    }
    if (!this.#paused) return false;
    if (from < data.byteLength) {
      this.#held = this.#own(data.subarray(from));
      this.#heldFor = this.#owner;
    }
    return true;
  }

  /** Returns `true` once the transport is closing or closed. */
  closing(): boolean {
    return this.#protocol.transport?.isClosing() ?? false;
  }

  /** Splits `data`, or hands it over if `owner` is no longer current. */
  #deliver(data: Uint8Array, owner: StreamProtocol | undefined): void {
    const outerOwner = this.#owner;
    const outerSplitting = this.#splitting;
    this.#owner = owner;
    try {
      if (this.#switched()) {
        this.#handOver(data);
      } else {
        this.#splitting = true;
        this.#split(data);
      }
    } finally {
      this.#owner = outerOwner;
      this.#splitting = outerSplitting;
    }
  }

  /**
   * The transport's protocol: a stream protocol, or, on a child's pipe, the
   * child's protocol (which has no `dataReceived`; `#switched()` tells).
   */
  #current(): StreamProtocol | undefined {
    return this.#protocol.transport?.getProtocol() as
      | StreamProtocol
      | undefined;
  }

  /**
   * Returns `true` if the transport's protocol is no longer the owner, but
   * another stream protocol. (The pipe of a child process gives the
   * subprocess protocol, which may feed a framing protocol and be switched:
   * that is no switch of the stream.)
   */
  #switched(): boolean {
    const protocol = this.#current();
    return protocol !== this.#owner && protocol !== undefined &&
      (isBuffered(protocol) ||
        typeof (protocol as Protocol).dataReceived === "function");
  }

  /**
   * Gives `rest` to the transport's current protocol, as the transport does
   * after a switch: a `Protocol` gets it in one `dataReceived` (copied if it
   * keeps what it gets and `rest` is transient); a `BufferedProtocol` gets
   * it copied into its buffers, `getBuffer` then `bufferUpdated` until all
   * is given, within this call even if the transport pauses meanwhile.
   */
  #handOver(rest: Uint8Array): void {
    this.#reset();
    const transport = this.#protocol.transport!;
    while (rest.byteLength > 0 && !transport.isClosing()) {
      const protocol = this.#current()!;
      if (!isBuffered(protocol)) {
        const copy = this.#protocol.transientData &&
          protocol.transientData !== true;
        protocol.dataReceived(copy ? copyOf(rest) : rest);
        return;
      }
      const buffer: unknown = protocol.getBuffer(rest.byteLength);
      if (!(buffer instanceof Uint8Array) || buffer.byteLength === 0) {
        throw new TypeError(
          `Cannot hand bytes over to the new protocol: getBuffer() must return a non-empty Uint8Array, not ${
            buffer instanceof Uint8Array
              ? "an empty one"
              : describeValue(buffer)
          }`,
        );
      }
      const nbytes = Math.min(buffer.byteLength, rest.byteLength);
      buffer.set(rest.subarray(0, nbytes));
      rest = rest.subarray(nbytes);
      protocol.bufferUpdated(nbytes);
    }
  }

  /** Returns bytes the protocol may keep past `dataReceived`. */
  #own(data: Uint8Array): Uint8Array {
    return this.#protocol.transientData ? copyOf(data) : data;
  }
}

/** Returns `true` if `protocol` is a `BufferedProtocol` (has `getBuffer`). */
function isBuffered(protocol: StreamProtocol): protocol is BufferedProtocol {
  return typeof (protocol as BufferedProtocol).getBuffer === "function";
}

function checkLimit(value: unknown, name: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
    throw new RangeError(
      `Cannot make a framing protocol: ${name} must be a positive integer, not ${value}`,
    );
  }
  return value;
}

/** Returns the transport a protocol writes to, once it has one. */
function connected(
  transport: ReadTransport | undefined,
  what: string,
): Transport {
  if (transport === undefined) {
    throw new TypeError(
      `Cannot ${what}: the protocol has no transport before connectionMade()`,
    );
  }
  if (!writes(transport)) {
    throw new TypeError(`Cannot ${what}: this is a read pipe`);
  }
  return transport;
}

/** Returns `true` unless `transport` is a read pipe. */
function writes(transport: ReadTransport): transport is Transport {
  return "writelines" in transport &&
    typeof transport.writelines === "function";
}

function readLength(prefix: Uint8Array): number {
  let length = 0;
  for (const byte of prefix) length = length * 256 + byte;
  return length;
}

function writeLength(prefix: Uint8Array, length: number): void {
  for (let i = prefix.byteLength - 1; i >= 0; i--) {
    prefix[i] = length % 256;
    length = Math.floor(length / 256);
  }
}
