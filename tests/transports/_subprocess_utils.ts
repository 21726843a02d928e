import assert from "node:assert/strict";
import type { SubprocessProtocol } from "../../protocols/subprocess_protocol.ts";
import {
  subprocessExec,
  type SubprocessExecOptions,
  subprocessShell,
} from "../../transports/subprocess_exec.ts";
import type {
  ReadTransport,
  SubprocessTransport,
  WriteTransport,
} from "../../transports/transport.ts";
import { BaseRecorder, concat, text, within } from "../_test_utils.ts";

/** One mebibyte. */
export const MIB = 1024 * 1024;

export type OutFd = 1 | 2;
export type Fd = 0 | OutFd;

/** Names of the callbacks {@linkcode RecordingSubprocessProtocol} records. */
export type CallbackName =
  | "connectionMade"
  | `pipeDataReceived(${OutFd})`
  | `pipeConnectionLost(${Fd})`
  | "processExited"
  | "pauseWriting"
  | "resumeWriting"
  | "connectionLost";

/**
 * A `SubprocessProtocol` that records each callback in `calls` (with the fd
 * of pipe callbacks), keeps the output and errors it gets, and can wait for
 * a callback.
 */
export class RecordingSubprocessProtocol
  extends BaseRecorder<CallbackName, SubprocessTransport>
  implements SubprocessProtocol {
  chunks: Record<OutFd, Uint8Array[]> = { 1: [], 2: [] };
  pipeErrors = new Map<Fd, Error | undefined>();
  /** `getReturncode()` inside processExited and connectionLost. */
  returncodeAtExit: number | null | undefined;
  returncodeAtLost: number | null | undefined;

  /** Resolves once `name` has been called `count` times; fails at the deadline. */
  override waitFor(name: CallbackName, count = 1): Promise<void> {
    return within(
      super.waitFor(name, count),
      `${name} #${count} (calls: ${this.calls.join(" ")})`,
    );
  }

  pipeDataReceived(fd: OutFd, data: Uint8Array): void {
    this.chunks[fd].push(data);
    this.record(`pipeDataReceived(${fd})`);
  }
  pipeConnectionLost(fd: Fd, exc: Error | undefined): void {
    this.pipeErrors.set(fd, exc);
    this.record(`pipeConnectionLost(${fd})`);
  }
  processExited(): void {
    this.returncodeAtExit = this.transport?.getReturncode();
    this.record("processExited");
  }
  override connectionLost(exc: Error | undefined): void {
    this.returncodeAtLost = this.transport?.getReturncode();
    super.connectionLost(exc);
  }

  /** Every byte received on `fd` so far, in one array. */
  received(fd: OutFd): Uint8Array {
    return concat(this.chunks[fd]);
  }

  /** How many bytes arrived on `fd` so far. */
  bytes(fd: OutFd): number {
    return this.chunks[fd].reduce(
      (total, chunk) => total + chunk.byteLength,
      0,
    );
  }

  /** What arrived on `fd`, decoded as text. */
  text(fd: OutFd): string {
    return text(this.received(fd));
  }

  /** Resolves once at least `nbytes` bytes in all arrived on `fd`. */
  async waitForBytes(fd: OutFd, nbytes: number): Promise<void> {
    while (this.bytes(fd) < nbytes) {
      const name = `pipeDataReceived(${fd})` as const;
      await this.waitFor(name, this.count(name) + 1);
    }
  }
}

/** Pauses reading the child's stdout in connectionMade. */
export class PausedAtStart extends RecordingSubprocessProtocol {
  override connectionMade(transport: SubprocessTransport): void {
    super.connectionMade(transport);
    transport.getPipeTransport(1)?.pauseReading();
  }
}

/** A child started for a test; disposing closes it and waits for the end. */
export interface Child<P extends RecordingSubprocessProtocol>
  extends AsyncDisposable {
  transport: SubprocessTransport;
  protocol: P;
  /** The stdin pipe transport. */
  stdin: WriteTransport;
  /** The stdout pipe transport. */
  stdout: ReadTransport;
}

export function child<P extends RecordingSubprocessProtocol>(
  transport: SubprocessTransport,
  protocol: P,
): Child<P> {
  return {
    transport,
    protocol,
    get stdin() {
      const stdin = transport.getPipeTransport(0);
      assert.ok(stdin, "stdin is piped");
      return stdin;
    },
    get stdout() {
      const stdout = transport.getPipeTransport(1);
      assert.ok(stdout, "stdout is piped");
      return stdout;
    },
    async [Symbol.asyncDispose]() {
      transport.close();
      await protocol.waitFor("connectionLost");
    },
  };
}

/** Starts `program` with `args` for `protocol`. */
export async function exec<P extends RecordingSubprocessProtocol>(
  protocol: P,
  program: string,
  args: string[] = [],
  options: SubprocessExecOptions = {},
): Promise<Child<P>> {
  const [transport, made] = await subprocessExec(
    () => protocol,
    program,
    args,
    options,
  );
  assert.equal(made, protocol);
  return child(transport, protocol);
}

/** Starts the shell command line `command` for `protocol`. */
export async function shell<P extends RecordingSubprocessProtocol>(
  protocol: P,
  command: string,
  options: SubprocessExecOptions = {},
): Promise<Child<P>> {
  const [transport, made] = await subprocessShell(
    () => protocol,
    command,
    options,
  );
  assert.equal(made, protocol);
  return child(transport, protocol);
}

/** Asserts that pauseWriting and resumeWriting strictly alternate. */
export function assertFlowAlternates(calls: CallbackName[]): void {
  const flow = calls.filter((call) =>
    call === "pauseWriting" || call === "resumeWriting"
  );
  for (const [i, call] of flow.entries()) {
    assert.equal(
      call,
      i % 2 === 0 ? "pauseWriting" : "resumeWriting",
      `flow control call ${i} of: ${flow.join(" ")}`,
    );
  }
}

/**
 * Checks contract point 12 on a finished run: connectionMade first;
 * each pipe in `fds` lost once, after all its data; processExited once;
 * connectionLost last, once, after the exit and every pipe.
 */
export function assertOrder(
  protocol: RecordingSubprocessProtocol,
  fds: readonly Fd[] = [0, 1, 2],
): void {
  const { calls } = protocol;
  const all = calls.join(" ");
  assert.equal(calls[0], "connectionMade", all);
  assert.equal(protocol.count("connectionMade"), 1, all);
  assert.equal(calls.at(-1), "connectionLost", all);
  assert.equal(protocol.count("connectionLost"), 1, all);
  assert.equal(protocol.count("processExited"), 1, all);
  for (const fd of [0, 1, 2] as const) {
    const lost = calls.indexOf(`pipeConnectionLost(${fd})`);
    if (!fds.includes(fd)) {
      assert.equal(lost, -1, `fd ${fd} is not piped: ${all}`);
      continue;
    }
    assert.equal(protocol.count(`pipeConnectionLost(${fd})`), 1, all);
    if (fd !== 0) {
      assert.ok(
        calls.lastIndexOf(`pipeDataReceived(${fd})`) < lost,
        `data on fd ${fd} after it was lost: ${all}`,
      );
    }
  }
  assert.notEqual(protocol.returncodeAtExit, null, "returncode at exit");
  assert.equal(
    protocol.returncodeAtLost,
    protocol.transport?.getReturncode(),
    "returncode at connectionLost",
  );
  assertFlowAlternates(calls);
}

/** `count` lines `line 0\n`, `line 1\n`... as a shell loop prints them. */
export function lines(count: number): string {
  let out = "";
  for (let i = 0; i < count; i++) out += `line ${i}\n`;
  return out;
}

/** A shell loop that prints {@linkcode lines}, one write each. */
export function printLines(count: number): string {
  return `i=0; while [ $i -lt ${count} ]; do echo "line $i"; i=$((i+1)); done`;
}
