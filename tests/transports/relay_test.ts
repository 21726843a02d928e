import assert from "node:assert/strict";
import {
  createConnection,
  createServer,
  type Protocol,
  ProtocolBase,
  relay,
  type RelayResult,
  type Transport,
} from "../../mod.ts";
import { MemoryTransport } from "../../testing/mod.ts";
import {
  assertBytes,
  bytes,
  pattern,
  quietPeriod,
  readExactly,
  readUntilClosed,
  RecordingProtocol,
  text,
  within,
  writeAll,
} from "../_test_utils.ts";

const LOCAL = { hostname: "127.0.0.1", port: 0 } as const;
const KiB = 1024;

/** Lets queued work run until `done()` holds: at most 100 zero-delay turns. */
async function settle(done: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 100 && !done(); i++) {
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  assert.ok(done(), `Gave up waiting for ${what}`);
}

/**
 * A proxy on a free port: each connection is relayed to `backendPort`.
 * Resolves each relay's result in `results`.
 */
async function proxy(backendPort: number) {
  const results: Promise<RelayResult>[] = [];
  const server = await createServer((): Protocol => ({
    connectionMade(client: Transport) {
      client.pauseReading();
      const result = createConnection(() => ({ dataReceived() {} }), {
        port: backendPort,
      }).then(([backend]) => relay(client, backend));
      results.push(result);
    },
    dataReceived() {},
  }), LOCAL);
  return { server, results };
}

Deno.test("relay() joins two connections both ways, byte-exact, and passes EOF through both ways before closing both", async () => {
  // The backend echoes, then half-closes once its client did.
  using backend = Deno.listen(LOCAL);
  const backendDone = (async () => {
    const conn = await backend.accept();
    const data = await readUntilClosed(conn);
    await writeAll(conn, data);
    await conn.closeWrite();
    conn.close();
    return data;
  })();
  const { server, results } = await proxy(backend.addr.port);
  await using _server = server;
  const client = await Deno.connect({ port: server.addrs[0]!.port });
  const data = pattern(2 * 1024 * 1024, 3);
  await writeAll(client, data);
  await client.closeWrite();
  const echoed = await within(
    readUntilClosed(client),
    "the echo through the relay",
  );
  client.close();
  assertBytes(await backendDone, data, "what the backend got");
  assertBytes(echoed, data, "what the client got back");
  const result = await within(results[0]!, "the relay's end");
  assert.deepEqual(result, {
    aToB: data.byteLength,
    bToA: data.byteLength,
    error: undefined,
  });
});

Deno.test("relay() holds memory to the write buffers when one end reads slowly", async () => {
  using backend = Deno.listen(LOCAL);
  const size = 16 * 1024 * 1024;
  const backendSide = (async () => {
    const conn = await backend.accept();
    // Sends a lot and never reads until told.
    await writeAll(conn, pattern(size, 8));
    await conn.closeWrite();
    return conn;
  })();
  let relayed: [Transport, Transport] | undefined;
  await using server = await createServer((): Protocol => ({
    connectionMade(client: Transport) {
      client.pauseReading();
      createConnection(() => ({ dataReceived() {} }), {
        port: backend.addr.port,
      }).then(([backendTransport]) => {
        relayed = [client, backendTransport];
        relay(client, backendTransport);
      });
    },
    dataReceived() {},
  }), LOCAL);
  const client = await Deno.connect({ port: server.addrs[0]!.port });
  // Read slowly: the relay must stop reading the backend meanwhile.
  let received = 0;
  let mostBuffered = 0;
  const chunk = new Uint8Array(16 * 1024);
  for (let i = 0; i < 100_000 && received < size; i++) {
    const n = await within(client.read(chunk), "a slow read");
    if (n === null) break;
    received += n;
    if (relayed !== undefined) {
      mostBuffered = Math.max(mostBuffered, relayed[0].getWriteBufferSize());
    }
    if (i % 64 === 0) await new Promise((resolve) => setTimeout(resolve, 1));
  }
  assert.equal(received, size);
  // The write buffer stays near its high mark (64 KiB) plus one read.
  assert.ok(mostBuffered <= 64 * 1024 + 256 * 1024, `buffered ${mostBuffered}`);
  client.close();
  (await backendSide).close();
});

Deno.test("relay() starts from a side whose writing is paused already", async (t) => {
  await t.step(
    "over its high mark: the other side does not read until it drains",
    async () => {
      const a = new MemoryTransport(new ProtocolBase());
      const b = new MemoryTransport(new ProtocolBase(), { peerReading: false });
      b.write(new Uint8Array(100 * KiB)); // over 64 KiB: b's writing pauses
      const done = relay(a, b);
      assert.equal(a.isReading(), false);
      a.receive(pattern(64 * KiB, 1)); // held by a
      await quietPeriod();
      assert.equal(b.getWriteBufferSize(), 100 * KiB);

      // b's peer reads: b drains, a reads again and passes the bytes on.
      b.written({ clear: true });
      b.setPeerReading(true);
      await settle(() => b.written().length === 164 * KiB, "a's data");
      assertBytes(b.written().subarray(100 * KiB), pattern(64 * KiB, 1));
      assert.equal(a.isReading(), true);
      a.abort();
      assert.deepEqual(await within(done, "the relay's end"), {
        aToB: 64 * KiB,
        bToA: 0,
        error: undefined,
      });
    },
  );

  await t.step(
    "between its marks: the other side reads until it is over high again",
    async () => {
      const a = new MemoryTransport(new ProtocolBase());
      const b = new MemoryTransport(new ProtocolBase(), { peerReading: false });
      b.write(new Uint8Array(100 * KiB)); // paused
      // Still paused: it resumes only at or below the new low mark.
      b.setWriteBufferLimits({ high: 200 * KiB, low: 50 * KiB });
      const done = relay(a, b);
      let chunks = 0;
      for (; chunks < 64 && a.isReading(); chunks++) {
        a.receive(new Uint8Array(64 * KiB));
      }
      // 100 + 64 KiB is under high; 100 + 128 KiB is over it.
      assert.equal(chunks, 2);
      assert.equal(b.getWriteBufferSize(), 228 * KiB);
      b.setPeerReading(true);
      await settle(() => a.isReading(), "a to read again");
      a.abort();
      assert.equal((await within(done, "the relay's end")).aToB, 128 * KiB);
    },
  );
});

Deno.test("relay() passes on an EOF a side got before the call", async (t) => {
  /** A transport whose old protocol kept it open after the peer's EOF. */
  const halfClosed = () => {
    const transport = new MemoryTransport({
      dataReceived() {},
      eofReceived: () => true,
    });
    transport.receive(bytes("request"));
    transport.receiveEof();
    return transport;
  };

  await t.step(
    "one side: the other gets writeEof(), and its EOF ends the relay",
    async () => {
      const a = halfClosed();
      const b = new MemoryTransport(new ProtocolBase());
      const done = relay(a, b);
      await settle(() => b.eofWritten, "b's writeEof()");
      assert.equal(a.closed, false);
      b.receive(bytes("reply"));
      b.receiveEof();
      assert.deepEqual(await within(done, "the relay's end"), {
        aToB: 0,
        bToA: 5,
        error: undefined,
      });
      assert.equal(text(a.written()), "reply");
      assert.equal(a.closed && b.closed, true);
    },
  );

  await t.step("both sides: both are closed at once", async () => {
    const a = halfClosed();
    const b = halfClosed();
    const done = relay(a, b);
    assert.deepEqual(await within(done, "the relay's end"), {
      aToB: 0,
      bToA: 0,
      error: undefined,
    });
    assert.equal(a.closed && b.closed, true);
  });

  await t.step(
    "an EOF held while reading was paused goes through once",
    async () => {
      const a = new MemoryTransport(new ProtocolBase());
      a.pauseReading();
      a.receive(bytes("request"));
      a.receiveEof(); // held, with the data, for the relay
      const b = new MemoryTransport(new ProtocolBase());
      const done = relay(a, b);
      await settle(() => b.eofWritten, "b's writeEof()");
      b.receive(bytes("reply"));
      b.receiveEof();
      assert.deepEqual(await within(done, "the relay's end"), {
        aToB: 7,
        bToA: 5,
        error: undefined,
      });
      assert.equal(text(b.written()), "request");
      assert.equal(text(a.written()), "reply");
    },
  );
});

Deno.test("relay() ends both when one side fails, and rejects bad arguments", async (t) => {
  await t.step("the backend resets: the client is closed too", async () => {
    using backend = Deno.listen(LOCAL);
    const { server, results } = await proxy(backend.addr.port);
    await using _server = server;
    const client = await Deno.connect({ port: server.addrs[0]!.port });
    const conn = await backend.accept();
    await writeAll(client, bytes("hello"));
    assert.equal(text(await readExactly(conn, 5)), "hello");
    conn.close();
    await within(readUntilClosed(client), "the client's end");
    client.close();
    const result = await within(results[0]!, "the relay's end");
    assert.equal(result.aToB, 5);
  });

  await t.step("bad arguments are TypeErrors", () => {
    assert.throws(() => relay({} as never, {} as never), TypeError);
  });
});

Deno.test("relay() rejects a transport that is in a relay already, until that relay has lost it", async () => {
  const a = new MemoryTransport(new ProtocolBase());
  const b = new MemoryTransport(new ProtocolBase());
  const c = new MemoryTransport(new ProtocolBase());
  const cProtocol = c.getProtocol();
  const done = relay(a, b);
  const aProtocol = a.getProtocol();
  assert.throws(() => relay(a, c), TypeError);
  assert.throws(() => relay(c, b), TypeError);
  assert.equal(a.getProtocol(), aProtocol);
  assert.equal(c.getProtocol(), cProtocol);

  // The first relay goes on, and ends.
  a.receive(bytes("hi"));
  assert.equal(text(b.written()), "hi");
  a.lose();
  assert.equal((await within(done, "the relay's end")).aToB, 2);
  // Lost to its relay, a is free: a closed side ends the new one at once.
  await within(relay(a, c), "the second relay's end");
  assert.equal(c.closed, true);
});

Deno.test("relay() stops reading a side whose other side is closed here, and counts only what it passed on", async () => {
  using backend = Deno.listen(LOCAL);
  let clientSide: Transport | undefined;
  const results: Promise<RelayResult>[] = [];
  await using server = await createServer((): Protocol => ({
    connectionMade(client: Transport) {
      clientSide = client;
      client.pauseReading();
      results.push(
        createConnection(() => ({ dataReceived() {} }), {
          port: backend.addr.port,
        }).then(([backendTransport]) => relay(client, backendTransport)),
      );
    },
    dataReceived() {},
  }), LOCAL);
  const client = await Deno.connect({ port: server.addrs[0]!.port });
  const conn = await backend.accept();
  // The backend streams far more than the client will read.
  const streaming = writeAll(conn, pattern(64 * 1024 * 1024, 5)).catch(
    () => {},
  );
  const first = await within(readExactly(client, 1024 * 1024), "the first MiB");
  assertBytes(first, pattern(64 * 1024 * 1024, 5).subarray(0, 1024 * 1024));
  clientSide!.close();
  const rest = await within(readUntilClosed(client), "the client's end");
  client.close();
  const result = await within(results[0]!, "the relay's end");
  // Every byte counted was written to the client, and it got them all.
  assert.equal(result.bToA, first.byteLength + rest.byteLength);
  conn.close();
  await streaming;
});

Deno.test("relay() with a side already closed closes the other and resolves, as when one is lost during the relay", async (t) => {
  for (const closed of ["a", "b"] as const) {
    await t.step(`${closed} closed before the call`, async () => {
      using listener = Deno.listen(LOCAL);
      const connect = async () => {
        const [[transport, protocol], peer] = await Promise.all([
          createConnection(() => new RecordingProtocol(), {
            port: listener.addr.port,
          }),
          listener.accept(),
        ]);
        return { transport, protocol, peer };
      };
      const a = await connect();
      using _aPeer = a.peer;
      const b = await connect();
      using _bPeer = b.peer;
      const [gone, other] = closed === "a" ? [a, b] : [b, a];
      gone.transport.close();
      await within(gone.protocol.waitFor("connectionLost"), "the close");

      const result = await within(
        relay(a.transport, b.transport),
        "the relay's end",
      );
      assert.deepEqual(result, { aToB: 0, bToA: 0, error: undefined });
      assert.equal(other.transport.isClosing(), true);
      // The other side's peer sees it close.
      assert.equal((await readUntilClosed(other.peer)).byteLength, 0);
    });
  }

  await t.step("b closing, still flushing: b's bytes all arrive", async () => {
    using listener = Deno.listen(LOCAL);
    const port = listener.addr.port;
    const [[a], aPeer] = await Promise.all([
      createConnection(() => new RecordingProtocol(), { port }),
      listener.accept(),
    ]);
    using _aPeer = aPeer;
    const [[b], bPeer] = await Promise.all([
      createConnection(() => new RecordingProtocol(), { port }),
      listener.accept(),
    ]);
    using _bPeer = bPeer;
    const payload = pattern(1024 * 1024, 9);
    b.write(payload);
    b.close();
    const result = relay(a, b);
    assertBytes(
      await within(readUntilClosed(bPeer), "b's bytes"),
      payload,
    );
    assert.equal((await within(readUntilClosed(aPeer), "a's end")).length, 0);
    assert.deepEqual(await within(result, "the relay's end"), {
      aToB: 0,
      bToA: 0,
      error: undefined,
    });
  });
});

Deno.test("relay() over memory transports: an EOF held while paused goes through once, and the other way stays open", async () => {
  const settle = () => new Promise((resolve) => setTimeout(resolve, 0));
  const a = new MemoryTransport({ dataReceived() {}, eofReceived: () => true });
  const b = new MemoryTransport({ dataReceived() {} });
  a.pauseReading();
  a.receiveEof();
  const done = relay(a, b);
  await settle();
  assert.equal(b.eofWritten, true);
  assert.equal(a.isClosing(), false);
  b.receive(bytes("back"));
  await settle();
  assert.equal(text(a.written()), "back");
  b.receiveEof();
  const result = await within(done, "the relay's end");
  assert.equal(result.bToA, 4);
});
