/**
 * The workloads every bench runs, shared by the `deno bench` files and by
 * `bench/ratios.ts`.
 *
 * @module
 */

import { KiB, MiB, pattern, type Workload } from "./_echo.ts";

const ECHO_CHUNK = pattern(64 * KiB);
const ECHO_TOTAL = 8 * MiB;
const MESSAGE = pattern(64);
const SMALL_CHUNK = pattern(100);
const SMALL_COUNT = 1_000;
const BULK_TOTAL = 256 * MiB;

/** Echo throughput: 8 MiB in 64 KiB writes, all of it echoed back. */
export const ECHO: Workload = {
  group: "echo 8 MiB in 64 KiB writes",
  kind: "echo",
  chunk: ECHO_CHUNK,
  count: ECHO_TOTAL / ECHO_CHUNK.byteLength,
  expect: ECHO_TOTAL,
  n: 100,
  warmup: 10,
};

/** Latency: one round trip of a 64-byte message through an echo server. */
export const PING_PONG: Workload = {
  group: "ping-pong 64 B round trip",
  kind: "echo",
  chunk: MESSAGE,
  count: 1,
  expect: MESSAGE.byteLength,
  n: 10_000,
  warmup: 1_000,
};

/**
 * Many small writes: 1,000 writes of 100 bytes, acked with one byte once
 * all 100,000 have arrived. The raw loops await each `conn.write`;
 * `StreamTransport` coalesces queued writes into few `conn.write` calls;
 * `node:net` buffers writes while one is pending.
 */
export const SMALL_WRITES: Workload = {
  group: "1,000 writes of 100 B",
  kind: { ackEvery: SMALL_COUNT * SMALL_CHUNK.byteLength },
  chunk: SMALL_CHUNK,
  count: SMALL_COUNT,
  expect: 1,
  n: 200,
  warmup: 20,
};

/** One-way bulk send: 256 MiB in 64 KiB writes, acked with one byte. */
export const BULK_SEND: Workload = {
  group: "bulk send 256 MiB in 64 KiB writes",
  kind: { ackEvery: BULK_TOTAL },
  chunk: ECHO_CHUNK,
  count: BULK_TOTAL / ECHO_CHUNK.byteLength,
  expect: 1,
  n: 3,
  warmup: 1,
};
