/**
 * Many small writes: the client makes 1,000 writes of 100 bytes, and the
 * server acks with one byte once all 100,000 have arrived. The raw loops
 * await each `conn.write`; `StreamTransport` coalesces queued writes into
 * few `conn.write` calls; `node:net` buffers writes while one is pending.
 *
 * @module
 */

import { benchWorkload, pattern } from "./_echo.ts";

const CHUNK = pattern(100);
const COUNT = 1_000;

await benchWorkload({
  group: "1,000 writes of 100 B",
  kind: { ackEvery: COUNT * CHUNK.byteLength },
  chunk: CHUNK,
  count: COUNT,
  expect: 1,
  n: 200,
  warmup: 20,
});
