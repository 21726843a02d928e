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
 * A {@linkcode SubprocessProtocol} whose callbacks all do nothing.
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
  /** Does nothing; override to handle output. */
  pipeDataReceived(_fd: 1 | 2, _data: Uint8Array): void {}
  /** Does nothing; override to learn when a pipe closes. */
  pipeConnectionLost(_fd: 0 | 1 | 2, _exc: Error | undefined): void {}
  /** Does nothing; override to learn when the child exits. */
  processExited(): void {}
}
