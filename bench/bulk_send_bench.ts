/**
 * One-way bulk send: the client writes 256 MiB in 64 KiB writes, and the
 * server acks with one byte once all of it has arrived.
 *
 * @module
 */

import {
  connectPair,
  KiB,
  MiB,
  pattern,
  VARIANT_NAMES,
  VARIANTS,
} from "./_echo.ts";

const CHUNK = pattern(64 * KiB);
const TOTAL = 256 * MiB;
const GROUP = "bulk send 256 MiB in 64 KiB writes";

for (const variant of VARIANTS) {
  const client = await connectPair(variant, { ackEvery: TOTAL });
  Deno.bench({
    group: GROUP,
    name: VARIANT_NAMES[variant],
    baseline: variant === "raw",
    n: 3,
    warmup: 1,
    async fn() {
      await client.send(CHUNK, TOTAL / CHUNK.byteLength, 1);
    },
  });
}
