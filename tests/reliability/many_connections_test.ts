/**
 * A server under many connections and hostile peers: every well-behaved
 * connection is served byte-exact, and no peer can take more than its share
 * of memory or take the server down.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createServer, type Server } from "../../transports/server.ts";
import type { Transport } from "../../transports/transport.ts";
import { ProtocolBase } from "../../protocols/protocol.ts";
import {
  assertBytes,
  errorCollector,
  pattern,
  readExactly,
  within,
  writeAll,
} from "../_test_utils.ts";

/** Echoes, and stops reading while the peer does not read the echo. */
class Echo extends ProtocolBase {
  static live = new Set<Echo>();
  maxBuffered = 0;

  override connectionMade(transport: Transport): void {
    super.connectionMade(transport);
    Echo.live.add(this);
  }
  override dataReceived(data: Uint8Array): void {
    const transport = this.transport!;
    transport.write(data);
    this.maxBuffered = Math.max(
      this.maxBuffered,
      transport.getWriteBufferSize(),
    );
  }
  override pauseWriting(): void {
    super.pauseWriting();
    this.transport?.pauseReading();
  }
  override resumeWriting(): void {
    super.resumeWriting();
    this.transport?.resumeReading();
  }
  override connectionLost(exc: Error | undefined): void {
    super.connectionLost(exc);
    Echo.live.delete(this);
  }
}

async function echoServer(): Promise<
  { server: Server<Deno.NetAddr>; port: number }
> {
  const { onError } = errorCollector();
  const server = await createServer(() => new Echo(), {
    hostname: "127.0.0.1",
    port: 0,
    onError,
  });
  return { server, port: server.addrs[0]!.port };
}

/** Sends `data` on a new connection and checks the echo; closes it. */
async function roundTrip(port: number, data: Uint8Array): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const [, echoed] = await Promise.all([
      writeAll(conn, data),
      readExactly(conn, data.byteLength),
    ]);
    assertBytes(echoed, data, "echo");
  } finally {
    conn.close();
  }
}

Deno.test("a server echoes 1,000 concurrent connections byte-exact", async () => {
  const { server, port } = await echoServer();
  const count = 1_000;
  await within(
    Promise.all(
      Array.from(
        { length: count },
        (_, i) => roundTrip(port, pattern(4096 + (i % 7) * 1000, i % 251)),
      ),
    ),
    "1,000 echoes",
    30_000,
  );
  server.close();
  await server.waitClosed();
  assert.equal(Echo.live.size, 0);
});

Deno.test("a peer that never reads holds at most the write buffer, and others go on", async () => {
  const { server, port } = await echoServer();
  const hog = await Deno.connect({ hostname: "127.0.0.1", port });
  // Writes until the kernel buffers on both sides are full and the server
  // stopped reading: a bounded number of bytes, then a write stalls.
  const chunk = new Uint8Array(64 * 1024);
  let sent = 0;
  let stalled: Promise<number> | undefined;
  for (let i = 0; i < 1024 && stalled === undefined; i++) {
    const write = hog.write(chunk);
    try {
      sent += await within(write, "a write to the hog", 200);
    } catch {
      stalled = write;
    }
  }
  assert.ok(stalled !== undefined, "the hog's writes never stalled");
  assert.ok(sent < 64 * 1024 * 1024, `the hog sent ${sent} bytes unchecked`);
  const [hogEcho] = Echo.live;
  const limit = hogEcho!.transport!.getWriteBufferLimits().high;
  assert.ok(
    hogEcho!.maxBuffered <= limit + 256 * 1024,
    `the server buffered ${hogEcho!.maxBuffered} bytes for the hog`,
  );

  await roundTrip(port, pattern(100_000, 3));

  hog.close();
  await stalled.catch(() => {});
  server.close();
  server.abortClients();
  await server.waitClosed();
});

Deno.test("peers that reset, half-close or trickle do not disturb the others", async () => {
  const { server, port } = await echoServer();

  const resetters = Array.from({ length: 50 }, async () => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(conn, pattern(50_000, 5));
    conn.close();
  });
  const halfClosers = Array.from({ length: 50 }, async (_, i) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const data = pattern(1000 + i, 6);
    await writeAll(conn, data);
    await conn.closeWrite();
    assertBytes(await readExactly(conn, data.byteLength), data, "half-close");
    assert.equal(await conn.read(new Uint8Array(1)), null);
    conn.close();
  });
  const trickler = (async () => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const data = pattern(200, 7);
    for (let i = 0; i < data.byteLength; i++) {
      await writeAll(conn, data.subarray(i, i + 1));
    }
    assertBytes(await readExactly(conn, data.byteLength), data, "trickle");
    conn.close();
  })();
  const wellBehaved = Array.from(
    { length: 100 },
    (_, i) => roundTrip(port, pattern(20_000, i)),
  );

  await within(
    Promise.all([...resetters, ...halfClosers, trickler, ...wellBehaved]),
    "every peer",
    30_000,
  );
  server.close();
  server.abortClients();
  await server.waitClosed();
  assert.equal(Echo.live.size, 0);
});
