/**
 * Echo throughput of the multi-core example server against one process,
 * driven by load generators in other processes.
 *
 * For each server setup this script starts the server in a child process,
 * waits until it accepts connections, runs `--loaders` copies of
 * `bench/load.ts` against it at once, sums what they measured and stops the
 * server. It then prints a table with each setup's figures and its ratio to
 * the one-process `plain` server.
 *
 * ```sh
 * deno task bench:multicore
 * deno task bench:multicore --pipeline 16 --size 16384
 * deno task bench:multicore --rounds 3 --setups plain,multicore
 * ```
 *
 * The setups (`--setups`, comma-separated, default all) are:
 *
 * - `plain`: `bench/echo_server.ts --protocol plain`, StreamTransport +
 *   Protocol in one process and one thread;
 * - `multicore`: `examples/multicore_echo_server.ts`, `--workers` worker
 *   threads (default 2), each with its own listener on the port
 *   (`reusePort`, Linux);
 * - `raw`: `bench/echo_server.ts --protocol raw`, a plain `Deno.Conn` loop in
 *   one thread, as the baseline.
 *
 * `--connections` (default 50), `--size` (default 64), `--pipeline`
 * (default 1), `--duration` (default 5) and `--warmup` (default 1) are
 * passed to each load generator, so `--loaders 2 --connections 50` opens 100
 * connections in all. `--rounds R` measures every setup R times, in turn,
 * and shows the median and the range.
 *
 * The servers and the load generators share the machine's cores: with few
 * cores, the load generators take CPU time from the workers, and the gain of
 * more workers is smaller than it would be with the load on another machine.
 * Two columns help to tell: `loader CPU` is the CPU time the load generators
 * used per second counted, and `busy cores` how many cores were busy
 * machine-wide meanwhile, whoever used them. When every core is busy, the
 * server had at most the difference, shared with anything else running.
 *
 * @module
 */

import os from "node:os";
import { parseArgs } from "node:util";
import type { LoadResult } from "./load.ts";
import {
  killChildren,
  parseLoadOutput,
  readPort,
  spawnDeno,
  stopChild,
  waitUntilAccepting,
  withTimeout,
} from "./_children.ts";
import { printTable } from "./_text.ts";

/** A server to measure, and how to start it. */
interface Setup {
  /** The setup's key on the command line. */
  key: string;
  /** What the table calls it. */
  name: string;
  /** The script, relative to the project root. */
  script: string;
  /** Flags for the script, after `--hostname` and `--port`. */
  args: string[];
}

/** The workload and how often to measure it. */
interface BenchOptions {
  hostname: string;
  loaders: number;
  connections: number;
  size: number;
  pipeline: number;
  duration: number;
  warmup: number;
  rounds: number;
  workers: number;
  setups: Setup[];
}

/** What all load generators measured against one server, summed. */
interface Measurement {
  roundTripsPerSecond: number;
  mibPerSecond: number;
  /** CPU time of the load generators per second counted, in cores. */
  loaderCores: number;
  /** Cores busy machine-wide while counting, whoever used them. */
  busyCores: number;
  /** Connections that failed or stalled. */
  lostConnections: number;
  /** The share of the counting time when every load generator counted. */
  overlap: number;
}

/** The key of the setup every ratio is taken against. */
const REFERENCE = "plain";
/** How long a load generator may overrun its warm-up and duration. */
const LOAD_SLACK_MS = 30_000;
/** How far inside the counting time the busy cores are sampled. */
const SAMPLE_MARGIN_MS = 500;
/** Below this overlap of the load generators' counting, print a warning. */
const MIN_OVERLAP = 0.95;

/**
 * Builds the setups that can be measured.
 *
 * @param workers The worker count of the multi-core server.
 * @returns Every setup, by key.
 */
function allSetups(workers: number): Record<string, Setup> {
  return {
    plain: {
      key: "plain",
      name: "plain: StreamTransport + Protocol, 1 thread",
      script: "bench/echo_server.ts",
      args: ["--protocol", "plain"],
    },
    multicore: {
      key: "multicore",
      name: `multicore example, ${workers} worker${workers === 1 ? "" : "s"}`,
      script: "examples/multicore_echo_server.ts",
      args: ["--workers", `${workers}`],
    },
    raw: {
      key: "raw",
      name: "raw: Deno.Conn loop, 1 thread",
      script: "bench/echo_server.ts",
      args: ["--protocol", "raw"],
    },
  };
}

/**
 * Parses the command line.
 *
 * @param args The arguments, as in `Deno.args`.
 * @returns The workload and the setups to measure.
 */
function parseBenchArgs(args: string[]): BenchOptions {
  const { values } = parseArgs({
    args,
    options: {
      hostname: { type: "string", default: "127.0.0.1" },
      loaders: { type: "string", default: "2" },
      connections: { type: "string", default: "50" },
      size: { type: "string", default: "64" },
      pipeline: { type: "string", default: "1" },
      duration: { type: "string", default: "5" },
      warmup: { type: "string", default: "1" },
      rounds: { type: "string", default: "1" },
      workers: { type: "string", default: "2" },
      setups: { type: "string", default: "plain,multicore,raw" },
    },
  });
  const workers = positiveInteger("workers", values.workers);
  const known = allSetups(workers);
  return {
    hostname: values.hostname,
    loaders: positiveInteger("loaders", values.loaders),
    connections: positiveInteger("connections", values.connections),
    size: positiveInteger("size", values.size),
    pipeline: positiveInteger("pipeline", values.pipeline),
    duration: positiveNumber("duration", values.duration),
    warmup: positiveNumber("warmup", values.warmup, true),
    rounds: positiveInteger("rounds", values.rounds),
    workers,
    setups: values.setups.split(",").map((key) => {
      const setup = known[key];
      if (setup === undefined) {
        throw new TypeError(
          `Cannot run: unknown setup "${key}"; known: ${
            Object.keys(known).join(", ")
          }`,
        );
      }
      return setup;
    }),
  };
}

/** Parses a flag that must be a positive integer. */
function positiveInteger(name: string, text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value <= 0) {
    throw new RangeError(
      `Cannot run: --${name} (${text}) must be a positive integer`,
    );
  }
  return value;
}

/** Parses a flag that must be a positive number, or 0 if `zeroOk`. */
function positiveNumber(name: string, text: string, zeroOk = false): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0 || (value === 0 && !zeroOk)) {
    throw new RangeError(
      `Cannot run: --${name} (${text}) must be a number ${
        zeroOk ? ">= 0" : "> 0"
      }`,
    );
  }
  return value;
}

/**
 * Runs the load generators against one server at once.
 *
 * @param options The workload.
 * @param port The server's port.
 * @returns What each load generator measured, and how many cores were busy.
 */
async function runLoaders(
  options: BenchOptions,
  port: number,
): Promise<{ results: LoadResult[]; busyCores: number }> {
  const args = [
    ...["--hostname", options.hostname, "--port", `${port}`],
    ...["--connections", `${options.connections}`, "--size", `${options.size}`],
    ...["--pipeline", `${options.pipeline}`, "--json"],
    ...["--duration", `${options.duration}`, "--warmup", `${options.warmup}`],
  ];
  const children = Array.from(
    { length: options.loaders },
    () => spawnDeno("bench/load.ts", args),
  );
  const limit = (options.warmup + options.duration) * 1000 + LOAD_SLACK_MS;
  const stopSampling = new AbortController();
  const busyCores = sampleBusyCores(options, stopSampling.signal);
  try {
    const outputs = await withTimeout(
      Promise.all(children.map((child) => child.output())),
      limit,
    );
    if (outputs === undefined) {
      throw new Error("Cannot measure: a load generator did not finish");
    }
    return {
      results: outputs.map(parseLoadOutput),
      busyCores: await busyCores,
    };
  } finally {
    stopSampling.abort();
    await Promise.all(children.map(stopChild));
  }
}

/**
 * Measures how many cores are busy, machine-wide, from a little after the
 * load generators' warm-up to a little before their end.
 *
 * @param options The warm-up and duration.
 * @param signal Aborts the sampling; the result is then `NaN`.
 * @returns The average number of busy cores.
 */
async function sampleBusyCores(
  options: BenchOptions,
  signal: AbortSignal,
): Promise<number> {
  const margin = Math.min(SAMPLE_MARGIN_MS, options.duration * 1000 / 4);
  await sleep(options.warmup * 1000 + margin, signal);
  const before = cpuTimes();
  await sleep(options.duration * 1000 - 2 * margin, signal);
  const after = cpuTimes();
  if (signal.aborted) return NaN;
  const share = (after.busy - before.busy) / (after.total - before.total);
  return share * os.cpus().length;
}

/** Busy and total CPU time, summed over every core, in ms. */
function cpuTimes(): { busy: number; total: number } {
  let busy = 0;
  let total = 0;
  for (const { times } of os.cpus()) {
    const all = times.user + times.nice + times.sys + times.irq + times.idle;
    busy += all - times.idle;
    total += all;
  }
  return { busy, total };
}

/** Resolves after `ms` milliseconds, or at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}

/**
 * Sums what the load generators measured.
 *
 * @param results One result per load generator.
 * @param busyCores How many cores were busy meanwhile.
 * @param duration How long each counted, in seconds.
 * @returns The totals.
 */
function sum(
  results: LoadResult[],
  busyCores: number,
  duration: number,
): Measurement {
  const total = (
    field:
      | "roundTripsPerSecond"
      | "mibPerSecond"
      | "cpuSeconds"
      | (
        "failedConnections" | "stalledConnections"
      ),
  ) => results.reduce((sum, result) => sum + result[field], 0);
  const start = Math.max(...results.map((result) => result.measureStart));
  const end = Math.min(...results.map((result) => result.measureEnd));
  return {
    roundTripsPerSecond: total("roundTripsPerSecond"),
    mibPerSecond: total("mibPerSecond"),
    loaderCores: total("cpuSeconds") / duration,
    busyCores,
    lostConnections: total("failedConnections") + total("stalledConnections"),
    overlap: Math.max(0, end - start) / (duration * 1000),
  };
}

/**
 * Starts a server, loads it, and stops it, whatever happens.
 *
 * @param setup The server to measure.
 * @param options The workload.
 * @returns What the load generators measured, summed.
 */
async function measure(
  setup: Setup,
  options: BenchOptions,
): Promise<Measurement> {
  const { hostname } = options;
  // `reusePort` needs the flag; the other servers ignore it.
  const server = spawnDeno(
    setup.script,
    ["--hostname", hostname, "--port", "0", ...setup.args],
    { flags: ["--unstable-net"] },
  );
  try {
    const port = await readPort(server, hostname);
    await waitUntilAccepting(hostname, port, server.status);
    const { results, busyCores } = await runLoaders(options, port);
    return sum(results, busyCores, options.duration);
  } finally {
    await stopChild(server);
  }
}

/** Returns the median of `values`, which must not be empty. */
function median(values: number[]): number {
  const sorted = values.toSorted((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? sorted[middle]!
    : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Formats a rate with thousands separators. */
function formatRate(value: number): string {
  return Math.round(value).toLocaleString("en-US");
}

/**
 * Builds the table: one row per setup, medians over the rounds.
 *
 * @param options The workload and setups.
 * @param runs Every setup's measurements, one per round.
 * @returns The rows, header first.
 */
function tableRows(
  options: BenchOptions,
  runs: Map<string, Measurement[]>,
): string[][] {
  const rate = (key: string) =>
    median(runs.get(key)?.map((run) => run.roundTripsPerSecond) ?? [NaN]);
  const reference = runs.has(REFERENCE) ? rate(REFERENCE) : NaN;
  const header = [
    "setup",
    "round trips/s",
    "MiB/s",
    "loader CPU",
    "busy cores",
    "vs plain",
  ];
  if (options.rounds > 1) header.splice(2, 0, "range");
  const rows = [header];
  for (const setup of options.setups) {
    const measured = runs.get(setup.key)!;
    const rates = measured.map((run) => run.roundTripsPerSecond);
    const row = [
      setup.name,
      formatRate(median(rates)),
      median(measured.map((run) => run.mibPerSecond)).toFixed(1),
      `${median(measured.map((run) => run.loaderCores)).toFixed(2)} cores`,
      `${
        median(measured.map((run) => run.busyCores)).toFixed(2)
      } of ${os.cpus().length}`,
      Number.isNaN(reference)
        ? "–"
        : `${(median(rates) / reference).toFixed(2)}×`,
    ];
    if (options.rounds > 1) {
      row.splice(
        2,
        0,
        `${formatRate(Math.min(...rates))}–${formatRate(Math.max(...rates))}`,
      );
    }
    rows.push(row);
  }
  return rows;
}

/** Prints what is measured, before the first run. */
function printWorkload(options: BenchOptions): void {
  const total = options.loaders * options.connections;
  console.log(
    `Echo over ${options.hostname}: ${options.loaders} load generators × ` +
      `${options.connections} connections (${total} in all), ` +
      `${options.size} B messages, pipeline ${options.pipeline}, ` +
      `${options.duration} s after ${options.warmup} s warm-up, ` +
      `${options.rounds} round(s); ${navigator.hardwareConcurrency} cores\n`,
  );
}

/** Warns about a run whose figures should not be trusted. */
function warnAbout(setup: Setup, measured: Measurement): void {
  if (measured.lostConnections > 0) {
    console.error(
      `${setup.key}: ${measured.lostConnections} connections failed or stalled`,
    );
  }
  if (measured.overlap < MIN_OVERLAP) {
    console.error(
      `${setup.key}: the load generators counted together for only ${
        (measured.overlap * 100).toFixed(0)
      }% of the time`,
    );
  }
}

/** Kills every child still running, then exits; for SIGINT and SIGTERM. */
function exitOnSignal(): void {
  killChildren();
  Deno.exit(130);
}

/**
 * Measures every setup, round after round, and prints the table.
 *
 * @param options The workload and setups.
 */
async function main(options: BenchOptions): Promise<void> {
  printWorkload(options);
  const runs = new Map<string, Measurement[]>(
    options.setups.map((setup) => [setup.key, []]),
  );
  for (let round = 1; round <= options.rounds; round++) {
    for (const setup of options.setups) {
      const measured = await measure(setup, options);
      warnAbout(setup, measured);
      runs.get(setup.key)!.push(measured);
      console.error(
        `round ${round}, ${setup.key}: ${
          formatRate(measured.roundTripsPerSecond)
        } round trips/s`,
      );
    }
  }
  console.log();
  printTable(tableRows(options, runs));
}

if (import.meta.main) {
  const options = parseBenchArgs(Deno.args);
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, exitOnSignal);
  }
  try {
    await main(options);
  } finally {
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      Deno.removeSignalListener(signal, exitOnSignal);
    }
  }
}
