import assert from "node:assert/strict";
import type { StreamProtocol, Transport } from "../../transports/transport.ts";
import {
  assertBytes,
  LOOPBACKS,
  pattern,
  type Peers,
  random,
  readExactly,
  RecordingBufferedProtocol,
  RecordingProtocol,
  writeAll,
} from "../_test_utils.ts";

/** 8 MiB of a repeatable pattern: more than the kernel buffers of a pair. */
export const BIG = pattern(8 * 1024 * 1024, 7);
export const PING = new Uint8Array([0x2a]);

export type Recording = RecordingProtocol | RecordingBufferedProtocol;

/** Runs `fn` as one step per loopback kind, each with a fresh pair. */
export async function overLoopbacks(
  t: Deno.TestContext,
  name: string,
  fn: (peers: Peers) => Promise<void>,
): Promise<void> {
  for (const [kind, connect] of Object.entries(LOOPBACKS)) {
    await t.step(`${name} (${kind})`, async () => {
      using peers = await connect();
      await fn(peers);
    });
  }
}

/** Splits `data` into views of seeded, log-uniform sizes (1 B to 64 KiB). */
export function split(data: Uint8Array, seed: number): Uint8Array[] {
  const next = random(seed);
  const chunks: Uint8Array[] = [];
  let offset = 0;
  while (offset < data.byteLength) {
    const size = 1 + next(1 << next(17));
    chunks.push(data.subarray(offset, offset + size));
    offset += size;
  }
  return chunks;
}

/** Writes `data` to `conn` in seeded random chunks, then maybe half-closes. */
export async function send(
  conn: Deno.Conn,
  data: Uint8Array,
  { seed = 1, eof = false }: { seed?: number; eof?: boolean } = {},
): Promise<void> {
  for (const chunk of split(data, seed)) await writeAll(conn, chunk);
  if (eof) await conn.closeWrite();
}

/** Bytes a recording protocol has received so far, without joining them. */
export function byteCount(protocol: Recording): number {
  return protocol.chunks.reduce((total, chunk) => total + chunk.byteLength, 0);
}

/** Resolves once `protocol` has `nbytes` bytes; fails if it is lost first. */
export async function waitForBytes(
  protocol: Recording,
  nbytes: number,
): Promise<void> {
  const name = protocol instanceof RecordingBufferedProtocol
    ? "bufferUpdated"
    : "dataReceived";
  // Each callback brings at least one byte.
  for (let i = 0; i <= nbytes && byteCount(protocol) < nbytes; i++) {
    if (protocol.count("connectionLost") > 0) break;
    await Promise.race([
      protocol.waitFor(name, protocol.count(name) + 1),
      protocol.waitFor("connectionLost"),
    ]);
  }
  assert.ok(
    byteCount(protocol) >= nbytes,
    `expected ${nbytes} bytes, got ${byteCount(protocol)}`,
  );
}

/**
 * Gives the transport a few turns of I/O: each time it writes one byte that
 * the peer reads. Data the peer sent before is by then in the transport's
 * hands, delivered or held.
 */
export async function roundTrips(
  transport: Transport,
  peer: Deno.Conn,
  count = 3,
): Promise<void> {
  for (let i = 0; i < count; i++) {
    transport.write(PING);
    assertBytes(await readExactly(peer, 1), PING, "ping");
  }
}

/** Checks that `calls` are made, data*, eof?, lost, in this order. */
export function assertOrder(calls: string[]): void {
  assert.match(calls.join(" "), STREAM_ORDER);
}

/** The callbacks of a whole run over a stream, joined by spaces. */
export const STREAM_ORDER =
  /^connectionMade( pauseWriting| resumeWriting| dataReceived)*( eofReceived)?( pauseWriting| resumeWriting)* connectionLost$/;

/**
 * Switches `transport` to `next`, and tells a recording `next` its
 * transport, which it would otherwise not learn (no second connectionMade).
 */
export function handOn(transport: Transport, next: StreamProtocol): void {
  if (
    next instanceof RecordingProtocol ||
    next instanceof RecordingBufferedProtocol
  ) {
    next.transport = transport;
  }
  transport.setProtocol(next);
}
