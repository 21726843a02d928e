import { checkBytes } from "../_checks.ts";
import { SubprocessProtocolBase } from "../protocols/subprocess_protocol.ts";
import {
  type Stdio,
  subprocessExec,
  type SubprocessExecOptions,
  subprocessShell,
} from "../transports/subprocess_exec.ts";
import type {
  ReadTransport,
  SubprocessTransport,
} from "../transports/transport.ts";
import { checkLimit, DEFAULT_LIMIT } from "./_limit.ts";
import { Loss } from "./_loss.ts";
import type { DrainSource } from "./_stream_protocol.ts";
import { StreamReader } from "./stream_reader.ts";
import { StreamWriter } from "./stream_writer.ts";

/**
 * Options for {@linkcode createSubprocessExec}: those of `subprocessExec`
 * (where every stream defaults to `"inherit"` here, as in asyncio), and
 * the output readers' buffer limit.
 *
 * @example Pipe stdout only, in a clean environment
 * ```ts
 * import type { CreateSubprocessExecOptions } from "@aio/protocols";
 *
 * const options: CreateSubprocessExecOptions = {
 *   stdout: "piped",
 *   env: { LANG: "C" },
 *   clearEnv: true,
 *   limit: 1024 * 1024,
 * };
 * ```
 */
export interface CreateSubprocessExecOptions extends SubprocessExecOptions {
  /** Each output reader's buffer limit (default 64 KiB). */
  limit?: number;
}

/**
 * Options for {@linkcode createSubprocessShell}: as for
 * {@linkcode createSubprocessExec}.
 *
 * @example Run a command line in another directory
 * ```ts
 * import type { CreateSubprocessShellOptions } from "@aio/protocols";
 *
 * const options: CreateSubprocessShellOptions = {
 *   stdout: "piped",
 *   cwd: "/",
 * };
 * ```
 */
export type CreateSubprocessShellOptions = CreateSubprocessExecOptions;

/**
 * The {@linkcode Process} that options of type `O` make: its streams are
 * there for what is `"piped"`, so no check is needed for them.
 *
 * @typeParam O The options' type.
 */
export type ProcessOf<O> = Process<
  ProcessStream<O, "stdin", StreamWriter>,
  ProcessStream<O, "stdout", StreamReader>,
  ProcessStream<O, "stderr", StreamReader>
>;

/**
 * The type of one of a {@linkcode Process}'s streams, from the options it
 * was made with: `T` for `"piped"`, `undefined` for anything else, and
 * `T | undefined` when the options do not say which at compile time.
 *
 * @typeParam O The options' type.
 * @typeParam K Which stream.
 * @typeParam T The stream's type when piped.
 */
export type ProcessStream<
  O,
  K extends "stdin" | "stdout" | "stderr",
  T,
> = [O extends { readonly [P in K]?: infer S } ? S : undefined] extends
  ["piped"] ? T
  : "piped" extends (O extends { readonly [P in K]?: infer S } ? S : undefined)
    ? T | undefined
  : undefined;

/**
 * A child process whose pipes are streams: asyncio's
 * `asyncio.subprocess.Process`. `stdin`, `stdout` and `stderr` exist for
 * the streams that were `"piped"`.
 *
 * @example Talk to a child line by line
 * ```ts
 * import { createSubprocessExec } from "@aio/protocols";
 * import assert from "node:assert/strict";
 *
 * const child = await createSubprocessExec("cat", [], {
 *   stdin: "piped",
 *   stdout: "piped",
 * });
 * // Piped, so typed as there: no check needed.
 * const { stdin, stdout } = child;
 *
 * stdin.write(new TextEncoder().encode("ping\n"));
 * assert.equal(new TextDecoder().decode(await stdout.readline()), "ping\n");
 * stdin.close(); // cat sees EOF and exits
 * assert.equal(await child.wait(), 0);
 * assert.equal((await stdout.read()).byteLength, 0);
 * ```
 */
export class Process<
  In extends StreamWriter | undefined = StreamWriter | undefined,
  Out extends StreamReader | undefined = StreamReader | undefined,
  Err extends StreamReader | undefined = StreamReader | undefined,
> {
  /** The child's stdin, if piped. */
  readonly stdin: In;
  /** The child's stdout, if piped. */
  readonly stdout: Out;
  /** The child's stderr, if piped. */
  readonly stderr: Err;
  #transport: SubprocessTransport;
  #protocol: SubprocessStreamProtocol;

  /**
   * Wraps a started child; use {@linkcode createSubprocessExec}.
   *
   * @param transport The child's transport.
   * @param protocol The protocol that feeds its streams.
   */
  constructor(
    transport: SubprocessTransport,
    protocol: SubprocessStreamProtocol,
  ) {
    this.#transport = transport;
    this.#protocol = protocol;
    // What subprocessExec() piped is what the options asked for.
    this.stdin = protocol.stdin as In;
    this.stdout = protocol.stdout as Out;
    this.stderr = protocol.stderr as Err;
  }

  /** The child's process id. */
  get pid(): number {
    return this.#transport.getPid();
  }

  /** The exit code, `-N` after signal `N`, or `null` while it runs. */
  get returncode(): number | null {
    return this.#transport.getReturncode();
  }

  /** Sends `signal`; does nothing once the child exited. */
  sendSignal(signal: Deno.Signal): void {
    this.#transport.sendSignal(signal);
  }

  /** Sends SIGTERM; does nothing once the child exited. */
  terminate(): void {
    this.#transport.terminate();
  }

  /** Sends SIGKILL; does nothing once the child exited. */
  kill(): void {
    this.#transport.kill();
  }

  /**
   * Resolves with the return code once the child exited, whether or not
   * its pipes are closed (a grandchild may hold them open).
   */
  async wait(): Promise<number> {
    await this.#protocol.exited;
    return this.returncode!;
  }

  /**
   * Writes `input` to stdin and closes it, reads stdout and stderr to EOF,
   * and waits for the exit: asyncio's `communicate()`. A child that exits
   * without reading all of `input` is not an error.
   *
   * @param input What to write to stdin, if it is piped.
   * @returns What the child wrote to stdout and stderr (`undefined` for a
   * stream that is not piped).
   * @throws {TypeError} If `input` is given and is not a `Uint8Array`;
   * nothing is written or read.
   */
  async communicate(
    input?: Uint8Array,
  ): Promise<[Uint8Array | undefined, Uint8Array | undefined]> {
    if (input !== undefined) checkBytes(input, "input", "communicate");
    const [stdout, stderr] = await Promise.all([
      this.stdout?.read(),
      this.stderr?.read(),
      this.#feed(input),
    ]);
    await this.wait();
    return [stdout, stderr];
  }

  async #feed(input: Uint8Array | undefined): Promise<void> {
    const stdin = this.stdin;
    if (stdin === undefined) return;
    if (input !== undefined && input.byteLength > 0) {
      stdin.write(input);
      try {
        await stdin.drain();
      } catch (error) {
        if (
          !(error instanceof Deno.errors.BrokenPipe ||
            error instanceof Deno.errors.ConnectionReset)
        ) {
          throw error;
        }
      }
    }
    stdin.close();
  }
}

/** Feeds a child's output to readers and lets its stdin writer drain. */
class SubprocessStreamProtocol extends SubprocessProtocolBase
  implements DrainSource {
  stdin: StreamWriter | undefined;
  stdout: StreamReader | undefined;
  stderr: StreamReader | undefined;
  #limit: number;
  #exited = Promise.withResolvers<void>();
  #stdinLoss = new Loss(() =>
    new Deno.errors.BrokenPipe("The child's stdin is closed")
  );

  constructor(limit: number) {
    super();
    this.#limit = limit;
  }

  /** Resolves once the child exited. */
  get exited(): Promise<void> {
    return this.#exited.promise;
  }

  override connectionMade(transport: SubprocessTransport): void {
    super.connectionMade(transport);
    this.stdout = this.#reader(transport.getPipeTransport(1));
    this.stderr = this.#reader(transport.getPipeTransport(2));
    const stdin = transport.getPipeTransport(0);
    if (stdin !== undefined) this.stdin = new StreamWriter(stdin, this);
  }

  override pipeDataReceived(fd: 1 | 2, data: Uint8Array): void {
    (fd === 1 ? this.stdout : this.stderr)?.feedData(data);
  }

  override pipeConnectionLost(fd: 0 | 1 | 2, exc: Error | undefined): void {
    if (fd === 0) {
      this.#stdinLoss.lose(exc);
      // Wakes drain() waiters: they throw now.
      super.pipeConnectionLost(fd, exc);
      return;
    }
    const reader = fd === 1 ? this.stdout : this.stderr;
    if (exc === undefined) reader?.feedEof();
    else reader?.setException(exc);
  }

  override processExited(): void {
    this.#exited.resolve();
  }

  override connectionLost(exc: Error | undefined): void {
    super.connectionLost(exc);
    // A callback failure ends everything: readers see it too.
    if (exc !== undefined) {
      this.stdout?.setException(exc);
      this.stderr?.setException(exc);
    }
    this.#exited.resolve();
  }

  drainHelper(): Promise<void> {
    return this.#stdinLoss.drain(() => this.drain());
  }

  closed(): Promise<void> {
    return this.#stdinLoss.closed();
  }

  #reader(pipe: ReadTransport | undefined): StreamReader | undefined {
    if (pipe === undefined) return undefined;
    const reader = new StreamReader(this.#limit);
    reader.setTransport(pipe);
    return reader;
  }
}

/**
 * Starts `program` with `args` and returns a {@linkcode Process} whose
 * pipes are streams: asyncio's `asyncio.create_subprocess_exec()`. As
 * there, stdin, stdout and stderr default to `"inherit"`: pass `"piped"`
 * for the ones to use as streams.
 *
 * @param program The program: a path, or a name looked up on `PATH`.
 * @param args Its arguments.
 * @param options Pipes, working directory, environment, `limit`.
 * @returns The process, once started.
 *
 * @example Run a command and collect its output
 * ```ts
 * import { createSubprocessExec } from "@aio/protocols";
 * import assert from "node:assert/strict";
 *
 * const child = await createSubprocessExec("cat", [], {
 *   stdin: "piped",
 *   stdout: "piped",
 * });
 * const [out] = await child.communicate(new TextEncoder().encode("hi"));
 * assert.equal(new TextDecoder().decode(out), "hi");
 * assert.equal(child.returncode, 0);
 * ```
 */
export async function createSubprocessExec<
  const O extends CreateSubprocessExecOptions = Record<never, never>,
>(
  program: string | URL,
  args?: readonly string[],
  options?: O,
): Promise<ProcessOf<O>> {
  const { limit = DEFAULT_LIMIT, ...spawn }: CreateSubprocessExecOptions =
    options ?? {};
  checkLimit(limit);
  const [transport, protocol] = await subprocessExec(
    () => new SubprocessStreamProtocol(limit),
    program,
    args,
    inheritByDefault(spawn),
  );
  return new Process(transport, protocol) as ProcessOf<O>;
}

/**
 * Runs `command` with the system shell and returns a
 * {@linkcode Process}: asyncio's `asyncio.create_subprocess_shell()`.
 * Streams default to `"inherit"`, as there.
 *
 * @param command The shell command line.
 * @param options As for {@linkcode createSubprocessExec}.
 * @returns The process, once started.
 *
 * @example Run a pipeline and read its output
 * ```ts
 * import { createSubprocessShell } from "@aio/protocols";
 * import assert from "node:assert/strict";
 *
 * const child = await createSubprocessShell("echo one two | wc -w", {
 *   stdout: "piped",
 * });
 * const [out] = await child.communicate();
 * assert.equal(new TextDecoder().decode(out).trim(), "2");
 * assert.equal(child.returncode, 0);
 * ```
 */
export async function createSubprocessShell<
  const O extends CreateSubprocessShellOptions = Record<never, never>,
>(
  command: string,
  options?: O,
): Promise<ProcessOf<O>> {
  const { limit = DEFAULT_LIMIT, ...spawn }: CreateSubprocessExecOptions =
    options ?? {};
  checkLimit(limit);
  const [transport, protocol] = await subprocessShell(
    () => new SubprocessStreamProtocol(limit),
    command,
    inheritByDefault(spawn),
  );
  return new Process(transport, protocol) as ProcessOf<O>;
}

function inheritByDefault(
  options: SubprocessExecOptions,
): SubprocessExecOptions {
  const stdio = (value: Stdio | undefined): Stdio => value ?? "inherit";
  return {
    ...options,
    stdin: stdio(options.stdin),
    stdout: stdio(options.stdout),
    stderr: stdio(options.stderr),
  };
}
