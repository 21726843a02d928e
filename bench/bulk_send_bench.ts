/**
 * One-way bulk send: the client writes 256 MiB in 64 KiB writes, and the
 * server acks with one byte once all of it has arrived.
 *
 * @module
 */

import { benchWorkload, KiB, MiB, pattern } from "./_echo.ts";

const CHUNK = pattern(64 * KiB);
const TOTAL = 256 * MiB;

await benchWorkload({
  group: "bulk send 256 MiB in 64 KiB writes",
  kind: { ackEvery: TOTAL },
  chunk: CHUNK,
  count: TOTAL / CHUNK.byteLength,
  expect: 1,
  n: 3,
  warmup: 1,
});
