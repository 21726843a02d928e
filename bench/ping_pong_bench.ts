/**
 * Latency: one round trip of a 64-byte message through an echo server.
 *
 * @module
 */

import { connectPair, pattern, VARIANT_NAMES, VARIANTS } from "./_echo.ts";

const MESSAGE = pattern(64);
const GROUP = "ping-pong 64 B round trip";

for (const variant of VARIANTS) {
  const client = await connectPair(variant, "echo");
  Deno.bench({
    group: GROUP,
    name: VARIANT_NAMES[variant],
    baseline: variant === "raw",
    n: 10_000,
    warmup: 1_000,
    async fn() {
      await client.send(MESSAGE, 1, MESSAGE.byteLength);
    },
  });
}
