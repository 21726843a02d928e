import assert from "node:assert/strict";
import { DatagramProtocolBase } from "../../mod.ts";
import { MemoryDatagramTransport } from "../../testing/mod.ts";
import type { DatagramTransport } from "../../transports/transport.ts";
import { bytes, NOT_BYTES, text } from "../_test_utils.ts";

const PEER: Deno.NetAddr = {
  transport: "udp",
  hostname: "10.1.2.3",
  port: 5353,
};
const OTHER: Deno.NetAddr = {
  transport: "udp",
  hostname: "10.9.9.9",
  port: 5353,
};
const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

class Recorder extends DatagramProtocolBase {
  calls: string[] = [];
  received: [string, Deno.NetAddr][] = [];
  override connectionMade(transport: DatagramTransport): void {
    super.connectionMade(transport);
    this.calls.push("connectionMade");
  }
  override datagramReceived(data: Uint8Array, addr: Deno.NetAddr): void {
    this.received.push([text(data), addr]);
  }
  override errorReceived(exc: Error): void {
    this.calls.push(`errorReceived: ${exc.message}`);
  }
  override pauseWriting(): void {
    super.pauseWriting();
    this.calls.push("pauseWriting");
  }
  override resumeWriting(): void {
    super.resumeWriting();
    this.calls.push("resumeWriting");
  }
  override connectionLost(exc: Error | undefined): void {
    super.connectionLost(exc);
    this.calls.push("connectionLost");
  }
}

Deno.test("MemoryDatagramTransport records sendto() and feeds datagramReceived and errorReceived", () => {
  const protocol = new Recorder();
  const transport = new MemoryDatagramTransport(protocol);
  assert.deepEqual(protocol.calls, ["connectionMade"]);
  const scratch = bytes("one");
  transport.sendto(scratch, PEER);
  scratch.set(bytes("two"));
  transport.sendto(scratch, OTHER);
  assert.deepEqual(
    transport.sent().map(({ data, addr }) => [text(data), addr.hostname]),
    [["one", "10.1.2.3"], ["two", "10.9.9.9"]],
  );
  transport.receive(bytes("hi"), PEER);
  assert.deepEqual(protocol.received, [["hi", PEER]]);
  transport.receiveError(new Error("ICMP"));
  assert.deepEqual(protocol.calls, ["connectionMade", "errorReceived: ICMP"]);
});

Deno.test("MemoryDatagramTransport.receive() checks the datagram and its sender, and delivers nothing bad", async (t) => {
  const protocol = new Recorder();
  const transport = new MemoryDatagramTransport(protocol);
  const named = (pattern: RegExp) => (error: unknown) =>
    error instanceof Error && pattern.test(error.message);
  for (const [what, value] of NOT_BYTES) {
    await t.step(`data as ${what} is a TypeError`, () => {
      assert.throws(
        () => transport.receive(value as Uint8Array, PEER),
        TypeError,
      );
      assert.throws(
        () => transport.receive(value as Uint8Array, PEER),
        named(/^Cannot receive datagram: data must be a Uint8Array/),
      );
    });
  }
  const addresses: [string, unknown, ErrorConstructor][] = [
    ["null", null, TypeError],
    ["a string", "10.1.2.3:5353", TypeError],
    ["without a port", { hostname: "10.1.2.3" }, TypeError],
    ["with port 70000", { hostname: "10.1.2.3", port: 70_000 }, RangeError],
  ];
  for (const [what, addr, error] of addresses) {
    await t.step(`a sender ${what} is a ${error.name}`, () => {
      assert.throws(
        () => transport.receive(bytes("x"), addr as Deno.NetAddr),
        error,
      );
      assert.throws(
        () => transport.receive(bytes("x"), addr as Deno.NetAddr),
        named(/^Cannot receive datagram: .*(address|port)/),
      );
    });
  }
  await t.step("nothing was delivered", () => {
    assert.deepEqual(protocol.calls, ["connectionMade"]);
    assert.deepEqual(protocol.received, []);
  });
  await t.step("a sender without transport arrives as a UDP address", () => {
    transport.receive(
      bytes("ok"),
      { hostname: "10.1.2.3", port: 53 } as Deno.NetAddr,
    );
    assert.deepEqual(protocol.received, [[
      "ok",
      { transport: "udp", hostname: "10.1.2.3", port: 53 },
    ]]);
  });
});

Deno.test("MemoryDatagramTransport with remoteAddr sends there by default and hears only the peer", () => {
  const protocol = new Recorder();
  const transport = new MemoryDatagramTransport(protocol, { remoteAddr: PEER });
  transport.sendto(bytes("x"));
  assert.equal(transport.sent()[0]!.addr, PEER);
  assert.throws(() => transport.sendto(bytes("x"), OTHER), TypeError);
  transport.receive(bytes("from other"), OTHER);
  transport.receive(bytes("from peer"), PEER);
  assert.deepEqual(protocol.received.map(([data]) => data), ["from peer"]);
});

Deno.test("MemoryDatagramTransport holds while paused and applies flow control while sends are held", async () => {
  const protocol = new Recorder();
  const transport = new MemoryDatagramTransport(protocol, { sending: false });
  transport.pauseReading();
  transport.receive(bytes("a"), PEER);
  transport.receive(bytes("b"), PEER);
  assert.equal(protocol.received.length, 0);
  transport.resumeReading();
  await settle();
  assert.deepEqual(protocol.received.map(([data]) => data), ["a", "b"]);

  transport.setWriteBufferLimits({ high: 20, low: 0 });
  transport.sendto(new Uint8Array(12), PEER);
  assert.equal(transport.getWriteBufferSize(), 20);
  transport.sendto(new Uint8Array(1), PEER);
  assert.deepEqual(protocol.calls.slice(-1), ["pauseWriting"]);
  transport.setSending(true);
  await settle();
  assert.deepEqual(protocol.calls.slice(-1), ["resumeWriting"]);
  assert.equal(transport.sent().length, 2);
  transport.close();
  await settle();
  assert.deepEqual(protocol.calls.slice(-1), ["connectionLost"]);
});

Deno.test("MemoryDatagramTransport is whole when connectionMade runs: the protocol may send and pause there", async () => {
  const errors: unknown[] = [];
  class Announces extends Recorder {
    override connectionMade(transport: DatagramTransport): void {
      super.connectionMade(transport);
      this.calls.push(
        `sockname ${transport.getExtraInfo("sockname")?.hostname}`,
      );
      transport.sendto(bytes("hello"));
      transport.pauseReading();
    }
  }
  const protocol = new Announces();
  const transport = new MemoryDatagramTransport(protocol, {
    remoteAddr: PEER,
    onError: (error) => errors.push(error),
  });
  assert.deepEqual(errors, []);
  assert.deepEqual(protocol.calls, ["connectionMade", "sockname 127.0.0.1"]);
  assert.deepEqual(
    transport.sent().map(({ data, addr }) => [text(data), addr]),
    [["hello", PEER]],
  );
  transport.receive(bytes("held"), PEER);
  assert.deepEqual(protocol.received, []);
  transport.resumeReading();
  await settle();
  assert.deepEqual(protocol.received, [["held", PEER]]);
  transport.close();
  await settle();
  assert.equal(protocol.calls.at(-1), "connectionLost");
});
