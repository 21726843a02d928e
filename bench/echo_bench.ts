/**
 * Echo throughput: the client writes 8 MiB in 64 KiB writes to an echo
 * server and waits until all of it has come back.
 *
 * @module
 */

import { benchWorkload } from "./_echo.ts";
import { ECHO } from "./_workloads.ts";

await benchWorkload(ECHO);
