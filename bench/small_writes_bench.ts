/**
 * Many small writes: the client makes 1,000 writes of 100 bytes, and the
 * server acks with one byte once all 100,000 have arrived. The raw loops
 * await each `conn.write`; `StreamTransport` coalesces queued writes into
 * few `conn.write` calls; `node:net` buffers writes while one is pending.
 *
 * @module
 */

import { connectPair, pattern, VARIANT_NAMES, VARIANTS } from "./_echo.ts";

const CHUNK = pattern(100);
const COUNT = 1_000;
const GROUP = "1,000 writes of 100 B";

for (const variant of VARIANTS) {
  const client = await connectPair(variant, {
    ackEvery: COUNT * CHUNK.byteLength,
  });
  Deno.bench({
    group: GROUP,
    name: VARIANT_NAMES[variant],
    baseline: variant === "raw",
    n: 200,
    warmup: 20,
    async fn() {
      await client.send(CHUNK, COUNT, 1);
    },
  });
}
