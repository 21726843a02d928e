import assert from "node:assert/strict";
import { assertBytes, bytes, pattern, text } from "../_test_utils.ts";
import {
  assertFrom,
  HOSTS,
  ioTurns,
  MAX_DATAGRAM,
  on,
  open,
  receive,
  RecordingDatagramProtocol,
  socket,
} from "./_datagram_utils.ts";

// datagramReceived.

Deno.test("DatagramEndpoint.datagramReceived() gets each datagram whole, with its sender", async (t) => {
  const sizes = [0, 1, 1400, 9000, MAX_DATAGRAM];
  for (const host of HOSTS) {
    await t.step(
      `datagrams of ${sizes.join(", ")} bytes over ${host}`,
      async () => {
        await using receiver = await open(
          new RecordingDatagramProtocol(),
          on(host),
        );
        await using sender = await open(
          new RecordingDatagramProtocol(),
          on(host),
        );
        for (const [i, size] of sizes.entries()) {
          sender.transport.sendto(pattern(size, i + 1), receiver.addr);
        }
        await receiver.protocol.waitFor("datagramReceived", sizes.length);

        const { datagrams } = receiver.protocol;
        assert.deepEqual(
          datagrams.map(({ data }) => data.byteLength),
          sizes,
        );
        for (const [i, size] of sizes.entries()) {
          assertBytes(datagrams[i]!.data, pattern(size, i + 1), `#${i}`);
          assertFrom(datagrams[i]!.addr, sender);
        }
      },
    );

    await t.step(
      `the sender of each, from several sockets over ${host}`,
      async () => {
        await using receiver = await open(
          new RecordingDatagramProtocol(),
          on(host),
        );
        using a = socket(host);
        using b = socket(host);
        await a.conn.send(bytes("a1"), receiver.addr);
        await b.conn.send(bytes("b1"), receiver.addr);
        await a.conn.send(bytes("a2"), receiver.addr);
        await receiver.protocol.waitFor("datagramReceived", 3);

        assert.deepEqual(receiver.protocol.texts(), ["a1", "b1", "a2"]);
        const [a1, b1, a2] = receiver.protocol.datagrams;
        assertFrom(a1!.addr, a);
        assertFrom(b1!.addr, b);
        assertFrom(a2!.addr, a);
      },
    );
  }

  await t.step(
    "a datagram of 65527 bytes, the IPv6 maximum, over ::1",
    async () => {
      await using receiver = await open(
        new RecordingDatagramProtocol(),
        on("::1"),
      );
      using sender = socket("::1");
      const data = pattern(65_527, 9);
      assert.equal(
        await sender.conn.send(data, receiver.addr),
        data.byteLength,
      );
      await receiver.protocol.waitFor("datagramReceived");

      // UDP over IPv6 carries up to 65527 bytes, 20 more than over IPv4.
      assertBytes(receiver.protocol.datagrams[0]!.data, data, "datagram");
    },
  );

  await t.step(
    "the protocol keeps what it gets: 200 datagrams checked at the end",
    async () => {
      await using receiver = await open(
        new RecordingDatagramProtocol(),
        on("127.0.0.1"),
      );
      using sender = socket("127.0.0.1");
      // Both sides of the 16 KiB line where small datagrams share a pool.
      const sizes = [0, 1, 100, 1400, 4096, 16384, 16385, 30000];
      const count = 200;
      // In rounds of one of each size, so that the socket buffer never fills.
      for (let i = 0; i < count; i++) {
        await sender.conn.send(
          pattern(sizes[i % sizes.length]!, i),
          receiver.addr,
        );
        if (i % sizes.length === sizes.length - 1) {
          await receiver.protocol.waitFor("datagramReceived", i + 1);
        }
      }
      await receiver.protocol.waitFor("datagramReceived", count);

      const { datagrams } = receiver.protocol;
      assert.equal(datagrams.length, count);
      for (const [i, { data, addr }] of datagrams.entries()) {
        assertBytes(
          data,
          pattern(sizes[i % sizes.length]!, i),
          `datagram ${i}`,
        );
        assertFrom(addr, sender);
      }
    },
  );
});

// remoteAddr.

Deno.test("DatagramEndpoint with remoteAddr delivers only datagrams from remoteAddr", async (t) => {
  for (const host of HOSTS) {
    await t.step(`a third socket is filtered out over ${host}`, async () => {
      using peer = socket(host);
      using stranger = socket(host);
      await using client = await open(new RecordingDatagramProtocol(), {
        localAddr: { hostname: host, port: 0 },
        remoteAddr: { hostname: host, port: peer.addr.port },
      });
      // The stranger's datagrams are queued first, so the peer's second
      // datagram comes after them.
      await stranger.conn.send(bytes("stranger 1"), client.addr);
      await peer.conn.send(bytes("peer 1"), client.addr);
      await stranger.conn.send(bytes("stranger 2"), client.addr);
      await peer.conn.send(bytes("peer 2"), client.addr);
      await client.protocol.waitFor("datagramReceived", 2);
      await ioTurns();

      assert.deepEqual(client.protocol.texts(), ["peer 1", "peer 2"]);
      for (const { addr } of client.protocol.datagrams) assertFrom(addr, peer);
    });
  }

  await t.step("another host with the same port is filtered out", async () => {
    using peer = socket("127.0.0.1");
    // 127.0.0.2 is loopback too on Linux.
    using stranger = socket("127.0.0.2", peer.addr.port);
    await using client = await open(new RecordingDatagramProtocol(), {
      localAddr: { hostname: "0.0.0.0", port: 0 },
      remoteAddr: { hostname: "127.0.0.1", port: peer.addr.port },
    });
    const to = { ...client.addr, hostname: "127.0.0.1" };
    await stranger.conn.send(bytes("stranger"), to);
    await peer.conn.send(bytes("peer"), to);
    await client.protocol.waitFor("datagramReceived");
    await ioTurns();

    assert.deepEqual(client.protocol.texts(), ["peer"]);
  });

  await t.step("remoteAddr given as an IPv6 address spelled out", async () => {
    using peer = socket("::1");
    await using client = await open(new RecordingDatagramProtocol(), {
      localAddr: { hostname: "::1", port: 0 },
      remoteAddr: { hostname: "0:0:0:0:0:0:0:1", port: peer.addr.port },
    });
    client.transport.sendto(bytes("hello"));
    assert.equal(text((await receive(peer)).data), "hello");
    await peer.conn.send(bytes("back"), client.addr);
    await client.protocol.waitFor("datagramReceived");

    assert.deepEqual(client.protocol.texts(), ["back"]);
  });

  await t.step('remoteAddr given as "localhost"', async () => {
    using peer = socket("127.0.0.1");
    await using client = await open(new RecordingDatagramProtocol(), {
      remoteAddr: { hostname: "localhost", port: peer.addr.port },
    });
    client.transport.sendto(bytes("hello"));
    const hello = await receive(peer);
    assert.equal(text(hello.data), "hello");
    await peer.conn.send(bytes("back"), hello.addr);
    await client.protocol.waitFor("datagramReceived");

    assert.deepEqual(client.protocol.texts(), ["back"]);
    assertFrom(client.protocol.datagrams[0]!.addr, peer);
    assert.equal(
      client.transport.getExtraInfo("peername")?.hostname,
      "127.0.0.1",
    );
  });
});
