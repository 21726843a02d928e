/**
 * The bench workloads as ratios, measured in interleaved rounds.
 *
 * `deno bench` runs each variant's iterations one after the other, so a
 * noisy neighbour that slows the machine for a second lands on one variant
 * only. This script runs every variant once per round, in turn, for many
 * rounds, and reports each variant's speed against the best raw
 * `Deno.Conn` loop and against `node:net` as the median of the per-round
 * ratios: whatever slows a round slows all of its variants alike.
 *
 * ```sh
 * deno task bench:ratios                      # every workload, 15 rounds
 * deno task bench:ratios --rounds 31 --workloads echo,ping-pong
 * ```
 *
 * Prints two Markdown tables: speed relative to the better raw loop (above
 * 1 is faster) and relative to `node:net`.
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
  VARIANT_NAMES,
  VARIANTS,
  type Workload,
} from "./_echo.ts";
import { printTable } from "./_text.ts";
import { BULK_SEND, ECHO, PING_PONG, SMALL_WRITES } from "./_workloads.ts";

/** A workload and how many of its iterations make one round. */
interface RoundWorkload {
  workload: Workload;
  repeat: number;
}

const WORKLOADS: Record<string, RoundWorkload> = {
  echo: { workload: ECHO, repeat: 4 },
  "ping-pong": { workload: PING_PONG, repeat: 1_000 },
  "small-writes": { workload: SMALL_WRITES, repeat: 10 },
  bulk: { workload: BULK_SEND, repeat: 1 },
};

/** One variant's connection pair and its time per round. */
interface Run {
  variant: Variant;
  server: BenchServer;
  client: BenchClient;
  times: number[];
}

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "15" },
    workloads: { type: "string", default: Object.keys(WORKLOADS).join() },
  },
});
const rounds = Number(values.rounds);
if (!Number.isInteger(rounds) || rounds < 1) {
  throw new RangeError(`--rounds must be a positive integer, not ${rounds}`);
}

const results: { group: string; runs: Run[] }[] = [];
for (const key of values.workloads.split(",")) {
  const entry = WORKLOADS[key];
  if (entry === undefined) {
    throw new TypeError(
      `Unknown workload "${key}"; pick from ${Object.keys(WORKLOADS).join()}`,
    );
  }
  results.push({
    group: entry.workload.group,
    runs: await measure(entry, rounds),
  });
  console.error(`measured ${entry.workload.group}`);
}

const bestRaw = (runs: Run[], round: number) =>
  Math.min(...runs.filter(isRaw).map((run) => run.times[round]!));
const node = (runs: Run[], round: number) =>
  runs.find((run) => run.variant === "node")!.times[round]!;
console.log(`Medians of per-round ratios over ${rounds} interleaved rounds.\n`);
printRatios("Speed relative to the better raw Deno.Conn loop", bestRaw);
console.log();
printRatios("Speed relative to node:net", node);

/** Runs `repeat` iterations of every variant per round, for `rounds` rounds. */
async function measure(
  { workload, repeat }: RoundWorkload,
  rounds: number,
): Promise<Run[]> {
  const runs: Run[] = [];
  for (const variant of VARIANTS) {
    const server = await serve(variant, workload.kind);
    const client = await connect(variant, server.port);
    runs.push({ variant, server, client, times: [] });
  }
  try {
    for (const run of runs) await iterate(run.client, workload, repeat);
    for (let round = 0; round < rounds; round++) {
      for (const run of runs) {
        const start = performance.now();
        await iterate(run.client, workload, repeat);
        run.times.push(performance.now() - start);
      }
    }
  } finally {
    for (const run of runs) {
      run.client.close();
      run.server.close();
    }
  }
  return runs;
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

function isRaw(run: Run): boolean {
  return run.variant === "raw" || run.variant === "raw256";
}

/** Prints each variant's median ratio of `reference` time to its own. */
function printRatios(
  title: string,
  reference: (runs: Run[], round: number) => number,
): void {
  console.log(`${title}:\n`);
  const rows = [["workload", ...VARIANTS.map((v) => VARIANT_NAMES[v])]];
  for (const { group, runs } of results) {
    rows.push([
      group,
      ...runs.map((run) => {
        const ratios = run.times.map((time, round) =>
          reference(runs, round) / time
        );
        return `${median(ratios).toFixed(2)}x`;
      }),
    ]);
  }
  printTable(rows);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? sorted[middle]!
    : (sorted[middle - 1]! + sorted[middle]!) / 2;
}
