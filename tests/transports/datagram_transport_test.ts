import assert from "node:assert/strict";
import type { DatagramProtocol } from "../../protocols/datagram_protocol.ts";
import { createDatagramEndpoint } from "../../transports/create_datagram_endpoint.ts";
import type { DatagramTransport } from "../../transports/transport.ts";
import { bytes, errorCollector } from "../_test_utils.ts";
import {
  HOSTS,
  on,
  open,
  plain,
  RecordingDatagramProtocol,
  socket,
} from "./_datagram_utils.ts";

// Protocol callbacks that throw (a throwing datagramReceived, as every
// data callback: lifecycle_test.ts).

Deno.test("DatagramEndpoint closes with the error a protocol callback throws", async (t) => {
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

// getExtraInfo().

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

// setProtocol().

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
