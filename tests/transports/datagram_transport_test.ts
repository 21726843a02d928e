import assert from "node:assert/strict";
import type { DatagramProtocol } from "../../protocols/datagram_protocol.ts";
import { createDatagramEndpoint } from "../../transports/create_datagram_endpoint.ts";
import type { DatagramTransport } from "../../transports/transport.ts";
import { bytes, errorCollector, text } from "../_test_utils.ts";
import {
  HOSTS,
  ioTurns,
  on,
  open,
  plain,
  receive,
  RecordingDatagramProtocol,
  socket,
} from "./_datagram_utils.ts";

Deno.test("DatagramEndpoint calls connectionLost last, once, with undefined after close() or abort()", async (t) => {
  const ends: [string, (transport: DatagramTransport) => void][] = [
    ["close()", (transport) => transport.close()],
    ["abort()", (transport) => transport.abort()],
    ["close() then abort()", (transport) => {
      transport.close();
      transport.abort();
    }],
    ["abort() then close()", (transport) => {
      transport.abort();
      transport.close();
    }],
  ];
  for (const host of HOSTS) {
    for (const [name, end] of ends) {
      await t.step(`after ${name} over ${host}`, async () => {
        using peer = socket(host);
        const protocol = new RecordingDatagramProtocol();
        const { transport } = await open(protocol, on(host));
        transport.sendto(bytes("before"), peer.addr);
        assert.equal(text((await receive(peer)).data), "before");
        end(transport);
        end(transport);
        await protocol.waitFor("connectionLost");
        await ioTurns();

        assert.deepEqual(protocol.calls, ["connectionMade", "connectionLost"]);
        assert.equal(protocol.lostWith, undefined);
        assert.equal(transport.isClosing(), true);
      });
    }
  }
});

Deno.test("DatagramEndpoint calls no callback after connectionLost", async (t) => {
  for (const host of HOSTS) {
    await t.step(`over ${host}`, async () => {
      using peer = socket(host);
      const protocol = new RecordingDatagramProtocol();
      const { transport, addr } = await open(protocol, on(host));
      transport.close();
      await protocol.waitFor("connectionLost");
      const calls = [...protocol.calls];

      // Over the high mark, but dropped: no pauseWriting.
      assert.doesNotThrow(() =>
        transport.sendto(new Uint8Array(1000), peer.addr)
      );
      transport.setWriteBufferLimits({ high: 0 });
      transport.close();
      transport.abort();
      const next = new RecordingDatagramProtocol();
      transport.setProtocol(next);
      transport.close();
      // To the port it was bound to: nobody listens there any more.
      await peer.conn.send(bytes("late"), addr);
      await ioTurns();

      assert.equal(transport.getWriteBufferSize(), 0);
      assert.deepEqual(protocol.calls, calls);
      assert.deepEqual(next.calls, []);
    });
  }
});

// 6. Protocol callbacks that throw.

/** Throws from datagramReceived. */
class ThrowingProtocol extends RecordingDatagramProtocol {
  readonly error = new Error("datagramReceived failed");
  override datagramReceived(data: Uint8Array, addr: Deno.NetAddr): void {
    super.datagramReceived(data, addr);
    throw this.error;
  }
}

Deno.test("DatagramEndpoint closes with the error a protocol callback throws", async (t) => {
  await t.step(
    "datagramReceived: onError, connectionLost(error), others go on",
    async () => {
      using sender = socket("127.0.0.1");
      const { errors, onError } = errorCollector();
      const thrower = new ThrowingProtocol();
      await using failing = await open(thrower, on("127.0.0.1", { onError }));
      await using other = await open(
        new RecordingDatagramProtocol(),
        on("127.0.0.1", { onError }),
      );
      await sender.conn.send(bytes("one"), failing.addr);
      await sender.conn.send(bytes("two"), failing.addr);
      await sender.conn.send(bytes("fine"), other.addr);
      await thrower.waitFor("connectionLost");

      assert.deepEqual(
        thrower.calls,
        ["connectionMade", "datagramReceived", "connectionLost"],
      );
      assert.equal(thrower.lostWith, thrower.error);
      assert.equal(failing.transport.isClosing(), true);
      assert.equal(errors.length, 1);
      assert.equal(errors[0]!.error, thrower.error);
      assert.match(errors[0]!.context.message, /datagramReceived/);
      assert.equal(errors[0]!.context.transport, failing.transport);
      assert.equal(errors[0]!.context.protocol, thrower);

      // The other endpoint still receives and sends.
      await other.protocol.waitFor("datagramReceived");
      other.transport.sendto(bytes("still here"), sender.addr);
      assert.equal(text((await receive(sender)).data), "still here");
      await sender.conn.send(bytes("again"), other.addr);
      await other.protocol.waitFor("datagramReceived", 2);
      assert.deepEqual(other.protocol.texts(), ["fine", "again"]);
      assert.deepEqual(
        other.protocol.calls,
        ["connectionMade", "datagramReceived", "datagramReceived"],
      );
      assert.equal(errors.length, 1);
      assert.deepEqual(
        thrower.calls,
        ["connectionMade", "datagramReceived", "connectionLost"],
      );
    },
  );

  await t.step("errorReceived: onError, connectionLost(error)", async () => {
    const { errors, onError } = errorCollector();
    const error = new Error("errorReceived failed");
    class FailingErrorReceived extends RecordingDatagramProtocol {
      override errorReceived(exc: Error): void {
        super.errorReceived(exc);
        throw error;
      }
    }
    const protocol = new FailingErrorReceived();
    await using endpoint = await open(protocol, on("127.0.0.1", { onError }));
    endpoint.transport.sendto(new Uint8Array(1), {
      transport: "udp",
      hostname: "127.0.0.1",
      port: 0,
    });
    await protocol.waitFor("connectionLost");

    assert.deepEqual(
      protocol.calls,
      ["connectionMade", "errorReceived", "connectionLost"],
    );
    assert.equal(protocol.lostWith, error);
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!.error, error);
    assert.match(errors[0]!.context.message, /errorReceived/);
  });

  await t.step(
    "connectionMade: createDatagramEndpoint() rejects and closes the socket",
    async () => {
      const { errors, onError } = errorCollector();
      const error = new Error("connectionMade failed");
      let bound: Deno.NetAddr | undefined;
      class FailingMade extends RecordingDatagramProtocol {
        override connectionMade(transport: DatagramTransport): void {
          super.connectionMade(transport);
          bound = transport.getExtraInfo("sockname");
          throw error;
        }
      }
      const protocol = new FailingMade();
      await assert.rejects(
        () =>
          createDatagramEndpoint(() => protocol, on("127.0.0.1", { onError })),
        (thrown) => thrown === error,
      );
      await protocol.waitFor("connectionLost");

      assert.deepEqual(protocol.calls, ["connectionMade", "connectionLost"]);
      assert.equal(protocol.lostWith, error);
      assert.equal(errors.length, 1);
      assert.equal(errors[0]!.error, error);
      assert.match(errors[0]!.context.message, /connectionMade/);
      // The port is free again: the socket was closed.
      assert.ok(bound !== undefined && bound.port !== 0);
      using again = socket("127.0.0.1", bound.port);
      assert.equal(again.addr.port, bound.port);
    },
  );
});

// 9. getExtraInfo().

Deno.test("DatagramEndpoint.getExtraInfo() gives sockname, peername and conn", async (t) => {
  for (const host of HOSTS) {
    await t.step(`over ${host}`, async () => {
      using peer = socket(host);
      await using bound = await open(new RecordingDatagramProtocol(), on(host));
      await using connected = await open(new RecordingDatagramProtocol(), {
        remoteAddr: { hostname: host, port: peer.addr.port },
      });

      const sockname = bound.transport.getExtraInfo("sockname");
      assert.ok(sockname, "sockname");
      assert.equal(sockname.transport, "udp");
      assert.equal(sockname.hostname, host);
      assert.notEqual(sockname.port, 0);
      assert.equal(bound.transport.getExtraInfo("peername"), undefined);
      assert.deepEqual(
        plain(connected.transport.getExtraInfo("peername")),
        plain(peer.addr),
      );
      assert.notEqual(
        connected.transport.getExtraInfo("sockname")?.port,
        0,
      );

      const conn = bound.transport.getExtraInfo("conn");
      assert.ok(conn, "conn");
      assert.equal(typeof conn.receive, "function");
      assert.deepEqual(plain(conn.addr as Deno.NetAddr), plain(sockname));

      assert.equal(bound.transport.getExtraInfo("socket"), undefined);
      assert.equal(bound.transport.getExtraInfo("socket", "none"), "none");
    });
  }
});

// 12. setProtocol().

Deno.test("DatagramEndpoint.setProtocol() switches the protocol for the next datagrams", async (t) => {
  await t.step(
    "the next datagrams and connectionLost go to the new one",
    async () => {
      using sender = socket("127.0.0.1");
      const first = new RecordingDatagramProtocol();
      const { transport, addr } = await open(first, on("127.0.0.1"));
      const second = new RecordingDatagramProtocol();
      try {
        await sender.conn.send(bytes("one"), addr);
        await first.waitFor("datagramReceived");
        transport.setProtocol(second);
        assert.equal(transport.getProtocol(), second);
        await sender.conn.send(bytes("two"), addr);
        await sender.conn.send(bytes("three"), addr);
        await second.waitFor("datagramReceived", 2);
      } finally {
        transport.close();
        await second.waitFor("connectionLost");
      }

      assert.deepEqual(first.texts(), ["one"]);
      assert.deepEqual(first.calls, ["connectionMade", "datagramReceived"]);
      assert.deepEqual(second.texts(), ["two", "three"]);
      assert.deepEqual(second.calls, [
        "datagramReceived",
        "datagramReceived",
        "connectionLost",
      ]);
    },
  );

  await t.step(
    "a protocol without datagramReceived is a TypeError",
    async () => {
      await using endpoint = await open(
        new RecordingDatagramProtocol(),
        on("127.0.0.1"),
      );
      for (
        const value of [{ dataReceived() {} }, {}, null, undefined, "protocol"]
      ) {
        assert.throws(
          () => endpoint.transport.setProtocol(value as DatagramProtocol),
          TypeError,
        );
      }
      assert.equal(endpoint.transport.getProtocol(), endpoint.protocol);
    },
  );
});

Deno.test("DatagramEndpoint.pauseReading() holds datagrams until resumeReading()", async (t) => {
  await t.step(
    "paused from outside: nothing arrives, then all in order",
    async () => {
      using peer = socket("127.0.0.1");
      await using endpoint = await open(
        new RecordingDatagramProtocol(),
        on("127.0.0.1"),
      );
      const { transport, protocol } = endpoint;
      assert.equal(transport.isReading(), true);
      transport.pauseReading();
      transport.pauseReading();
      assert.equal(transport.isReading(), false);
      for (const word of ["one", "two", "three"]) {
        await peer.conn.send(bytes(word), endpoint.addr);
      }
      await ioTurns();
      assert.equal(protocol.count("datagramReceived"), 0);

      transport.resumeReading();
      transport.resumeReading();
      assert.equal(transport.isReading(), true);
      await protocol.waitFor("datagramReceived", 3);
      assert.deepEqual(protocol.texts(), ["one", "two", "three"]);
    },
  );

  await t.step("paused from datagramReceived: one at a time", async () => {
    using peer = socket("127.0.0.1");
    class Pausing extends RecordingDatagramProtocol {
      override datagramReceived(data: Uint8Array, addr: Deno.NetAddr): void {
        super.datagramReceived(data, addr);
        this.transport?.pauseReading();
      }
    }
    await using endpoint = await open(new Pausing(), on("127.0.0.1"));
    const { transport, protocol } = endpoint;
    const count = 5;
    for (let i = 0; i < count; i++) {
      await peer.conn.send(bytes(`d${i}`), endpoint.addr);
    }
    for (let n = 1; n <= count; n++) {
      await protocol.waitFor("datagramReceived", n);
      await ioTurns(1);
      assert.equal(protocol.count("datagramReceived"), n, "one per resume");
      assert.equal(transport.isReading(), false);
      transport.resumeReading();
    }
    assert.deepEqual(
      protocol.texts(),
      Array.from({ length: count }, (_, i) => `d${i}`),
    );
  });

  await t.step("resumed and paused again in one task: still held", async () => {
    using peer = socket("127.0.0.1");
    await using endpoint = await open(
      new RecordingDatagramProtocol(),
      on("127.0.0.1"),
    );
    const { transport, protocol } = endpoint;
    transport.pauseReading();
    await peer.conn.send(bytes("held"), endpoint.addr);
    await ioTurns();
    transport.resumeReading();
    transport.pauseReading();
    await ioTurns();
    assert.equal(protocol.count("datagramReceived"), 0);
    transport.resumeReading();
    await protocol.waitFor("datagramReceived");
    assert.deepEqual(protocol.texts(), ["held"]);
  });

  await t.step("close() while paused drops what is held", async () => {
    using peer = socket("127.0.0.1");
    const protocol = new RecordingDatagramProtocol();
    const { transport, addr } = await open(protocol, on("127.0.0.1"));
    transport.pauseReading();
    await peer.conn.send(bytes("dropped"), addr);
    await ioTurns();
    transport.close();
    assert.equal(transport.isReading(), false);
    transport.resumeReading();
    await protocol.waitFor("connectionLost");
    assert.deepEqual(protocol.calls, ["connectionMade", "connectionLost"]);
  });
});
