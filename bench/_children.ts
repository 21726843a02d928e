/**
 * Child processes of the bench scripts: servers and load generators, each
 * in a `deno run` process of its own, optionally pinned to one CPU.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { lines } from "./_text.ts";
import type { LoadResult } from "./load.ts";

/** The project root, where children run so that they find deno.json. */
const ROOT = fileURLToPath(new URL("..", import.meta.url));
/** Permissions every child process runs with, unless `allowAll`. */
const CHILD_PERMISSIONS = [
  "--allow-net",
  "--allow-read",
  "--allow-env",
  "--allow-sys",
];
/** How long a server may take to print its address and accept. */
const START_TIMEOUT_MS = 30_000;
/** How long a server may take to exit after SIGTERM before SIGKILL. */
const STOP_TIMEOUT_MS = 5_000;
/** Child processes still running, killed by {@linkcode killChildren}. */
const running = new Set<Deno.ChildProcess>();

/** Options for {@linkcode spawnDeno}. */
export interface SpawnOptions {
  /** Extra `deno run` flags, before the script. */
  flags?: string[];
  /**
   * Run with `--allow-all` instead of the child permissions: Deno reads
   * `/proc/<pid>/` only with it.
   */
  allowAll?: boolean;
  /** Run on this CPU only, with `taskset -c` (see {@linkcode canPin}). */
  cpu?: number;
}

/**
 * Starts a child `deno run` process with the child permissions.
 *
 * @param script The script, relative to the project root.
 * @param args The script's arguments.
 * @param options Extra flags, and the CPU to pin it to.
 * @returns The running child, with stdout piped.
 */
export function spawnDeno(
  script: string,
  args: string[],
  options: SpawnOptions = {},
): Deno.ChildProcess {
  const deno = [
    "run",
    ...options.allowAll ? ["--allow-all"] : CHILD_PERMISSIONS,
    ...options.flags ?? [],
    script,
    ...args,
  ];
  // taskset runs the command in its own process: the pid stays the child's.
  const [command, commandArgs] = options.cpu === undefined
    ? [Deno.execPath(), deno]
    : ["taskset", ["-c", `${options.cpu}`, Deno.execPath(), ...deno]];
  const child = new Deno.Command(command, {
    args: commandArgs,
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  running.add(child);
  child.status.finally(() => running.delete(child));
  return child;
}

/**
 * Tells whether `taskset` can pin a child to `cpu` here.
 *
 * @param cpu The CPU's number.
 * @returns `true` if `taskset -c <cpu> true` runs and succeeds.
 */
export async function canPin(cpu: number): Promise<boolean> {
  try {
    const { success } = await new Deno.Command("taskset", {
      args: ["-c", `${cpu}`, "true"],
      stdout: "null",
      stderr: "null",
    }).output();
    return success;
  } catch {
    return false;
  }
}

/** Sends `signal` to `child`, unless it has exited already. */
function signalChild(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch {
    // It has exited already.
  }
}

/**
 * Stops a child with SIGTERM, or SIGKILL if it does not exit in time, and
 * waits until it has exited.
 *
 * @param child The child to stop.
 */
export async function stopChild(child: Deno.ChildProcess): Promise<void> {
  signalChild(child, "SIGTERM");
  const exited = await withTimeout(child.status, STOP_TIMEOUT_MS);
  if (exited === undefined) {
    signalChild(child, "SIGKILL");
    await child.status;
  }
}

/** Kills every child still running; for SIGINT and SIGTERM handlers. */
export function killChildren(): void {
  for (const child of running) signalChild(child, "SIGKILL");
}

/**
 * Resolves as `promise` does, or with `undefined` after `ms` milliseconds.
 *
 * @param promise What to wait for.
 * @param ms How long to wait at most.
 * @returns The value of `promise`, or `undefined` on timeout.
 */
export async function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Reads the server's first line of output and finds the port in it; keeps
 * reading the rest so that the server never blocks on a full pipe.
 *
 * @param child The server.
 * @param hostname The address it listens on, as it prints it.
 * @returns The port it printed.
 */
export async function readPort(
  child: Deno.ChildProcess,
  hostname: string,
): Promise<number> {
  const output = lines(child.stdout);
  const first = await withTimeout(output.next(), START_TIMEOUT_MS);
  if (first === undefined) {
    throw new Error("Cannot start server: it printed no address in time");
  }
  if (first.done) {
    throw new Error("Cannot start server: it exited before listening");
  }
  (async () => {
    for await (const _ of output) {
      // Nothing more is expected; drain it.
    }
  })();
  const match = first.value.match(new RegExp(`${escape(hostname)}:(\\d+)`));
  if (match === null) {
    throw new Error(
      `Cannot start server: no ${hostname}:port in "${first.value}"`,
    );
  }
  return Number(match[1]);
}

/** Escapes `text` for use in a regular expression. */
function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * Connects until the server accepts, then closes that connection.
 *
 * @param hostname The server's address.
 * @param port The server's port.
 * @param exited Settles if the server exits meanwhile.
 */
export async function waitUntilAccepting(
  hostname: string,
  port: number,
  exited: Promise<unknown>,
): Promise<void> {
  let gone = false;
  exited.finally(() => gone = true);
  const deadline = performance.now() + START_TIMEOUT_MS;
  while (!gone && performance.now() < deadline) {
    try {
      const conn = await Deno.connect({ hostname, port });
      conn.close();
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  throw new Error(
    `Cannot start server: ${hostname}:${port} did not accept connections`,
  );
}

/**
 * Parses the JSON line a load generator printed last.
 *
 * @param output The load generator's output.
 * @returns What it measured.
 */
export function parseLoadOutput<T = LoadResult>(
  output: Deno.CommandOutput,
): T {
  const text = new TextDecoder().decode(output.stdout).trim();
  if (!output.success || text === "") {
    throw new Error(
      `Cannot measure: a load generator exited with code ${output.code}`,
    );
  }
  return JSON.parse(text.split("\n").at(-1)!) as T;
}
