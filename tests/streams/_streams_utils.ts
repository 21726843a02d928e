import assert from "node:assert/strict";
import { StreamReader } from "../../mod.ts";
import { MemoryTransport } from "../../testing/mod.ts";

/**
 * Lets every pending microtask run, then tells whether `promise` settled.
 * Deterministic without sockets; over sockets, only where the peer cannot
 * make progress.
 */
export async function hasSettled(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  promise.then(() => settled = true, () => settled = true);
  // Bounded: far more turns than any chain of awaits in the reader takes.
  for (let i = 0; i < 50 && !settled; i++) await undefined;
  return settled;
}

/** Resolves with what `promise` rejects with; fails if it resolves. */
export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  assert.fail("expected a rejection");
}

/**
 * The read-side calls a `StreamReader` made on its transport, counted from
 * a `MemoryTransport`'s log; pausing twice, or resuming while not paused,
 * fails the count at once.
 */
export class Calls {
  #transport: MemoryTransport;

  constructor(transport: MemoryTransport) {
    this.#transport = transport;
  }

  get pauses(): number {
    return this.#count("pauseReading");
  }
  get resumes(): number {
    return this.#count("resumeReading");
  }
  get closes(): number {
    return this.#count("close");
  }

  #count(call: string): number {
    const reads = this.#transport.log.filter((entry) => entry !== "close");
    reads.forEach((entry, i) =>
      assert.notEqual(entry, reads[i - 1], `${entry}() twice in a row`)
    );
    return this.#transport.log.filter((entry) => entry === call).length;
  }
}

/**
 * A reader of `limit` over a `MemoryTransport` that feeds it, and the
 * calls the reader made on that transport.
 */
export function fakeConnected(limit: number): [StreamReader, Calls] {
  const reader = new StreamReader(limit);
  const transport = new MemoryTransport({
    dataReceived: (data) => reader.feedData(data),
  });
  reader.setTransport(transport);
  return [reader, new Calls(transport)];
}

/** Collects lines with async iteration until EOF. */
export async function collectLines(
  reader: StreamReader,
): Promise<Uint8Array[]> {
  const lines: Uint8Array[] = [];
  for await (const line of reader) lines.push(line);
  return lines;
}
