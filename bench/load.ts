/**
 * A TCP load generator for an echo server in another process: many
 * connections, each sending fixed-size messages and reading their echo.
 *
 * ```sh
 * deno run --allow-net bench/load.ts --port 7001
 * deno run --allow-net bench/load.ts --port 7001 --connections 100 --pipeline 16
 * deno run --allow-net bench/load.ts --port 7001 --size 16384 --json
 * deno run --allow-net bench/load.ts --port 7001 --connections 8 \
 *   --size 65536 --window 262144        # a stream, 256 KiB in flight each
 * deno run --allow-net --allow-read bench/load.ts --port 7001 --tls
 * ```
 *
 * Each of `--connections` connections (default 50) does one of two things:
 *
 * - by default, it writes `--pipeline` messages (default 1: ping-pong) of
 *   `--size` bytes (default 64) in one write, reads until all their bytes
 *   have come back, and repeats;
 * - with `--window BYTES`, it streams: it writes `--size`-byte messages as
 *   long as fewer than `--window` bytes are on their way (written and not
 *   yet echoed), while it reads the echo, so the server always has work.
 *
 * Only echoes that arrive after `--warmup` seconds (default 1) and within
 * the next `--duration` seconds (default 5) are counted. The result is
 * round trips per second (messages echoed per second) and MiB/s of echoed
 * payload, counted in one direction, plus the CPU time this process used
 * meanwhile; with `--server-pid PID`, also the CPU time that process used
 * meanwhile, from `/proc/PID/stat` (Linux; `--clock-ticks`, default 100, is
 * `getconf CLK_TCK`; Deno reads `/proc/PID/` only with `--allow-all`).
 * `--json` prints it as one JSON line ({@linkcode LoadResult}).
 *
 * `--tls` speaks TLS, trusting `--ca FILE` (default: the test CA in
 * `tests/testdata/`) for the name `--server-name` (default `localhost`).
 *
 * It uses `Deno.connect` (and `Deno.startTls`) only, sets TCP_NODELAY, and
 * needs `--allow-net`, `--allow-read` for `--tls`, and `--allow-all` for
 * `--server-pid`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  type Clock,
  counts,
  describeCpu,
  GRACE_MS,
  integerIn,
  recordWindow,
  seconds,
  type ServerProcess,
  serverProcess,
  startClock,
  type Window,
} from "./_load.ts";

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
  /** Stream with up to this many bytes in flight, instead of batches. */
  window?: number;
  /** How long to count round trips, in seconds. */
  duration: number;
  /** How long to run before counting, in seconds. */
  warmup: number;
  /** Speak TLS. */
  tls?: { caCerts: string[]; serverName: string };
  /** The server process, to record its CPU time. */
  server?: ServerProcess;
}

/** What one run measured. */
export interface LoadResult extends Window {
  /** How many connections were open. */
  connections: number;
  /** The size of one message in bytes. */
  size: number;
  /** How many messages each connection had in flight at once. */
  pipeline: number;
  /** The stream window in bytes, or `null` for batches. */
  window: number | null;
  /** Whether it spoke TLS. */
  tls: boolean;
  /** How long round trips were counted, in seconds. */
  duration: number;
  /** Messages echoed in that time. */
  roundTrips: number;
  /** Messages echoed per second. */
  roundTripsPerSecond: number;
  /** Echoed payload per second, one direction, in MiB. */
  mibPerSecond: number;
  /**
   * The mean size of a read of the echo while streaming, which shows how
   * the server batched its writes; `null` for batches.
   */
  bytesPerRead: number | null;
  /** Connections that failed before the end (reset by the server, say). */
  failedConnections: number;
  /** Connections still waiting for an echo two seconds after the end. */
  stalledConnections: number;
}

/** One mebibyte. */
const MiB = 1024 * 1024;
/** The largest single read of a batch. */
const READ_SIZE = 64 * 1024;
/** The read buffer of a stream. */
const STREAM_READ_SIZE = 256 * 1024;
/** The test CA, trusted by `--tls` unless `--ca` is given. */
const TEST_CA = new URL("../tests/testdata/ca.pem", import.meta.url);

/**
 * Connects, drives every connection until the end, and closes them all.
 *
 * @param options The server and the workload.
 * @returns What was measured.
 */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const conns = await connectAll(options);
  const clock = startClock(options.warmup, options.duration);
  const window = recordWindow(clock, options.server);
  const cutOff = setTimeout(() => {
    clock.cutOff = true;
    closeAll(conns);
  }, clock.end - performance.now() + GRACE_MS);
  const drive = options.window === undefined
    ? batches(options.size * options.pipeline)
    : stream(options.size, options.window);
  try {
    const outcomes = await Promise.all(
      conns.map((conn) => driveSafely(conn, drive, clock)),
    );
    const bytes = outcomes.reduce((sum, { bytes }) => sum + bytes, 0);
    const reads = outcomes.reduce((sum, { reads }) => sum + reads, 0);
    const roundTrips = bytes / options.size;
    return {
      connections: options.connections,
      size: options.size,
      pipeline: options.pipeline,
      window: options.window ?? null,
      tls: options.tls !== undefined,
      duration: options.duration,
      roundTrips,
      roundTripsPerSecond: roundTrips / options.duration,
      mibPerSecond: bytes / MiB / options.duration,
      bytesPerRead: reads === 0 ? null : bytes / reads,
      ...await window,
      failedConnections: count(outcomes, "failed"),
      stalledConnections: count(outcomes, "stalled"),
    };
  } finally {
    clearTimeout(cutOff);
    closeAll(conns);
  }
}

/** Opens every connection at once; closes them all if one fails. */
async function connectAll(options: LoadOptions): Promise<Deno.Conn[]> {
  const { hostname, port, tls } = options;
  const settled = await Promise.allSettled(
    Array.from({ length: options.connections }, async () => {
      const conn = await Deno.connect({ hostname, port });
      conn.setNoDelay(true);
      if (tls === undefined) return conn;
      return await Deno.startTls(conn, {
        hostname: tls.serverName,
        caCerts: tls.caCerts,
      });
    }),
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
  return conns;
}

/** How one connection's run ended, and what it counted. */
interface Outcome extends Counted {
  /** `"failed"` before the end, `"stalled"` past it, or `"done"`. */
  end: "done" | "failed" | "stalled";
}

/** Drives one connection until the end; adds what it counts to `counted`. */
type Drive = (
  conn: Deno.Conn,
  clock: Clock,
  counted: Counted,
) => Promise<void>;

/** What one connection counted: echoed bytes, and the reads they took. */
interface Counted {
  bytes: number;
  reads: number;
}

/** Drives one connection until the end, or until it fails. */
async function driveSafely(
  conn: Deno.Conn,
  drive: Drive,
  clock: Clock,
): Promise<Outcome> {
  const counted = { bytes: 0, reads: 0 };
  try {
    await drive(conn, clock, counted);
    return { ...counted, end: "done" };
  } catch (error) {
    if (clock.cutOff) return { ...counted, end: "stalled" };
    console.error(`Connection failed: ${error}`);
    return { ...counted, end: "failed" };
  }
}

/** Counts the outcomes that ended as `end`. */
function count(outcomes: Outcome[], end: Outcome["end"]): number {
  return outcomes.filter((outcome) => outcome.end === end).length;
}

/** Sends a batch of `size` bytes and waits for its echo, over and over. */
function batches(size: number): Drive {
  const batch = new Uint8Array(size).fill(0x61);
  return async (conn, clock, counted) => {
    const buffer = new Uint8Array(Math.min(size, READ_SIZE));
    while (performance.now() < clock.end) {
      await Promise.all([
        writeAll(conn, batch),
        readBytes(conn, buffer, size),
      ]);
      if (counts(clock, performance.now())) counted.bytes += size;
    }
  };
}

/**
 * Writes `size`-byte messages while fewer than `window` bytes are on their
 * way, and reads the echo meanwhile; after the end, waits until every byte
 * written has come back.
 */
function stream(size: number, window: number): Drive {
  const message = new Uint8Array(size).fill(0x61);
  return (conn, clock, counted) =>
    new Promise((resolve, reject) => {
      let sent = 0;
      let received = 0;
      let writing = true;
      let wake: (() => void) | undefined;
      const settleIfDone = () => {
        if (!writing && received >= sent) resolve();
      };
      (async () => {
        const buffer = new Uint8Array(STREAM_READ_SIZE);
        for (;;) {
          const nbytes = await conn.read(buffer);
          if (nbytes === null) {
            throw new Error(
              "Cannot read echo: the server closed the connection",
            );
          }
          received += nbytes;
          if (counts(clock, performance.now())) {
            counted.bytes += nbytes;
            counted.reads++;
          }
          wake?.();
          settleIfDone();
        }
      })().catch(reject);
      (async () => {
        while (performance.now() < clock.end) {
          if (sent - received + size > window) {
            await new Promise<void>((resolve) => wake = resolve);
            wake = undefined;
            continue;
          }
          await writeAll(conn, message);
          sent += size;
        }
        writing = false;
        settleIfDone();
      })().catch(reject);
    });
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
      window: { type: "string" },
      duration: { type: "string", default: "5" },
      warmup: { type: "string", default: "1" },
      tls: { type: "boolean", default: false },
      ca: { type: "string" },
      "server-name": { type: "string", default: "localhost" },
      "server-pid": { type: "string" },
      "clock-ticks": { type: "string", default: "100" },
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
  if (values.window !== undefined) {
    if (values.pipeline !== "1") {
      throw new TypeError(
        "Cannot run load: --window and --pipeline exclude each other",
      );
    }
    options.window = integerIn("window", values.window, options.size);
  }
  if (values.tls) {
    options.tls = {
      caCerts: [Deno.readTextFileSync(values.ca ?? TEST_CA)],
      serverName: values["server-name"],
    };
  }
  const server = serverProcess(values["server-pid"], values["clock-ticks"]);
  if (server !== undefined) options.server = server;
  return { options, json: values.json };
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
  const how = result.window === null
    ? `pipeline ${result.pipeline}`
    : `${result.window} B in flight, ${
      Math.round(result.bytesPerRead ?? 0)
    } B per read`;
  return `${options.hostname}:${options.port}${result.tls ? " (TLS)" : ""}, ` +
    `${result.connections} connections × ${result.size} B, ${how}: ` +
    `${rate} round trips/s, ${result.mibPerSecond.toFixed(1)} MiB/s over ` +
    `${result.duration} s (${describeCpu(result, result.duration)})${failed}`;
}

if (import.meta.main) {
  const { options, json } = parseLoadArgs(Deno.args);
  const result = await runLoad(options);
  console.log(json ? JSON.stringify(result) : describe(options, result));
  const lost = result.failedConnections + result.stalledConnections;
  if (lost === result.connections) Deno.exit(1);
}
