import assert from "node:assert/strict";
import { StreamReader } from "../../mod.ts";
import { StubTransport } from "../_test_utils.ts";

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
 * The read-side calls a `StreamReader` makes on its transport, counted;
 * pausing twice or resuming while not paused fails at once.
 */
export class FakeTransport extends StubTransport {
  pauses = 0;
  resumes = 0;
  closes = 0;

  override pauseReading(): void {
    assert.ok(this.reading, "pauseReading() while already paused");
    super.pauseReading();
    this.pauses++;
  }
  override resumeReading(): void {
    assert.ok(!this.reading, "resumeReading() while not paused");
    super.resumeReading();
    this.resumes++;
  }
  override close(): void {
    super.close();
    this.closes++;
  }
}

/** A reader of `limit` whose transport is a {@linkcode FakeTransport}. */
export function fakeConnected(limit: number): [StreamReader, FakeTransport] {
  const reader = new StreamReader(limit);
  const transport = new FakeTransport();
  reader.setTransport(transport);
  return [reader, transport];
}

/** Collects lines with async iteration until EOF. */
export async function collectLines(
  reader: StreamReader,
): Promise<Uint8Array[]> {
  const lines: Uint8Array[] = [];
  for await (const line of reader) lines.push(line);
  return lines;
}
