import type { SubprocessTransport } from "../transports/transport.ts";
import type { BaseProtocol } from "./base_protocol.ts";
import { BaseProtocolBase } from "./base_protocol.ts";

/**
 * Callbacks for a child process and its pipes.
 *
 * Every `pipeDataReceived(fd)` comes before `pipeConnectionLost(fd)`;
 * `processExited` comes once and may come before a pipe's last output;
 * `connectionLost` comes last, once the process exited and every pipe closed.
 *
 * `subprocessExec` and `subprocessShell` drive it.
 *
 * @example Print what a child writes
 * ```ts
 * import type { SubprocessProtocol } from "@aio/protocols";
 *
 * const decoder = new TextDecoder();
 * const printer: SubprocessProtocol = {
 *   pipeDataReceived(fd, data) {
 *     console.log(fd === 1 ? "out:" : "err:", decoder.decode(data));
 *   },
 *   processExited() { console.log("exited"); },
 * };
 * ```
 */
export interface SubprocessProtocol extends BaseProtocol {
  /** Called once, first, with the transport that now drives this protocol. */
  connectionMade?(transport: SubprocessTransport): void;
  /** Called with output from the child's stdout (1) or stderr (2). */
  pipeDataReceived?(fd: 1 | 2, data: Uint8Array): void;
  /** Called when one of the child's pipes closed. */
  pipeConnectionLost?(fd: 0 | 1 | 2, exc: Error | undefined): void;
  /** Called once when the child exited. */
  processExited?(): void;
}

/**
 * A {@linkcode SubprocessProtocol} whose callbacks do nothing except
 * bookkeeping: it keeps the transport as `this.transport`, and its
 * `drain()` waits while writing to the child's stdin is paused.
 *
 * Subclasses that override a callback should call `super`, so that
 * `transport` and `drain()` stay right.
 *
 * @example Collect stdout
 * ```ts
 * import { SubprocessProtocolBase } from "@aio/protocols";
 * import assert from "node:assert/strict";
 *
 * class Collector extends SubprocessProtocolBase {
 *   out: Uint8Array[] = [];
 *   override pipeDataReceived(fd: 1 | 2, data: Uint8Array): void {
 *     if (fd === 1) this.out.push(data);
 *   }
 * }
 *
 * const collector = new Collector();
 * collector.pipeDataReceived(1, new Uint8Array([104, 105]));
 * assert.equal(collector.out.length, 1);
 * ```
 */
export class SubprocessProtocolBase
  extends BaseProtocolBase<SubprocessTransport>
  implements SubprocessProtocol {
  /** What the child's stdin was lost with, once it was. */
  #stdinError: Error | undefined;

  /** Does nothing; override to handle output. */
  pipeDataReceived(_fd: 1 | 2, _data: Uint8Array): void {}

  /**
   * When stdin (`fd` 0) is lost, settles every pending
   * {@linkcode drain}; otherwise does nothing. Override to learn when a
   * pipe closes.
   */
  pipeConnectionLost(fd: 0 | 1 | 2, exc: Error | undefined): void {
    if (fd !== 0) return;
    this.#stdinError = exc;
    // Nothing buffered for stdin will drain now: release the waiters.
    super.resumeWriting();
  }

  /** Does nothing; override to learn when the child exits. */
  processExited(): void {}

  /**
   * Resolves at once unless writing to stdin is paused; then on
   * `resumeWriting`, on `connectionLost`, or once stdin is lost, as
   * asyncio's stream protocol does. Any number of callers may wait at once.
   *
   * @returns A promise that resolves when writing may go on.
   * @throws {Error} Once stdin was lost with an error: that error.
   */
  override async drain(): Promise<void> {
    await super.drain();
    if (this.#stdinError !== undefined) throw this.#stdinError;
  }
}
