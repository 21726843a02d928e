import assert from "node:assert/strict";
import type { DatagramProtocol } from "../../protocols/datagram_protocol.ts";
import { createDatagramEndpoint } from "../../transports/create_datagram_endpoint.ts";
import {
  assertBytes,
  bytes,
  errorCollector,
  flowCalls,
  NOT_BYTES,
  pattern,
  text,
} from "../_test_utils.ts";
import {
  assertFrom,
  HOSTS,
  ioTurns,
  MAX_UDP_PAYLOAD,
  on,
  open,
  receive,
  RecordingDatagramProtocol,
  socket,
} from "./_datagram_utils.ts";

// sendto().

Deno.test("DatagramEndpoint.sendto() sends to addr, or to remoteAddr without one", async (t) => {
  for (const host of HOSTS) {
    await t.step(
      `sendto(data, addr) to another endpoint over ${host}`,
      async () => {
        await using a = await open(new RecordingDatagramProtocol(), on(host));
        await using b = await open(new RecordingDatagramProtocol(), on(host));
        a.transport.sendto(bytes("to b"), b.addr);
        b.transport.sendto(bytes("to a"), a.addr);
        await a.protocol.waitFor("datagramReceived");
        await b.protocol.waitFor("datagramReceived");

        assert.deepEqual(b.protocol.texts(), ["to b"]);
        assertFrom(b.protocol.datagrams[0]!.addr, a);
        assert.deepEqual(a.protocol.texts(), ["to a"]);
        assertFrom(a.protocol.datagrams[0]!.addr, b);
      },
    );

    await t.step(`sendto(data) goes to remoteAddr over ${host}`, async () => {
      using peer = socket(host);
      await using client = await open(new RecordingDatagramProtocol(), {
        remoteAddr: { hostname: host, port: peer.addr.port },
      });
      client.transport.sendto(bytes("default"));
      // Naming remoteAddr itself is allowed.
      client.transport.sendto(bytes("named"), peer.addr);
      const first = await receive(peer);
      const second = await receive(peer);

      assert.equal(text(first.data), "default");
      assert.equal(text(second.data), "named");
      // Bound to all interfaces; sent over loopback.
      const from = { addr: { ...client.addr, hostname: host } };
      assertFrom(first.addr, from);
      assertFrom(second.addr, from);
    });

    await t.step(
      `sendto() to another address than remoteAddr throws TypeError over ${host}`,
      async () => {
        using peer = socket(host);
        await using other = await open(
          new RecordingDatagramProtocol(),
          on(host),
        );
        await using client = await open(new RecordingDatagramProtocol(), {
          localAddr: { hostname: host, port: 0 },
          remoteAddr: { hostname: host, port: peer.addr.port },
        });
        assert.throws(
          () => client.transport.sendto(bytes("stray"), other.addr),
          TypeError,
        );
        assert.equal(client.transport.getWriteBufferSize(), 0);
        client.transport.sendto(bytes("fine"));
        assert.equal(text((await receive(peer)).data), "fine");
        await ioTurns();

        assert.deepEqual(other.protocol.datagrams, []);
      },
    );
  }

  // remoteAddr as given, and the same address written another way.
  const spellings: [string, string, string][] = [
    ["::1", "[::1]", "[::1]"],
    ["::1", "::1", "[::1]"],
    ["127.0.0.1", "127.0.0.1", "[::ffff:127.0.0.1]"],
  ];
  for (const [host, given, written] of spellings) {
    await t.step(
      `sendto(data, addr) to remoteAddr ${given} written as ${written} goes to remoteAddr`,
      async () => {
        using peer = socket(host);
        await using client = await open(new RecordingDatagramProtocol(), {
          remoteAddr: { hostname: given, port: peer.addr.port },
        });
        client.transport.sendto(bytes("written"), {
          transport: "udp",
          hostname: written,
          port: peer.addr.port,
        });
        client.transport.sendto(bytes("as given"), {
          transport: "udp",
          hostname: given,
          port: peer.addr.port,
        });

        assert.equal(text((await receive(peer)).data), "written");
        assert.equal(text((await receive(peer)).data), "as given");
      },
    );
  }

  await t.step(
    "sendto() without addr and without remoteAddr throws TypeError",
    async () => {
      await using endpoint = await open(
        new RecordingDatagramProtocol(),
        on("127.0.0.1"),
      );
      assert.throws(
        () => endpoint.transport.sendto(bytes("nowhere")),
        TypeError,
      );
      assert.equal(endpoint.transport.getWriteBufferSize(), 0);
    },
  );
});

Deno.test("DatagramEndpoint.sendto() throws for bad data or a bad address, and queues nothing", async (t) => {
  await using endpoint = await open(
    new RecordingDatagramProtocol(),
    on("127.0.0.1"),
  );
  const { transport } = endpoint;
  const to = endpoint.addr;

  const values = NOT_BYTES;
  for (const [what, value] of values) {
    await t.step(`data as ${what} is a TypeError`, () => {
      assert.throws(
        () => transport.sendto(value as Uint8Array, to),
        TypeError,
      );
      assert.equal(transport.getWriteBufferSize(), 0);
    });
  }

  await t.step(
    `a datagram over ${MAX_UDP_PAYLOAD} bytes is a RangeError`,
    () => {
      assert.throws(
        () => transport.sendto(new Uint8Array(MAX_UDP_PAYLOAD + 1), to),
        RangeError,
      );
      assert.equal(transport.getWriteBufferSize(), 0);
    },
  );

  const addresses: [string, unknown, ErrorConstructor][] = [
    ["without a port", { hostname: "127.0.0.1" }, TypeError],
    ["without a hostname", { port: to.port }, TypeError],
    ["with port 70000", { hostname: "127.0.0.1", port: 70_000 }, RangeError],
    ["with port -1", { hostname: "127.0.0.1", port: -1 }, RangeError],
    ["with port 1.5", { hostname: "127.0.0.1", port: 1.5 }, TypeError],
    ["with port as a string", { hostname: "127.0.0.1", port: "9" }, TypeError],
    ["as a string", `127.0.0.1:${to.port}`, TypeError],
    ["as null", null, TypeError],
  ];
  for (const [what, addr, error] of addresses) {
    await t.step(`an address ${what} is a ${error.name}`, () => {
      assert.throws(
        () => transport.sendto(new Uint8Array(1), addr as Deno.NetAddr),
        (thrown: unknown) =>
          thrown instanceof error &&
          /^Cannot send datagram: addr\b/.test(thrown.message),
      );
      assert.equal(transport.getWriteBufferSize(), 0);
    });
  }

  await t.step("nothing was sent", async () => {
    await ioTurns();
    assert.deepEqual(endpoint.protocol.datagrams, []);
  });
});

// Send errors.

Deno.test("DatagramEndpoint passes send errors to errorReceived and goes on", async (t) => {
  // Each fails at send time on Linux, whatever listens on loopback.
  const failures: [string, string, Deno.NetAddr][] = [
    ["port 0", "127.0.0.1", {
      transport: "udp",
      hostname: "127.0.0.1",
      port: 0,
    }],
    ["port 0", "::1", { transport: "udp", hostname: "::1", port: 0 }],
    ["an IPv6 address from an IPv4 socket", "127.0.0.1", {
      transport: "udp",
      hostname: "::1",
      port: 9,
    }],
    ["an IPv4 address from an IPv6 socket", "::1", {
      transport: "udp",
      hostname: "127.0.0.1",
      port: 9,
    }],
  ];
  for (const [what, host, to] of failures) {
    await t.step(`sending to ${what} over ${host}`, async () => {
      using peer = socket(host);
      const { errors, onError } = errorCollector();
      await using endpoint = await open(
        new RecordingDatagramProtocol(),
        on(host, { onError }),
      );
      const { transport, protocol } = endpoint;
      transport.sendto(bytes("doomed"), to);
      await protocol.waitFor("errorReceived");

      assert.equal(protocol.errors.length, 1);
      assert.ok(protocol.errors[0] instanceof Error);
      assert.equal(transport.isClosing(), false);
      assert.equal(transport.getWriteBufferSize(), 0);

      // Still sends and receives.
      transport.sendto(bytes("after"), peer.addr);
      const after = await receive(peer);
      assert.equal(text(after.data), "after");
      await peer.conn.send(bytes("reply"), endpoint.addr);
      await protocol.waitFor("datagramReceived");
      assert.deepEqual(protocol.texts(), ["reply"]);
      assert.deepEqual(
        protocol.calls,
        ["connectionMade", "errorReceived", "datagramReceived"],
      );
      assert.deepEqual(errors, []);
    });
  }

  await t.step("without errorReceived, the error goes to onError", async () => {
    using peer = socket("127.0.0.1");
    const { errors, onError } = errorCollector();
    const recorder = new RecordingDatagramProtocol();
    // A protocol with no errorReceived at all.
    const protocol: DatagramProtocol = {
      connectionMade: (transport) => recorder.connectionMade(transport),
      datagramReceived: (data, addr) => recorder.datagramReceived(data, addr),
      connectionLost: (exc) => recorder.connectionLost(exc),
    };
    const [transport] = await createDatagramEndpoint(() => protocol, {
      localAddr: { hostname: "127.0.0.1", port: 0 },
      onError,
    });
    try {
      transport.sendto(bytes("doomed"), {
        transport: "udp",
        hostname: "127.0.0.1",
        port: 0,
      });
      transport.sendto(bytes("after"), peer.addr);
      const after = await receive(peer);
      assert.equal(text(after.data), "after");

      assert.equal(errors.length, 1);
      assert.ok(errors[0]!.error instanceof Error);
      assert.match(errors[0]!.context.message, /errorReceived/);
      assert.equal(errors[0]!.context.transport, transport);
      assert.equal(errors[0]!.context.protocol, protocol);
      assert.equal(transport.isClosing(), false);

      await peer.conn.send(bytes("reply"), after.addr);
      await recorder.waitFor("datagramReceived");
      assert.deepEqual(recorder.texts(), ["reply"]);
    } finally {
      transport.abort();
      await recorder.waitFor("connectionLost");
    }
  });
});

// Flow control.

Deno.test("DatagramEndpoint.sendto() pauses the protocol above the high-water mark", async (t) => {
  await t.step(
    "pauses inside sendto(), once; resumes once the queue drained",
    async () => {
      using peer = socket("127.0.0.1");
      await using endpoint = await open(
        new RecordingDatagramProtocol(),
        on("127.0.0.1"),
      );
      const { transport, protocol } = endpoint;
      assert.deepEqual(transport.getWriteBufferLimits(), {
        high: 64 * 1024,
        low: 16 * 1024,
      });
      transport.setWriteBufferLimits({ high: 0 });
      assert.deepEqual(transport.getWriteBufferLimits(), { high: 0, low: 0 });

      for (let round = 1; round <= 3; round++) {
        transport.sendto(pattern(10, round), peer.addr);
        assert.equal(protocol.count("pauseWriting"), round, "inside sendto()");
        transport.sendto(pattern(20, round), peer.addr);
        assert.equal(protocol.count("pauseWriting"), round, "only once");
        assert.equal(
          transport.getWriteBufferSize(),
          30 + 2 * 8,
          "bytes + 8 each",
        );
        await protocol.waitFor("resumeWriting", round);

        assert.equal(transport.getWriteBufferSize(), 0);
        assertBytes((await receive(peer)).data, pattern(10, round), "first");
        assertBytes((await receive(peer)).data, pattern(20, round), "second");
      }
      assert.equal(
        flowCalls(protocol.calls),
        "pauseWriting resumeWriting ".repeat(3).trim(),
      );
    },
  );

  await t.step("setting limits re-checks the queue at once", async () => {
    using peer = socket("127.0.0.1");
    await using endpoint = await open(
      new RecordingDatagramProtocol(),
      on("127.0.0.1"),
    );
    const { transport, protocol } = endpoint;
    transport.sendto(new Uint8Array(100), peer.addr);
    transport.sendto(new Uint8Array(50), peer.addr);
    assert.equal(transport.getWriteBufferSize(), 150 + 2 * 8);
    assert.equal(protocol.count("pauseWriting"), 0);
    transport.setWriteBufferLimits({ high: 120, low: 10 });
    assert.equal(protocol.count("pauseWriting"), 1);
    await protocol.waitFor("resumeWriting");
    await receive(peer);
    await receive(peer);

    assert.equal(flowCalls(protocol.calls), "pauseWriting resumeWriting");
    assert.equal(transport.getWriteBufferSize(), 0);
  });

  await t.step(
    "close() while paused: resumeWriting, then connectionLost",
    async () => {
      using peer = socket("127.0.0.1");
      const protocol = new RecordingDatagramProtocol();
      const { transport } = await open(protocol, on("127.0.0.1"));
      transport.setWriteBufferLimits({ high: 0 });
      transport.sendto(pattern(10), peer.addr);
      transport.close();
      await protocol.waitFor("connectionLost");
      assertBytes((await receive(peer)).data, pattern(10), "datagram");

      assert.deepEqual(protocol.calls, [
        "connectionMade",
        "pauseWriting",
        "resumeWriting",
        "connectionLost",
      ]);
    },
  );

  await t.step("limits are checked", async () => {
    await using endpoint = await open(
      new RecordingDatagramProtocol(),
      on("127.0.0.1"),
    );
    const { transport } = endpoint;
    assert.throws(
      () => transport.setWriteBufferLimits({ high: 1, low: 2 }),
      RangeError,
    );
    assert.throws(
      () => transport.setWriteBufferLimits({ low: -1 }),
      RangeError,
    );
    transport.setWriteBufferLimits({ low: 100 });
    assert.deepEqual(transport.getWriteBufferLimits(), { high: 400, low: 100 });
    transport.setWriteBufferLimits({ high: 400 });
    assert.deepEqual(transport.getWriteBufferLimits(), { high: 400, low: 100 });
  });
});

// close() and abort().

/** A 4-byte datagram that carries `index`. */
function numbered(index: number): Uint8Array {
  const data = new Uint8Array(4);
  new DataView(data.buffer).setUint32(0, index);
  return data;
}

function numberOf(data: Uint8Array): number {
  return new DataView(data.buffer, data.byteOffset, data.byteLength)
    .getUint32(0);
}

Deno.test("DatagramEndpoint.close() sends every queued datagram, then closes", async (t) => {
  await t.step("200 queued datagrams all arrive, in order", async () => {
    using marker = socket("127.0.0.1");
    await using receiver = await open(
      new RecordingDatagramProtocol(),
      on("127.0.0.1"),
    );
    const protocol = new RecordingDatagramProtocol();
    const { transport, addr } = await open(protocol, on("127.0.0.1"));
    const count = 200;
    for (let i = 0; i < count; i++) {
      transport.sendto(numbered(i), receiver.addr);
    }
    assert.equal(transport.getWriteBufferSize(), (4 + 8) * count);
    transport.close();
    assert.equal(transport.isClosing(), true);
    // Dropped without a throw.
    transport.sendto(bytes("after close"), receiver.addr);
    await protocol.waitFor("connectionLost");
    assert.equal(protocol.lostWith, undefined);
    assert.equal(transport.getWriteBufferSize(), 0);

    // Everything the endpoint sent was queued to the receiver before the
    // marker.
    await marker.conn.send(bytes("end"), receiver.addr);
    await receiver.protocol.waitFor("datagramReceived", count + 1);
    const { datagrams } = receiver.protocol;
    assert.equal(datagrams.length, count + 1);
    for (let i = 0; i < count; i++) {
      assert.equal(numberOf(datagrams[i]!.data), i);
      assertFrom(datagrams[i]!.addr, { addr });
    }
    assert.equal(text(datagrams[count]!.data), "end");
    assertFrom(datagrams[count]!.addr, marker);
  });

  await t.step(
    "abort() drops the queue (the first sendto() went out at once)",
    async () => {
      using marker = socket("127.0.0.1");
      await using receiver = await open(
        new RecordingDatagramProtocol(),
        on("127.0.0.1"),
      );
      const protocol = new RecordingDatagramProtocol();
      const { transport } = await open(protocol, on("127.0.0.1"));
      for (let i = 0; i < 50; i++) transport.sendto(numbered(i), receiver.addr);
      transport.abort();
      assert.equal(transport.isClosing(), true);
      assert.equal(transport.getWriteBufferSize(), 0);
      transport.sendto(bytes("after abort"), receiver.addr);
      await protocol.waitFor("connectionLost");
      assert.equal(protocol.lostWith, undefined);

      await marker.conn.send(bytes("end"), receiver.addr);
      // Bounded: at most the first datagram, then "end".
      for (
        let n = 1;
        n <= 2 && !receiver.protocol.texts().includes("end");
        n++
      ) {
        await receiver.protocol.waitFor("datagramReceived", n);
      }
      const texts = receiver.protocol.texts();
      assert.equal(texts.at(-1), "end");
      assert.ok(texts.length <= 2, `${texts.length} datagrams arrived`);
    },
  );

  await t.step("close() stops receiving", async () => {
    using sender = socket("127.0.0.1");
    const protocol = new RecordingDatagramProtocol();
    const { transport, addr } = await open(protocol, on("127.0.0.1"));
    transport.close();
    await sender.conn.send(bytes("too late"), addr);
    await protocol.waitFor("connectionLost");
    await ioTurns();

    assert.deepEqual(protocol.calls, ["connectionMade", "connectionLost"]);
  });
});
