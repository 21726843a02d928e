/**
 * Echo throughput: the client writes 8 MiB in 64 KiB writes to an echo
 * server and waits until all of it has come back.
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
const TOTAL = 8 * MiB;
const GROUP = "echo 8 MiB in 64 KiB writes";

for (const variant of VARIANTS) {
  const client = await connectPair(variant, "echo");
  Deno.bench({
    group: GROUP,
    name: VARIANT_NAMES[variant],
    baseline: variant === "raw",
    n: 100,
    warmup: 10,
    async fn() {
      await client.send(CHUNK, TOTAL / CHUNK.byteLength, TOTAL);
    },
  });
}
