import assert from "node:assert/strict";
import type { Protocol } from "../../protocols/protocol.ts";
import { StreamTransport } from "../../transports/_stream_transport.ts";
import type { StreamProtocol, Transport } from "../../transports/transport.ts";
import {
  assertBytes,
  concat,
  errorCollector,
  LOOPBACKS,
  NOT_BYTES,
  pattern,
  type Peers,
  random,
  readAll,
  readExactly,
  readUntilClosed,
  RecordingBufferedProtocol,
  RecordingProtocol,
  writeAll,
} from "../_test_utils.ts";

// Helpers.

/** 8 MiB of a repeatable pattern: more than the kernel buffers of a pair. */
const BIG = pattern(8 * 1024 * 1024, 7);
const PING = new Uint8Array([0x2a]);

type Recording = RecordingProtocol | RecordingBufferedProtocol;

/** Runs `fn` as one step per loopback kind, each with a fresh pair. */
async function overLoopbacks(
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
function split(data: Uint8Array, seed: number): Uint8Array[] {
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
async function send(
  conn: Deno.Conn,
  data: Uint8Array,
  { seed = 1, eof = false }: { seed?: number; eof?: boolean } = {},
): Promise<void> {
  for (const chunk of split(data, seed)) await writeAll(conn, chunk);
  if (eof) await conn.closeWrite();
}

/** Bytes a recording protocol has received so far, without joining them. */
function byteCount(protocol: Recording): number {
  return protocol.chunks.reduce((total, chunk) => total + chunk.byteLength, 0);
}

/** Resolves once `protocol` has `nbytes` bytes; fails if it is lost first. */
async function waitForBytes(
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
async function roundTrips(
  transport: StreamTransport,
  peer: Deno.Conn,
  count = 3,
): Promise<void> {
  for (let i = 0; i < count; i++) {
    transport.write(PING);
    assertBytes(await readExactly(peer, 1), PING, "ping");
  }
}

/** Checks that `calls` are made, data*, eof?, lost, in this order. */
function assertOrder(calls: string[]): void {
  assert.match(
    calls.join(" "),
    /^connectionMade( pauseWriting| resumeWriting| dataReceived)*( eofReceived)?( pauseWriting| resumeWriting)* connectionLost$/,
  );
}

/** A `Protocol` that keeps a copy of each chunk next to the chunk itself. */
class KeepingProtocol extends RecordingProtocol {
  copies: Uint8Array[] = [];
  override dataReceived(data: Uint8Array): void {
    this.copies.push(data.slice());
    super.dataReceived(data);
  }
}

/**
 * A `Protocol` that pauses reading in each of its first `pauses` chunks, and
 * counts chunks that came while reading was paused.
 */
class PausingProtocol extends RecordingProtocol {
  whilePaused = 0;
  constructor(public pauses = Infinity) {
    super();
  }
  override dataReceived(data: Uint8Array): void {
    const transport = this.transport!;
    if (!transport.isReading()) this.whilePaused++;
    super.dataReceived(data);
    if (this.count("dataReceived") <= this.pauses) transport.pauseReading();
  }
}

/**
 * A `BufferedProtocol` that pauses reading in its first `pauses` updates,
 * counts updates that came while reading was paused, and counts buffers
 * asked for while the last one was still unreported (two reads at once).
 */
class PausingBufferedProtocol extends RecordingBufferedProtocol {
  whilePaused = 0;
  overlapping = 0;
  constructor(public pauses = 1, size?: number) {
    super(size);
  }
  override getBuffer(sizeHint: number): Uint8Array {
    if (this.count("getBuffer") > this.count("bufferUpdated")) {
      this.overlapping++;
    }
    return super.getBuffer(sizeHint);
  }
  override bufferUpdated(nbytes: number): void {
    const transport = this.transport!;
    if (!transport.isReading()) this.whilePaused++;
    super.bufferUpdated(nbytes);
    if (this.count("bufferUpdated") <= this.pauses) transport.pauseReading();
  }
}

/**
 * Switches `transport` to `next`, and tells a recording `next` its
 * transport, which it would otherwise not learn (no second connectionMade).
 */
function handOn(transport: Transport, next: StreamProtocol): void {
  if (
    next instanceof RecordingProtocol ||
    next instanceof RecordingBufferedProtocol
  ) {
    next.transport = transport;
  }
  transport.setProtocol(next);
}

/** A `Protocol` that hands the transport to `next` in its `after`th chunk. */
class SwitchingProtocol extends RecordingProtocol {
  /** How many calls it had when it switched. */
  callsAtSwitch: number | undefined;
  constructor(public next: StreamProtocol, public after = 1) {
    super();
  }
  override dataReceived(data: Uint8Array): void {
    super.dataReceived(data);
    if (this.count("dataReceived") === this.after) {
      handOn(this.transport!, this.next);
      assert.equal(this.transport!.getProtocol(), this.next);
      this.callsAtSwitch = this.calls.length;
    }
  }
}

/** A `BufferedProtocol` that hands the transport on in its `after`th update. */
class SwitchingBufferedProtocol extends RecordingBufferedProtocol {
  /** How many calls it had when it switched. */
  callsAtSwitch: number | undefined;
  constructor(public next: StreamProtocol, size?: number, public after = 1) {
    super(size);
  }
  override bufferUpdated(nbytes: number): void {
    super.bufferUpdated(nbytes);
    if (this.count("bufferUpdated") === this.after) {
      handOn(this.transport!, this.next);
      assert.equal(this.transport!.getProtocol(), this.next);
      this.callsAtSwitch = this.calls.length;
    }
  }
}

// 1. Callback order, and connectionLost exactly once, last.

Deno.test("StreamTransport calls connectionMade, dataReceived, eofReceived, connectionLost in order", async (t) => {
  await overLoopbacks(t, "with data already waiting", async (peers) => {
    const data = pattern(200 * 1024, 3);
    await writeAll(peers.server, data.subarray(0, 1000));
    const protocol = new RecordingProtocol();
    new StreamTransport({ conn: peers.client }, protocol);
    await send(peers.server, data.subarray(1000), { seed: 4, eof: true });
    await protocol.waitFor("connectionLost");

    assert.equal(protocol.calls[0], "connectionMade");
    assertOrder(protocol.calls);
    assert.ok(protocol.count("dataReceived") >= 1);
    assert.equal(protocol.count("eofReceived"), 1);
    assert.equal(protocol.lostWith, undefined);
    assertBytes(protocol.received(), data);
  });

  await overLoopbacks(t, "with a BufferedProtocol", async (peers) => {
    const data = pattern(100 * 1024, 5);
    const protocol = new RecordingBufferedProtocol(4096);
    new StreamTransport({ conn: peers.client }, protocol);
    await send(peers.server, data, { seed: 6, eof: true });
    await protocol.waitFor("connectionLost");

    assert.match(
      protocol.calls.join(" "),
      /^connectionMade( getBuffer bufferUpdated)+ getBuffer eofReceived connectionLost$/,
    );
    assert.equal(protocol.lostWith, undefined);
    assertBytes(protocol.received(), data);
  });
});

Deno.test("StreamTransport calls connectionMade first, even when a write() before it goes over the high-water mark", async (t) => {
  await overLoopbacks(t, "write() right after construction", async (peers) => {
    const protocol = new RecordingProtocol();
    const transport = new StreamTransport({ conn: peers.client }, protocol);
    // Allowed: the class docs write right after construction.
    transport.write(BIG);
    transport.close();
    assertBytes(await readAll(peers.server), BIG);
    await protocol.waitFor("connectionLost");

    assert.equal(protocol.calls[0], "connectionMade", protocol.calls.join(" "));
    assertOrder(protocol.calls);
    assert.equal(protocol.count("pauseWriting"), 1);
    assert.equal(protocol.count("resumeWriting"), 1);
  });
});

Deno.test("StreamTransport calls connectionLost once with undefined after a clean end", async (t) => {
  const ends: [
    string,
    (transport: StreamTransport, peer: Deno.Conn) => void | Promise<void>,
  ][] = [
    ["after the peer's EOF", (_transport, peer) => peer.closeWrite()],
    ["after close()", (transport) => transport.close()],
    ["after abort()", (transport) => transport.abort()],
    ["after writeEof() and the peer's EOF", async (transport, peer) => {
      transport.writeEof();
      assert.equal((await readAll(peer)).byteLength, 0);
      await peer.closeWrite();
    }],
  ];
  for (const [name, end] of ends) {
    await overLoopbacks(t, name, async (peers) => {
      const protocol = new RecordingProtocol();
      const transport = new StreamTransport({ conn: peers.client }, protocol);
      await protocol.waitFor("connectionMade");
      transport.write(pattern(1000));
      await readExactly(peers.server, 1000);
      await end(transport, peers.server);
      await protocol.waitFor("connectionLost");
      assert.equal(protocol.lostWith, undefined);
      assert.equal(transport.isClosing(), true);

      // The peer sees EOF; by then any second call would have come.
      assert.equal((await readAll(peers.server)).byteLength, 0);
      assert.equal(protocol.count("connectionLost"), 1);
      assertOrder(protocol.calls);
    });
  }
});

Deno.test("StreamTransport calls connectionLost with the Error after a failure", async (t) => {
  await overLoopbacks(
    t,
    "when the peer resets the connection",
    async (peers) => {
      const protocol = new RecordingProtocol();
      const { errors, onError } = errorCollector();
      const transport = new StreamTransport({ conn: peers.client }, protocol, {
        onError,
      });
      await protocol.waitFor("connectionMade");
      // More than the kernel holds, so a write is pending; the peer closes
      // with unread data, which resets the connection.
      transport.write(BIG);
      await readExactly(peers.server, 1);
      peers.server.close();
      await protocol.waitFor("connectionLost");

      assert.ok(
        protocol.lostWith instanceof Error,
        `connectionLost(${protocol.lostWith})`,
      );
      assert.equal(protocol.count("connectionLost"), 1);
      assert.equal(protocol.calls.at(-1), "connectionLost");
      assert.equal(transport.isClosing(), true);
      assert.equal(transport.getWriteBufferSize(), 0);
      assert.equal(errors.length, 0, "a socket error is no callback error");
    },
  );

  const throwing: [string, (error: Error) => RecordingProtocol][] = [
    [
      "when connectionMade throws",
      (error) =>
        new (class extends RecordingProtocol {
          override connectionMade(transport: Transport): void {
            super.connectionMade(transport);
            throw error;
          }
        })(),
    ],
    [
      "when dataReceived throws",
      (error) =>
        new (class extends RecordingProtocol {
          override dataReceived(data: Uint8Array): void {
            super.dataReceived(data);
            throw error;
          }
        })(),
    ],
    [
      "when eofReceived throws",
      (error) =>
        new (class extends RecordingProtocol {
          override eofReceived(): boolean {
            super.eofReceived();
            throw error;
          }
        })(),
    ],
  ];
  for (const [name, make] of throwing) {
    await overLoopbacks(t, name, async (peers) => {
      const error = new Error("boom");
      const protocol = make(error);
      const { errors, onError } = errorCollector();
      await writeAll(peers.server, pattern(100));
      await peers.server.closeWrite();
      const transport = new StreamTransport({ conn: peers.client }, protocol, {
        onError,
      });
      await protocol.waitFor("connectionLost");

      assert.equal(protocol.lostWith, error);
      assert.equal(protocol.calls.at(-1), "connectionLost");
      assert.equal(protocol.count("connectionLost"), 1);
      assert.equal(errors.length, 1);
      assert.equal(errors[0]!.error, error);
      assert.equal(errors[0]!.context.transport, transport);
      assert.equal(errors[0]!.context.protocol, protocol);
      await readUntilClosed(peers.server);
      assert.equal(protocol.count("connectionLost"), 1);
      assert.equal(protocol.calls.at(-1), "connectionLost");
    });
  }
});

Deno.test("StreamTransport calls no callback after connectionLost", async (t) => {
  const losses: [
    string,
    (transport: StreamTransport, peer: Deno.Conn) => void | Promise<void>,
  ][] = [
    ["after the peer's EOF", (_transport, peer) => peer.closeWrite()],
    ["after close()", (transport) => transport.close()],
    ["after abort()", (transport) => transport.abort()],
  ];
  for (const [name, lose] of losses) {
    await overLoopbacks(t, name, async (peers) => {
      const protocol = new RecordingProtocol();
      const transport = new StreamTransport({ conn: peers.client }, protocol);
      await protocol.waitFor("connectionMade");
      await lose(transport, peers.server);
      await protocol.waitFor("connectionLost");
      const calls = [...protocol.calls];

      // Over the high mark, but dropped: no pauseWriting.
      assert.doesNotThrow(() => transport.write(new Uint8Array(200 * 1024)));
      transport.writelines([pattern(10), pattern(20)]);
      transport.setWriteBufferLimits({ high: 0 });
      transport.writeEof();
      transport.pauseReading();
      transport.resumeReading();
      transport.close();
      transport.abort();
      const next = new RecordingProtocol();
      transport.setProtocol(next);
      transport.close();

      assert.equal(transport.getWriteBufferSize(), 0);
      assert.equal(transport.isClosing(), true);
      assert.equal(transport.isReading(), false);
      assert.equal((await readAll(peers.server)).byteLength, 0);
      assert.deepEqual(protocol.calls, calls);
      assert.deepEqual(next.calls, []);
    });
  }
});

// 2. write().

Deno.test("StreamTransport.write() throws TypeError for anything but a Uint8Array", async (t) => {
  const values = NOT_BYTES;
  await overLoopbacks(t, "and writes nothing", async (peers) => {
    const protocol = new RecordingProtocol();
    const transport = new StreamTransport({ conn: peers.client }, protocol);
    await protocol.waitFor("connectionMade");
    for (const [what, value] of values) {
      assert.throws(
        () => transport.write(value as Uint8Array),
        TypeError,
        `write(${what})`,
      );
      assert.throws(
        () => transport.writelines([pattern(3), value as Uint8Array]),
        TypeError,
        `writelines([..., ${what}])`,
      );
    }
    assert.equal(transport.getWriteBufferSize(), 0);
    assert.equal(transport.isClosing(), false);

    const marker = pattern(5, 9);
    transport.write(marker);
    transport.close();
    assertBytes(await readAll(peers.server), marker);
    await protocol.waitFor("connectionLost");
    assert.equal(protocol.lostWith, undefined);
  });
});

Deno.test("StreamTransport.write() returns false while the buffer is over the high-water mark", async (t) => {
  await overLoopbacks(t, "with the default marks", async (peers) => {
    const protocol = new RecordingProtocol();
    const transport = new StreamTransport({ conn: peers.client }, protocol);
    await protocol.waitFor("connectionMade");
    const high = transport.getWriteBufferLimits().high;
    const data = pattern(high + 2, 5);

    assert.equal(transport.write(data.subarray(0, high)), true, "at the mark");
    assert.equal(transport.write(data.subarray(high, high + 1)), false);
    assert.equal(transport.write(data.subarray(high + 1)), false);
    assert.equal(transport.getWriteBufferSize(), high + 2);

    assertBytes(await readExactly(peers.server, high + 2), data);
    await protocol.waitFor("resumeWriting");
    assert.equal(transport.write(PING), true, "below the mark again");
    transport.close();
    assertBytes(await readAll(peers.server), PING);
    await protocol.waitFor("connectionLost");
  });

  await overLoopbacks(t, "with a high mark of 100", async (peers) => {
    const protocol = new RecordingProtocol();
    const transport = new StreamTransport({ conn: peers.client }, protocol);
    await protocol.waitFor("connectionMade");
    transport.setWriteBufferLimits({ high: 100 });
    assert.equal(transport.write(pattern(60)), true);
    assert.equal(transport.write(pattern(40)), true);
    assert.equal(transport.write(pattern(1)), false);
    transport.close();
    assert.equal((await readAll(peers.server)).byteLength, 101);
    await protocol.waitFor("connectionLost");
  });
});

Deno.test("StreamTransport.write() throws TypeError after writeEof()", async (t) => {
  await overLoopbacks(
    t,
    "and the peer gets only what came before",
    async (peers) => {
      const protocol = new RecordingProtocol();
      const transport = new StreamTransport({ conn: peers.client }, protocol);
      await protocol.waitFor("connectionMade");
      const data = pattern(1000, 2);
      transport.write(data);
      transport.writeEof();
      assert.throws(() => transport.write(pattern(10)), TypeError);
      assert.throws(() => transport.writelines([pattern(10)]), TypeError);
      assert.equal(transport.isClosing(), false);

      assertBytes(await readAll(peers.server), data);
      await peers.server.closeWrite();
      await protocol.waitFor("connectionLost");
      assert.equal(protocol.lostWith, undefined);
    },
  );
});

Deno.test("StreamTransport.write() drops data silently after close(), abort() or connection loss", async (t) => {
  await overLoopbacks(t, "after close()", async (peers) => {
    const protocol = new RecordingProtocol();
    const transport = new StreamTransport({ conn: peers.client }, protocol);
    await protocol.waitFor("connectionMade");
    const data = pattern(1000, 2);
    transport.write(data);
    transport.close();
    assert.doesNotThrow(() => transport.write(pattern(500, 3)));
    assert.equal(transport.getWriteBufferSize(), 1000);

    assertBytes(await readAll(peers.server), data);
    await protocol.waitFor("connectionLost");
    assert.equal(protocol.lostWith, undefined);
  });

  await overLoopbacks(t, "after abort()", async (peers) => {
    const protocol = new RecordingProtocol();
    const transport = new StreamTransport({ conn: peers.client }, protocol);
    await protocol.waitFor("connectionMade");
    const data = pattern(1000, 2);
    transport.write(data);
    assertBytes(await readExactly(peers.server, 1000), data);
    transport.abort();
    assert.doesNotThrow(() => transport.write(pattern(500, 3)));
    assert.equal(transport.getWriteBufferSize(), 0);

    await protocol.waitFor("connectionLost");
    assert.equal((await readAll(peers.server)).byteLength, 0);
    assert.equal(protocol.lostWith, undefined);
  });

  await overLoopbacks(t, "after the connection was lost", async (peers) => {
    const protocol = new RecordingProtocol();
    const transport = new StreamTransport({ conn: peers.client }, protocol);
    await peers.server.closeWrite();
    await protocol.waitFor("connectionLost");
    assert.doesNotThrow(() => transport.write(pattern(500, 3)));
    assert.equal(transport.getWriteBufferSize(), 0);
    assert.equal((await readAll(peers.server)).byteLength, 0);
    assert.deepEqual(protocol.calls, [
      "connectionMade",
      "eofReceived",
      "connectionLost",
    ]);
  });
});

Deno.test("StreamTransport.write() of an empty Uint8Array is a no-op", async (t) => {
  await overLoopbacks(t, "even with a high mark of 0", async (peers) => {
    const protocol = new RecordingProtocol();
    const transport = new StreamTransport({ conn: peers.client }, protocol);
    await protocol.waitFor("connectionMade");
    transport.setWriteBufferLimits({ high: 0 });
    assert.equal(transport.write(new Uint8Array(0)), true);
    assert.equal(transport.write(pattern(10).subarray(5, 5)), true);
    transport.writelines([]);
    assert.equal(transport.getWriteBufferSize(), 0);
    assert.equal(protocol.count("pauseWriting"), 0);

    const data = pattern(10, 4);
    assert.equal(transport.write(data), false);
    assert.equal(transport.write(new Uint8Array(0)), false);
    assert.equal(transport.getWriteBufferSize(), 10);
    transport.close();
    assertBytes(await readAll(peers.server), data);
    await protocol.waitFor("connectionLost");
    assert.equal(protocol.count("pauseWriting"), 1);
  });
});

// 3. close() and abort().

Deno.test("StreamTransport.close() flushes every buffered byte, then closes", async (t) => {
  await overLoopbacks(t, "8 MiB in one write", async (peers) => {
    const protocol = new RecordingProtocol();
    const transport = new StreamTransport({ conn: peers.client }, protocol);
    await protocol.waitFor("connectionMade");
    transport.write(BIG);
    transport.close();
    assert.equal(transport.isClosing(), true);
    assert.equal(transport.isReading(), false);

    assertBytes(await readAll(peers.server), BIG);
    await protocol.waitFor("connectionLost");
    assert.equal(protocol.lostWith, undefined);
    assert.equal(transport.getWriteBufferSize(), 0);
  });

  await overLoopbacks(t, "8 MiB in random chunks", async (peers) => {
    const protocol = new RecordingProtocol();
    const transport = new StreamTransport({ conn: peers.client }, protocol);
    await protocol.waitFor("connectionMade");
    for (const chunk of split(BIG, 8)) transport.write(chunk);
    transport.close();

    assertBytes(await readAll(peers.server), BIG);
    await protocol.waitFor("connectionLost");
    assert.equal(protocol.lostWith, undefined);
  });

  await overLoopbacks(t, "with nothing buffered", async (peers) => {
    const protocol = new RecordingProtocol();
    const transport = new StreamTransport({ conn: peers.client }, protocol);
    await protocol.waitFor("connectionMade");
    transport.close();
    await protocol.waitFor("connectionLost");
    assert.equal(protocol.lostWith, undefined);
    assert.equal((await readAll(peers.server)).byteLength, 0);
    assert.deepEqual(protocol.calls, ["connectionMade", "connectionLost"]);
  });
});

Deno.test("StreamTransport.close() stops reading", async (t) => {
  const kinds: [string, () => Recording][] = [
    ["a Protocol", () => new RecordingProtocol()],
    ["a BufferedProtocol", () => new RecordingBufferedProtocol()],
  ];
  for (const [name, make] of kinds) {
    await overLoopbacks(t, `${name}, while it flushes`, async (peers) => {
      const protocol = make();
      const transport = new StreamTransport({ conn: peers.client }, protocol);
      await protocol.waitFor("connectionMade");
      transport.write(BIG);
      transport.close();
      assert.equal(transport.isReading(), false);
      // The read in flight takes these bytes, and drops them.
      await writeAll(peers.server, pattern(100));
      await peers.server.closeWrite();

      assertBytes(await readAll(peers.server), BIG);
      await protocol.waitFor("connectionLost");
      assert.equal(protocol.count("dataReceived"), 0);
      assert.equal(protocol.count("bufferUpdated"), 0);
      assert.equal(protocol.count("eofReceived"), 0);
      assert.equal(protocol.lostWith, undefined);
    });
  }
});

Deno.test("StreamTransport.abort() drops the buffer and closes at once", async (t) => {
  await overLoopbacks(t, "before the first write went out", async (peers) => {
    const protocol = new RecordingProtocol();
    const transport = new StreamTransport({ conn: peers.client }, protocol);
    await protocol.waitFor("connectionMade");
    transport.write(pattern(1000));
    transport.abort();
    assert.equal(transport.getWriteBufferSize(), 0);
    assert.equal(transport.isClosing(), true);
    await protocol.waitFor("connectionLost");
    assert.equal(protocol.lostWith, undefined);
    assert.equal((await readAll(peers.server)).byteLength, 0);
  });

  await overLoopbacks(t, "while 16 MiB are buffered", async (peers) => {
    const protocol = new RecordingProtocol();
    const transport = new StreamTransport({ conn: peers.client }, protocol);
    await protocol.waitFor("connectionMade");
    transport.write(BIG);
    transport.write(BIG);
    assertBytes(await readExactly(peers.server, 1), BIG.subarray(0, 1));
    transport.abort();
    assert.equal(transport.getWriteBufferSize(), 0);
    // At once: the peer, which reads nothing, does not hold it up.
    await protocol.waitFor("connectionLost");
    assert.equal(protocol.lostWith, undefined);

    const rest = await readAll(peers.server);
    assert.ok(
      rest.byteLength + 1 < 2 * BIG.byteLength,
      `the peer got all ${rest.byteLength + 1} bytes`,
    );
    assertBytes(
      rest.subarray(0, Math.min(rest.byteLength, BIG.byteLength - 1)),
      BIG.subarray(1, 1 + Math.min(rest.byteLength, BIG.byteLength - 1)),
    );
    assert.equal(protocol.count("connectionLost"), 1);
  });
});

Deno.test("StreamTransport.close() and abort() are idempotent", async (t) => {
  const sequences: [string, (transport: StreamTransport) => void][] = [
    ["close() twice", (transport) => {
      transport.close();
      transport.close();
    }],
    ["abort() twice", (transport) => {
      transport.abort();
      transport.abort();
    }],
    ["abort() after close()", (transport) => {
      transport.close();
      transport.abort();
    }],
    ["close() after abort()", (transport) => {
      transport.abort();
      transport.close();
    }],
  ];
  for (const [name, run] of sequences) {
    await overLoopbacks(t, name, async (peers) => {
      const protocol = new RecordingProtocol();
      const transport = new StreamTransport({ conn: peers.client }, protocol);
      await protocol.waitFor("connectionMade");
      transport.write(pattern(300 * 1024));
      run(transport);
      const received = await readAll(peers.server);
      await protocol.waitFor("connectionLost");
      if (name === "close() twice") {
        assert.equal(received.byteLength, 300 * 1024);
      }
      transport.close();
      transport.abort();
      assert.equal((await readAll(peers.server)).byteLength, 0);
      assert.equal(protocol.count("connectionLost"), 1);
      assert.equal(protocol.lostWith, undefined);
      assert.equal(protocol.calls.at(-1), "connectionLost");
    });
  }
});

// 5. Any chunking; the protocol owns what it gets.

Deno.test("StreamTransport.dataReceived() gets every byte, in order, in chunks it owns", async (t) => {
  await overLoopbacks(t, "random chunk sizes", async (peers) => {
    const data = pattern(2 * 1024 * 1024, 21);
    const protocol = new KeepingProtocol();
    new StreamTransport({ conn: peers.client }, protocol);
    await send(peers.server, data, { seed: 22, eof: true });
    await protocol.waitFor("connectionLost");

    assertBytes(protocol.received(), data);
    assert.equal(protocol.chunks.length, protocol.copies.length);
    protocol.chunks.forEach((chunk, i) =>
      assertBytes(chunk, protocol.copies[i]!, `chunk ${i} changed`)
    );
    assert.equal(protocol.lostWith, undefined);
  });

  await t.step("two transports reading at once (tcp and unix)", async () => {
    using tcp = await LOOPBACKS.tcp();
    using unix = await LOOPBACKS.unix();
    const pairs = [tcp, unix];
    const data = pairs.map((_, i) => pattern(1024 * 1024, 31 + i));
    const protocols = pairs.map(() => new KeepingProtocol());
    pairs.forEach((peers, i) =>
      new StreamTransport({ conn: peers.client }, protocols[i]!)
    );
    await Promise.all(
      pairs.map((peers, i) =>
        send(peers.server, data[i]!, { seed: 41 + i, eof: true })
      ),
    );
    await Promise.all(protocols.map((p) => p.waitFor("connectionLost")));

    protocols.forEach((protocol, i) => {
      assertBytes(protocol.received(), data[i]!);
      protocol.chunks.forEach((chunk, j) =>
        assertBytes(chunk, protocol.copies[j]!, `chunk ${j} changed`)
      );
    });
  });
});

// 6. BufferedProtocol.

Deno.test("StreamTransport reads straight into the buffer getBuffer() returned", async (t) => {
  await overLoopbacks(t, "a 64 KiB buffer", async (peers) => {
    const data = pattern(1024 * 1024, 51);
    const protocol = new RecordingBufferedProtocol();
    new StreamTransport({ conn: peers.client }, protocol);
    await send(peers.server, data, { seed: 52, eof: true });
    await protocol.waitFor("connectionLost");

    assertBytes(protocol.received(), data);
    const sum = protocol.chunks.reduce((total, c) => total + c.byteLength, 0);
    assert.equal(sum, data.byteLength);
    assert.ok(protocol.chunks.every((c) => c.byteLength > 0));
    assert.ok(
      protocol.sizeHints.every((hint) => Number.isInteger(hint) && hint > 0),
      `sizeHints ${protocol.sizeHints}`,
    );
    assert.equal(protocol.lostWith, undefined);
  });

  await overLoopbacks(t, "a subarray at a nonzero offset", async (peers) => {
    const SENTINEL = 0xee;
    const backing = new Uint8Array(700);
    const protocol = new (class extends RecordingBufferedProtocol {
      view = new Uint8Array(0);
      offset = 0;
      outside = 0;
      override getBuffer(sizeHint: number): Uint8Array {
        super.getBuffer(sizeHint);
        const n = this.count("getBuffer");
        backing.fill(SENTINEL);
        this.offset = 1 + (n * 37) % 100;
        this.view = backing.subarray(this.offset, this.offset + 1 + n % 500);
        return this.view;
      }
      override bufferUpdated(nbytes: number): void {
        const end = this.offset + nbytes;
        for (let i = 0; i < backing.byteLength; i++) {
          if ((i < this.offset || i >= end) && backing[i] !== SENTINEL) {
            this.outside++;
          }
        }
        this.chunks.push(this.view.slice(0, nbytes));
        this.record("bufferUpdated");
      }
    })();
    const data = pattern(100 * 1024, 53);
    new StreamTransport({ conn: peers.client }, protocol);
    await send(peers.server, data, { seed: 54, eof: true });
    await protocol.waitFor("connectionLost");

    assertBytes(protocol.received(), data);
    assert.equal(protocol.outside, 0, "bytes written outside the read");
    assert.ok(protocol.sizeHints.every((hint) => hint > 0));
  });

  await overLoopbacks(t, "a 1-byte buffer", async (peers) => {
    const data = pattern(1000, 55);
    const protocol = new RecordingBufferedProtocol(1);
    new StreamTransport({ conn: peers.client }, protocol);
    await send(peers.server, data, { seed: 56, eof: true });
    await protocol.waitFor("connectionLost");

    assertBytes(protocol.received(), data);
    assert.equal(protocol.count("bufferUpdated"), 1000);
    assert.ok(protocol.sizeHints.every((hint) => hint > 0));
    assert.equal(protocol.lostWith, undefined);
  });
});

Deno.test("StreamTransport loses the connection when getBuffer() returns an empty buffer or throws", async (t) => {
  const error = new Error("no buffer");
  const cases: [string, (protocol: RecordingBufferedProtocol) => Uint8Array][] =
    [
      ["an empty Uint8Array", () => new Uint8Array(0)],
      ["an empty subarray", () => new Uint8Array(10).subarray(4, 4)],
      [
        "a value that is no Uint8Array",
        () => new ArrayBuffer(10) as unknown as Uint8Array,
      ],
      ["getBuffer() throws", () => {
        throw error;
      }],
      ["getBuffer() throws after some data", (protocol) => {
        if (protocol.count("getBuffer") > 2) throw error;
        return protocol.buffer;
      }],
    ];
  for (const [name, getBuffer] of cases) {
    await overLoopbacks(t, name, async (peers) => {
      const protocol = new (class extends RecordingBufferedProtocol {
        override getBuffer(sizeHint: number): Uint8Array {
          super.getBuffer(sizeHint);
          // A guard: a transport that read into a bad buffer would spin.
          if (this.count("getBuffer") > 10) throw new Error("asked again");
          return getBuffer(this);
        }
      })(100);
      const { errors, onError } = errorCollector();
      const data = pattern(250, 61);
      await writeAll(peers.server, data);
      const transport = new StreamTransport({ conn: peers.client }, protocol, {
        onError,
      });
      await protocol.waitFor("connectionLost");

      assert.ok(protocol.lostWith instanceof Error);
      if (name.startsWith("getBuffer() throws")) {
        assert.equal(protocol.lostWith, error);
      }
      if (name !== "getBuffer() throws after some data") {
        assert.equal(protocol.count("getBuffer"), 1);
        assert.equal(protocol.count("bufferUpdated"), 0);
      }
      assert.equal(errors.length, 1);
      assert.equal(errors[0]!.error, protocol.lostWith);
      assert.equal(errors[0]!.context.transport, transport);
      assert.equal(protocol.count("connectionLost"), 1);
      assert.equal(protocol.calls.at(-1), "connectionLost");
      assert.equal(transport.isClosing(), true);
      // What arrived before the failure is intact.
      assertBytes(
        protocol.received(),
        data.subarray(0, byteCount(protocol)),
      );
      await readUntilClosed(peers.server);
    });
  }

  await t.step("only that connection (tcp and unix)", async () => {
    using bad = await LOOPBACKS.tcp();
    using good = await LOOPBACKS.unix();
    const failing = new (class extends RecordingBufferedProtocol {
      override getBuffer(sizeHint: number): Uint8Array {
        super.getBuffer(sizeHint);
        if (this.count("getBuffer") > 10) throw new Error("asked again");
        return new Uint8Array(0);
      }
    })();
    const working = new RecordingBufferedProtocol();
    const { errors, onError } = errorCollector();
    new StreamTransport({ conn: bad.client }, failing, { onError });
    new StreamTransport({ conn: good.client }, working, { onError });
    await failing.waitFor("connectionLost");
    const data = pattern(5000, 62);
    await send(good.server, data, { seed: 63, eof: true });
    await working.waitFor("connectionLost");
    assert.equal(failing.count("getBuffer"), 1);
    assert.ok(failing.lostWith instanceof RangeError);
    assertBytes(working.received(), data);
    assert.equal(working.lostWith, undefined);
    assert.equal(errors.length, 1);
  });
});

// 7. Half-close.

Deno.test("StreamTransport calls eofReceived once when the peer half-closes", async (t) => {
  const closers: [
    string,
    () => Recording | (Protocol & { calls: string[] }),
  ][] = [
    ["eofReceived returns false", () => new RecordingProtocol()],
    ["eofReceived returns nothing", () => {
      const calls: string[] = [];
      return {
        calls,
        connectionMade: () => void calls.push("connectionMade"),
        dataReceived: () => void calls.push("dataReceived"),
        eofReceived: () => void calls.push("eofReceived"),
        connectionLost: (exc?: Error) =>
          void calls.push(exc ? "connectionLost(error)" : "connectionLost"),
      };
    }],
    ["no eofReceived at all", () => {
      const calls: string[] = [];
      return {
        calls,
        connectionMade: () => void calls.push("connectionMade"),
        dataReceived: () => void calls.push("dataReceived"),
        connectionLost: (exc?: Error) =>
          void calls.push(exc ? "connectionLost(error)" : "connectionLost"),
      };
    }],
    [
      "a BufferedProtocol's eofReceived returns false",
      () => new RecordingBufferedProtocol(),
    ],
  ];
  for (const [name, make] of closers) {
    await overLoopbacks(
      t,
      `${name}: the transport flushes, then closes`,
      async (peers) => {
        const protocol = make();
        const made = Promise.withResolvers<void>();
        const lost = Promise.withResolvers<void>();
        const { connectionMade, connectionLost } = protocol;
        protocol.connectionMade = (transport: Transport) => {
          connectionMade!.call(protocol, transport);
          made.resolve();
        };
        protocol.connectionLost = (exc) => {
          connectionLost!.call(protocol, exc);
          lost.resolve();
        };
        const transport = new StreamTransport({ conn: peers.client }, protocol);
        await made.promise;
        transport.write(BIG);
        await writeAll(peers.server, pattern(100));
        await peers.server.closeWrite();

        assertBytes(await readAll(peers.server), BIG);
        await lost.promise;
        assert.equal(transport.isClosing(), true);
        const calls = protocol.calls.join(" ");
        assert.match(
          calls,
          name === "no eofReceived at all"
            ? /^connectionMade( \w+)* connectionLost$/
            : /^connectionMade( \w+)* eofReceived( resumeWriting)? connectionLost$/,
        );
        assert.equal(
          calls.split("eofReceived").length,
          name.startsWith("no") ? 1 : 2,
        );
      },
    );
  }

  await overLoopbacks(
    t,
    "a truthy return keeps the transport open for writing",
    async (peers) => {
      const protocol = new RecordingProtocol();
      protocol.keepOpen = true;
      const transport = new StreamTransport({ conn: peers.client }, protocol);
      const sent = pattern(100, 71);
      await writeAll(peers.server, sent);
      await peers.server.closeWrite();
      await protocol.waitFor("eofReceived");

      assert.equal(transport.isClosing(), false);
      assert.equal(transport.isReading(), false);
      await roundTrips(transport, peers.server);
      const reply = pattern(300 * 1024, 72);
      transport.write(reply);
      transport.close();
      assertBytes(await readAll(peers.server), reply);
      await protocol.waitFor("connectionLost");

      assertBytes(protocol.received(), sent);
      assert.equal(protocol.count("eofReceived"), 1);
      assert.equal(protocol.lostWith, undefined);
      assertOrder(protocol.calls);
    },
  );

  await overLoopbacks(
    t,
    "a truthy return keeps a BufferedProtocol's transport open",
    async (peers) => {
      const protocol = new RecordingBufferedProtocol();
      protocol.keepOpen = true;
      const transport = new StreamTransport({ conn: peers.client }, protocol);
      await peers.server.closeWrite();
      await protocol.waitFor("eofReceived");
      assert.equal(transport.isClosing(), false);
      await roundTrips(transport, peers.server);
      transport.close();
      await protocol.waitFor("connectionLost");
      assert.equal(protocol.count("eofReceived"), 1);
      assert.equal(protocol.lostWith, undefined);
    },
  );
});

Deno.test("StreamTransport.writeEof() flushes, then half-closes", async (t) => {
  await overLoopbacks(
    t,
    "the peer reads every byte, then EOF, and can still send",
    async (peers) => {
      const protocol = new RecordingProtocol();
      const transport = new StreamTransport({ conn: peers.client }, protocol);
      await protocol.waitFor("connectionMade");
      assert.equal(transport.canWriteEof(), true);
      transport.write(BIG);
      transport.writeEof();
      transport.writeEof();
      assert.equal(transport.isClosing(), false);

      assertBytes(await readAll(peers.server), BIG);
      assert.equal(transport.isClosing(), false);
      assert.equal(transport.isReading(), true);
      const data = pattern(300 * 1024, 81);
      await send(peers.server, data, { seed: 82, eof: true });
      await protocol.waitFor("connectionLost");

      assertBytes(protocol.received(), data);
      assert.equal(protocol.count("eofReceived"), 1);
      assert.equal(protocol.lostWith, undefined);
      assertOrder(protocol.calls);
    },
  );

  await overLoopbacks(t, "with nothing buffered", async (peers) => {
    const protocol = new RecordingBufferedProtocol();
    const transport = new StreamTransport({ conn: peers.client }, protocol);
    assert.equal(transport.canWriteEof(), true);
    transport.writeEof();
    assert.equal((await readAll(peers.server)).byteLength, 0);
    const data = pattern(1000, 83);
    await writeAll(peers.server, data);
    await peers.server.closeWrite();
    await protocol.waitFor("connectionLost");
    assertBytes(protocol.received(), data);
    assert.equal(protocol.lostWith, undefined);
  });
});

// 8. pauseReading() and resumeReading().

Deno.test("StreamTransport.pauseReading() holds data until resumeReading()", async (t) => {
  await overLoopbacks(
    t,
    "paused from dataReceived, with EOF held too",
    async (peers) => {
      const protocol = new PausingProtocol(1);
      const transport = new StreamTransport({ conn: peers.client }, protocol);
      const first = pattern(1000, 91);
      const then = pattern(50 * 1024, 92);
      await writeAll(peers.server, first);
      await protocol.waitFor("dataReceived");
      assert.equal(transport.isReading(), false);
      await writeAll(peers.server, then);
      await peers.server.closeWrite();
      await roundTrips(transport, peers.server);

      assertBytes(protocol.received(), first.subarray(0, byteCount(protocol)));
      assert.equal(protocol.count("dataReceived"), 1);
      assert.equal(protocol.count("eofReceived"), 0);
      assert.equal(transport.isReading(), false);
      assert.equal(transport.isClosing(), false);

      transport.resumeReading();
      assert.equal(transport.isReading(), true);
      await protocol.waitFor("connectionLost");
      assertBytes(protocol.received(), concat([first, then]));
      assertOrder(protocol.calls);
      assert.equal(protocol.whilePaused, 0);
      assert.equal(transport.isReading(), false);
    },
  );

  await overLoopbacks(
    t,
    "paused twice from outside while a read is in flight",
    async (peers) => {
      const protocol = new RecordingProtocol();
      const transport = new StreamTransport({ conn: peers.client }, protocol);
      await protocol.waitFor("connectionMade");
      assert.equal(transport.isReading(), true);
      transport.pauseReading();
      transport.pauseReading();
      assert.equal(transport.isReading(), false);
      const first = pattern(10 * 1024, 93);
      await writeAll(peers.server, first);
      await roundTrips(transport, peers.server);
      assert.equal(protocol.count("dataReceived"), 0);

      // One resume is enough: pauses do not count up.
      transport.resumeReading();
      transport.resumeReading();
      assert.equal(transport.isReading(), true);
      const then = pattern(100 * 1024, 94);
      await send(peers.server, then, { seed: 95, eof: true });
      await protocol.waitFor("connectionLost");
      assertBytes(protocol.received(), concat([first, then]));
      assertOrder(protocol.calls);
    },
  );

  await overLoopbacks(
    t,
    "resumed and paused again in one task, held data stays held",
    async (peers) => {
      const protocol = new RecordingProtocol();
      const transport = new StreamTransport({ conn: peers.client }, protocol);
      await protocol.waitFor("connectionMade");
      transport.pauseReading();
      const first = pattern(2000, 103);
      await writeAll(peers.server, first);
      await roundTrips(transport, peers.server);

      transport.resumeReading();
      transport.pauseReading();
      await roundTrips(transport, peers.server);
      assert.equal(protocol.count("dataReceived"), 0);
      assert.equal(transport.isReading(), false);

      transport.resumeReading();
      await peers.server.closeWrite();
      await protocol.waitFor("connectionLost");
      assertBytes(protocol.received(), first);
      assertOrder(protocol.calls);
    },
  );

  await overLoopbacks(
    t,
    "an EOF that arrives while paused is held too",
    async (peers) => {
      const protocol = new RecordingProtocol();
      const transport = new StreamTransport({ conn: peers.client }, protocol);
      await protocol.waitFor("connectionMade");
      transport.pauseReading();
      await peers.server.closeWrite();
      await roundTrips(transport, peers.server);
      assert.equal(protocol.count("eofReceived"), 0);
      assert.equal(transport.isClosing(), false);

      transport.resumeReading();
      await protocol.waitFor("connectionLost");
      assert.deepEqual(protocol.calls, [
        "connectionMade",
        "eofReceived",
        "connectionLost",
      ]);
    },
  );

  await overLoopbacks(
    t,
    "pause then resume with a read in flight starts no second read",
    async (peers) => {
      const protocol = new PausingBufferedProtocol(0, 1000);
      const transport = new StreamTransport({ conn: peers.client }, protocol);
      await protocol.waitFor("connectionMade");
      assert.equal(protocol.count("getBuffer"), 1);
      transport.pauseReading();
      transport.resumeReading();
      transport.pauseReading();
      transport.resumeReading();
      assert.equal(protocol.count("getBuffer"), 1);
      assert.equal(transport.isReading(), true);

      const data = pattern(100 * 1024, 96);
      await send(peers.server, data, { seed: 97, eof: true });
      await protocol.waitFor("connectionLost");
      assertBytes(protocol.received(), data);
      assert.equal(protocol.overlapping, 0, "two reads at once");
      assert.equal(protocol.lostWith, undefined);
    },
  );

  await overLoopbacks(
    t,
    "paused after every chunk, nothing is lost",
    async (peers) => {
      const protocol = new PausingProtocol();
      const transport = new StreamTransport({ conn: peers.client }, protocol);
      const data = pattern(256 * 1024, 98);
      const sending = send(peers.server, data, { seed: 99, eof: true });
      for (let n = 1; n <= data.byteLength; n++) {
        await Promise.race([
          protocol.waitFor("dataReceived", n),
          protocol.waitFor("connectionLost"),
        ]);
        if (protocol.count("connectionLost") > 0) break;
        assert.equal(transport.isReading(), false);
        assert.equal(protocol.count("eofReceived"), 0);
        transport.resumeReading();
      }
      await sending;
      await protocol.waitFor("connectionLost");
      assertBytes(protocol.received(), data);
      assertOrder(protocol.calls);
      assert.equal(protocol.whilePaused, 0);
    },
  );

  await overLoopbacks(
    t,
    "a BufferedProtocol paused from bufferUpdated",
    async (peers) => {
      const protocol = new PausingBufferedProtocol(1);
      const transport = new StreamTransport({ conn: peers.client }, protocol);
      const first = pattern(1000, 101);
      const then = pattern(30 * 1024, 102);
      await writeAll(peers.server, first);
      await protocol.waitFor("bufferUpdated");
      assert.equal(transport.isReading(), false);
      await writeAll(peers.server, then);
      await peers.server.closeWrite();
      await roundTrips(transport, peers.server);
      assert.equal(protocol.count("bufferUpdated"), 1);
      assert.equal(protocol.count("eofReceived"), 0);

      transport.resumeReading();
      await protocol.waitFor("connectionLost");
      assertBytes(protocol.received(), concat([first, then]));
      assert.equal(protocol.count("eofReceived"), 1);
      assert.equal(protocol.whilePaused, 0);
      assert.equal(protocol.overlapping, 0);
      assert.equal(protocol.lostWith, undefined);
    },
  );

  await overLoopbacks(
    t,
    "a BufferedProtocol paused from outside",
    async (peers) => {
      const protocol = new PausingBufferedProtocol(0, 1000);
      const transport = new StreamTransport({ conn: peers.client }, protocol);
      await protocol.waitFor("connectionMade");
      transport.pauseReading();
      const first = pattern(20 * 1024, 103);
      await writeAll(peers.server, first);
      await peers.server.closeWrite();
      await roundTrips(transport, peers.server);
      assert.equal(protocol.count("bufferUpdated"), 0);
      assert.equal(transport.isReading(), false);

      transport.resumeReading();
      await protocol.waitFor("connectionLost");
      assertBytes(protocol.received(), first);
      assert.equal(protocol.overlapping, 0);
      assert.equal(protocol.lostWith, undefined);
    },
  );

  await overLoopbacks(
    t,
    "a 7-byte BufferedProtocol that took over a read in flight, paused after every update",
    async (peers) => {
      const first = new RecordingProtocol();
      const transport = new StreamTransport({ conn: peers.client }, first);
      const data = pattern(2000, 104);
      await writeAll(peers.server, data.subarray(0, 100));
      await waitForBytes(first, 100);
      const second = new PausingBufferedProtocol(Infinity, 7);
      handOn(transport, second);
      // The read in flight takes these whole; they are fed 7 bytes at a time.
      await writeAll(peers.server, data.subarray(100, 1100));
      const sending = send(peers.server, data.subarray(1100), {
        seed: 105,
        eof: true,
      });
      for (let n = 1; n <= data.byteLength; n++) {
        await Promise.race([
          second.waitFor("bufferUpdated", n),
          second.waitFor("connectionLost"),
        ]);
        if (second.count("connectionLost") > 0) break;
        assert.equal(transport.isReading(), false);
        transport.resumeReading();
      }
      await sending;
      await second.waitFor("connectionLost");
      assertBytes(concat([first.received(), second.received()]), data);
      assert.equal(second.whilePaused, 0, "bufferUpdated while paused");
      assert.equal(second.overlapping, 0);
      assert.equal(second.count("eofReceived"), 1);
    },
  );
});

// 10. setProtocol().

/** Checks a chain of protocols that took over one another. */
function assertHandOver(
  transport: StreamTransport,
  chain: Recording[],
  data: Uint8Array,
): void {
  const last = chain.at(-1)!;
  assert.equal(transport.getProtocol(), last);
  assertBytes(concat(chain.map((p) => p.received())), data);
  for (const protocol of chain.slice(1)) {
    assert.ok(byteCount(protocol) > 0, "a later protocol got data");
    assert.equal(protocol.count("connectionMade"), 0);
  }
  for (const protocol of chain.slice(0, -1)) {
    assert.equal(protocol.count("eofReceived"), 0);
    assert.equal(protocol.count("connectionLost"), 0);
    if (
      protocol instanceof SwitchingProtocol ||
      protocol instanceof SwitchingBufferedProtocol
    ) {
      assert.equal(
        protocol.calls.length,
        protocol.callsAtSwitch,
        `called after it switched: ${protocol.calls.slice(-3).join(" ")}`,
      );
    }
  }
  assert.equal(last.count("eofReceived"), 1);
  assert.equal(last.count("connectionLost"), 1);
  assert.equal(last.lostWith, undefined);
}

Deno.test("StreamTransport.setProtocol() switches protocols mid-stream without losing a byte", async (t) => {
  const inside: [string, () => Recording[]][] = [
    ["Protocol → Protocol from dataReceived", () => {
      const next = new RecordingProtocol();
      return [new SwitchingProtocol(next), next];
    }],
    ["Protocol → BufferedProtocol from dataReceived", () => {
      const next = new RecordingBufferedProtocol(1000);
      return [new SwitchingProtocol(next, 2), next];
    }],
    ["BufferedProtocol → Protocol from bufferUpdated", () => {
      const next = new RecordingProtocol();
      return [new SwitchingBufferedProtocol(next, 1000, 2), next];
    }],
    ["BufferedProtocol → BufferedProtocol from bufferUpdated", () => {
      const next = new RecordingBufferedProtocol(3000);
      return [new SwitchingBufferedProtocol(next, 1000), next];
    }],
    [
      "Protocol → 7-byte BufferedProtocol → Protocol, each from its callback",
      () => {
        const last = new RecordingProtocol();
        const middle = new SwitchingBufferedProtocol(last, 7, 3);
        return [new SwitchingProtocol(middle), middle, last];
      },
    ],
  ];
  for (const [name, make] of inside) {
    await overLoopbacks(t, name, async (peers) => {
      const chain = make();
      const transport = new StreamTransport({ conn: peers.client }, chain[0]!);
      const data = pattern(256 * 1024, 111);
      await send(peers.server, data, { seed: 112, eof: true });
      await chain.at(-1)!.waitFor("connectionLost");
      assertHandOver(transport, chain, data);
    });
  }

  const outside: [string, () => [Recording, Recording, ...Recording[]]][] = [
    ["Protocol → Protocol", () => [
      new RecordingProtocol(),
      new RecordingProtocol(),
    ]],
    ["Protocol → 7-byte BufferedProtocol", () => [
      new RecordingProtocol(),
      new RecordingBufferedProtocol(7),
    ]],
    ["BufferedProtocol → Protocol", () => [
      new RecordingBufferedProtocol(),
      new RecordingProtocol(),
    ]],
    ["BufferedProtocol → BufferedProtocol", () => [
      new RecordingBufferedProtocol(),
      new RecordingBufferedProtocol(500),
    ]],
    ["Protocol → 7-byte BufferedProtocol that switches to a Protocol", () => {
      const last = new RecordingProtocol();
      return [
        new RecordingProtocol(),
        new SwitchingBufferedProtocol(last, 7, 3),
        last,
      ];
    }],
  ];
  for (const [name, make] of outside) {
    await overLoopbacks(
      t,
      `${name} from outside while a read is in flight`,
      async (peers) => {
        const chain = make();
        const [first, second] = chain;
        const transport = new StreamTransport({ conn: peers.client }, first);
        const data = pattern(24 * 1024, 113);
        await writeAll(peers.server, data.subarray(0, 1000));
        await waitForBytes(first, 1000);
        if (first instanceof RecordingBufferedProtocol) {
          // The next read into the old protocol's buffer is under way.
          assert.equal(
            first.count("getBuffer"),
            first.count("bufferUpdated") + 1,
          );
        }
        const calls = first.calls.length;
        handOn(transport, second);
        assert.equal(transport.getProtocol(), second);

        // One write that the read in flight takes whole, then the rest.
        await writeAll(peers.server, data.subarray(1000, 5000));
        await send(peers.server, data.subarray(5000), { seed: 114, eof: true });
        await chain.at(-1)!.waitFor("connectionLost");
        assert.equal(first.calls.length, calls, "the old protocol was called");
        assertHandOver(transport, chain, data);
      },
    );
  }

  const held: [string, () => [Recording, Recording]][] = [
    ["BufferedProtocol → Protocol", () => [
      new RecordingBufferedProtocol(),
      new RecordingProtocol(),
    ]],
    ["Protocol → 7-byte BufferedProtocol", () => [
      new RecordingProtocol(),
      new RecordingBufferedProtocol(7),
    ]],
  ];
  for (const [name, make] of held) {
    await overLoopbacks(
      t,
      `${name} while reading is paused with a read held`,
      async (peers) => {
        const chain = make();
        const [first, second] = chain;
        const transport = new StreamTransport({ conn: peers.client }, first);
        await first.waitFor("connectionMade");
        transport.pauseReading();
        const data = pattern(16 * 1024, 115);
        await writeAll(peers.server, data.subarray(0, 1000));
        await roundTrips(transport, peers.server);
        assert.equal(byteCount(first), 0);
        handOn(transport, second);
        transport.resumeReading();

        await send(peers.server, data.subarray(1000), { seed: 116, eof: true });
        await second.waitFor("connectionLost");
        assert.deepEqual(
          first.calls.filter((call) => call !== "getBuffer"),
          ["connectionMade"],
        );
        assertHandOver(transport, chain, data);
      },
    );
  }
});
