import assert from "node:assert/strict";
import { ProtocolBase } from "../../protocols/protocol.ts";
import { StreamTransport } from "../../transports/_stream_transport.ts";
import type { Transport } from "../../transports/transport.ts";
import {
  concat,
  errorCollector,
  LOOPBACKS,
  pattern,
  readExactly,
  RecordingProtocol,
} from "../_test_utils.ts";

const MiB = 1024 * 1024;
/**
 * Marks well above what the kernel absorbs for a peer that does not read
 * (~4 MB over TCP loopback, ~200 KB over Unix), so that draining from high to
 * low needs the peer, and so that no single write can drain from low to 0.
 */
const FILL_LIMITS = { high: 12 * MiB, low: 6 * MiB };
/** The fill loop's bound: no kernel absorbs this much for a stalled peer. */
const MAX_FILL_CHUNKS = 64;

/** Records the write buffer size at each pause and resume. */
class FlowProtocol extends RecordingProtocol {
  pauseSizes: number[] = [];
  resumeSizes: number[] = [];
  onResume: (() => void) | undefined;

  #size(): number {
    return this.transport?.getWriteBufferSize() ?? 0;
  }
  override pauseWriting(): void {
    this.pauseSizes.push(this.#size());
    super.pauseWriting();
  }
  override resumeWriting(): void {
    this.resumeSizes.push(this.#size());
    this.onResume?.();
    super.resumeWriting();
  }
}

/** A `ProtocolBase` that logs its callbacks and the drains they release. */
class DrainingProtocol extends ProtocolBase {
  events: string[] = [];
  received = 0;
  #made = Promise.withResolvers<void>();
  #lost = Promise.withResolvers<Error | undefined>();
  #data: (() => void)[] = [];

  override connectionMade(transport: Transport): void {
    super.connectionMade(transport);
    this.#made.resolve();
  }

  override dataReceived(data: Uint8Array): void {
    this.received += data.byteLength;
    const waiters = this.#data;
    this.#data = [];
    for (const resolve of waiters) resolve();
  }
  override pauseWriting(): void {
    this.events.push("pause");
    super.pauseWriting();
  }
  override resumeWriting(): void {
    this.events.push("resume");
    super.resumeWriting();
  }
  override connectionLost(exc: Error | undefined): void {
    this.events.push("lost");
    super.connectionLost(exc);
    this.#lost.resolve(exc);
  }

  /** Resolves once `connectionMade` has run. */
  made(): Promise<void> {
    return this.#made.promise;
  }
  /** Resolves with `connectionLost`'s argument. */
  lost(): Promise<Error | undefined> {
    return this.#lost.promise;
  }
  /** Resolves on the next `dataReceived`. */
  nextData(): Promise<void> {
    return new Promise((resolve) => this.#data.push(resolve));
  }
  /** Starts `count` drains that log "drained" when they resolve. */
  startDrains(count: number): Promise<unknown> {
    return Promise.all(
      Array.from(
        { length: count },
        () => this.drain().then(() => this.events.push("drained")),
      ),
    );
  }
}

/** Index of the first byte where `a` and `b` differ, or -1. */
function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const length = Math.min(a.byteLength, b.byteLength);
  for (let i = 0; i < length; i++) if (a[i] !== b[i]) return i;
  return a.byteLength === b.byteLength ? -1 : length;
}

/**
 * Lets the event loop run with a callback to wait on: the peer sends one
 * byte, and this resolves when the transport has delivered it.
 */
async function roundTrip(
  peer: Deno.Conn,
  protocol: RecordingProtocol,
): Promise<void> {
  const seen = protocol.count("dataReceived");
  await peer.write(new Uint8Array([0x2e]));
  await protocol.waitFor("dataReceived", seen + 1);
}

Deno.test("StreamTransport.write() pauses once, inside the write that goes over high, while the peer does not read", async (t) => {
  for (const [kind, connect] of Object.entries(LOOPBACKS)) {
    await t.step(kind, async () => {
      using peers = await connect();
      const protocol = new FlowProtocol();
      const { errors, onError } = errorCollector();
      const transport = new StreamTransport({ conn: peers.client }, protocol, {
        onError,
      });
      await protocol.waitFor("connectionMade");
      transport.setWriteBufferLimits(FILL_LIMITS);
      const { low, high } = transport.getWriteBufferLimits();
      assert.deepEqual({ low, high }, FILL_LIMITS);

      // The peer reads nothing: the kernel absorbs a few MB, then the
      // transport's buffer grows until it goes over high.
      const chunks: Uint8Array[] = [];
      let paused = false;
      for (let i = 0; i < MAX_FILL_CHUNKS && !paused; i++) {
        const chunk = pattern(MiB, i + 1);
        chunks.push(chunk);
        const before = transport.getWriteBufferSize();
        const ok = transport.write(chunk);
        const after = transport.getWriteBufferSize();
        assert.equal(after, before + MiB, "every accepted byte is counted");
        if (after > high) {
          assert.equal(ok, false);
          assert.equal(protocol.count("pauseWriting"), 1);
          assert.deepEqual(protocol.pauseSizes, [after]);
          paused = true;
        } else {
          assert.equal(ok, true);
          assert.equal(protocol.count("pauseWriting"), 0);
          await roundTrip(peers.server, protocol);
        }
      }
      assert.equal(paused, true, "the buffer never went over high");

      // Over high, more writes return false and do not pause again.
      for (let i = 0; i < 2; i++) {
        const chunk = pattern(MiB, 100 + i);
        chunks.push(chunk);
        assert.equal(transport.write(chunk), false);
        await roundTrip(peers.server, protocol);
      }
      assert.equal(protocol.count("pauseWriting"), 1);
      assert.equal(protocol.count("resumeWriting"), 0);
      assert.ok(transport.getWriteBufferSize() > low);

      // The peer reads again, until resumeWriting: it comes once, when the
      // buffer is at or below low, not when it is empty.
      const total = chunks.length * MiB;
      let peerRead = 0;
      let peerReadAtResume = -1;
      protocol.onResume = () => peerReadAtResume = peerRead;
      const received = new Uint8Array(total);
      const read = async () => {
        const n = await peers.server.read(received.subarray(peerRead));
        assert.notEqual(n, null);
        peerRead += n!;
      };
      while (protocol.count("resumeWriting") === 0 && peerRead < total) {
        await read();
      }
      assert.equal(protocol.count("resumeWriting"), 1);
      const [resumeSize] = protocol.resumeSizes as [number];
      assert.ok(resumeSize <= low, `resumed at ${resumeSize}`);
      assert.ok(resumeSize > 0, "resumed only once the buffer was empty");
      assert.ok(peerReadAtResume > 0, "resumed before the peer read");

      while (peerRead < total) await read();
      assert.equal(firstDifference(received, concat(chunks)), -1);

      transport.close();
      await protocol.waitFor("connectionLost");
      assert.equal(protocol.lostWith, undefined);
      assert.equal(transport.getWriteBufferSize(), 0);
      assert.equal(protocol.count("pauseWriting"), 1);
      assert.equal(protocol.count("resumeWriting"), 1);
      assert.deepEqual(errors, []);
    });
  }
});

Deno.test("StreamTransport.write() with both marks 0 pauses on every write until the buffer is flushed", async (t) => {
  for (const [kind, connect] of Object.entries(LOOPBACKS)) {
    await t.step(kind, async () => {
      using peers = await connect();
      const protocol = new FlowProtocol();
      const transport = new StreamTransport({ conn: peers.client }, protocol);
      await protocol.waitFor("connectionMade");
      transport.setWriteBufferLimits({ high: 0, low: 0 });
      assert.deepEqual(transport.getWriteBufferLimits(), { low: 0, high: 0 });

      const rounds = 5;
      for (let i = 1; i <= rounds; i++) {
        const data = pattern(100 * i, i);
        assert.equal(transport.write(data), false);
        assert.equal(protocol.count("pauseWriting"), i);
        assert.equal(protocol.count("resumeWriting"), i - 1);
        assert.equal(transport.getWriteBufferSize(), data.byteLength);
        await protocol.waitFor("resumeWriting", i);
        const echoed = await readExactly(peers.server, data.byteLength);
        assert.equal(firstDifference(echoed, data), -1);
      }
      assert.deepEqual(protocol.resumeSizes, Array(rounds).fill(0));
      assert.equal(
        protocol.calls.filter((c) => c.endsWith("Writing")).join(" "),
        Array(rounds).fill("pauseWriting resumeWriting").join(" "),
      );

      // An empty write buffers nothing and so does not pause.
      assert.equal(transport.write(new Uint8Array(0)), true);
      assert.equal(protocol.count("pauseWriting"), rounds);

      transport.close();
      await protocol.waitFor("connectionLost");
      assert.equal(protocol.lostWith, undefined);
    });
  }
});

Deno.test("StreamTransport.getWriteBufferSize() counts the bytes of a write still in flight", async (t) => {
  for (const [kind, connect] of Object.entries(LOOPBACKS)) {
    await t.step(kind, async () => {
      using peers = await connect();
      const protocol = new FlowProtocol();
      const transport = new StreamTransport({ conn: peers.client }, protocol);
      await protocol.waitFor("connectionMade");
      transport.setWriteBufferLimits({ high: 0, low: 0 });

      // One chunk far larger than the kernel absorbs: the write loop keeps
      // it in flight while the peer reads nothing.
      const data = pattern(16 * MiB, 3);
      assert.equal(transport.write(data), false);
      assert.equal(protocol.count("pauseWriting"), 1);
      for (let i = 0; i < 3; i++) await roundTrip(peers.server, protocol);
      assert.equal(protocol.count("resumeWriting"), 0);
      assert.ok(transport.getWriteBufferSize() > 0);

      let peerRead = 0;
      let peerReadAtResume = -1;
      protocol.onResume = () => peerReadAtResume = peerRead;
      const received = new Uint8Array(data.byteLength);
      while (peerRead < data.byteLength) {
        const n = await peers.server.read(received.subarray(peerRead));
        assert.notEqual(n, null);
        peerRead += n!;
      }
      await protocol.waitFor("resumeWriting");
      assert.ok(peerReadAtResume > 0, "resumed while the write was in flight");
      assert.deepEqual(protocol.resumeSizes, [0]);
      assert.equal(firstDifference(received, data), -1);
      transport.close();
      await protocol.waitFor("connectionLost");
    });
  }
});

Deno.test("StreamTransport.setWriteBufferLimits() re-checks the buffer at once", async (t) => {
  for (const [kind, connect] of Object.entries(LOOPBACKS)) {
    await t.step(`${kind}: lowering high under the buffer pauses`, async () => {
      using peers = await connect();
      const protocol = new FlowProtocol();
      const transport = new StreamTransport({ conn: peers.client }, protocol);
      await protocol.waitFor("connectionMade");

      const data = pattern(1000);
      assert.equal(transport.write(data), true);
      assert.equal(protocol.count("pauseWriting"), 0);
      transport.setWriteBufferLimits({ high: 1000 });
      assert.equal(protocol.count("pauseWriting"), 0, "size == high");
      transport.setWriteBufferLimits({ high: 999 });
      assert.equal(protocol.count("pauseWriting"), 1);
      assert.deepEqual(protocol.pauseSizes, [1000]);
      assert.equal(transport.write(new Uint8Array([1])), false);

      await protocol.waitFor("resumeWriting");
      assert.ok(protocol.resumeSizes[0]! <= 249);
      const echoed = await readExactly(peers.server, 1001);
      assert.equal(firstDifference(echoed.subarray(0, 1000), data), -1);
      transport.close();
      await protocol.waitFor("connectionLost");
    });

    await t.step(`${kind}: raising low to the buffer resumes`, async () => {
      using peers = await connect();
      const protocol = new FlowProtocol();
      const transport = new StreamTransport({ conn: peers.client }, protocol);
      await protocol.waitFor("connectionMade");

      transport.setWriteBufferLimits({ high: 0 });
      assert.equal(transport.write(pattern(1000)), false);
      assert.equal(protocol.count("pauseWriting"), 1);
      transport.setWriteBufferLimits({ high: 4000, low: 999 });
      assert.equal(protocol.count("resumeWriting"), 0, "size > low");
      transport.setWriteBufferLimits({ high: 4000, low: 1000 });
      assert.equal(protocol.count("resumeWriting"), 1);
      assert.deepEqual(protocol.resumeSizes, [1000]);
      assert.equal(transport.write(new Uint8Array([1])), true);

      await readExactly(peers.server, 1001);
      transport.close();
      await protocol.waitFor("connectionLost");
      assert.equal(protocol.count("pauseWriting"), 1);
      assert.equal(protocol.count("resumeWriting"), 1);
    });
  }
});

Deno.test("StreamTransport.getWriteBufferLimits() returns the marks set, asyncio's defaults first", async () => {
  using peers = await LOOPBACKS.tcp();
  const protocol = new FlowProtocol();
  const transport = new StreamTransport({ conn: peers.client }, protocol);
  await protocol.waitFor("connectionMade");

  assert.deepEqual(transport.getWriteBufferLimits(), {
    low: 16384,
    high: 65536,
  });
  transport.setWriteBufferLimits({ high: 1000 });
  assert.deepEqual(transport.getWriteBufferLimits(), { low: 250, high: 1000 });
  transport.setWriteBufferLimits({ low: 100 });
  assert.deepEqual(transport.getWriteBufferLimits(), { low: 100, high: 400 });
  transport.setWriteBufferLimits();
  assert.deepEqual(transport.getWriteBufferLimits(), {
    low: 16384,
    high: 65536,
  });
  assert.throws(
    () => transport.setWriteBufferLimits({ high: 1, low: 2 }),
    RangeError,
  );
  assert.throws(() => transport.setWriteBufferLimits({ low: -1 }), RangeError);
  assert.throws(
    // @ts-expect-error: a mark must be a number
    () => transport.setWriteBufferLimits({ high: "100" }),
    TypeError,
  );
  assert.deepEqual(transport.getWriteBufferLimits(), {
    low: 16384,
    high: 65536,
  });
  assert.equal(protocol.count("pauseWriting"), 0);

  transport.close();
  await protocol.waitFor("connectionLost");
});

// A throwing pauseWriting or resumeWriting, as in every transport that
// writes: lifecycle_test.ts.

Deno.test("ProtocolBase.drain() waits while the transport pauses writing", async (t) => {
  await t.step("resolves at once when writing is not paused", async () => {
    using peers = await LOOPBACKS.tcp();
    const protocol = new DrainingProtocol();
    const transport = new StreamTransport({ conn: peers.client }, protocol);
    await protocol.made();
    assert.equal(transport.write(pattern(100)), true);
    let drained = false;
    const drain = protocol.drain().then(() => drained = true);
    await Promise.resolve();
    assert.equal(drained, true);
    await drain;
    await readExactly(peers.server, 100);
    transport.close();
    await protocol.lost();
    assert.deepEqual(protocol.events, ["lost"]);
  });

  for (const [kind, connect] of Object.entries(LOOPBACKS)) {
    await t.step(`${kind}: many waiters resolve on resumeWriting`, async () => {
      using peers = await connect();
      const protocol = new DrainingProtocol();
      const transport = new StreamTransport({ conn: peers.client }, protocol);
      await protocol.made();
      transport.setWriteBufferLimits(FILL_LIMITS);

      // Fill past high while the peer reads nothing.
      let total = 0;
      for (let i = 0; i < MAX_FILL_CHUNKS; i++) {
        total += MiB;
        if (!transport.write(pattern(MiB, i + 1))) break;
        const seen = protocol.nextData();
        await peers.server.write(new Uint8Array([1]));
        await seen;
      }
      assert.deepEqual(protocol.events, ["pause"]);
      const drains = protocol.startDrains(10);

      // Still paused after a round trip: nobody drained.
      const seen = protocol.nextData();
      await peers.server.write(new Uint8Array([1]));
      await seen;
      assert.deepEqual(protocol.events, ["pause"]);

      await readExactly(peers.server, total);
      await drains;
      assert.deepEqual(protocol.events, [
        "pause",
        "resume",
        ...Array(10).fill("drained"),
      ]);
      await protocol.drain();

      transport.close();
      assert.equal(await protocol.lost(), undefined);
    });

    await t.step(
      `${kind}: a writer that awaits drain() delivers every byte in order`,
      async () => {
        using peers = await connect();
        const protocol = new DrainingProtocol();
        const transport = new StreamTransport({ conn: peers.client }, protocol);
        await protocol.made();
        const data = pattern(4 * MiB, 7);
        const reading = readExactly(peers.server, data.byteLength);
        const step = 100_000;
        for (let offset = 0; offset < data.byteLength; offset += step) {
          transport.write(data.subarray(offset, offset + step));
          await protocol.drain();
        }
        assert.equal(firstDifference(await reading, data), -1);
        const pauses = protocol.events.filter((e) => e === "pause").length;
        assert.ok(pauses >= 1);
        assert.deepEqual(
          protocol.events,
          Array(pauses).fill(["pause", "resume"]).flat(),
        );
        transport.close();
        assert.equal(await protocol.lost(), undefined);
      },
    );

    await t.step(`${kind}: waiters resolve on connectionLost`, async () => {
      using peers = await connect();
      const protocol = new DrainingProtocol();
      const transport = new StreamTransport({ conn: peers.client }, protocol);
      await protocol.made();
      transport.setWriteBufferLimits({ high: 0 });
      assert.equal(transport.write(pattern(1000)), false);
      assert.deepEqual(protocol.events, ["pause"]);
      const drains = protocol.startDrains(10);

      transport.abort();
      assert.equal(await protocol.lost(), undefined);
      await drains;
      assert.deepEqual(protocol.events, [
        "pause",
        "lost",
        ...Array(10).fill("drained"),
      ]);
      await protocol.drain();
    });
  }
});

Deno.test("StreamTransport calls no flow-control callback after connectionLost", async (t) => {
  for (const [kind, connect] of Object.entries(LOOPBACKS)) {
    await t.step(
      `${kind}: setWriteBufferLimits() after an abort while paused`,
      async () => {
        using peers = await connect();
        const protocol = new FlowProtocol();
        const transport = new StreamTransport({ conn: peers.client }, protocol);
        await protocol.waitFor("connectionMade");
        transport.setWriteBufferLimits({ high: 0 });
        assert.equal(transport.write(pattern(1000)), false);
        transport.abort();
        await protocol.waitFor("connectionLost");

        transport.setWriteBufferLimits({ high: 100 });
        transport.setWriteBufferLimits();
        transport.setWriteBufferLimits({ high: 0 });
        transport.write(pattern(10));
        assert.equal(
          protocol.calls.join(" "),
          "connectionMade pauseWriting connectionLost",
        );
      },
    );

    await t.step(
      `${kind}: setWriteBufferLimits() after a clean close`,
      async () => {
        using peers = await connect();
        const protocol = new FlowProtocol();
        const transport = new StreamTransport({ conn: peers.client }, protocol);
        await protocol.waitFor("connectionMade");
        transport.write(pattern(1000));
        transport.close();
        await readExactly(peers.server, 1000);
        await protocol.waitFor("connectionLost");

        transport.setWriteBufferLimits({ high: 0 });
        transport.write(pattern(10));
        transport.setWriteBufferLimits();
        assert.equal(protocol.calls.join(" "), "connectionMade connectionLost");
      },
    );
  }
});
