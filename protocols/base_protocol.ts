import type { BaseTransport } from "../transports/transport.ts";

/**
 * The callbacks every protocol kind shares: the connection's start and end,
 * and write-side flow control.
 *
 * Every callback is optional. A transport calls `connectionMade` first and
 * `connectionLost` last, exactly once each; `pauseWriting` and
 * `resumeWriting` come in strict pairs in between.
 *
 * @typeParam T The transport `connectionMade` gets: a `WriteTransport`
 * from `connectWritePipe`; each protocol kind narrows it.
 *
 * @example A protocol that only watches the connection's life
 * ```ts
 * import type { BaseProtocol } from "@aio/protocols";
 *
 * const watcher: BaseProtocol = {
 *   connectionMade() { console.log("up"); },
 *   connectionLost(exc) { console.log("down", exc?.message ?? "cleanly"); },
 * };
 * ```
 */
export interface BaseProtocol<T extends BaseTransport = BaseTransport> {
  /** Called once, first, with the transport that now drives this protocol. */
  connectionMade?(transport: T): void;
  /**
   * Called once, last: `undefined` after a clean EOF, `close()` or
   * `abort()`, the error after a failure.
   */
  connectionLost?(exc: Error | undefined): void;
  /**
   * Called synchronously inside `write()` when the write buffer goes strictly
   * over the high-water mark.
   */
  pauseWriting?(): void;
  /** Called when the write buffer drains to the low-water mark or below. */
  resumeWriting?(): void;
}

/**
 * A {@linkcode BaseProtocol} whose callbacks do nothing except bookkeeping:
 * it keeps the transport as `this.transport` and offers {@linkcode drain}.
 *
 * Subclasses that override a callback should call `super`, so that
 * `transport` and `drain()` stay right.
 *
 * @example Wait for the write buffer before writing more
 * ```ts
 * import { ProtocolBase } from "@aio/protocols";
 *
 * class Sender extends ProtocolBase {
 *   async sendAll(chunks: Uint8Array[]): Promise<void> {
 *     for (const chunk of chunks) {
 *       this.transport?.write(chunk);
 *       await this.drain();
 *     }
 *   }
 * }
 * ```
 */
export class BaseProtocolBase<T extends BaseTransport = BaseTransport>
  implements BaseProtocol<T> {
  /** The transport given to `connectionMade`, or `undefined` before it. */
  transport: T | undefined = undefined;
  #writingPaused = false;
  #drainWaiters: (() => void)[] = [];

  /** Keeps `transport`. */
  connectionMade(transport: T): void {
    this.transport = transport;
  }

  /** Releases every pending {@linkcode drain}. */
  connectionLost(_exc: Error | undefined): void {
    this.#writingPaused = false;
    this.#releaseDrainWaiters();
  }

  /** Makes {@linkcode drain} wait. */
  pauseWriting(): void {
    this.#writingPaused = true;
  }

  /** Releases every pending {@linkcode drain}. */
  resumeWriting(): void {
    this.#writingPaused = false;
    this.#releaseDrainWaiters();
  }

  /**
   * Resolves at once unless writing is paused; then on `resumeWriting` or
   * `connectionLost`. Any number of callers may wait at once.
   *
   * @returns A promise that resolves when writing may go on.
   */
  drain(): Promise<void> {
    if (!this.#writingPaused) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  #releaseDrainWaiters(): void {
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
