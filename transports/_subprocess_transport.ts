import { checkProtocolObject } from "../_checks.ts";
import type { SubprocessProtocol } from "../protocols/subprocess_protocol.ts";
import { ReadableSource, WritableSink } from "./_byte_io.ts";
import { ProtocolCaller, type TransportEvents } from "./_protocol_caller.ts";
import { StreamTransport } from "./_stream_transport.ts";
import type {
  ErrorHandler,
  ReadTransport,
  SubprocessExtraInfo,
  SubprocessTransport,
  WriteTransport,
} from "./transport.ts";

/** What to do with one of the child's standard streams. */
export type Stdio = "piped" | "inherit" | "null";

/** Which of the child's streams are piped. */
export interface StdioOptions {
  /** The child's stdin. */
  stdin: Stdio;
  /** The child's stdout. */
  stdout: Stdio;
  /** The child's stderr. */
  stderr: Stdio;
}

/** Options for {@linkcode ChildProcessTransport}. */
export interface ChildProcessTransportOptions {
  /** Receives errors thrown by protocol callbacks; default: stderr. */
  onError?: ErrorHandler | undefined;
  /** Who made the transport. */
  events?: TransportEvents | undefined;
}

/**
 * A child process started with `Deno.Command`, with a pipe transport for
 * each piped stream: asyncio's subprocess transport.
 *
 * Each pipe is a {@linkcode StreamTransport} whose protocol passes what
 * happens on to this transport, as asyncio's `ReadSubprocessPipeProto`
 * and `WriteSubprocessPipeProto` do; the subprocess protocol is called
 * only from here, through one {@linkcode ProtocolCaller}.
 *
 * The order is asyncio's: `connectionMade`; `pipeDataReceived(fd)` for
 * output, each pipe's `pipeConnectionLost(fd)` after its last output, and
 * `processExited` once (it may come before the last output of a pipe);
 * `connectionLost` last, once the child exited and every pipe closed. When
 * the child exits, its stdin closes after sending what is queued.
 */
export class ChildProcessTransport implements SubprocessTransport {
  #child: Deno.ChildProcess;
  #caller: ProtocolCaller<SubprocessProtocol>;
  #stdin: StreamTransport | undefined;
  #stdout: StreamTransport | undefined;
  #stderr: StreamTransport | undefined;
  /** The pipes not closed yet. */
  #open = new Set<0 | 1 | 2>();
  #returncode: number | null = null;
  #closed = false;
  #finished = false;
  /** What a protocol callback failed with, for `connectionLost`. */
  #failure: Error | undefined;

  /**
   * Starts driving `protocol` for `child`.
   *
   * @param child A spawned child; the transport owns its piped streams.
   * @param protocol The protocol.
   * @param stdio Which of the child's streams are piped.
   * @param options Error reporting and the maker's events.
   */
  constructor(
    child: Deno.ChildProcess,
    protocol: SubprocessProtocol,
    stdio: StdioOptions,
    options: ChildProcessTransportOptions = {},
  ) {
    checkProtocolObject(protocol);
    this.#child = child;
    this.#caller = new ProtocolCaller(this, protocol, {
      onError: options.onError,
      events: options.events,
      owner: {
        fatal: (exc) => {
          this.#failure ??= exc;
          this.close();
        },
      },
    });
    // Queued first, so that connectionMade comes before any pipe callback.
    const started = this.#start();
    if (stdio.stdin === "piped") {
      this.#open.add(0);
      this.#stdin = new StreamTransport(
        { sink: new WritableSink(child.stdin) },
        {
          dataReceived() {},
          pauseWriting: () => this.#caller.flowControl("pauseWriting"),
          resumeWriting: () => this.#caller.flowControl("resumeWriting"),
          connectionLost: (exc) => this.#pipeLost(0, exc),
        },
        {
          onError: options.onError,
          protocolOwner: this,
          extra: { pipe: child.stdin },
        },
      );
    }
    if (stdio.stdout === "piped") this.#stdout = this.#output(1, child.stdout);
    if (stdio.stderr === "piped") this.#stderr = this.#output(2, child.stderr);
    started.then(() => child.status).then((status) => this.#exited(status));
  }

  /** Returns `pid`, `subprocess` (the `Deno.ChildProcess`), or `defaultValue`. */
  getExtraInfo<K extends keyof SubprocessExtraInfo>(
    name: K,
    defaultValue?: SubprocessExtraInfo[K],
  ): SubprocessExtraInfo[K] | undefined;
  getExtraInfo(name: string, defaultValue?: unknown): unknown;
  getExtraInfo(name: string, defaultValue?: unknown): unknown {
    if (name === "pid") return this.#child.pid;
    if (name === "subprocess") return this.#child;
    return defaultValue;
  }

  /** Returns `true` once `close()` was called, or the transport is done. */
  isClosing(): boolean {
    return this.#closed || this.#finished;
  }

  /**
   * Closes every pipe (stdin after sending what is queued) and kills the
   * child with SIGKILL if it still runs, as asyncio does.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stdin?.close();
    this.#stdout?.close();
    this.#stderr?.close();
    if (this.#returncode === null) this.kill();
  }

  /** Switches the protocol for the next callbacks. */
  setProtocol(protocol: SubprocessProtocol): void {
    checkProtocolObject(protocol);
    this.#caller.protocol = protocol;
  }

  /** Returns the protocol that gets the callbacks. */
  getProtocol(): SubprocessProtocol {
    return this.#caller.protocol;
  }

  /** Returns the child's process id. */
  getPid(): number {
    return this.#child.pid;
  }

  /** Returns the exit code, `-N` after signal `N`, or `null` while it runs. */
  getReturncode(): number | null {
    return this.#returncode;
  }

  /** Returns the transport of the child's stdin, or `undefined`. */
  getPipeTransport(fd: 0): WriteTransport | undefined;
  /** Returns the transport of the child's stdout or stderr, or `undefined`. */
  getPipeTransport(fd: 1 | 2): ReadTransport | undefined;
  /**
   * Returns the transport of a piped stream, or `undefined`; `undefined`
   * too for an `fd` other than 0, 1 or 2, as asyncio's `None`.
   */
  getPipeTransport(
    fd: 0 | 1 | 2,
  ): WriteTransport | ReadTransport | undefined;
  getPipeTransport(fd: 0 | 1 | 2): WriteTransport | ReadTransport | undefined {
    switch (fd) {
      case 0:
        return this.#stdin;
      case 1:
        return this.#stdout;
      case 2:
        return this.#stderr;
      default:
        return undefined;
    }
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

  async #start(): Promise<void> {
    await undefined;
    this.#caller.connectionMade();
  }

  /** A pipe transport for the child's stdout (1) or stderr (2). */
  #output(fd: 1 | 2, stream: ReadableStream<Uint8Array>): StreamTransport {
    this.#open.add(fd);
    return new StreamTransport(
      { source: new ReadableSource(stream) },
      {
        // A failure closes this transport, and with it every pipe.
        dataReceived: (data) => {
          this.#caller.call("pipeDataReceived", fd, data);
        },
        connectionLost: (exc) => this.#pipeLost(fd, exc),
      },
      {
        onError: this.#caller.onError,
        protocolOwner: this,
        extra: { pipe: stream },
      },
    );
  }

  #pipeLost(fd: 0 | 1 | 2, exc: Error | undefined): void {
    this.#open.delete(fd);
    this.#caller.call("pipeConnectionLost", fd, exc);
    this.#tryFinish();
  }

  #exited(status: Deno.CommandStatus): void {
    this.#returncode = status.signal === null
      ? status.code
      : -(status.code - 128);
    this.#caller.call("processExited");
    // No one reads what the child no longer reads.
    this.#stdin?.close();
    this.#tryFinish();
  }

  /** Calls `connectionLost` once the child exited and every pipe closed. */
  #tryFinish(): void {
    if (this.#finished || this.#returncode === null || this.#open.size > 0) {
      return;
    }
    this.#finished = true;
    queueMicrotask(() => this.#caller.lose(this.#failure));
  }
}
