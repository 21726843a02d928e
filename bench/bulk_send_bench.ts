/**
 * One-way bulk send of 256 MiB in 64 KiB writes.
 *
 * @module
 */

import { benchWorkload } from "./_echo.ts";
import { BULK_SEND } from "./_workloads.ts";

await benchWorkload(BULK_SEND);
