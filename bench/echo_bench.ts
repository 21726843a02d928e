/**
 * Echo throughput: the client writes 8 MiB in 64 KiB writes to an echo
 * server and waits until all of it has come back.
 *
 * @module
 */

import { benchWorkload, KiB, MiB, pattern } from "./_echo.ts";

const CHUNK = pattern(64 * KiB);
const TOTAL = 8 * MiB;

await benchWorkload({
  group: "echo 8 MiB in 64 KiB writes",
  kind: "echo",
  chunk: CHUNK,
  count: TOTAL / CHUNK.byteLength,
  expect: TOTAL,
  n: 100,
  warmup: 10,
});
