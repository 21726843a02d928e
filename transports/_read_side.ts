import { describeValue } from "../_checks.ts";
import { toError } from "../_report.ts";
import { copyOf } from "../_bytes.ts";
import type { BufferedProtocol } from "../protocols/buffered_protocol.ts";
import type { Protocol } from "../protocols/protocol.ts";
import { FAILED, type ProtocolCaller } from "./_protocol_caller.ts";
import {
  commit,
  copyOut,
  drop,
  giveProbe,
  hold,
  lendBlock,
  type Loan,
  ReadSizer,
  release,
  releaseBlock,
  reserve,
  reserveBlock,
  takeProbe,
} from "./_read_memory.ts";
import type { StreamProtocol } from "./transport.ts";

/** Where a read side's bytes come from: a socket, a pipe, a file. */
export interface ByteSource {
  /** Reads into `p`; resolves with how many bytes, or `null` at EOF. */
  read(p: Uint8Array): Promise<number | null>;
}

/** What a {@linkcode ReadSide} tells the transport that holds it. */
export interface ReadSideOwner {
  /** The peer's EOF was delivered; `keepOpen` is what `eofReceived` said. */
  eof(keepOpen: boolean): void;
  /** A read failed: the transport is lost with `error`. */
  failed(error: Error): void;
  /** Bytes were read (for the idle timer). */
  active(): void;
}

/** A read whose delivery waits: while paused, or for another protocol. */
type Held =
  /** Bytes, lent or owned. */
  | { data: Uint8Array; loan: Loan | undefined }
  /** `nbytes` read into the buffer `protocol.getBuffer()` gave. */
  | { protocol: BufferedProtocol; buffer: Uint8Array; nbytes: number }
  | typeof EOF;

const EOF = "eof";

/**
 * How reads are made and delivered for one kind of protocol, chosen when
 * the protocol is set (as CPython picks `_read_ready__data_received` or
 * `_read_ready__get_buffer`). Shared by every transport: `protocol` is the
 * one that was current when the read began.
 */
interface ReadKind {
  /** Memory for the next read, about `size` bytes; `undefined` if the protocol failed to give it. */
  reserve(side: ReadSide, protocol: StreamProtocol, size: number):
    | Uint8Array
    | undefined;
  /** Gives back memory that a read did not fill. */
  unreserve(buffer: Uint8Array): void;
  /** Delivers `nbytes` read into `buffer`; `false` when reading must stop. */
  deliver(side: ReadSide, buffer: Uint8Array, nbytes: number): boolean;
  /** Keeps `nbytes` read into `buffer` for later. */
  hold(protocol: StreamProtocol, buffer: Uint8Array, nbytes: number): Held;
}

/** Reads for a `Protocol` that keeps its chunks: fresh memory each time. */
const OWNED: ReadKind = {
  reserve: (_side, _protocol, size) => reserve(size),
  unreserve: (buffer) => release(buffer),
  deliver: (side, buffer, nbytes) => side.dataReceived(commit(buffer, nbytes)),
  hold: (_protocol, buffer, nbytes) => ({
    data: commit(buffer, nbytes),
    loan: undefined,
  }),
};

/**
 * Reads for a `transientData` protocol: into blocks that are lent, not
 * given, whatever their size (TLS records included), so that nothing is
 * copied but results of at most 4 KiB.
 */
const LENT: ReadKind = {
  reserve: (_side, _protocol, size) => reserveBlock(size),
  unreserve: (buffer) => releaseBlock(buffer),
  deliver(side, buffer, nbytes) {
    const lent = lendBlock(buffer, nbytes);
    if (lent instanceof Uint8Array) return side.dataReceived(lent);
    const more = side.dataReceived(buffer.subarray(0, nbytes));
    drop(lent);
    return more;
  },
  hold(_protocol, buffer, nbytes) {
    const lent = lendBlock(buffer, nbytes);
    return lent instanceof Uint8Array
      ? { data: lent, loan: undefined }
      : { data: buffer.subarray(0, nbytes), loan: lent };
  },
};

/** Reads straight into the buffers a `BufferedProtocol` gives. */
const BUFFERED: ReadKind = {
  reserve: (side, protocol, size) =>
    side.getBuffer(protocol as BufferedProtocol, size),
  unreserve: () => {},
  deliver: (side, _buffer, nbytes) => side.bufferUpdated(nbytes),
  hold: (protocol, buffer, nbytes) => ({
    protocol: protocol as BufferedProtocol,
    buffer,
    nbytes,
  }),
};

/**
 * Probe reads, for a `Protocol` that keeps its chunks: into the side's own
 * probe slot, kept while it lives; what a probe read gets is copied out.
 */
const PROBE: ReadKind = {
  reserve: (side) => side.probeSlot(),
  unreserve: () => {},
  deliver: (side, buffer, nbytes) => side.dataReceived(copyOut(buffer, nbytes)),
  hold: (_protocol, buffer, nbytes) => ({
    data: copyOut(buffer, nbytes),
    loan: undefined,
  }),
};

function kindOf(protocol: StreamProtocol): ReadKind {
  if (isBuffered(protocol)) return BUFFERED;
  return protocol.transientData === true ? LENT : OWNED;
}

/**
 * The read side of a byte-stream transport: one loop that reads from the
 * source and feeds the protocol, pausing and resuming without losing a
 * byte, and delivering EOF once.
 *
 * A read already in flight cannot be cancelled: what it brings after
 * `pause()` is held and delivered first on `resume()`.
 */
export class ReadSide {
  /** What to read from; without one, the side is fed by `push()`. */
  #source: ByteSource | undefined;
  #caller: ProtocolCaller<StreamProtocol>;
  #owner: ReadSideOwner;
  #sizer: ReadSizer;
  /** How the current protocol's reads are made. */
  #kind: ReadKind;
  /** The loop, while it runs. */
  #loop: Promise<void> | undefined;
  /** The loop runs (set before its first await, so also while it starts). */
  #running = false;
  /** `start()` was called: the protocol is made. */
  #started = false;
  /** A `source.read()` is in flight. */
  #pending = false;
  #paused = false;
  /** Reading is over: closing, failed or handed over. */
  #stopped = false;
  /** EOF was delivered. */
  #eof = false;
  /** A read done while paused, or EOF, to deliver on resume. */
  #held: Held | undefined;
  /** A side with no source: EOF was pushed and waits behind held data. */
  #eofPending = false;
  /** The size of a probe read. */
  #probeSize: number;
  /** The side's own probe slot, once it made a probe read. */
  #probe: Uint8Array | undefined;

  /**
   * @param source What to read from, or `undefined` for a side fed by
   * {@linkcode ReadSide.push} (an in-memory transport).
   * @param caller The transport's protocol caller.
   * @param owner The transport.
   * @param probe The size of a read after a short one (see `ReadSizer`).
   */
  constructor(
    source: ByteSource | undefined,
    caller: ProtocolCaller<StreamProtocol>,
    owner: ReadSideOwner,
    probe: number,
  ) {
    this.#source = source;
    this.#caller = caller;
    this.#owner = owner;
    this.#sizer = new ReadSizer(probe);
    this.#probeSize = probe;
    this.#kind = kindOf(caller.protocol);
  }

  /** Settles once the loop is not running. */
  get idle(): Promise<void> {
    return this.#loop ?? Promise.resolve();
  }

  /** A read is in flight: the source cannot be handed over now. */
  get readPending(): boolean {
    return this.#pending;
  }

  /** A read waits to be delivered: handing the source over would lose it. */
  get holding(): boolean {
    return this.#held !== undefined;
  }

  /** `true` while data is delivered: started or about to, not paused, stopped or at EOF. */
  isReading(): boolean {
    return !this.#stopped && !this.#paused && !this.#eof;
  }

  /** Starts reading, once the protocol is made. */
  start(): void {
    this.#started = true;
    if (this.#source === undefined) return;
    if (!this.#stopped && !this.#paused) this.#startLoop();
  }

  /**
   * Delivers `data` now, as if read (a side with no source): held while
   * paused or while earlier data waits, dropped once stopped.
   */
  push(data: Uint8Array): void {
    if (this.#stopped || this.#eof || this.#eofPending) return;
    if (data.byteLength === 0) return;
    this.#owner.active();
    const held = this.#held;
    if (held !== undefined && held !== EOF && "loan" in held) {
      const joined = new Uint8Array(held.data.byteLength + data.byteLength);
      joined.set(held.data);
      joined.set(data, held.data.byteLength);
      this.#held = { data: joined, loan: undefined };
      return;
    }
    if (held !== undefined || this.#paused || !this.#started) {
      this.#held = held ?? { data: copyOf(data), loan: undefined };
      return;
    }
    this.#feed(copyOf(data), undefined);
  }

  /** Delivers EOF now (a side with no source), or once what is held is. */
  pushEof(): void {
    if (this.#stopped || this.#eof) return;
    if (this.#held !== undefined || this.#paused || !this.#started) {
      this.#eofPending = true;
      return;
    }
    this.#receiveEof();
  }

  /** Stops delivering until `resume()`; idempotent. */
  pause(): void {
    if (!this.#stopped) this.#paused = true;
  }

  /** Delivers again, first what arrived while paused; idempotent. */
  resume(): void {
    if (this.#stopped || !this.#paused) return;
    this.#paused = false;
    if (this.#started && !this.#running) this.#startLoop();
  }

  /** Fails the side with `error`, as a failed read would (no source). */
  fail(error: Error): void {
    if (!this.#stopped) this.#owner.failed(error);
  }

  /** Stops reading for good and drops what is held. */
  stop(): void {
    this.#stopped = true;
    if (!this.#pending) this.#releaseProbe();
    const held = this.#held;
    this.#held = undefined;
    if (held !== undefined && held !== EOF && "loan" in held && held.loan) {
      drop(held.loan);
    }
  }

  /** The side's probe slot, taken at its first probe read. */
  probeSlot(): Uint8Array {
    return this.#probe ??= takeProbe(this.#probeSize);
  }

  /** Gives the probe slot back, once no read can write into it. */
  #releaseProbe(): void {
    if (this.#probe === undefined) return;
    giveProbe(this.#probe);
    this.#probe = undefined;
  }

  /** The protocol was switched: later reads follow its kind. */
  protocolChanged(): void {
    this.#kind = kindOf(this.#caller.protocol);
  }

  /** Starts the loop; a run with nothing to do ends before it returns. */
  #startLoop(): void {
    const loop = this.#run();
    if (this.#running) this.#loop = loop;
  }

  async #run(): Promise<void> {
    this.#running = true;
    try {
      if (this.#held !== undefined || this.#eofPending) {
        // Deliver in a later task than the resumeReading() call, as a
        // socket does; until then a read stays held, so that what is
        // pushed meanwhile joins it rather than overtaking it. (`stop()`
        // drops it.)
        await undefined;
        if (this.#stopped || this.#paused) return;
        const held = this.#held;
        this.#held = undefined;
        if (held !== undefined && !this.#deliverHeld(held)) return;
      }
      if (this.#source === undefined) {
        // EOF pushed while paused, or behind held data: once, after them.
        if (this.#eofPending && !this.#paused && !this.#stopped) {
          this.#eofPending = false;
          this.#receiveEof();
        }
        return;
      }
      while (!this.#stopped && !this.#paused && !this.#eof) {
        const size = this.#sizer.size;
        const kind = size === this.#probeSize && this.#kind === OWNED
          ? PROBE
          : this.#kind;
        const protocol = this.#caller.protocol;
        const buffer = kind.reserve(this, protocol, size);
        if (buffer === undefined) return;
        let nbytes: number | null;
        this.#pending = true;
        try {
          nbytes = await this.#source!.read(buffer);
        } catch (error) {
          this.#pending = false;
          kind.unreserve(buffer);
          if (!this.#stopped) this.#owner.failed(toError(error));
          return;
        }
        this.#pending = false;
        if (nbytes === null || nbytes === 0 || this.#stopped) {
          kind.unreserve(buffer);
          if (this.#stopped || nbytes === 0) continue;
          if (this.#paused) this.#held = EOF;
          else this.#receiveEof();
          return;
        }
        this.#sizer.update(nbytes, buffer.byteLength);
        this.#owner.active();
        if (this.#paused || protocol !== this.#caller.protocol) {
          const read = kind.hold(protocol, buffer, nbytes);
          if (this.#paused) {
            this.#held = read;
            return;
          }
          if (!this.#deliverHeld(read)) return;
        } else if (!kind.deliver(this, buffer, nbytes)) {
          return;
        }
      }
    } finally {
      this.#running = false;
      this.#loop = undefined;
      if (this.#stopped) this.#releaseProbe();
    }
  }

  #receiveEof(): void {
    this.#eof = true;
    const keepOpen = this.#caller.call("eofReceived");
    if (keepOpen !== FAILED) this.#owner.eof(Boolean(keepOpen));
  }

  /** Delivers a held read to whichever protocol is current. */
  #deliverHeld(held: Held): boolean {
    if (held === EOF) {
      this.#receiveEof();
      return false;
    }
    if ("loan" in held) {
      const more = this.#feed(held.data, held.loan);
      if (held.loan !== undefined) drop(held.loan);
      return more;
    }
    if (held.protocol === this.#caller.protocol) {
      return this.bufferUpdated(held.nbytes);
    }
    return this.#feed(copyOf(held.buffer.subarray(0, held.nbytes)), undefined);
  }

  /**
   * Gives `data` to the current protocol: a `Protocol` gets it as it is
   * (a copy if it is lent and the protocol keeps what it gets); a
   * `BufferedProtocol` gets it copied into its buffers.
   */
  #feed(data: Uint8Array, loan: Loan | undefined): boolean {
    const protocol = this.#caller.protocol;
    if (!isBuffered(protocol)) {
      const keeps = (protocol as Protocol).transientData !== true;
      return this.dataReceived(
        loan !== undefined && keeps ? copyOf(data) : data,
      );
    }
    let offset = 0;
    while (offset < data.byteLength) {
      const buffer = this.getBuffer(protocol, data.byteLength - offset);
      if (buffer === undefined) return false;
      const nbytes = Math.min(buffer.byteLength, data.byteLength - offset);
      buffer.set(data.subarray(offset, offset + nbytes));
      offset += nbytes;
      if (!this.bufferUpdated(nbytes)) return false;
      if (offset === data.byteLength) break;
      if (this.#paused) {
        this.#held = {
          data: data.subarray(offset),
          loan: loan === undefined ? undefined : hold(data),
        };
        return false;
      }
      if (this.#caller.protocol !== protocol) {
        return this.#feed(data.subarray(offset), loan);
      }
    }
    return true;
  }

  /** Calls `dataReceived`; `false` when reading must stop. */
  dataReceived(data: Uint8Array): boolean {
    return this.#caller.call("dataReceived", data) !== FAILED &&
      !this.#stopped;
  }

  /** Calls `bufferUpdated`; `false` when reading must stop. */
  bufferUpdated(nbytes: number): boolean {
    return this.#caller.call("bufferUpdated", nbytes) !== FAILED &&
      !this.#stopped;
  }

  /** Calls `getBuffer` and checks what it returns; a failure is fatal. */
  getBuffer(
    protocol: BufferedProtocol,
    sizeHint: number,
  ): Uint8Array | undefined {
    const buffer = this.#caller.call("getBuffer", sizeHint);
    if (buffer === FAILED) return undefined;
    let error: Error | undefined;
    if (!(buffer instanceof Uint8Array)) {
      error = new TypeError(
        `getBuffer() must return a Uint8Array, not ${describeValue(buffer)}`,
      );
    } else if (buffer.byteLength === 0) {
      error = new RangeError("getBuffer() returned an empty buffer");
    }
    if (error === undefined && this.#caller.protocol === protocol) {
      return buffer as Uint8Array;
    }
    this.#caller.fail(
      error ?? new TypeError("getBuffer() switched the protocol"),
      "getBuffer",
    );
    return undefined;
  }
}

/** Returns `true` if `protocol` is a `BufferedProtocol` (has `getBuffer`). */
export function isBuffered(protocol: object): protocol is BufferedProtocol {
  return typeof (protocol as BufferedProtocol).getBuffer === "function";
}
