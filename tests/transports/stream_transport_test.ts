import assert from "node:assert/strict";
import type { Protocol } from "../../protocols/protocol.ts";
import { StreamTransport } from "../../transports/_stream_transport.ts";
import type { Transport } from "../../transports/transport.ts";
import {
  assertBytes,
  errorCollector,
  pattern,
  readAll,
  readExactly,
  readUntilClosed,
  RecordingBufferedProtocol,
  RecordingProtocol,
  writeAll,
} from "../_test_utils.ts";
import {
  assertOrder,
  BIG,
  overLoopbacks,
  type Recording,
  roundTrips,
  send,
} from "./_stream_utils.ts";

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

  // A throwing connectionMade or dataReceived, as in every transport:
  // lifecycle_test.ts.
  const throwing: [string, (error: Error) => RecordingProtocol][] = [
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
