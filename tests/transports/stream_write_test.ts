import assert from "node:assert/strict";
import { StreamTransport } from "../../transports/_stream_transport.ts";
import {
  assertBytes,
  NOT_BYTES,
  pattern,
  readAll,
  readExactly,
  RecordingBufferedProtocol,
  RecordingProtocol,
  writeAll,
} from "../_test_utils.ts";
import {
  BIG,
  overLoopbacks,
  PING,
  type Recording,
  split,
} from "./_stream_utils.ts";

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
    for (const notIterable of [5, null, undefined, {}]) {
      assert.throws(
        () => transport.writelines(notIterable as never),
        TypeError,
        `writelines(${notIterable})`,
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
