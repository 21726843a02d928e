/**
 * Many small writes: 1,000 writes of 100 bytes, coalesced by the write
 * pump; the raw loops await each `conn.write`.
 *
 * @module
 */

import { benchWorkload } from "./_echo.ts";
import { SMALL_WRITES } from "./_workloads.ts";

await benchWorkload(SMALL_WRITES);
