import assert from "node:assert/strict";
import { BufferedProtocolBase, LineProtocol, ProtocolBase } from "../../mod.ts";
import { MemoryTransport } from "../../testing/mod.ts";
import type { Transport } from "../../transports/transport.ts";
import {
  bytes,
  errorCollector,
  flowCalls,
  NOT_BYTES,
  RecordingProtocol,
  text,
} from "../_test_utils.ts";

/** Lets pending microtasks run. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

Deno.test("MemoryTransport calls connectionMade at once and records what the protocol writes", () => {
  const protocol = new RecordingProtocol();
  const transport = new MemoryTransport(protocol);
  assert.deepEqual(protocol.calls, ["connectionMade"]);
  assert.equal(protocol.transport, transport);
  transport.write(bytes("one "));
  transport.writelines([bytes("two "), bytes("three")]);
  assert.equal(text(transport.written()), "one two three");
  assert.equal(text(transport.written({ clear: true })), "one two three");
  assert.equal(transport.written().byteLength, 0);
  assert.equal(transport.getWriteBufferSize(), 0);
});

Deno.test("MemoryTransport.receive() delivers at once, holds while paused, and feeds a BufferedProtocol through its buffer", async (t) => {
  await t.step("Protocol: each receive() is one dataReceived", () => {
    const protocol = new RecordingProtocol();
    const transport = new MemoryTransport(protocol);
    transport.receive(bytes("ab"));
    transport.receive(bytes("c"));
    assert.deepEqual(protocol.chunks.map(text), ["ab", "c"]);
  });

  await t.step(
    "paused: held, then delivered in order after resumeReading()",
    async () => {
      const protocol = new RecordingProtocol();
      const transport = new MemoryTransport(protocol);
      transport.pauseReading();
      transport.receive(bytes("held "));
      transport.receive(bytes("too"));
      transport.receiveEof();
      assert.equal(protocol.count("dataReceived"), 0);
      transport.resumeReading();
      await settle();
      assert.equal(text(protocol.received()), "held too");
      assert.deepEqual(transport.log, ["pauseReading", "resumeReading"]);
      assert.equal(protocol.count("eofReceived"), 1);
    },
  );

  await t.step(
    "what arrives right after resumeReading() waits behind what was held, and EOF comes last",
    async () => {
      const protocol = new RecordingProtocol();
      const transport = new MemoryTransport(protocol);
      transport.pauseReading();
      transport.receive(bytes("A"));
      transport.resumeReading();
      transport.receive(bytes("B"));
      transport.receiveEof();
      await settle();
      assert.equal(text(protocol.received()), "AB");
      assert.deepEqual(protocol.calls.slice(-2), [
        "eofReceived",
        "connectionLost",
      ]);
    },
  );

  await t.step(
    "pausing again after a pause with nothing held: what arrives is held, then delivered with EOF",
    async () => {
      const protocol = new RecordingProtocol();
      const transport = new MemoryTransport(protocol);
      transport.pauseReading();
      transport.resumeReading();
      transport.pauseReading();
      transport.receive(bytes("later"));
      transport.receiveEof();
      transport.resumeReading();
      await settle();
      assert.equal(text(protocol.received()), "later");
      assert.equal(protocol.count("eofReceived"), 1);
    },
  );

  await t.step("BufferedProtocol: copied into buffers of its size", () => {
    const chunks: string[] = [];
    class Small extends BufferedProtocolBase {
      override bufferUpdated(nbytes: number): void {
        chunks.push(text(this.buffer.subarray(0, nbytes)));
      }
    }
    const transport = new MemoryTransport(new Small(3));
    transport.receive(bytes("abcdefg"));
    assert.deepEqual(chunks, ["abc", "def", "g"]);
  });
});

Deno.test("MemoryTransport.receive() of anything but a Uint8Array is a TypeError, and delivers nothing", async (t) => {
  const protocol = new RecordingProtocol();
  const transport = new MemoryTransport(protocol);
  for (const [what, value] of NOT_BYTES) {
    await t.step(`${what} is a TypeError`, () => {
      assert.throws(
        () => transport.receive(value as Uint8Array),
        (error: unknown) =>
          error instanceof TypeError &&
          /^Cannot receive: data must be a Uint8Array/.test(error.message),
      );
    });
  }
  await t.step("nothing was delivered, and bytes still are", () => {
    assert.deepEqual(protocol.calls, ["connectionMade"]);
    transport.receive(bytes("ok"));
    assert.deepEqual(protocol.chunks.map(text), ["ok"]);
  });
});

Deno.test("MemoryTransport applies a socket's flow control: with the peer not reading, pauseWriting and resumeWriting at the same marks", async () => {
  const protocol = new RecordingProtocol();
  const transport = new MemoryTransport(protocol, { peerReading: false });
  transport.setWriteBufferLimits({ high: 100, low: 20 });
  assert.equal(transport.write(new Uint8Array(100)), true);
  assert.equal(flowCalls(protocol.calls), "");
  assert.equal(transport.write(new Uint8Array(1)), false);
  assert.equal(flowCalls(protocol.calls), "pauseWriting");
  assert.equal(transport.getWriteBufferSize(), 101);
  transport.setPeerReading(true);
  await settle();
  assert.equal(flowCalls(protocol.calls), "pauseWriting resumeWriting");
  assert.equal(transport.getWriteBufferSize(), 0);
  assert.equal(transport.written().byteLength, 101);
});

Deno.test("MemoryTransport ends as a socket does: close() flushes, lose() fails, connectionLost once and later", async (t) => {
  await t.step(
    "close(): EOF to the peer, connectionLost(undefined) after a microtask",
    async () => {
      const protocol = new RecordingProtocol();
      const transport = new MemoryTransport(protocol);
      transport.write(bytes("bye"));
      transport.close();
      transport.close();
      assert.equal(protocol.count("connectionLost"), 0);
      await settle();
      assert.equal(protocol.count("connectionLost"), 1);
      assert.equal(protocol.lostWith, undefined);
      assert.equal(transport.closed, true);
      assert.equal(text(transport.written()), "bye");
      assert.deepEqual(transport.log, ["close", "close"]);
    },
  );

  await t.step("lose(error): connectionLost(error)", async () => {
    const protocol = new RecordingProtocol();
    const transport = new MemoryTransport(protocol);
    const error = new Deno.errors.ConnectionReset("reset");
    transport.lose(error);
    await settle();
    assert.equal(protocol.lostWith, error);
    assert.deepEqual(protocol.calls, ["connectionMade", "connectionLost"]);
  });

  await t.step(
    "receiveEof(): eofReceived, then the transport closes itself",
    async () => {
      const protocol = new RecordingProtocol();
      const transport = new MemoryTransport(protocol);
      transport.receiveEof();
      await settle();
      assert.deepEqual(protocol.calls, [
        "connectionMade",
        "eofReceived",
        "connectionLost",
      ]);
      assert.equal(transport.isClosing(), true);
    },
  );

  await t.step("writeEof(): recorded, and the peer sees EOF", async () => {
    const protocol = new RecordingProtocol();
    const transport = new MemoryTransport(protocol);
    transport.writeEof();
    await settle();
    assert.equal(transport.eofWritten, true);
    assert.deepEqual(transport.log, ["writeEof"]);
  });

  await t.step(
    "a throwing dataReceived: onError, connectionLost(error)",
    async () => {
      const errors: unknown[] = [];
      class Boom extends ProtocolBase {
        lost: Error | undefined;
        override dataReceived(): void {
          throw new Error("boom");
        }
        override connectionLost(exc: Error | undefined): void {
          this.lost = exc;
        }
      }
      const protocol = new Boom();
      const transport = new MemoryTransport(protocol, {
        onError: (error) => errors.push(error),
      });
      transport.receive(bytes("x"));
      await settle();
      assert.equal(errors.length, 1);
      assert.equal(protocol.lost?.message, "boom");
    },
  );
});

Deno.test("MemoryTransport tests a LineProtocol subclass in a few lines", () => {
  class Upper extends LineProtocol {
    override lineReceived(line: Uint8Array): void {
      this.sendLine(text(line).toUpperCase());
    }
  }
  const transport = new MemoryTransport(new Upper({ delimiter: "\r\n" }));
  transport.receive(bytes("hel"));
  transport.receive(bytes("lo\r"));
  transport.receive(bytes("\nworld\r\n"));
  assert.equal(text(transport.written()), "HELLO\r\nWORLD\r\n");
});

Deno.test("MemoryTransport is whole when connectionMade runs: the protocol may use it there", async (t) => {
  /** Runs `use` on the transport from connectionMade. */
  class UsesTransport extends RecordingProtocol {
    constructor(readonly use: (transport: Transport) => void) {
      super();
    }
    override connectionMade(transport: Transport): void {
      super.connectionMade(transport);
      this.use(transport);
    }
  }
  const peer: Deno.NetAddr = {
    transport: "tcp",
    hostname: "10.0.0.2",
    port: 25,
  };

  await t.step("writes a greeting and reads extra info", () => {
    const { errors, onError } = errorCollector();
    let peername: unknown;
    const protocol = new UsesTransport((transport) => {
      peername = transport.getExtraInfo("peername");
      transport.write(bytes("220 ready\r\n"));
    });
    const transport = new MemoryTransport(protocol, {
      extra: { peername: peer },
      onError,
    });
    assert.deepEqual(errors, []);
    assert.equal(peername, peer);
    assert.equal(text(transport.written()), "220 ready\r\n");
    assert.equal(transport.isClosing(), false);
  });

  await t.step(
    "pauses reading: what arrives is held until resumed",
    async () => {
      const { errors, onError } = errorCollector();
      const protocol = new UsesTransport((transport) =>
        transport.pauseReading()
      );
      const transport = new MemoryTransport(protocol, { onError });
      transport.receive(bytes("held"));
      assert.equal(protocol.count("dataReceived"), 0);
      transport.resumeReading();
      await settle();
      assert.deepEqual(errors, []);
      assert.equal(text(protocol.received()), "held");
    },
  );

  await t.step("writes over the high mark: pauseWriting right after it", () => {
    const protocol = new UsesTransport((transport) => {
      transport.setWriteBufferLimits({ high: 4 });
      transport.write(bytes("too much"));
    });
    const transport = new MemoryTransport(protocol, { peerReading: false });
    assert.deepEqual(protocol.calls, ["connectionMade", "pauseWriting"]);
    assert.equal(transport.getWriteBufferSize(), 8);
  });

  await t.step("closes: connectionLost follows, once", async () => {
    const protocol = new UsesTransport((transport) => transport.close());
    const transport = new MemoryTransport(protocol);
    assert.equal(transport.isClosing(), true);
    await settle();
    assert.deepEqual(protocol.calls, ["connectionMade", "connectionLost"]);
    assert.equal(protocol.lostWith, undefined);
  });
});
