import { checkBytes } from "../_checks.ts";
import { toError, warnDroppedWrites } from "../_report.ts";
import { WriteFlowControl } from "./_flow_control.ts";
import type { ProtocolCaller } from "./_protocol_caller.ts";
import { joinLines, WriteQueue } from "./_write_queue.ts";
import type { BaseProtocol } from "../protocols/base_protocol.ts";
import type { WriteBufferLimits } from "./transport.ts";

/** Where a write side's bytes go: a socket, a pipe, a file. */
export interface ByteSink {
  /** Writes some of `p`, maybe not all; resolves with how many bytes. */
  write(p: Uint8Array): Promise<number>;
  /** Ends the write direction (a socket's half-close, a pipe's close). */
  closeWrite(): Promise<void>;
  /** Closes the sink now; a write in flight ends (or fails) soon after. */
  close(): void;
  /**
   * Writes what it can of `p` at once and returns how many bytes; used when
   * nothing is queued. Sinks that can only write asynchronously omit it.
   */
  tryWrite?(p: Uint8Array): number;
}

/** What a {@linkcode WriteSide} tells the transport that holds it. */
export interface WriteSideOwner {
  /** After `close()`, every byte was written (and EOF sent if asked). */
  flushed(): void;
  /** A write failed: the transport is lost with `error`. */
  failed(error: Error): void;
  /** Bytes were written (for the idle timer). */
  active(): void;
}

/**
 * The write side every transport kind holds: the write buffer, coalescing
 * small chunks, asyncio's flow control, one pump that writes in order
 * (each chunk finished, partial writes included, before the next), EOF,
 * and the two ways to end: `close()` flushes first, `stop()` drops.
 *
 * The sink is written only by the pump; the transport owns the sink and
 * closes it.
 */
export class WriteSide {
  #sink: ByteSink;
  #owner: WriteSideOwner;
  #caller: ProtocolCaller<BaseProtocol>;
  /** What the transport is called in messages: `"transport"`, `"stdin"`. */
  #what: string;
  #queue = new WriteQueue();
  #flow: WriteFlowControl;
  /** The pump, while it runs. */
  #pump: Promise<void> | undefined;
  /** `writeEof()` was called: no more writes; the pump sends EOF last. */
  #eof = false;
  /** `close()` was called: writes are dropped; `flushed()` once written. */
  #closing = false;
  /** `close()` asked for EOF after the last byte (a pipe's close). */
  #eofOnClose = false;
  /** Stopped: the queue is dropped and the pump ends after its write. */
  #stopped = false;
  /** Flushing for a hand-over: `flushed()` is not called. */
  #detaching = false;
  #dropped = 0;

  /**
   * @param sink Where the bytes go.
   * @param caller The transport's protocol caller, for flow control.
   * @param owner The transport.
   * @param what What the transport is called in messages.
   * @param limits Write buffer limits to start with (default asyncio's).
   */
  constructor(
    sink: ByteSink,
    caller: ProtocolCaller<BaseProtocol>,
    owner: WriteSideOwner,
    what: string,
    limits?: WriteBufferLimits,
  ) {
    this.#sink = sink;
    this.#caller = caller;
    this.#owner = owner;
    this.#what = what;
    this.#flow = new WriteFlowControl(caller);
    if (limits !== undefined) this.#flow.setLimits(limits, 0);
  }

  /** Bytes accepted and not yet written, the write in flight included. */
  get size(): number {
    return this.#queue.size;
  }

  /** `writeEof()` was called. */
  get eof(): boolean {
    return this.#eof;
  }

  /** Settles once no write is in flight. */
  get idle(): Promise<void> {
    return this.#pump ?? Promise.resolve();
  }

  /**
   * Queues `data`; returns `false` while the buffer is over the high mark.
   *
   * @throws {TypeError} Unless `data` is a `Uint8Array`, or after
   * `writeEof()`.
   */
  write(data: Uint8Array): boolean {
    checkBytes(data, "data", `write to ${this.#what}`);
    if (this.#eof) {
      throw new TypeError(
        `Cannot write to ${this.#what}: write side is closed (writeEof() was called)`,
      );
    }
    if (this.#closing || this.#stopped) {
      warnDroppedWrites(++this.#dropped, `${this.#what} write()`);
    } else if (data.byteLength > 0) {
      const sink = this.#sink;
      if (sink.tryWrite !== undefined && this.#pump === undefined) {
        const written = sink.tryWrite(data);
        if (written > 0) this.#owner.active();
        if (written === data.byteLength) return true;
        data = data.subarray(written);
      }
      this.#queue.push(data);
      this.#pump ??= this.#run();
      this.#flow.grew(this.#queue.size);
    }
    return this.#queue.size <= this.#flow.high;
  }

  /** Queues every chunk so that they go out in one write. */
  writelines(chunks: Iterable<Uint8Array>): boolean {
    return this.write(joinLines(chunks, `Cannot write lines to ${this.#what}`));
  }

  /** Flushes, then ends the write direction; does nothing once closing. */
  writeEof(): void {
    if (this.#closing || this.#stopped || this.#eof) return;
    this.#eof = true;
    this.#pump ??= this.#run();
  }

  /**
   * Drops later writes; once every byte is written (and EOF sent, with
   * `sendEof`), calls `flushed()`.
   */
  close(sendEof = false): void {
    if (this.#closing) return;
    this.#closing = true;
    if (this.#stopped) return;
    if (sendEof && !this.#eof) {
      this.#eofOnClose = true;
      this.#pump ??= this.#run();
    } else if (this.#pump === undefined) {
      this.#owner.flushed();
    }
  }

  /** Drops the buffer; the pump ends after the write in flight. */
  stop(): void {
    this.#stopped = true;
    this.#closing = true;
    this.#queue.clear();
  }

  /** Ends the loans of written views; call once no write is in flight. */
  release(): void {
    this.#queue.release();
  }

  /**
   * Flushes for a hand-over of the sink (`startTls`): later writes are
   * dropped. Resolves `true` once every byte is written, `false` if the
   * side was stopped meanwhile.
   */
  async detach(): Promise<boolean> {
    this.#closing = true;
    this.#detaching = true;
    await this.#pump;
    return !this.#stopped;
  }

  /** Returns the flow-control marks. */
  limits(): WriteBufferLimits {
    return this.#flow.limits();
  }

  /** Sets the marks and re-checks the buffer at once. */
  setLimits(limits: Partial<WriteBufferLimits> | undefined): void {
    this.#flow.setLimits(limits, this.#queue.size);
  }

  async #run(): Promise<void> {
    // Start after the current task, so that every write it makes is
    // coalesced into the first sink write.
    await undefined;
    const queue = this.#queue;
    try {
      while (!queue.empty) {
        const chunk = queue.take();
        let offset = 0;
        while (offset < chunk.byteLength) {
          const written = await this.#sink.write(
            offset === 0 ? chunk : chunk.subarray(offset),
          );
          if (this.#stopped) return;
          this.#owner.active();
          offset += written;
          queue.wrote(written);
          this.#flow.shrank(queue.size);
        }
        queue.done();
      }
      if (this.#eof || this.#eofOnClose) await this.#sink.closeWrite();
    } catch (error) {
      if (!this.#stopped) {
        this.stop();
        this.#owner.failed(toError(error));
      }
      return;
    }
    this.#pump = undefined;
    if (this.#closing && !this.#stopped && !this.#detaching) {
      this.#owner.flushed();
    }
  }
}
