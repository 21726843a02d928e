import {
  checkBoolean,
  checkObject,
  checkOnError,
  checkSignal,
  describeValue,
} from "../_checks.ts";
import type { SubprocessProtocol } from "../protocols/subprocess_protocol.ts";
import { checkFactory } from "./_conn.ts";
import {
  ChildProcessTransport,
  type Stdio,
  type StdioOptions,
} from "./_subprocess_transport.ts";
import type { ErrorHandler, SubprocessTransport } from "./transport.ts";

export type { Stdio } from "./_subprocess_transport.ts";

/**
 * Options for {@linkcode subprocessExec}: the child's streams, working
 * directory and environment, and error reporting.
 *
 * @example Nothing on stdin, stderr to the terminal, in another directory
 * ```ts
 * import type { SubprocessExecOptions } from "@aio/protocols";
 *
 * const stop = new AbortController(); // stop.abort() kills the child
 * const options: SubprocessExecOptions = {
 *   stdin: "null",
 *   stderr: "inherit",
 *   cwd: "/",
 *   env: { LANG: "C" },
 *   signal: stop.signal,
 * };
 * ```
 */
export interface SubprocessExecOptions {
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

/**
 * Options for {@linkcode subprocessShell}: as for
 * {@linkcode subprocessExec}.
 *
 * @example Leave stderr on the terminal
 * ```ts
 * import type { SubprocessShellOptions } from "@aio/protocols";
 *
 * const options: SubprocessShellOptions = { stdin: "null", stderr: "inherit" };
 * ```
 */
export type SubprocessShellOptions = SubprocessExecOptions;

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
 * @throws {TypeError} Before the child starts: if `factory` is not a
 * function, `program` is not a string or URL, `args` is not an array of
 * strings, `options` is not an object, a stdio option is not `"piped"`,
 * `"inherit"` or `"null"`, `cwd` is not a string or URL, `env` is not an
 * object of strings, `clearEnv` is not a boolean, `signal` is not an
 * `AbortSignal`, or `onError` is not a function. After it starts, if the
 * factory makes no protocol, or returns a Promise of one as an async
 * factory does (the child is killed).
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
  args?: readonly string[],
  options?: SubprocessExecOptions,
): Promise<[SubprocessTransport, P]> {
  if (args === undefined) args = [];
  const what = "start subprocess";
  const cannot = `Cannot ${what}`;
  checkFactory(factory, what);
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
  if (options === undefined) options = {};
  else checkObject(options, "options", what);
  const stdio = {
    stdin: checkStdio(options.stdin, "stdin"),
    stdout: checkStdio(options.stdout, "stdout"),
    stderr: checkStdio(options.stderr, "stderr"),
  };
  if (
    options.cwd !== undefined && typeof options.cwd !== "string" &&
    !(options.cwd instanceof URL)
  ) {
    throw new TypeError(
      `${cannot}: cwd must be a string or URL, not ${
        describeValue(options.cwd)
      }`,
    );
  }
  checkEnv(options.env, cannot);
  checkBoolean(options.clearEnv, "clearEnv", what);
  const signal = checkSignal(options.signal, what);
  const onError = checkOnError(options.onError, what);
  if (signal?.aborted) throw signal.reason;
  const child = new Deno.Command(program, {
    args: [...args],
    ...stdio,
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    ...(options.env === undefined ? {} : { env: options.env }),
    ...(options.clearEnv === undefined ? {} : { clearEnv: options.clearEnv }),
    ...(signal === undefined ? {} : { signal }),
  }).spawn();
  let protocol: P;
  let transport: ChildProcessTransport;
  const made = Promise.withResolvers<Error | undefined>();
  try {
    protocol = factory();
    transport = new ChildProcessTransport(child, protocol, stdio, {
      onError,
      events: { made: (_, error) => made.resolve(error) },
    });
  } catch (error) {
    await discard(child, stdio);
    throw error;
  }
  const failed = await made.promise;
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
 *
 * @example Get a command line's exit status
 * ```ts
 * import { subprocessShell, SubprocessProtocolBase } from "@aio/protocols";
 * import assert from "node:assert/strict";
 *
 * class Wait extends SubprocessProtocolBase {
 *   done = Promise.withResolvers<void>();
 *   override connectionLost(exc: Error | undefined): void {
 *     super.connectionLost(exc);
 *     this.done.resolve();
 *   }
 * }
 *
 * const [transport, protocol] = await subprocessShell(
 *   () => new Wait(),
 *   "test -d / && exit 3",
 *   { stdin: "null", stdout: "null", stderr: "null" },
 * );
 * await protocol.done.promise;
 * assert.equal(transport.getReturncode(), 3);
 * ```
 */
export function subprocessShell<P extends SubprocessProtocol>(
  factory: () => P,
  command: string,
  options?: SubprocessShellOptions,
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
  stdio: StdioOptions,
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

/** Checks an `env` option: an object whose values are all strings. */
function checkEnv(env: unknown, cannot: string): void {
  if (env === undefined) return;
  if (typeof env !== "object" || env === null || Array.isArray(env)) {
    throw new TypeError(
      `${cannot}: env must be an object of strings, not ${describeValue(env)}`,
    );
  }
  for (const [name, value] of Object.entries(env)) {
    if (typeof value !== "string") {
      throw new TypeError(
        `${cannot}: env values must be strings; env.${name} is ${
          describeValue(value)
        }`,
      );
    }
  }
}
