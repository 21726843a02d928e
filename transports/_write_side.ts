import { WriteFlowControl } from "./_flow_control.ts";
import type { ProtocolCaller } from "./_protocol_caller.ts";
import { toError, warnDroppedWrites } from "./_report.ts";
import { checkBytes, joinLines, WriteQueue } from "./_write_queue.ts";
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
  /** The pump runs: a write (or EOF) is in flight. */
  #pumping = false;
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
  /** EOF went out: `writeEof()` is done. */
  #eofDone = false;
  /** Whoever waits for the pump to end. */
  #idleWaiter: PromiseWithResolvers<void> | undefined;
  /** The chunk being written, and how much of it is. */
  #chunk: Uint8Array | undefined;
  #offset = 0;
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
    this.#flow = new WriteFlowControl(
      () => caller.flowControl("pauseWriting"),
      () => caller.flowControl("resumeWriting"),
    );
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
    if (!this.#pumping) return Promise.resolve();
    return (this.#idleWaiter ??= Promise.withResolvers<void>()).promise;
  }

  /**
   * Queues `data`; returns `false` while the buffer is over the high mark.
   *
   * @throws {TypeError} Unless `data` is a `Uint8Array`, or after
   * `writeEof()`.
   */
  write(data: Uint8Array): boolean {
    checkBytes(data, `Cannot write to ${this.#what}`);
    if (this.#eof) {
      throw new TypeError(
        `Cannot write to ${this.#what}: write side is closed (writeEof() was called)`,
      );
    }
    if (this.#closing || this.#stopped) {
      warnDroppedWrites(++this.#dropped, `${this.#what} write()`);
    } else if (data.byteLength > 0) {
      const sink = this.#sink;
      if (sink.tryWrite !== undefined && !this.#pumping) {
        const written = sink.tryWrite(data);
        if (written > 0) this.#owner.active();
        if (written === data.byteLength) return true;
        data = data.subarray(written);
      }
      this.#queue.push(data);
      if (!this.#pumping) this.#run();
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
    if (!this.#pumping) this.#run();
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
      if (!this.#pumping) this.#run();
    } else if (!this.#pumping) {
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
    await this.idle;
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

  /**
   * Starts the pump after the current task, so that every write the task
   * makes goes out in one sink write (a reply written in pieces must not
   * go out in pieces: over a connection with Nagle's algorithm on, as a
   * TLS server's is, the second piece would wait for the peer's delayed
   * ACK). The pump is a chain of callbacks rather than an async function,
   * so a burst costs no more than its writes.
   */
  #run(): void {
    this.#pumping = true;
    queueMicrotask(this.#next);
  }

  /** Writes the next chunk, or ends the pump. */
  #next = (): void => {
    const queue = this.#queue;
    if (this.#stopped) return this.#end();
    if (!queue.empty) {
      this.#chunk = queue.take();
      this.#offset = 0;
      this.#write(this.#chunk);
      return;
    }
    if ((this.#eof || this.#eofOnClose) && !this.#eofDone) {
      let closing: Promise<void>;
      try {
        closing = this.#sink.closeWrite();
      } catch (error) {
        return this.#failed(error);
      }
      closing.then(this.#eofSent, this.#failed);
      return;
    }
    this.#end();
  };

  #write(chunk: Uint8Array): void {
    let writing: Promise<number>;
    try {
      writing = this.#sink.write(chunk);
    } catch (error) {
      return this.#failed(error);
    }
    writing.then(this.#wrote, this.#failed);
  }

  #wrote = (written: number): void => {
    if (this.#stopped) return this.#end();
    this.#owner.active();
    const queue = this.#queue;
    const chunk = this.#chunk!;
    this.#offset += written;
    queue.wrote(written);
    this.#flow.shrank(queue.size);
    if (this.#offset < chunk.byteLength) {
      this.#write(chunk.subarray(this.#offset));
      return;
    }
    this.#chunk = undefined;
    queue.done();
    this.#next();
  };

  #eofSent = (): void => {
    this.#eofDone = true;
    this.#end();
  };

  #failed = (error: unknown): void => {
    if (!this.#stopped) {
      this.stop();
      this.#owner.failed(toError(error));
    }
    this.#end();
  };

  /** The pump is done: no write in flight. */
  #end(): void {
    this.#pumping = false;
    this.#chunk = undefined;
    const idle = this.#idleWaiter;
    this.#idleWaiter = undefined;
    idle?.resolve();
    if (this.#closing && !this.#stopped && !this.#detaching) {
      this.#owner.flushed();
    }
  }
}
