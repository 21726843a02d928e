/**
 * Sending a 64 MiB file through a TCP connection to a sink on loopback:
 * `sendfile()`, which reads 256 KiB at a time and waits while the write
 * buffer is over its high-water mark, against `Deno.readFile` of the whole
 * file and one `transport.write()` (the baseline). A second group sends a
 * 16 MiB range from the middle of the file: `sendfile({ offset, count })`
 * against a seek, one read of the range and one write.
 *
 * ```sh
 * deno task bench:sendfile
 * ```
 *
 * Deno reports the time of each; the peak memory of each is measured
 * before the benches run and shown in their names: the most that
 * `Deno.memoryUsage()` heap + external rose above where it was when the
 * send began (after a GC, with `--v8-flags=--expose-gc` as the task has),
 * sampled every millisecond and at each read of the sink: the median of
 * {@linkcode MEMORY_RUNS} sends, and its ratio to the baseline's. Garbage
 * not yet collected counts: it is memory the process holds.
 *
 * @module
 */

import { createConnection, ProtocolBase, sendfile } from "../mod.ts";
import { HOSTNAME, KiB, MiB, pattern } from "./_echo.ts";

/** The size of the file. */
const FILE_SIZE = 64 * MiB;
/** The range the second group sends. */
const RANGE = { offset: 24 * MiB, count: 16 * MiB } as const;
/** How many sends of each kind the peak memory is the median of. */
const MEMORY_RUNS = 5;

const path = await Deno.makeTempFile({ prefix: "sendfile_bench_" });
globalThis.addEventListener("unload", () => Deno.removeSync(path));
{
  using file = await Deno.open(path, { write: true });
  const chunk = pattern(MiB);
  for (let written = 0; written < FILE_SIZE; written += MiB) {
    await file.write(chunk);
  }
}

/** Memory in use as `Deno.memoryUsage()` counts it: heap + external. */
function used(): number {
  const { heapUsed, external } = Deno.memoryUsage();
  return heapUsed + external;
}

/** Records the peak of {@linkcode used} while a send runs, if one does. */
class PeakMemory {
  #start = 0;
  #peak = 0;
  #timer: ReturnType<typeof setInterval> | undefined;

  /**
   * Starts recording, after a GC when `--expose-gc` gave one. V8 frees the
   * memory of dead `ArrayBuffer`s on another thread, after the GC: the
   * start is read once that is done.
   */
  async start(): Promise<void> {
    const gc = (globalThis as { gc?: () => void }).gc;
    for (let round = 0; round < 2; round++) {
      gc?.();
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    this.#start = this.#peak = used();
    this.#timer = setInterval(() => this.sample(), 1);
  }

  /** Takes a sample, while recording. */
  sample(): void {
    if (this.#timer !== undefined) this.#peak = Math.max(this.#peak, used());
  }

  /** Stops recording; returns how far the peak rose over the start. */
  stop(): number {
    this.sample();
    clearInterval(this.#timer);
    this.#timer = undefined;
    return this.#peak - this.#start;
  }
}

const memory = new PeakMemory();

/** The sink: reads into one buffer, counts, and samples the memory. */
class Sink {
  received = 0;
  #want = Infinity;
  #reached: (() => void) | undefined;

  async serve(conn: Deno.Conn): Promise<void> {
    const buffer = new Uint8Array(256 * KiB);
    for (;;) {
      const nbytes = await conn.read(buffer);
      if (nbytes === null) return;
      this.received += nbytes;
      memory.sample();
      if (this.received >= this.#want) this.#reached?.();
    }
  }

  /** Resolves once `nbytes` more bytes have arrived. */
  next(nbytes: number): Promise<void> {
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#want = this.received + nbytes;
    this.#reached = resolve;
    return promise;
  }
}

const sink = new Sink();
const listener = Deno.listen({ hostname: HOSTNAME, port: 0 });
listener.accept().then((conn) => sink.serve(conn));
const [transport] = await createConnection(() => new ProtocolBase(), {
  hostname: HOSTNAME,
  port: listener.addr.port,
});

/** A way of sending the file, or a range of it, to the sink. */
type Send = () => Promise<void>;

const readWholeAndWrite: Send = async () => {
  const received = sink.next(FILE_SIZE);
  const data = await Deno.readFile(path);
  memory.sample();
  transport.write(data);
  await received;
};

const sendWholeFile: Send = async () => {
  const received = sink.next(FILE_SIZE);
  using file = await Deno.open(path);
  await sendfile(transport, file);
  await received;
};

const readRangeAndWrite: Send = async () => {
  const received = sink.next(RANGE.count);
  using file = await Deno.open(path);
  await file.seek(RANGE.offset, Deno.SeekMode.Start);
  const data = new Uint8Array(RANGE.count);
  let filled = 0;
  while (filled < data.byteLength) {
    const nbytes = await file.read(data.subarray(filled));
    if (nbytes === null) throw new Error("The file is shorter than expected");
    filled += nbytes;
  }
  memory.sample();
  transport.write(data);
  await received;
};

const sendRange: Send = async () => {
  const received = sink.next(RANGE.count);
  using file = await Deno.open(path);
  await sendfile(transport, file, RANGE);
  await received;
};

/** The peaks of {@linkcode MEMORY_RUNS} sends, sorted. */
async function peaksOf(send: Send): Promise<number[]> {
  const peaks = [];
  for (let run = 0; run < MEMORY_RUNS; run++) {
    await memory.start();
    await send();
    peaks.push(memory.stop());
  }
  return peaks.sort((a, b) => a - b);
}

function median(sorted: number[]): number {
  return sorted[sorted.length >> 1]!;
}

function mib(bytes: number): string {
  return `${(bytes / MiB).toFixed(1)} MiB`;
}

/**
 * Declares a group: the baseline and `sendfile()`, with their peak memory
 * in the names.
 */
async function group(
  name: string,
  baseline: { name: string; send: Send },
  contender: Send,
): Promise<void> {
  const basePeaks = await peaksOf(baseline.send);
  const peaks = await peaksOf(contender);
  const basePeak = median(basePeaks);
  const peak = median(peaks);
  const ratio = (peak / basePeak).toFixed(2);
  const range = (sorted: number[]) =>
    `${mib(sorted[0]!)}-${mib(sorted.at(-1)!)}`;
  console.log(
    `${name}: peak memory (median of ${MEMORY_RUNS}) ${mib(peak)} with ` +
      `sendfile() (${range(peaks)}), ${mib(basePeak)} with ${baseline.name} ` +
      `(${range(basePeaks)}): ${ratio}x`,
  );
  Deno.bench({
    group: name,
    name: `${baseline.name} (peak +${mib(basePeak)})`,
    baseline: true,
    n: 10,
    warmup: 2,
    fn: baseline.send,
  });
  Deno.bench({
    group: name,
    name: `sendfile() (peak +${mib(peak)}, ${ratio}x the baseline's)`,
    n: 10,
    warmup: 2,
    fn: contender,
  });
}

await group(
  "send a 64 MiB file over loopback TCP",
  { name: "Deno.readFile + one write()", send: readWholeAndWrite },
  sendWholeFile,
);
await group(
  "send 16 MiB from the middle of a 64 MiB file",
  { name: "seek + one read + one write()", send: readRangeAndWrite },
  sendRange,
);
