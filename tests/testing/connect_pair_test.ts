import assert from "node:assert/strict";
import {
  LengthPrefixedProtocol,
  LineProtocol,
  ProtocolBase,
} from "../../mod.ts";
import { type Chunking, connectPair } from "../../testing/mod.ts";
import type { Transport } from "../../transports/transport.ts";
import {
  bytes,
  errorCollector,
  pattern,
  RecordingProtocol,
  text,
} from "../_test_utils.ts";

class Lines extends LineProtocol {
  lines: string[] = [];
  override lineReceived(line: Uint8Array): void {
    this.lines.push(text(line));
    this.sendLine(`ack ${text(line)}`);
  }
}

Deno.test("connectPair() delivers the same lines under every chunking, and the answers come back", async (t) => {
  const chunkings: Chunking[] = ["whole", 1, 3, { random: 7 }, { random: 99 }];
  for (const chunking of chunkings) {
    await t.step(`chunking ${JSON.stringify(chunking)}`, async () => {
      const { client, server, flush } = await connectPair(
        () => new RecordingProtocol(),
        () => new Lines({ delimiter: "\r\n" }),
        { chunking },
      );
      client.transport!.write(bytes("alpha\r\nbeta\r\ngamma\r\n"));
      await flush();
      assert.deepEqual(server.lines, ["alpha", "beta", "gamma"]);
      assert.equal(
        text(client.received()),
        "ack alpha\r\nack beta\r\nack gamma\r\n",
      );
    });
  }
});

Deno.test("connectPair() with chunking 1 gives every byte its own dataReceived; a random seed repeats its cuts", async () => {
  const one = await connectPair(
    () => new ProtocolBase(),
    () => new RecordingProtocol(),
    {
      chunking: 1,
    },
  );
  one.client.transport!.write(bytes("abcd"));
  await one.flush();
  assert.deepEqual(one.server.chunks.map(text), ["a", "b", "c", "d"]);

  const cuts = async (seed: number) => {
    const pair = await connectPair(
      () => new ProtocolBase(),
      () => new RecordingProtocol(),
      {
        chunking: { random: seed },
      },
    );
    pair.client.transport!.write(pattern(1000));
    await pair.flush();
    return pair.server.chunks.map((chunk) => chunk.byteLength);
  };
  assert.deepEqual(await cuts(5), await cuts(5));
  assert.notDeepEqual(await cuts(5), await cuts(6));
});

Deno.test("connectPair(): pump() moves one round at a time, so ordering is in the test's hands", async () => {
  const { client, server, pump } = await connectPair(
    () => new RecordingProtocol(),
    () => new Lines(),
  );
  client.transport!.write(bytes("one\n"));
  assert.deepEqual(server.lines, []);
  assert.equal(await pump(), true);
  assert.deepEqual(server.lines, ["one"]);
  assert.equal(text(client.received()), "");
  assert.equal(await pump(), true);
  assert.equal(text(client.received()), "ack one\n");
  assert.equal(await pump(), false);
});

Deno.test("connectPair(): a side that pauses reading makes the other side's writes back up, with flow control", async () => {
  const { client, server, clientTransport, serverTransport, flush } =
    await connectPair(
      () => new RecordingProtocol(),
      () => new RecordingProtocol(),
    );
  clientTransport.setWriteBufferLimits({ high: 1000 });
  serverTransport.pauseReading();
  await flush();
  client.transport!.write(new Uint8Array(1500));
  await flush();
  assert.equal(server.received().byteLength, 0);
  assert.deepEqual(client.calls.filter((c) => c.endsWith("Writing")), [
    "pauseWriting",
  ]);
  serverTransport.resumeReading();
  await flush();
  assert.equal(server.received().byteLength, 1500);
  assert.deepEqual(client.calls.filter((c) => c.endsWith("Writing")), [
    "pauseWriting",
    "resumeWriting",
  ]);
});

Deno.test("connectPair(): writeEof() and close() reach the peer as EOF after the data, abort() as a reset", async (t) => {
  await t.step("close()", async () => {
    const { client, server, flush } = await connectPair(
      () => new RecordingProtocol(),
      () => new RecordingProtocol(),
    );
    client.transport!.write(bytes("last"));
    client.transport!.close();
    await flush();
    assert.equal(text(server.received()), "last");
    assert.deepEqual(server.calls.slice(-2), ["eofReceived", "connectionLost"]);
    assert.equal(client.calls.at(-1), "connectionLost");
  });

  await t.step("abort()", async () => {
    const { client, server, flush } = await connectPair(
      () => new RecordingProtocol(),
      () => new RecordingProtocol(),
    );
    client.transport!.abort();
    await flush();
    assert.ok(server.lostWith instanceof Deno.errors.ConnectionReset);
  });
});

Deno.test("connectPair() reproduces a frame split across reads for a LengthPrefixedProtocol", async () => {
  class Frames extends LengthPrefixedProtocol {
    frames: number[] = [];
    override frameReceived(frame: Uint8Array): void {
      this.frames.push(frame.byteLength);
    }
  }
  for (const chunking of [1, 2, 5, { random: 3 }] as Chunking[]) {
    const { client, server, flush } = await connectPair(
      () => new Frames(),
      () => new Frames(),
      { chunking },
    );
    for (const size of [0, 1, 300, 70_000]) {
      client.sendFrame(new Uint8Array(size));
    }
    await flush();
    assert.deepEqual(server.frames, [0, 1, 300, 70_000]);
  }
});

Deno.test("connectPair() checks chunking and maxRounds before making the protocols", async (t) => {
  let made = 0;
  const factory = () => {
    made++;
    return new ProtocolBase();
  };
  const bad: [string, Parameters<typeof connectPair>[2], ErrorConstructor][] = [
    ["maxRounds NaN", { maxRounds: NaN }, RangeError],
    ["maxRounds 0", { maxRounds: 0 }, RangeError],
    ["maxRounds -1", { maxRounds: -1 }, RangeError],
    ["maxRounds 1.5", { maxRounds: 1.5 }, RangeError],
    ["maxRounds Infinity", { maxRounds: Infinity }, RangeError],
    ['maxRounds "10"', { maxRounds: "10" as unknown as number }, TypeError],
    ["chunking 0", { chunking: 0 }, RangeError],
    ["chunking NaN", { chunking: NaN }, RangeError],
    ["chunking 1.5", { chunking: 1.5 }, RangeError],
    ['chunking "1"', { chunking: "1" as unknown as number }, TypeError],
  ];
  for (const [what, options, error] of bad) {
    await t.step(`${what} is a ${error.name} naming it`, async () => {
      const name = what.split(" ")[0]!;
      made = 0;
      await assert.rejects(
        () => connectPair(factory, factory, options),
        (thrown: unknown) =>
          thrown instanceof error && thrown.message.includes(name),
      );
      assert.equal(made, 0);
    });
  }

  await t.step(
    "maxRounds 1: flush() pumps one round, then gives up",
    async () => {
      const { client, server, flush } = await connectPair(
        () => new RecordingProtocol(),
        () => new RecordingProtocol(),
        { maxRounds: 1 },
      );
      client.transport?.write(bytes("one round"));
      await assert.rejects(flush, /after 1 rounds/);
      assert.equal(text(server.received()), "one round");
    },
  );
});

Deno.test("connectPair(): a protocol that pauses in dataReceived and resumes soon after gets every byte", async () => {
  class PausesEachChunk extends RecordingProtocol {
    override dataReceived(data: Uint8Array): void {
      super.dataReceived(data);
      this.transport!.pauseReading();
      queueMicrotask(() => this.transport!.resumeReading());
    }
  }
  const { server, clientTransport, flush } = await connectPair(
    () => new ProtocolBase(),
    () => new PausesEachChunk(),
    { chunking: 1 },
  );
  clientTransport.write(bytes("abc"));
  await flush();
  clientTransport.write(bytes("def"));
  await flush();
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(text(server.received()), "abcdef");
  clientTransport.close();
  await flush();
});

Deno.test("connectPair(): what a side writes just before it closes reaches the peer before the EOF", async (t) => {
  /** A server that answers each chunk with `reply`, then ends as `end` says. */
  class Replies extends RecordingProtocol {
    end: "close" | "abort" | "none" = "close";
    override dataReceived(data: Uint8Array): void {
      super.dataReceived(data);
      this.transport!.write(bytes("resp"));
      if (this.end === "close") this.transport!.close();
      if (this.end === "abort") this.transport!.abort();
    }
  }

  await t.step("a reply written, then close(), in dataReceived", async () => {
    const { client, clientTransport, serverTransport, flush } =
      await connectPair(() => new RecordingProtocol(), () => new Replies());
    clientTransport.write(bytes("req"));
    await flush();
    assert.equal(text(client.received()), "resp");
    assert.deepEqual(client.calls, [
      "connectionMade",
      "dataReceived",
      "eofReceived",
      "connectionLost",
    ]);
    assert.equal(serverTransport.written().byteLength, 0);
  });

  await t.step(
    "a reply written, then abort(), in dataReceived: the reply, then the reset",
    async () => {
      const { client, clientTransport, flush } = await connectPair(
        () => new RecordingProtocol(),
        () => Object.assign(new Replies(), { end: "abort" as const }),
      );
      clientTransport.write(bytes("req"));
      await flush();
      assert.equal(text(client.received()), "resp");
      assert.ok(client.lostWith instanceof Deno.errors.ConnectionReset);
    },
  );

  await t.step(
    "a reply written in eofReceived, which lets the transport close",
    async () => {
      class Bye extends RecordingProtocol {
        override eofReceived(): boolean {
          this.transport!.write(bytes("bye"));
          return super.eofReceived();
        }
      }
      const { client, server, clientTransport, flush } = await connectPair(
        () => new RecordingProtocol(),
        () => new Bye(),
      );
      clientTransport.write(bytes("hi"));
      clientTransport.writeEof();
      await flush();
      assert.equal(text(server.received()), "hi");
      assert.equal(text(client.received()), "bye");
      assert.deepEqual(client.calls.slice(-2), [
        "eofReceived",
        "connectionLost",
      ]);
    },
  );

  await t.step(
    "pump() counts a round that leaves bytes to move as moved",
    async () => {
      const { client, clientTransport, pump } = await connectPair(
        () => new RecordingProtocol(),
        () => new Replies(),
      );
      clientTransport.write(bytes("req"));
      assert.equal(await pump(), true); // The request; the reply waits.
      assert.equal(text(client.received()), "");
      assert.equal(await pump(), true); // The reply, then the EOF.
      assert.equal(text(client.received()), "resp");
      assert.equal(client.calls.at(-1), "connectionLost");
      assert.equal(await pump(), false);
    },
  );
});

/** A pair whose client keeps its write side open after the server's EOF. */
function halfOpenPair() {
  return connectPair(
    () => Object.assign(new RecordingProtocol(), { keepOpen: true }),
    () => new RecordingProtocol(),
  );
}

Deno.test("connectPair(): writing to a peer that has closed loses the connection with BrokenPipe, as a socket does", async (t) => {
  await t.step(
    "after the peer's EOF, a half-open side that writes",
    async () => {
      const { client, clientTransport, serverTransport, flush } =
        await halfOpenPair();
      serverTransport.close();
      await flush();
      assert.deepEqual(client.calls, ["connectionMade", "eofReceived"]);
      clientTransport.write(bytes("late1"));
      clientTransport.write(bytes("late2"));
      await flush();
      assert.deepEqual(client.calls, [
        "connectionMade",
        "eofReceived",
        "connectionLost",
      ]);
      assert.ok(client.lostWith instanceof Deno.errors.BrokenPipe);
      assert.equal(clientTransport.isClosing(), true);
      assert.equal(clientTransport.getWriteBufferSize(), 0);
    },
  );

  await t.step(
    "a write over the high mark: pauseWriting, then the loss",
    async () => {
      const { client, clientTransport, serverTransport, flush } =
        await halfOpenPair();
      clientTransport.setWriteBufferLimits({ high: 100 });
      serverTransport.close();
      await flush();
      clientTransport.write(new Uint8Array(1000));
      await flush();
      assert.deepEqual(client.calls.slice(-2), [
        "pauseWriting",
        "connectionLost",
      ]);
      assert.ok(client.lostWith instanceof Deno.errors.BrokenPipe);
    },
  );

  await t.step(
    "a side that pauses reading gets it without the peer's EOF",
    async () => {
      const { client, clientTransport, serverTransport, flush } =
        await connectPair(
          () => new RecordingProtocol(),
          () => new RecordingProtocol(),
        );
      clientTransport.pauseReading();
      serverTransport.close();
      await flush();
      clientTransport.write(bytes("late"));
      await flush();
      assert.deepEqual(client.calls, ["connectionMade", "connectionLost"]);
      assert.ok(client.lostWith instanceof Deno.errors.BrokenPipe);
    },
  );

  await t.step(
    "a side that writes nothing after the peer closed keeps its half open",
    async () => {
      const { client, clientTransport, serverTransport, flush } =
        await halfOpenPair();
      serverTransport.close();
      await flush();
      assert.equal(clientTransport.isClosing(), false);
      assert.deepEqual(client.calls, ["connectionMade", "eofReceived"]);
      clientTransport.close();
      await flush();
      assert.equal(client.calls.at(-1), "connectionLost");
      assert.equal(client.lostWith, undefined);
    },
  );
});

Deno.test("connectPair(): a server that greets in connectionMade is heard by the client", async () => {
  const { errors, onError } = errorCollector();
  class Greets extends RecordingProtocol {
    override connectionMade(transport: Transport): void {
      super.connectionMade(transport);
      transport.write(bytes("220 ready\r\n"));
    }
  }
  const { client, server, flush } = await connectPair(
    () => new RecordingProtocol(),
    () => new Greets(),
    { transport: { onError } },
  );
  await flush();
  assert.deepEqual(errors, []);
  assert.equal(text(client.received()), "220 ready\r\n");
  assert.deepEqual(server.calls, ["connectionMade"]);
});
