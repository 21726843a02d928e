/**
 * A TCP load generator for an echo server in another process: many
 * connections, each sending fixed-size messages and waiting for their echo.
 *
 * ```sh
 * deno run --allow-net bench/load.ts --port 7001
 * deno run --allow-net bench/load.ts --port 7001 --connections 100 --pipeline 16
 * deno run --allow-net bench/load.ts --port 7001 --size 16384 --json
 * ```
 *
 * Each of `--connections` connections (default 50) writes `--pipeline`
 * messages (default 1: ping-pong) of `--size` bytes (default 64) in one
 * write, reads until all their bytes have come back, and repeats. Only
 * round trips that end after `--warmup` seconds (default 1) and within the
 * next `--duration` seconds (default 5) are counted. The result is round
 * trips per second (messages echoed per second) and MiB/s of echoed
 * payload, counted in one direction, plus the CPU time this process used
 * meanwhile. `--json` prints it as one JSON line ({@linkcode LoadResult}).
 *
 * It uses `Deno.connect` only, sets TCP_NODELAY, and needs `--allow-net`.
 *
 * @module
 */

import process from "node:process";
import { parseArgs } from "node:util";

/** The workload of one run. */
export interface LoadOptions {
  /** The server's address. */
  hostname: string;
  /** The server's port. */
  port: number;
  /** How many connections to open. */
  connections: number;
  /** The size of one message in bytes. */
  size: number;
  /** How many messages each connection has in flight at once. */
  pipeline: number;
  /** How long to count round trips, in seconds. */
  duration: number;
  /** How long to run before counting, in seconds. */
  warmup: number;
}

/** What one run measured. */
export interface LoadResult {
  /** How many connections were open. */
  connections: number;
  /** The size of one message in bytes. */
  size: number;
  /** How many messages each connection had in flight at once. */
  pipeline: number;
  /** How long round trips were counted, in seconds. */
  duration: number;
  /** Messages echoed in that time. */
  roundTrips: number;
  /** Messages echoed per second. */
  roundTripsPerSecond: number;
  /** Echoed payload per second, one direction, in MiB. */
  mibPerSecond: number;
  /** CPU time (user + system) this process used while counting, in s. */
  cpuSeconds: number;
  /** Connections that failed before the end (reset by the server, say). */
  failedConnections: number;
  /** Connections still waiting for an echo two seconds after the end. */
  stalledConnections: number;
  /** When counting started, in ms since the epoch. */
  measureStart: number;
  /** When counting ended, in ms since the epoch. */
  measureEnd: number;
}

/** One mebibyte. */
const MiB = 1024 * 1024;
/** The largest single read. */
const READ_SIZE = 64 * 1024;
/** How long a round trip may run past the end before its socket is closed. */
const GRACE_MS = 2_000;

/** When to count, and whether the run is being cut off. */
interface Clock {
  /** `performance.now()` at which counting starts. */
  countFrom: number;
  /** `performance.now()` after which no round trip starts or counts. */
  end: number;
  /** Set once the remaining connections are being closed. */
  cutOff: boolean;
}

/**
 * Connects, drives every connection until the end, and closes them all.
 *
 * @param options The server and the workload.
 * @returns What was measured.
 */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const conns = await connectAll(options);
  const batch = new Uint8Array(options.size * options.pipeline).fill(0x61);
  const start = performance.now();
  const clock: Clock = {
    countFrom: start + options.warmup * 1000,
    end: start + (options.warmup + options.duration) * 1000,
    cutOff: false,
  };
  const window = recordWindow(clock);
  const cutOff = setTimeout(() => {
    clock.cutOff = true;
    closeAll(conns);
  }, clock.end - start + GRACE_MS);
  try {
    const outcomes = await Promise.all(
      conns.map((conn) => driveSafely(conn, batch, clock)),
    );
    const { cpuSeconds, measureStart, measureEnd } = await window;
    const batches = outcomes.reduce((sum, { batches }) => sum + batches, 0);
    const roundTrips = batches * options.pipeline;
    return {
      connections: options.connections,
      size: options.size,
      pipeline: options.pipeline,
      duration: options.duration,
      roundTrips,
      roundTripsPerSecond: roundTrips / options.duration,
      mibPerSecond: roundTrips * options.size / MiB / options.duration,
      cpuSeconds,
      failedConnections: count(outcomes, "failed"),
      stalledConnections: count(outcomes, "stalled"),
      measureStart,
      measureEnd,
    };
  } finally {
    clearTimeout(cutOff);
    closeAll(conns);
  }
}

/** Opens every connection at once; closes them all if one fails. */
async function connectAll(options: LoadOptions): Promise<Deno.TcpConn[]> {
  const { hostname, port } = options;
  const settled = await Promise.allSettled(
    Array.from(
      { length: options.connections },
      () => Deno.connect({ hostname, port }),
    ),
  );
  const conns = settled.flatMap((result) =>
    result.status === "fulfilled" ? [result.value] : []
  );
  const failure = settled.find((result) => result.status === "rejected");
  if (failure !== undefined) {
    closeAll(conns);
    throw new Error(
      `Cannot run load: connecting to ${hostname}:${port} failed: ${
        (failure as PromiseRejectedResult).reason
      }`,
    );
  }
  for (const conn of conns) conn.setNoDelay(true);
  return conns;
}

/** Resolves with the CPU time used and the wall-clock times of counting. */
function recordWindow(
  clock: Clock,
): Promise<Pick<LoadResult, "cpuSeconds" | "measureStart" | "measureEnd">> {
  const now = performance.now();
  return new Promise((resolve) => {
    setTimeout(() => {
      const measureStart = Date.now();
      const before = process.cpuUsage();
      setTimeout(() => {
        const used = process.cpuUsage(before);
        resolve({
          cpuSeconds: (used.user + used.system) / 1e6,
          measureStart,
          measureEnd: Date.now(),
        });
      }, clock.end - performance.now());
    }, clock.countFrom - now);
  });
}

/** How one connection's run ended, and how many batches it counted. */
interface Outcome {
  /** Batches of `pipeline` messages echoed while counting. */
  batches: number;
  /** `"failed"` before the end, `"stalled"` past it, or `"done"`. */
  end: "done" | "failed" | "stalled";
}

/** Drives one connection until the end, or until it fails. */
async function driveSafely(
  conn: Deno.TcpConn,
  batch: Uint8Array,
  clock: Clock,
): Promise<Outcome> {
  const counted = { batches: 0 };
  try {
    await drive(conn, batch, clock, counted);
    return { batches: counted.batches, end: "done" };
  } catch (error) {
    if (clock.cutOff) return { batches: counted.batches, end: "stalled" };
    console.error(`Connection failed: ${error}`);
    return { batches: counted.batches, end: "failed" };
  }
}

/** Counts the outcomes that ended as `end`. */
function count(outcomes: Outcome[], end: Outcome["end"]): number {
  return outcomes.filter((outcome) => outcome.end === end).length;
}

/** Sends `batch` and waits for its echo, over and over, until the end. */
async function drive(
  conn: Deno.TcpConn,
  batch: Uint8Array,
  clock: Clock,
  counted: { batches: number },
): Promise<void> {
  const buffer = new Uint8Array(Math.min(batch.byteLength, READ_SIZE));
  while (performance.now() < clock.end) {
    await Promise.all([
      writeAll(conn, batch),
      readBytes(conn, buffer, batch.byteLength),
    ]);
    const now = performance.now();
    if (now >= clock.countFrom && now <= clock.end) counted.batches++;
  }
}

/** Writes all of `data`, however many writes it takes. */
async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < data.byteLength) {
    offset += await conn.write(data.subarray(offset));
  }
}

/** Reads and drops exactly `nbytes` bytes, through `buffer`. */
async function readBytes(
  conn: Deno.Conn,
  buffer: Uint8Array,
  nbytes: number,
): Promise<void> {
  let remaining = nbytes;
  while (remaining > 0) {
    const read = await conn.read(
      buffer.subarray(0, Math.min(buffer.byteLength, remaining)),
    );
    if (read === null) {
      throw new Error("Cannot read echo: the server closed the connection");
    }
    remaining -= read;
  }
}

/** Closes every connection that is still open. */
function closeAll(conns: Deno.Conn[]): void {
  for (const conn of conns) {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }
}

/**
 * Parses the command line.
 *
 * @param args The arguments, as in `Deno.args`.
 * @returns The workload, and whether to print JSON.
 */
export function parseLoadArgs(
  args: string[],
): { options: LoadOptions; json: boolean } {
  const { values } = parseArgs({
    args,
    options: {
      hostname: { type: "string", default: "127.0.0.1" },
      port: { type: "string" },
      connections: { type: "string", default: "50" },
      size: { type: "string", default: "64" },
      pipeline: { type: "string", default: "1" },
      duration: { type: "string", default: "5" },
      warmup: { type: "string", default: "1" },
      json: { type: "boolean", default: false },
    },
  });
  if (values.port === undefined) {
    throw new TypeError("Cannot run load: --port is required");
  }
  const port = integerIn("port", values.port, 1, 65535);
  const options: LoadOptions = {
    hostname: values.hostname,
    port,
    connections: integerIn("connections", values.connections, 1),
    size: integerIn("size", values.size, 1),
    pipeline: integerIn("pipeline", values.pipeline, 1),
    duration: seconds("duration", values.duration, false),
    warmup: seconds("warmup", values.warmup, true),
  };
  return { options, json: values.json };
}

/** Parses an integer flag and checks it lies in `[min, max]`. */
function integerIn(
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

/** Parses a number of seconds, which may be 0 only if `zeroOk`. */
function seconds(name: string, text: string, zeroOk: boolean): number {
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

/** Formats a result as one line for people. */
function describe(options: LoadOptions, result: LoadResult): string {
  const rate = Math.round(result.roundTripsPerSecond).toLocaleString("en-US");
  const failed =
    (result.failedConnections > 0
      ? `; ${result.failedConnections} connections failed`
      : "") +
    (result.stalledConnections > 0
      ? `; ${result.stalledConnections} connections stalled`
      : "");
  return `${options.hostname}:${options.port}, ${result.connections} ` +
    `connections × ${result.size} B, pipeline ${result.pipeline}: ` +
    `${rate} round trips/s, ${result.mibPerSecond.toFixed(1)} MiB/s over ` +
    `${result.duration} s (CPU ${
      (result.cpuSeconds / result.duration).toFixed(2)
    } cores)${failed}`;
}

if (import.meta.main) {
  const { options, json } = parseLoadArgs(Deno.args);
  const result = await runLoad(options);
  console.log(json ? JSON.stringify(result) : describe(options, result));
  const lost = result.failedConnections + result.stalledConnections;
  if (lost === result.connections) Deno.exit(1);
}
