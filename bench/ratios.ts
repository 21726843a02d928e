/**
 * Every speed target as ratios against baselines measured in the same run,
 * in interleaved rounds.
 *
 * A noisy neighbour that slows the machine for a second lands on whatever
 * runs in that second. So every variant of a workload runs once per round,
 * in a shuffled order, for several rounds, and each variant is reported
 * against its row's baseline as the median of the per-round ratios, with
 * their range (min–max).
 *
 * ```sh
 * deno task bench:ratios                      # every workload, 7 rounds
 * deno task bench:ratios --rounds 15 --workloads echo,ping-pong
 * deno task bench:ratios --duration 2 --warmup 1
 * ```
 *
 * `--workloads` picks some of these rows (comma-separated, default all):
 *
 * - `echo`: TCP echo, 8 connections writing 64 KiB messages with 256 KiB in
 *   flight on each, in MiB/s. The raw `Deno.Conn` loop with 256 KiB reads
 *   is the baseline of `Protocol` (target ≥ 0.9x), `Protocol` with
 *   `transientData`, `BufferedProtocol`, `node:net`, and the same raw loop
 *   reading into a fresh buffer each time (what fresh memory costs, which a
 *   `Protocol` that owns its chunks pays); streams
 *   (`startServer`: `read(65536)`, `write`, `drain`) are measured against
 *   `Protocol` with `transientData` (target ≥ 0.9x).
 * - `ping-pong`: 32 connections, each sending 64 B and waiting for the
 *   echo, in round trips/s. The raw loop with 64 KiB reads is the baseline;
 *   each protocol kind has the target ≥ 1.0x.
 * - `udp`: 32 clients keeping 2 datagrams of 64 B in flight each, over 4
 *   sockets, in datagrams/s. A raw `Deno.DatagramConn` loop is the
 *   baseline of a `DatagramProtocol` endpoint (target ≥ 1.0x).
 * - `tls`: `echo` over TLS (the test certificate). A raw `Deno.listenTls`
 *   loop with 64 KiB reads is the baseline; each protocol kind has the
 *   target ≥ 0.9x.
 * - `bulk` (256 MiB one way in 64 KiB writes) and `small-writes` (1,000
 *   writes of 100 B): in this process, client and server alike, as
 *   `deno task bench` runs them, for every `bench/_echo.ts` variant.
 *
 * All but the in-process rows run as users run servers: each server alone
 * in a process of its own (`bench/echo_server.ts`,
 * `bench/udp_echo_server.ts`), driven by a Deno load generator in another
 * process (`bench/load.ts`, `bench/udp_load.ts`). Where `taskset` can, the
 * servers run on CPU 0 and the load generators on CPU 1. The servers stay
 * up for every round of their workload. A fresh server can take seconds
 * of load to reach its speed (a streams echo server about 5 s), so each
 * is loaded first, uncounted: 5 s for `echo`, 2 s for `tls`, 1 s for the
 * others, or `--server-warmup` seconds for all. Then each measurement
 * starts a load generator, which runs `--warmup` seconds (default 0.3),
 * counts `--duration` seconds (default 1), and reads the server's CPU time
 * from `/proc/<pid>/stat` as it starts and stops counting (so it runs with
 * `--allow-all`: Deno reads `/proc/<pid>/` with nothing less). These rows
 * have two ratios: of throughput, and of throughput per server CPU-second.
 * On a shared machine the second is usually the steadier: a neighbour
 * takes time from the server, but less so the CPU time one round trip
 * costs it. The in-process rows have the throughput ratio only.
 *
 * Prints the command line with every setting, the date, and one Markdown
 * table with a row per variant per workload; progress goes to stderr.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  type BenchClient,
  type BenchServer,
  connect,
  serve,
  type Variant,
  type Workload,
} from "./_echo.ts";
import {
  canPin,
  killChildren,
  parseLoadOutput,
  readPort,
  spawnDeno,
  stopChild,
  waitUntilAccepting,
  withTimeout,
} from "./_children.ts";
import { printTable } from "./_text.ts";
import { BULK_SEND, SMALL_WRITES } from "./_workloads.ts";
import type { LoadResult } from "./load.ts";
import type { UdpLoadResult } from "./udp_load.ts";

/** A row of the table: one variant, and what it is measured against. */
interface Row {
  /** The variant's key, unique in its workload. */
  key: string;
  /** What the table calls it. */
  name: string;
  /** The key of the variant it is measured against; none for a baseline. */
  baseline?: string;
  /** The ratio to the baseline it should reach. */
  target?: number;
}

/** A server variant in a process of its own. */
interface ServerRow extends Row {
  /** The server script, relative to the project root. */
  script: string;
  /** Its flags, after `--hostname` and `--port`. */
  args: string[];
}

/** A workload whose servers and load generator run in child processes. */
interface ProcessWorkload {
  kind: "process";
  /** Over TLS and UDP, no plain TCP connection shows that a server is up. */
  transport: "tcp" | "tls" | "udp";
  /**
   * Seconds of load each server gets, uncounted, before the first round:
   * a fresh server can take seconds of load to reach its speed.
   */
  serverWarmup: number;
  /** What the table calls it, with its unit. */
  title: string;
  /** The load generator, relative to the project root. */
  loader: string;
  /** Its flags, other than the port, the timing and the server's pid. */
  loaderArgs: string[];
  /** The throughput a load generator's result stands for. */
  rate(result: LoadResult | UdpLoadResult): number;
  rows: ServerRow[];
}

/** A workload whose servers and clients run in this process. */
interface InProcessWorkload {
  kind: "in-process";
  title: string;
  workload: Workload;
  /** Iterations per round. */
  repeat: number;
  /** How much throughput one iteration stands for, in the title's unit. */
  perIteration: number;
  rows: (Row & { key: Variant })[];
}

/** One measurement of one variant: throughput and CPU time, per second. */
interface Sample {
  rate: number;
  /** Cores the server used, or `NaN` when not known. */
  serverCores: number;
  /** Cores the load generator used, or `NaN` when not known. */
  loadCores: number;
}

/** Each row's samples, one per round; `undefined` where it failed. */
type Samples = Map<string, (Sample | undefined)[]>;

const HOSTNAME = "127.0.0.1";
const MiB = 1024 * 1024;
/** The CPUs of the servers and of the load generators, when pinning. */
const SERVER_CPU = 0;
const LOAD_CPU = 1;
/** How long a load generator may overrun its warm-up and duration. */
const LOAD_SLACK_MS = 30_000;

/** The echo servers, by their `--protocol`. */
function echoRow(
  key: string,
  name: string,
  options: { baseline?: string; target?: number; tls?: boolean } = {},
): ServerRow {
  const { tls, ...rest } = options;
  return {
    key,
    name,
    script: "bench/echo_server.ts",
    args: ["--protocol", key, ...tls ? ["--tls"] : []],
    ...rest,
  };
}

/** 8 connections × 64 KiB writes, 256 KiB in flight on each. */
const STREAM_LOAD = [
  ...["--connections", "8", "--size", `${64 * 1024}`],
  ...["--window", `${256 * 1024}`],
];

const WORKLOADS: Record<string, ProcessWorkload | InProcessWorkload> = {
  echo: {
    kind: "process",
    transport: "tcp",
    serverWarmup: 5,
    title: "TCP echo, 8 conns × 64 KiB writes, 256 KiB in flight (MiB/s)",
    loader: "bench/load.ts",
    loaderArgs: STREAM_LOAD,
    rate: (result) => (result as LoadResult).mibPerSecond,
    rows: [
      echoRow("raw256", "raw Deno.Conn, 256 KiB reads"),
      echoRow("rawfresh", "raw loop, a fresh buffer per read", {
        baseline: "raw256",
      }),
      echoRow("plain", "Protocol", { baseline: "raw256", target: 0.9 }),
      echoRow("transient", "Protocol + transientData", { baseline: "raw256" }),
      echoRow("buffered", "BufferedProtocol", { baseline: "raw256" }),
      echoRow("node", "node:net", { baseline: "raw256" }),
      echoRow("streams", "streams: read, write, drain", {
        baseline: "transient",
        target: 0.9,
      }),
    ],
  },
  "ping-pong": {
    kind: "process",
    transport: "tcp",
    serverWarmup: 1,
    title: "ping-pong, 32 conns × 64 B (round trips/s)",
    loader: "bench/load.ts",
    loaderArgs: ["--connections", "32", "--size", "64"],
    rate: (result) => (result as LoadResult).roundTripsPerSecond,
    rows: [
      echoRow("raw", "raw Deno.Conn, 64 KiB reads"),
      echoRow("plain", "Protocol", { baseline: "raw", target: 1 }),
      echoRow("transient", "Protocol + transientData", {
        baseline: "raw",
        target: 1,
      }),
      echoRow("buffered", "BufferedProtocol", { baseline: "raw", target: 1 }),
      echoRow("node", "node:net", { baseline: "raw" }),
    ],
  },
  udp: {
    kind: "process",
    transport: "udp",
    serverWarmup: 1,
    title: "UDP echo, 32 clients × 64 B, window 2 (datagrams/s)",
    loader: "bench/udp_load.ts",
    loaderArgs: ["--clients", "32", "--size", "64", "--window", "2"],
    rate: (result) => (result as UdpLoadResult).datagramsPerSecond,
    rows: [
      {
        key: "raw",
        name: "raw Deno.DatagramConn",
        script: "bench/udp_echo_server.ts",
        args: ["--variant", "raw"],
      },
      {
        key: "endpoint",
        name: "DatagramProtocol endpoint",
        script: "bench/udp_echo_server.ts",
        args: ["--variant", "endpoint"],
        baseline: "raw",
        target: 1,
      },
    ],
  },
  tls: {
    kind: "process",
    transport: "tls",
    serverWarmup: 2,
    title: "TLS echo, 8 conns × 64 KiB writes, 256 KiB in flight (MiB/s)",
    loader: "bench/load.ts",
    loaderArgs: ["--tls", ...STREAM_LOAD],
    rate: (result) => (result as LoadResult).mibPerSecond,
    rows: [
      echoRow("raw", "raw Deno.listenTls, 64 KiB reads", { tls: true }),
      echoRow("plain", "Protocol", { baseline: "raw", target: 0.9, tls: true }),
      echoRow("transient", "Protocol + transientData", {
        baseline: "raw",
        target: 0.9,
        tls: true,
      }),
      echoRow("buffered", "BufferedProtocol", {
        baseline: "raw",
        target: 0.9,
        tls: true,
      }),
    ],
  },
  bulk: {
    kind: "in-process",
    title: "bulk send 256 MiB in 64 KiB writes, in-process (MiB/s)",
    workload: BULK_SEND,
    repeat: 1,
    perIteration: BULK_SEND.count * BULK_SEND.chunk.byteLength / MiB,
    rows: inProcessRows("raw256"),
  },
  "small-writes": {
    kind: "in-process",
    title: "1,000 writes of 100 B, in-process (writes/s)",
    workload: SMALL_WRITES,
    repeat: 10,
    perIteration: SMALL_WRITES.count,
    rows: inProcessRows("raw"),
  },
};

/** Every `_echo.ts` variant, against `baseline`. */
function inProcessRows(baseline: Variant): (Row & { key: Variant })[] {
  const names: Record<Variant, string> = {
    raw: "raw Deno.Conn, 64 KiB reads",
    raw256: "raw Deno.Conn, 256 KiB reads",
    protocol: "Protocol",
    transient: "Protocol + transientData",
    buffered: "BufferedProtocol",
    node: "node:net",
  };
  const others = (Object.keys(names) as Variant[])
    .filter((key) => key !== baseline)
    .map((key) => ({ key, name: names[key], baseline }));
  return [{ key: baseline, name: names[baseline] }, ...others];
}

/** The settings of one run. */
interface Settings {
  rounds: number;
  duration: number;
  warmup: number;
  /** Overrides every workload's `serverWarmup`. */
  serverWarmup?: number;
  workloads: string[];
  /** Whether servers and load generators are pinned with `taskset`. */
  pinned: boolean;
  /** Clock ticks per second, for `/proc/<pid>/stat`. */
  clockTicks: number;
}

/**
 * Parses the command line.
 *
 * @param args The arguments, as in `Deno.args`.
 * @returns The settings, but for pinning and clock ticks.
 */
function parseRatioArgs(
  args: string[],
): Omit<Settings, "pinned" | "clockTicks"> {
  const { values } = parseArgs({
    args,
    options: {
      rounds: { type: "string", default: "7" },
      duration: { type: "string", default: "1" },
      warmup: { type: "string", default: "0.3" },
      "server-warmup": { type: "string" },
      workloads: { type: "string", default: Object.keys(WORKLOADS).join() },
    },
  });
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1) {
    throw new RangeError(
      `Cannot run: --rounds (${values.rounds}) must be a positive integer`,
    );
  }
  const duration = Number(values.duration);
  const warmup = Number(values.warmup);
  if (!(duration > 0) || !(warmup >= 0)) {
    throw new RangeError(
      "Cannot run: --duration must be > 0 and --warmup >= 0 seconds",
    );
  }
  const workloads = values.workloads.split(",");
  for (const key of workloads) {
    if (!(key in WORKLOADS)) {
      throw new TypeError(
        `Cannot run: unknown workload "${key}"; pick from ${
          Object.keys(WORKLOADS).join(",")
        }`,
      );
    }
  }
  const serverWarmup = values["server-warmup"] === undefined
    ? undefined
    : Number(values["server-warmup"]);
  if (serverWarmup !== undefined && !(serverWarmup >= 0)) {
    throw new RangeError("Cannot run: --server-warmup must be >= 0 seconds");
  }
  return {
    rounds,
    duration,
    warmup,
    workloads,
    ...serverWarmup === undefined ? {} : { serverWarmup },
  };
}

/** Returns `getconf CLK_TCK`, or 100 (Linux's) if that fails. */
async function clockTicks(): Promise<number> {
  try {
    const { success, stdout } = await new Deno.Command("getconf", {
      args: ["CLK_TCK"],
      stderr: "null",
    }).output();
    const ticks = Number(new TextDecoder().decode(stdout).trim());
    if (success && Number.isInteger(ticks) && ticks > 0) return ticks;
  } catch {
    // No getconf.
  }
  return 100;
}

/** Shuffles `items` in place (Fisher–Yates) and returns them. */
function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

/** A server child, once it listens. */
interface RunningServer {
  child: Deno.ChildProcess;
  port: number;
}

/**
 * Starts one server of a process workload and waits until it listens;
 * with `probe`, until it accepts a TCP connection too.
 */
async function startServer(
  row: ServerRow,
  probe: boolean,
  settings: Settings,
): Promise<RunningServer> {
  const child = spawnDeno(
    row.script,
    ["--hostname", HOSTNAME, "--port", "0", ...row.args],
    {
      flags: ["--unstable-net"],
      ...settings.pinned ? { cpu: SERVER_CPU } : {},
    },
  );
  try {
    const port = await readPort(child, HOSTNAME);
    if (probe) await waitUntilAccepting(HOSTNAME, port, child.status);
    return { child, port };
  } catch (error) {
    await stopChild(child);
    throw error;
  }
}

/**
 * Runs the load generator once against `server`.
 *
 * @param workload What the load generator does.
 * @param server The server to load.
 * @param settings Timing and pinning.
 * @param timing How long to warm up and count (default: from `settings`).
 * @returns What it measured, or `undefined` if it failed.
 */
async function load(
  workload: ProcessWorkload,
  server: RunningServer,
  settings: Settings,
  timing: { duration: number; warmup: number } = settings,
): Promise<Sample | undefined> {
  const { duration, warmup } = timing;
  const child = spawnDeno(workload.loader, [
    ...["--hostname", HOSTNAME, "--port", `${server.port}`],
    ...workload.loaderArgs,
    ...["--duration", `${duration}`, "--warmup", `${warmup}`],
    ...["--server-pid", `${server.child.pid}`],
    ...["--clock-ticks", `${settings.clockTicks}`, "--json"],
  ], { allowAll: true, ...settings.pinned ? { cpu: LOAD_CPU } : {} });
  const limit = (warmup + duration) * 1000 + LOAD_SLACK_MS;
  try {
    const output = await withTimeout(child.output(), limit);
    if (output === undefined) {
      console.error("A load generator did not finish in time");
      return undefined;
    }
    const result = parseLoadOutput<LoadResult | UdpLoadResult>(output);
    if ("failedConnections" in result) {
      const lost = result.failedConnections + result.stalledConnections;
      if (lost > 0) {
        console.error(`${lost} connections failed or stalled`);
        return undefined;
      }
    } else if (result.lost > 0) {
      console.error(`${result.lost} of ${result.sent} datagrams lost`);
    }
    return {
      rate: workload.rate(result),
      serverCores: (result.serverCpuSeconds ?? NaN) / result.duration,
      loadCores: result.cpuSeconds / result.duration,
    };
  } catch (error) {
    console.error(`${error}`);
    return undefined;
  } finally {
    await stopChild(child);
  }
}

/** Measures a process workload: its servers stay up for every round. */
async function measureProcesses(
  key: string,
  workload: ProcessWorkload,
  settings: Settings,
): Promise<Samples> {
  const servers = new Map<string, RunningServer>();
  try {
    for (const row of workload.rows) {
      servers.set(
        row.key,
        await startServer(row, workload.transport === "tcp", settings),
      );
    }
    const serverWarmup = settings.serverWarmup ?? workload.serverWarmup;
    if (serverWarmup > 0) {
      for (const row of workload.rows) {
        const server = servers.get(row.key)!;
        await load(workload, server, settings, {
          duration: serverWarmup,
          warmup: 0,
        });
      }
      console.error(`${key}: servers warmed up for ${serverWarmup} s each`);
    }
    const samples: Samples = new Map(workload.rows.map((row) => [row.key, []]));
    for (let round = 1; round <= settings.rounds; round++) {
      const progress: string[] = [];
      for (const row of shuffle([...workload.rows])) {
        const sample = await load(workload, servers.get(row.key)!, settings);
        samples.get(row.key)!.push(sample);
        progress.push(
          sample === undefined
            ? `${row.key} failed`
            : `${row.key} ${formatRate(sample.rate)} (server ${
              sample.serverCores.toFixed(2)
            } cores)`,
        );
      }
      console.error(`${key} round ${round}: ${progress.join(", ")}`);
    }
    return samples;
  } finally {
    await Promise.all(
      [...servers.values()].map(({ child }) => stopChild(child)),
    );
  }
}

/** Measures an in-process workload: every client and server here. */
async function measureInProcess(
  key: string,
  entry: InProcessWorkload,
  settings: Settings,
): Promise<Samples> {
  const { workload, repeat } = entry;
  const pairs: { key: Variant; server: BenchServer; client: BenchClient }[] =
    [];
  try {
    for (const { key } of entry.rows) {
      const server = await serve(key, workload.kind);
      pairs.push({ key, server, client: await connect(key, server.port) });
    }
    for (const { client } of pairs) await iterate(client, workload, repeat);
    const samples: Samples = new Map(entry.rows.map((row) => [row.key, []]));
    for (let round = 1; round <= settings.rounds; round++) {
      for (const { key, client } of shuffle([...pairs])) {
        const start = performance.now();
        await iterate(client, workload, repeat);
        const seconds = (performance.now() - start) / 1000;
        samples.get(key)!.push({
          rate: entry.perIteration * repeat / seconds,
          serverCores: NaN,
          loadCores: NaN,
        });
      }
      console.error(`${key} round ${round} done`);
    }
    return samples;
  } finally {
    for (const { server, client } of pairs) {
      client.close();
      server.close();
    }
  }
}

async function iterate(
  client: BenchClient,
  workload: Workload,
  repeat: number,
): Promise<void> {
  for (let i = 0; i < repeat; i++) {
    await client.send(workload.chunk, workload.count, workload.expect);
  }
}

/** The median, min and max of `values`; `NaN`s if there are none. */
function summary(
  values: number[],
): { median: number; min: number; max: number } {
  const sorted = values.filter((value) => !Number.isNaN(value))
    .sort((a, b) => a - b);
  if (sorted.length === 0) return { median: NaN, min: NaN, max: NaN };
  const middle = sorted.length >> 1;
  return {
    median: sorted.length % 2 === 1
      ? sorted[middle]!
      : (sorted[middle - 1]! + sorted[middle]!) / 2,
    min: sorted[0]!,
    max: sorted.at(-1)!,
  };
}

/** Each round's ratio of `row` to its baseline, by `measure`. */
function ratios(
  samples: Samples,
  row: Row,
  measure: (sample: Sample) => number,
): number[] {
  const own = samples.get(row.key)!;
  const base = samples.get(row.baseline!)!;
  return own.flatMap((sample, round) => {
    const reference = base[round];
    return sample === undefined || reference === undefined
      ? []
      : [measure(sample) / measure(reference)];
  });
}

function formatRate(value: number): string {
  if (Number.isNaN(value)) return "–";
  return value >= 100
    ? Math.round(value).toLocaleString("en-US")
    : value.toFixed(1);
}

function formatRatio(value: number): string {
  return Number.isNaN(value) ? "–" : `${value.toFixed(2)}x`;
}

function formatRange({ min, max }: { min: number; max: number }): string {
  return Number.isNaN(min) ? "–" : `${min.toFixed(2)}–${max.toFixed(2)}x`;
}

/** The target column: the target, and whether the medians meet it. */
function verdict(
  row: Row,
  throughput: number,
  perCpu: number,
): string {
  if (row.baseline === undefined) return "baseline";
  if (row.target === undefined) return "–";
  const meets = (ratio: number) => ratio >= row.target! ? "met" : "missed";
  const target = `≥ ${row.target.toFixed(1)}x`;
  if (Number.isNaN(throughput)) return `${target}: not measured`;
  return Number.isNaN(perCpu)
    ? `${target}: ${meets(throughput)}`
    : `${target}: ${meets(throughput)}; per CPU ${meets(perCpu)}`;
}

/** The table rows of one workload; its title in the first one only. */
function tableRows(
  entry: ProcessWorkload | InProcessWorkload,
  samples: Samples,
): string[][] {
  const nameOf = (key: string) =>
    entry.rows.find((row) => row.key === key)!.name;
  return entry.rows.map((row, index) => {
    const title = index === 0 ? entry.title : "";
    const measured = samples.get(row.key)!.filter((sample) =>
      sample !== undefined
    );
    const rate = summary(measured.map((sample) => sample.rate)).median;
    const cores = (field: "serverCores" | "loadCores") =>
      summary(measured.map((sample) => sample[field])).median;
    const cpu = Number.isNaN(cores("serverCores"))
      ? "–"
      : `${cores("serverCores").toFixed(2)} / ${cores("loadCores").toFixed(2)}`;
    if (row.baseline === undefined) {
      const perCpu = entry.kind === "process" ? "1" : "–";
      return [
        title,
        row.name,
        "–",
        formatRate(rate),
        cpu,
        "1",
        "",
        perCpu,
        "",
        "baseline",
      ];
    }
    const byRate = summary(ratios(samples, row, (sample) => sample.rate));
    const byCpu = summary(
      ratios(samples, row, (sample) => sample.rate / sample.serverCores),
    );
    return [
      title,
      row.name,
      nameOf(row.baseline),
      formatRate(rate),
      cpu,
      formatRatio(byRate.median),
      formatRange(byRate),
      formatRatio(byCpu.median),
      formatRange(byCpu),
      verdict(row, byRate.median, byCpu.median),
    ];
  });
}

/** Prints the command line, the date and the machine. */
function printHeader(settings: Settings): void {
  const command = [
    "bench/ratios.ts",
    ...["--rounds", `${settings.rounds}`],
    ...["--duration", `${settings.duration}`, "--warmup", `${settings.warmup}`],
    ...settings.serverWarmup === undefined
      ? []
      : ["--server-warmup", `${settings.serverWarmup}`],
    ...["--workloads", settings.workloads.join(",")],
  ].join(" ");
  console.log(`Command: \`${command}\` (every setting, defaults included)`);
  const serverWarmups = settings.serverWarmup === undefined
    ? settings.workloads.flatMap((key) => {
      const entry = WORKLOADS[key]!;
      return entry.kind === "process" ? [`${key} ${entry.serverWarmup} s`] : [];
    }).join(", ")
    : `${settings.serverWarmup} s`;
  console.log(
    `Date: ${new Date().toISOString()}; Deno ${Deno.version.deno}, ` +
      `${Deno.build.os} ${Deno.build.arch}, ` +
      `${navigator.hardwareConcurrency} CPUs; ` +
      (settings.pinned
        ? `servers pinned to CPU ${SERVER_CPU} and load generators to CPU ${LOAD_CPU} (taskset)`
        : "not pinned (no taskset)") +
      `; ${settings.clockTicks} clock ticks/s\n`,
  );
  console.log(
    `${settings.rounds} round(s); in each, every variant of a workload ` +
      "once, in a shuffled order. Rows not marked in-process: each server " +
      "alone in its own process (bench/echo_server.ts, " +
      "bench/udp_echo_server.ts), driven by a Deno load generator in " +
      "another (bench/load.ts, bench/udp_load.ts). Before the first " +
      `round each server is loaded, uncounted (${serverWarmups}); then ` +
      `each measurement has ${settings.warmup} s of warm-up and ` +
      `${settings.duration} s counted. ` +
      '"throughput" and "server / load CPU" (the cores each used while ' +
      "counting, from /proc/<pid>/stat) are medians over the rounds. " +
      '"ratio" is the throughput over the baseline\'s in the same round, ' +
      'and "per server CPU" the same for throughput per server CPU-second: ' +
      "medians of the per-round ratios, and their range. In-process rows " +
      "(client and server in this process, as `deno task bench`) have the " +
      "throughput ratio only. Above 1 is faster.\n",
  );
}

/** Measures every workload asked for and prints the table. */
async function main(): Promise<void> {
  const settings: Settings = {
    ...parseRatioArgs(Deno.args),
    pinned: await canPin(SERVER_CPU) && await canPin(LOAD_CPU),
    clockTicks: await clockTicks(),
  };
  printHeader(settings);
  const rows: string[][] = [[
    "workload",
    "variant",
    "baseline",
    "throughput",
    "server / load CPU",
    "ratio",
    "range",
    "per server CPU",
    "range",
    "target",
  ]];
  let failed = 0;
  for (const key of settings.workloads) {
    const entry = WORKLOADS[key]!;
    const samples = entry.kind === "process"
      ? await measureProcesses(key, entry, settings)
      : await measureInProcess(key, entry, settings);
    rows.push(...tableRows(entry, samples));
    for (const measured of samples.values()) {
      failed += measured.filter((sample) => sample === undefined).length;
    }
  }
  printTable(rows);
  if (failed > 0) {
    console.log(
      `\n${failed} measurement(s) failed (see stderr); their rounds are left out.`,
    );
    Deno.exitCode = 1;
  }
}

if (import.meta.main) {
  const onSignal = () => {
    killChildren();
    Deno.exit(130);
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, onSignal);
  }
  try {
    await main();
  } finally {
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      Deno.removeSignalListener(signal, onSignal);
    }
  }
}
