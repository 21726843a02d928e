import type { BaseProtocol } from "../protocols/base_protocol.ts";
import type { SubprocessProtocol } from "../protocols/subprocess_protocol.ts";
import { checkFactory } from "./_conn.ts";
import { WriteFlowControl } from "./_flow_control.ts";
import { copyOut, SMALL_MAX } from "./_read_buffer.ts";
import {
  callReporting,
  describeValue,
  reportCallbackError,
  reportToStderr,
  toError,
  warnDroppedWrites,
} from "./_report.ts";
import { checkBytes, joinLines, WriteQueue } from "./_write_queue.ts";
import type {
  ErrorHandler,
  ReadTransport,
  SubprocessTransport,
  WriteBufferLimits,
  WriteTransport,
} from "./transport.ts";

/** What to do with one of the child's standard streams. */
export type Stdio = "piped" | "inherit" | "null";

/** Options for {@linkcode subprocessExec} and {@linkcode subprocessShell}. */
export interface SubprocessOptions {
  /** The child's stdin: `"piped"` (default), `"inherit"` or `"null"`. */
  stdin?: Stdio;
  /** The child's stdout: `"piped"` (default), `"inherit"` or `"null"`. */
  stdout?: Stdio;
  /** The child's stderr: `"piped"` (default), `"inherit"` or `"null"`. */
  stderr?: Stdio;
  /** The working directory of the child. */
  cwd?: string | URL;
  /** Environment variables to set for the child. */
  env?: Record<string, string>;
  /** `true` starts the child with only `env`, not this process's variables. */
  clearEnv?: boolean;
  /** Aborting kills the child, as `Deno.Command`'s `signal`. */
  signal?: AbortSignal;
  /** Receives errors thrown by protocol callbacks; default: stderr. */
  onError?: ErrorHandler;
}

/** What a pipe tells the subprocess transport. */
interface PipeOwner {
  /** Output read from pipe `fd`; `false` stops reading (a callback threw). */
  data(fd: 1 | 2, data: Uint8Array): boolean;
  /** Pipe `fd` closed, with the error that closed it. */
  lost(fd: 0 | 1 | 2, exc: Error | undefined): void;
  /** The stdin pipe went over or back under its marks. */
  flowControl(callback: "pauseWriting" | "resumeWriting"): void;
  transport: ChildProcessTransport;
}

/** Settles once a transport's `connectionMade` ran: with what it threw. */
const madeOf = new WeakMap<ChildProcessTransport, Promise<Error | undefined>>();

/**
 * A child process started with `Deno.Command`, with a transport for each
 * piped stream: asyncio's subprocess transport.
 *
 * The order of callbacks is asyncio's: `connectionMade`; then
 * `pipeDataReceived(fd)` for output, each pipe's `pipeConnectionLost(fd)`
 * after its last output, and `processExited` once (it may come before the
 * last output of a pipe); `connectionLost` comes last, once the child
 * exited and every pipe closed, so no output is lost. When the child exits,
 * its stdin pipe closes after sending what is queued.
 */
export class ChildProcessTransport implements SubprocessTransport {
  #child: Deno.ChildProcess;
  #protocol: SubprocessProtocol;
  #onError: ErrorHandler;
  #pipes: {
    0?: StdinPipe;
    1?: OutputPipe;
    2?: OutputPipe;
  } = {};
  #open = new Set<0 | 1 | 2>();
  #returncode: number | null = null;
  #closed = false;
  #finished = false;
  #failure: Error | undefined;

  /**
   * Starts driving `protocol` for `child`.
   *
   * @param child A spawned child; the transport owns its piped streams.
   * @param protocol The protocol.
   * @param stdio Which of the child's streams are piped.
   * @param onError Receives errors thrown by protocol callbacks.
   */
  constructor(
    child: Deno.ChildProcess,
    protocol: SubprocessProtocol,
    stdio: { stdin: Stdio; stdout: Stdio; stderr: Stdio },
    onError: ErrorHandler = reportToStderr,
  ) {
    checkProtocol(protocol);
    this.#child = child;
    this.#protocol = protocol;
    this.#onError = onError;
    const owner: PipeOwner = {
      data: (fd, data) => this.#pipeData(fd, data),
      lost: (fd, exc) => this.#pipeLost(fd, exc),
      flowControl: (callback) => this.#flowControl(callback),
      transport: this,
    };
    if (stdio.stdin === "piped") {
      this.#pipes[0] = new StdinPipe(owner, child.stdin);
      this.#open.add(0);
    }
    if (stdio.stdout === "piped") {
      this.#pipes[1] = new OutputPipe(owner, 1, child.stdout);
      this.#open.add(1);
    }
    if (stdio.stderr === "piped") {
      this.#pipes[2] = new OutputPipe(owner, 2, child.stderr);
      this.#open.add(2);
    }
    madeOf.set(this, this.#start());
  }

  /** Returns `pid`, `subprocess` (the `Deno.ChildProcess`), or `defaultValue`. */
  getExtraInfo(name: string, defaultValue?: unknown): unknown {
    if (name === "pid") return this.#child.pid;
    if (name === "subprocess") return this.#child;
    return defaultValue;
  }

  /** Returns `true` once `close()` was called. */
  isClosing(): boolean {
    return this.#closed;
  }

  /**
   * Closes every pipe (stdin after sending what is queued) and kills the
   * child with SIGKILL if it still runs, as asyncio does.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const pipe of Object.values(this.#pipes)) pipe.close();
    if (this.#returncode === null) this.kill();
  }

  /** Switches the protocol for the next callbacks. */
  setProtocol(protocol: SubprocessProtocol): void {
    checkProtocol(protocol);
    this.#protocol = protocol;
  }

  /** Returns the protocol that gets the callbacks. */
  getProtocol(): SubprocessProtocol {
    return this.#protocol;
  }

  /** Returns the child's process id. */
  getPid(): number {
    return this.#child.pid;
  }

  /** Returns the exit code, `-N` after signal `N`, or `null` while it runs. */
  getReturncode(): number | null {
    return this.#returncode;
  }

  /** Returns the transport of a piped stream, or `undefined`. */
  getPipeTransport(fd: 0 | 1 | 2): WriteTransport | ReadTransport | undefined {
    return this.#pipes[fd];
  }

  /**
   * Sends `signal` to the child; does nothing once it exited.
   *
   * @throws {TypeError} For a signal name Deno does not know.
   */
  sendSignal(signal: Deno.Signal): void {
    if (this.#returncode !== null) return;
    try {
      this.#child.kill(signal);
    } catch (error) {
      // Exited, and not reaped yet: a no-op as after exit.
      if (!/already terminated/.test((error as Error).message)) throw error;
    }
  }

  /** Sends SIGTERM; does nothing once the child exited. */
  terminate(): void {
    this.sendSignal("SIGTERM");
  }

  /** Sends SIGKILL; does nothing once the child exited. */
  kill(): void {
    this.sendSignal("SIGKILL");
  }

  async #start(): Promise<Error | undefined> {
    await undefined;
    try {
      this.#protocol.connectionMade?.(this);
    } catch (error) {
      this.#fail(error, "connectionMade");
    }
    this.#pipes[1]?.start();
    this.#pipes[2]?.start();
    this.#child.status.then((status) => this.#exited(status));
    return this.#failure;
  }

  #pipeData(fd: 1 | 2, data: Uint8Array): boolean {
    if (this.#failure !== undefined) return false;
    try {
      this.#protocol.pipeDataReceived?.(fd, data);
    } catch (error) {
      this.#fail(error, "pipeDataReceived");
      return false;
    }
    return true;
  }

  #pipeLost(fd: 0 | 1 | 2, exc: Error | undefined): void {
    this.#open.delete(fd);
    if (this.#failure === undefined) {
      try {
        this.#protocol.pipeConnectionLost?.(fd, exc);
      } catch (error) {
        this.#fail(error, "pipeConnectionLost");
      }
    }
    this.#tryFinish();
  }

  #exited(status: Deno.CommandStatus): void {
    this.#returncode = status.signal === null
      ? status.code
      : -(status.code - 128);
    if (this.#failure === undefined) {
      try {
        this.#protocol.processExited?.();
      } catch (error) {
        this.#fail(error, "processExited");
      }
    }
    // No one reads what the child no longer reads.
    this.#pipes[0]?.close();
    this.#tryFinish();
  }

  /** Calls `connectionLost` once the child exited and every pipe closed. */
  #tryFinish(): void {
    if (this.#finished || this.#returncode === null || this.#open.size > 0) {
      return;
    }
    this.#finished = true;
    queueMicrotask(() =>
      callReporting(
        this.#onError,
        this,
        this.#protocol,
        "connectionLost",
        this.#failure,
      )
    );
  }

  #flowControl(callback: "pauseWriting" | "resumeWriting"): void {
    if (this.#failure !== undefined || this.#finished) return;
    callReporting(this.#onError, this, this.#protocol, callback);
  }

  /** Reports what a protocol callback threw; closes and kills the child. */
  #fail(error: unknown, callback: string): void {
    reportCallbackError(this.#onError, error, callback, true, {
      transport: this,
      protocol: this.#protocol,
    });
    this.#failure ??= toError(error);
    this.close();
  }
}

/** What both kinds of pipe share: the owner, the stream, closing. */
abstract class Pipe {
  protected readonly owner: PipeOwner;
  readonly #stream: ReadableStream<Uint8Array> | WritableStream<Uint8Array>;
  protected closing = false;

  constructor(
    owner: PipeOwner,
    stream: ReadableStream<Uint8Array> | WritableStream<Uint8Array>,
  ) {
    this.owner = owner;
    this.#stream = stream;
  }

  /** Returns `pipe` (the child's web stream), or `defaultValue`. */
  getExtraInfo(name: string, defaultValue?: unknown): unknown {
    return name === "pipe" ? this.#stream : defaultValue;
  }

  isClosing(): boolean {
    return this.closing;
  }

  /** Sets the subprocess transport's protocol. */
  setProtocol(protocol: BaseProtocol): void {
    this.owner.transport.setProtocol(protocol as SubprocessProtocol);
  }

  /** Returns the subprocess transport's protocol. */
  getProtocol(): SubprocessProtocol {
    return this.owner.transport.getProtocol();
  }
}

/** The child's stdin: a write transport with asyncio's flow control. */
class StdinPipe extends Pipe implements WriteTransport {
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #queue = new WriteQueue();
  #flow: WriteFlowControl;
  #pump: Promise<void> | undefined;
  /** `writeEof()` or `close()` was called: the pump closes stdin when done. */
  #eofWritten = false;
  /** `writeEof()` was called: later writes are a mistake, not a race. */
  #eofCalled = false;
  #lost = false;
  #lostWrites = 0;

  constructor(owner: PipeOwner, stream: WritableStream<Uint8Array>) {
    super(owner, stream);
    this.#writer = stream.getWriter();
    this.#flow = new WriteFlowControl(
      () => owner.flowControl("pauseWriting"),
      () => owner.flowControl("resumeWriting"),
    );
  }

  write(data: Uint8Array): boolean {
    checkBytes(data, "Cannot write to stdin");
    if (this.#eofCalled) {
      throw new TypeError("Cannot write to stdin after writeEof()");
    }
    if (this.closing) {
      warnDroppedWrites(++this.#lostWrites, "stdin write()");
    } else if (data.byteLength > 0) {
      this.#queue.push(data);
      this.#pump ??= this.#runPump();
      this.#flow.grew(this.#queue.size);
    }
    return this.#queue.size <= this.#flow.high;
  }

  writeLines(chunks: Iterable<Uint8Array>): boolean {
    return this.write(joinLines(chunks, "Cannot write lines to stdin"));
  }

  /** Sends what is queued, then closes stdin: the child reads EOF. */
  writeEof(): void {
    if (this.closing || this.#eofWritten) return;
    this.#eofWritten = true;
    this.#eofCalled = true;
    this.#pump ??= this.#runPump();
  }

  canWriteEof(): boolean {
    return true;
  }

  /** Sends what is queued, then closes stdin. */
  close(): void {
    if (this.closing) return;
    this.closing = true;
    this.#eofWritten = true;
    this.#pump ??= this.#runPump();
  }

  /** Closes stdin at once and drops what is queued. */
  abort(): void {
    if (this.#lost) return;
    this.closing = true;
    this.#queue.clear();
    this.#writer.abort().catch(() => {});
    this.#lose(undefined);
  }

  getWriteBufferSize(): number {
    return this.#queue.size;
  }

  getWriteBufferLimits(): WriteBufferLimits {
    return this.#flow.limits();
  }

  setWriteBufferLimits(limits?: Partial<WriteBufferLimits>): void {
    this.#flow.setLimits(limits, this.#queue.size);
  }

  async #runPump(): Promise<void> {
    // Start after the current task, so that its writes go out together.
    await undefined;
    const queue = this.#queue;
    try {
      while (!queue.empty) {
        const chunk = queue.take();
        await this.#writer.write(chunk);
        if (this.#lost) return;
        queue.wrote(chunk.byteLength);
        this.#flow.shrank(queue.size);
        queue.done();
      }
      if (this.#eofWritten) {
        await this.#writer.close();
        this.#lose(undefined);
      }
    } catch (error) {
      if (this.#lost) return;
      this.closing = true;
      queue.clear();
      this.#writer.abort().catch(() => {});
      this.#lose(toError(error));
    } finally {
      this.#pump = undefined;
      if (this.#lost) queue.release();
    }
  }

  #lose(exc: Error | undefined): void {
    if (this.#lost) return;
    this.#lost = true;
    this.closing = true;
    if (this.#pump === undefined) this.#queue.release();
    this.owner.lost(0, exc);
  }
}

/** The child's stdout or stderr: a read transport that can pause. */
class OutputPipe extends Pipe implements ReadTransport {
  #fd: 1 | 2;
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #paused = false;
  #started = false;
  #reading = false;
  #lost = false;
  #held: Uint8Array | null | undefined;

  constructor(owner: PipeOwner, fd: 1 | 2, stream: ReadableStream<Uint8Array>) {
    super(owner, stream);
    this.#fd = fd;
    this.#reader = stream.getReader();
  }

  isReading(): boolean {
    return !this.closing && !this.#paused && !this.#lost;
  }

  /** Stops delivering output; a read in flight is held, not lost. */
  pauseReading(): void {
    if (this.closing) return;
    this.#paused = true;
  }

  /** Delivers output again, first what was read while paused. */
  resumeReading(): void {
    if (this.closing || !this.#paused) return;
    this.#paused = false;
    if (this.#started && !this.#reading) this.#readLoop();
  }

  /** Stops reading and closes the pipe. */
  close(): void {
    if (this.closing) return;
    this.closing = true;
    this.#held = undefined;
    this.#reader.cancel().catch(() => {});
    if (!this.#reading) this.#lose(undefined);
  }

  /** Starts reading, once `connectionMade` ran. */
  start(): void {
    this.#started = true;
    if (this.closing) {
      this.#lose(undefined);
      return;
    }
    this.#readLoop();
  }

  async #readLoop(): Promise<void> {
    this.#reading = true;
    try {
      const held = this.#held;
      if (held !== undefined) {
        this.#held = undefined;
        if (!this.#deliver(held)) return;
      }
      while (!this.#paused && !this.closing) {
        let result: ReadableStreamReadResult<Uint8Array>;
        try {
          result = await this.#reader.read();
        } catch (error) {
          if (!this.closing) this.#lose(toError(error));
          return;
        }
        if (this.closing) return;
        const chunk = result.done ? null : result.value;
        if (this.#paused) {
          this.#held = chunk;
          return;
        }
        if (!this.#deliver(chunk)) return;
      }
    } finally {
      this.#reading = false;
      if (this.closing) this.#lose(undefined);
    }
  }

  /** Hands a chunk (or EOF: `null`) on; `false` when reading must stop. */
  #deliver(chunk: Uint8Array | null): boolean {
    if (chunk === null) {
      this.closing = true;
      return false;
    }
    if (chunk.byteLength === 0) return true;
    // Deno reads into 64 KiB: copy a small chunk so a kept one pins little.
    const data = chunk.byteLength <= SMALL_MAX
      ? copyOut(chunk, chunk.byteLength)
      : chunk;
    if (!this.owner.data(this.#fd, data)) {
      this.close();
      return false;
    }
    return true;
  }

  #lose(exc: Error | undefined): void {
    if (this.#lost) return;
    this.#lost = true;
    this.closing = true;
    this.owner.lost(this.#fd, exc);
  }
}

/**
 * Starts `program` with `args` and drives a protocol from `factory` over
 * its pipes: asyncio's `loop.subprocess_exec()`.
 *
 * Resolves once `connectionMade` has run; rejects if the program cannot
 * be started or `connectionMade` throws (the child is killed then). Needs
 * `--allow-run`.
 *
 * @param factory Makes the protocol.
 * @param program The program: a path, or a name looked up on `PATH`.
 * @param args Its arguments.
 * @param options Pipes, working directory, environment, error reporting.
 * @returns The transport and the protocol.
 *
 * @example Run a command and collect what it prints
 * ```ts
 * import { subprocessExec, SubprocessProtocolBase } from "@aio/protocols";
 * import assert from "node:assert/strict";
 *
 * class Collect extends SubprocessProtocolBase {
 *   out = "";
 *   done = Promise.withResolvers<void>();
 *   override pipeDataReceived(fd: 1 | 2, data: Uint8Array): void {
 *     if (fd === 1) this.out += new TextDecoder().decode(data);
 *   }
 *   override connectionLost(): void {
 *     this.done.resolve();
 *   }
 * }
 *
 * const [transport, protocol] = await subprocessExec(
 *   () => new Collect(),
 *   Deno.execPath(),
 *   ["eval", "console.log('hi')"],
 *   { stdin: "null" },
 * );
 * await protocol.done.promise;
 * assert.equal(protocol.out, "hi\n");
 * assert.equal(transport.getReturncode(), 0);
 * ```
 */
export async function subprocessExec<P extends SubprocessProtocol>(
  factory: () => P,
  program: string | URL,
  args: readonly string[] = [],
  options: SubprocessOptions = {},
): Promise<[SubprocessTransport, P]> {
  const cannot = "Cannot start subprocess";
  checkFactory(factory, "start subprocess");
  if (typeof program !== "string" && !(program instanceof URL)) {
    throw new TypeError(
      `${cannot}: program must be a string or URL, not ${
        describeValue(program)
      }`,
    );
  }
  if (!Array.isArray(args) || args.some((arg) => typeof arg !== "string")) {
    throw new TypeError(`${cannot}: args must be an array of strings`);
  }
  const stdio = {
    stdin: checkStdio(options.stdin, "stdin"),
    stdout: checkStdio(options.stdout, "stdout"),
    stderr: checkStdio(options.stderr, "stderr"),
  };
  const child = new Deno.Command(program, {
    args: [...args],
    ...stdio,
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    ...(options.env === undefined ? {} : { env: options.env }),
    ...(options.clearEnv === undefined ? {} : { clearEnv: options.clearEnv }),
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  }).spawn();
  let protocol: P;
  let transport: ChildProcessTransport;
  try {
    protocol = factory();
    transport = new ChildProcessTransport(
      child,
      protocol,
      stdio,
      options.onError,
    );
  } catch (error) {
    await discard(child, stdio);
    throw error;
  }
  const failed = await madeOf.get(transport);
  if (failed !== undefined) throw failed;
  return [transport, protocol];
}

/**
 * Runs `command` with the system shell (`/bin/sh -c`, or `cmd.exe /c` on
 * Windows) and drives a protocol over its pipes: asyncio's
 * `loop.subprocess_shell()`. Quote what goes into `command` yourself.
 *
 * @param factory Makes the protocol.
 * @param command The shell command line.
 * @param options As for {@linkcode subprocessExec}.
 * @returns The transport and the protocol.
 */
export function subprocessShell<P extends SubprocessProtocol>(
  factory: () => P,
  command: string,
  options: SubprocessOptions = {},
): Promise<[SubprocessTransport, P]> {
  if (typeof command !== "string") {
    return Promise.reject(
      new TypeError(
        `Cannot start subprocess: command must be a string, not ${
          describeValue(command)
        }`,
      ),
    );
  }
  return Deno.build.os === "windows"
    ? subprocessExec(factory, "cmd.exe", ["/d", "/s", "/c", command], options)
    : subprocessExec(factory, "/bin/sh", ["-c", command], options);
}

/** Kills a child nobody will drive, and releases its pipes. */
async function discard(
  child: Deno.ChildProcess,
  stdio: { stdin: Stdio; stdout: Stdio; stderr: Stdio },
): Promise<void> {
  try {
    child.kill("SIGKILL");
  } catch {
    // Already exited.
  }
  if (stdio.stdin === "piped") await child.stdin.close().catch(() => {});
  if (stdio.stdout === "piped") await child.stdout.cancel().catch(() => {});
  if (stdio.stderr === "piped") await child.stderr.cancel().catch(() => {});
  await child.status;
}

function checkStdio(value: unknown, name: string): Stdio {
  if (value === undefined) return "piped";
  if (value === "piped" || value === "inherit" || value === "null") {
    return value;
  }
  throw new TypeError(
    `Cannot start subprocess: ${name} must be "piped", "inherit" or "null", not ${
      JSON.stringify(value) ?? describeValue(value)
    }`,
  );
}

function checkProtocol(protocol: unknown): void {
  if (typeof protocol !== "object" || protocol === null) {
    throw new TypeError(
      `Cannot use protocol: expected an object, not ${describeValue(protocol)}`,
    );
  }
}
