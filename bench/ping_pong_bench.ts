/**
 * Latency: one round trip of a 64-byte message through an echo server.
 *
 * @module
 */

import { benchWorkload } from "./_echo.ts";
import { PING_PONG } from "./_workloads.ts";

await benchWorkload(PING_PONG);
