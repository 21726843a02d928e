/**
 * Latency: one round trip of a 64-byte message through an echo server.
 *
 * @module
 */

import { benchWorkload, pattern } from "./_echo.ts";

const MESSAGE = pattern(64);

await benchWorkload({
  group: "ping-pong 64 B round trip",
  kind: "echo",
  chunk: MESSAGE,
  count: 1,
  expect: MESSAGE.byteLength,
  n: 10_000,
  warmup: 1_000,
});
