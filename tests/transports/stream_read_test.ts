import assert from "node:assert/strict";
import { MemoryTransport } from "../../testing/mod.ts";
import { StreamTransport } from "../../transports/_stream_transport.ts";
import {
  assertBytes,
  bytes,
  concat,
  errorCollector,
  LOOPBACKS,
  pattern,
  readUntilClosed,
  RecordingBufferedProtocol,
  RecordingProtocol,
  text,
  writeAll,
} from "../_test_utils.ts";
import {
  byteCount,
  handOn,
  overLoopbacks,
  roundTrips,
  send,
  waitForBytes,
} from "./_stream_utils.ts";

/** A `Protocol` that keeps a copy of each chunk next to the chunk itself. */
class KeepingProtocol extends RecordingProtocol {
  copies: Uint8Array[] = [];
  override dataReceived(data: Uint8Array): void {
    this.copies.push(data.slice());
    super.dataReceived(data);
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

// 8. pauseReading() and resumeReading().

// What every transport that reads does: lifecycle_test.ts.
Deno.test("StreamTransport.pauseReading() holds a BufferedProtocol's data until resumeReading()", async (t) => {
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

Deno.test("A transport fed in memory delivers a pushed EOF once, after what was held, in a later task than resumeReading(), and nothing after it", async (t) => {
  const settle = () => new Promise((resolve) => setTimeout(resolve, 0));
  /** Keeps the write side open after EOF, so EOF could come again. */
  class HalfOpen extends RecordingProtocol {
    override eofReceived(): boolean {
      super.eofReceived();
      return true;
    }
  }

  await t.step(
    "once, however often reading is paused and resumed after it",
    async () => {
      const protocol = new HalfOpen();
      const transport = new MemoryTransport(protocol);
      transport.pauseReading();
      transport.receiveEof();
      for (let i = 0; i < 3; i++) {
        transport.resumeReading();
        await settle();
        transport.pauseReading();
      }
      assert.equal(protocol.count("eofReceived"), 1);
      transport.close();
    },
  );

  await t.step("not from within resumeReading()", async () => {
    const protocol = new HalfOpen();
    const transport = new MemoryTransport(protocol);
    transport.pauseReading();
    transport.receiveEof();
    transport.resumeReading();
    assert.equal(protocol.count("eofReceived"), 0);
    await settle();
    assert.equal(protocol.count("eofReceived"), 1);
    transport.close();
  });

  await t.step(
    "data received after EOF is dropped, paused or not",
    async () => {
      const protocol = new HalfOpen();
      const transport = new MemoryTransport(protocol);
      transport.pauseReading();
      transport.receive(bytes("a"));
      transport.receiveEof();
      transport.receive(bytes("b"));
      transport.resumeReading();
      await settle();
      transport.receive(bytes("c"));
      assert.equal(text(protocol.received()), "a");
      assert.deepEqual(protocol.calls.slice(1), [
        "dataReceived",
        "eofReceived",
      ]);
      transport.close();
    },
  );
});
