/**
 * What the load generators (`bench/load.ts`, `bench/udp_load.ts`) share:
 * when to count, the CPU time used meanwhile, by the load generator and
 * by the server, and the checks of their flags.
 *
 * @module
 */

import process from "node:process";

/** How long work may run past the end before its sockets are closed. */
export const GRACE_MS = 2_000;

/** When to count, and whether the run is being cut off. */
export interface Clock {
  /** `performance.now()` at which counting starts. */
  countFrom: number;
  /** `performance.now()` after which no work starts or counts. */
  end: number;
  /** Set once the remaining sockets are being closed. */
  cutOff: boolean;
}

/**
 * Starts the clock of a run.
 *
 * @param warmup Seconds to run before counting.
 * @param duration Seconds to count.
 * @returns The clock, counting from now.
 */
export function startClock(warmup: number, duration: number): Clock {
  const start = performance.now();
  return {
    countFrom: start + warmup * 1000,
    end: start + (warmup + duration) * 1000,
    cutOff: false,
  };
}

/** Whether `time` (a `performance.now()`) falls in the counting time. */
export function counts(clock: Clock, time: number): boolean {
  return time >= clock.countFrom && time <= clock.end;
}

/** The CPU time used while counting, and when counting ran. */
export interface Window {
  /** CPU time (user + system) this process used, in s. */
  cpuSeconds: number;
  /** CPU time the server process used, in s; `null` without its pid. */
  serverCpuSeconds: number | null;
  /** When counting started, in ms since the epoch. */
  measureStart: number;
  /** When counting ended, in ms since the epoch. */
  measureEnd: number;
}

/** Where to find the server's CPU time. */
export interface ServerProcess {
  /** The server's process id, for `/proc/<pid>/stat`. */
  pid: number;
  /** Clock ticks per second (`getconf CLK_TCK`, usually 100). */
  clockTicks: number;
}

/**
 * Records the CPU time used from the clock's `countFrom` to its `end`.
 *
 * @param clock When to start and stop.
 * @param server The server whose CPU time to record too, if any.
 * @returns What was used, once the clock's end has passed.
 */
export function recordWindow(
  clock: Clock,
  server: ServerProcess | undefined,
): Promise<Window> {
  const serverTicks = () =>
    server === undefined ? null : processCpuTicks(server.pid);
  const now = performance.now();
  return new Promise((resolve) => {
    setTimeout(() => {
      const measureStart = Date.now();
      const before = process.cpuUsage();
      const serverBefore = serverTicks();
      setTimeout(() => {
        const used = process.cpuUsage(before);
        const serverAfter = serverTicks();
        resolve({
          cpuSeconds: (used.user + used.system) / 1e6,
          serverCpuSeconds: serverBefore === null || serverAfter === null
            ? null
            : (serverAfter - serverBefore) / server!.clockTicks,
          measureStart,
          measureEnd: Date.now(),
        });
      }, Math.max(0, clock.end - performance.now()));
    }, Math.max(0, clock.countFrom - now));
  });
}

/**
 * Reads the CPU time (user + system, every thread) a process has used.
 * Deno reads `/proc/<pid>/` only with `--allow-all`.
 *
 * @param pid The process id.
 * @returns Clock ticks from `/proc/<pid>/stat`, or `null` if unreadable
 *   (the reason goes to stderr).
 */
export function processCpuTicks(pid: number): number | null {
  let stat: string;
  try {
    stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch (error) {
    console.error(`Cannot read the server's CPU time: ${error}`);
    return null;
  }
  // The command name, field 2, is in parentheses and may hold spaces; utime
  // and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return Number.isFinite(utime + stime) ? utime + stime : null;
}

/**
 * Parses an integer flag and checks it lies in `[min, max]`.
 *
 * @param name The flag, without `--`.
 * @param text Its value.
 * @param min The smallest value allowed.
 * @param max The largest value allowed.
 * @returns The value.
 */
export function integerIn(
  name: string,
  text: string,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(
      `Cannot run load: --${name} (${text}) must be an integer from ${min}${
        max === Number.MAX_SAFE_INTEGER ? " up" : ` to ${max}`
      }`,
    );
  }
  return value;
}

/**
 * Parses a number of seconds, which may be 0 only if `zeroOk`.
 *
 * @param name The flag, without `--`.
 * @param text Its value.
 * @param zeroOk Whether 0 is allowed.
 * @returns The value.
 */
export function seconds(name: string, text: string, zeroOk: boolean): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0 || (value === 0 && !zeroOk)) {
    throw new RangeError(
      `Cannot run load: --${name} (${text}) must be a number of seconds ${
        zeroOk ? ">= 0" : "> 0"
      }`,
    );
  }
  return value;
}

/**
 * Parses `--server-pid` and `--clock-ticks`.
 *
 * @param pid The value of `--server-pid`, if given.
 * @param clockTicks The value of `--clock-ticks`.
 * @returns The server process, or `undefined` without a pid.
 */
export function serverProcess(
  pid: string | undefined,
  clockTicks: string,
): ServerProcess | undefined {
  if (pid === undefined) return undefined;
  return {
    pid: integerIn("server-pid", pid, 1),
    clockTicks: integerIn("clock-ticks", clockTicks, 1),
  };
}

/**
 * Formats the CPU use of a run for people.
 *
 * @param window What was used.
 * @param duration How long counting ran, in s.
 * @returns "CPU 0.97 cores; server 0.85 cores", say.
 */
export function describeCpu(window: Window, duration: number): string {
  const cores = (seconds: number) => (seconds / duration).toFixed(2);
  return `CPU ${cores(window.cpuSeconds)} cores` +
    (window.serverCpuSeconds === null
      ? ""
      : `; server ${cores(window.serverCpuSeconds)} cores`);
}
