import assert from "node:assert/strict";
import {
  createConnection,
  createServer,
  ProtocolBase,
  type Transport,
} from "../../mod.ts";
import { MemoryTransport } from "../../testing/mod.ts";
import { bytes, RecordingProtocol, within } from "../_test_utils.ts";

const LOCAL = { hostname: "127.0.0.1", port: 0 } as const;

Deno.test("createServer() with idleTimeout closes a connection that stays idle, when the protocol has no idleTimedOut", async () => {
  const server = new RecordingProtocol();
  await using listening = await createServer(() => server, {
    ...LOCAL,
    idleTimeout: 30,
  });
  const client = new RecordingProtocol();
  await createConnection(() => client, { port: listening.addrs[0]!.port });
  await within(
    server.waitFor("connectionLost"),
    "the idle server side to close",
  );
  assert.equal(server.lostWith, undefined);
  await within(client.waitFor("connectionLost"), "the client to see EOF");
});

Deno.test("Transport.setIdleTimeout(): activity postpones it, the protocol's idleTimedOut decides, 0 turns it off", async (t) => {
  await t.step("reads and writes count as activity", async () => {
    let fired = 0;
    class Echo extends ProtocolBase {
      override dataReceived(data: Uint8Array): void {
        this.transport?.write(data);
      }
      idleTimedOut(): void {
        fired++;
        this.transport?.close();
      }
    }
    const echo = new Echo();
    await using server = await createServer(() => echo, LOCAL);
    const client = new RecordingProtocol();
    const [transport] = await createConnection(() => client, {
      port: server.addrs[0]!.port,
    });
    echo.transport!.setIdleTimeout(150);
    // Keep talking, in short gaps, for longer than the timeout: it must
    // not fire.
    const start = performance.now();
    for (let i = 0; i < 100 && performance.now() - start < 300; i++) {
      transport.write(bytes("ping"));
      await within(client.waitForBytes(4 * (i + 1)), "the echo");
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(fired, 0);
    await within(client.waitFor("connectionLost"), "the idle close");
    assert.equal(fired, 1);
  });

  await t.step(
    "an idleTimedOut that keeps the connection is called again after the next activity",
    async () => {
      const calls: string[] = [];
      let serverSide: Transport | undefined;
      await using server = await createServer(() => ({
        connectionMade(t) {
          serverSide = t;
          t.setIdleTimeout(20);
        },
        dataReceived() {
          calls.push("data");
        },
        idleTimedOut() {
          calls.push("idle");
        },
      }), LOCAL);
      const [transport] = await createConnection(() => new ProtocolBase(), {
        port: server.addrs[0]!.port,
      });
      for (let i = 0; i < 200 && !calls.includes("idle"); i++) {
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      assert.deepEqual(calls, ["idle"]);
      transport.write(bytes("x"));
      for (let i = 0; i < 200 && calls.length < 3; i++) {
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      assert.deepEqual(calls, ["idle", "data", "idle"]);
      serverSide!.setIdleTimeout(0);
      transport.close();
    },
  );

  await t.step(
    "a bad number is a RangeError, anything else a TypeError",
    async () => {
      await assert.rejects(
        createServer(() => new ProtocolBase(), { ...LOCAL, idleTimeout: -1 }),
        RangeError,
      );
      await using server = await createServer(() => new ProtocolBase(), LOCAL);
      const [transport] = await createConnection(() => new ProtocolBase(), {
        port: server.addrs[0]!.port,
      });
      assert.throws(() => transport.setIdleTimeout(Number.NaN), RangeError);
      assert.throws(() => transport.setIdleTimeout("5" as never), TypeError);
      await assert.rejects(
        createServer(() => new ProtocolBase(), {
          ...LOCAL,
          idleTimeout: "5" as never,
        }),
        TypeError,
      );
      transport.abort();
      assert.throws(() => transport.setIdleTimeout(-1), RangeError);
    },
  );
});

Deno.test("An idle timeout aborts a closing transport whose peer stopped reading, instead of flushing for ever", async (t) => {
  await t.step("closed by the timeout (no idleTimedOut)", async () => {
    const protocol = new RecordingProtocol();
    const transport = new MemoryTransport(protocol, { peerReading: false });
    transport.setIdleTimeout(20);
    transport.write(bytes("never taken"));
    await within(protocol.waitFor("connectionLost"), "the abort");
    assert.equal(protocol.lostWith, undefined);
    assert.equal(transport.getWriteBufferSize(), 0);
  });

  await t.step("closed by the protocol, then stuck", async () => {
    const protocol = new CountsTimeouts();
    const transport = new MemoryTransport(protocol, { peerReading: false });
    transport.setIdleTimeout(20);
    transport.write(bytes("never taken"));
    transport.close();
    await within(protocol.waitFor("connectionLost"), "the abort");
    assert.equal(protocol.timedOut, 0);
  });

  await t.step("over TCP, with 8 MiB the client never reads", async () => {
    const server = new WritesOnConnect(8 * 1024 * 1024);
    await using listening = await createServer(() => server, {
      ...LOCAL,
      idleTimeout: 30,
    });
    const client = await Deno.connect({
      ...LOCAL,
      port: listening.addrs[0]!.port,
    });
    try {
      await within(server.waitFor("connectionLost"), "the abort");
      assert.equal(server.transport!.getWriteBufferSize(), 0);
    } finally {
      client.close();
    }
  });
});

/** Counts its `idleTimedOut` calls, and does nothing on them. */
class CountsTimeouts extends RecordingProtocol {
  timedOut = 0;
  idleTimedOut(): void {
    this.timedOut++;
  }
}

/** Writes `size` bytes as soon as it is connected. */
class WritesOnConnect extends RecordingProtocol {
  constructor(readonly size: number) {
    super();
  }
  override connectionMade(transport: Transport): void {
    super.connectionMade(transport);
    transport.write(new Uint8Array(this.size));
  }
}

Deno.test("createServer() and createConnection() with keepAlive set SO_KEEPALIVE and still serve", async () => {
  const server = new RecordingProtocol();
  await using listening = await createServer(() => server, {
    ...LOCAL,
    keepAlive: true,
  });
  const client = new RecordingProtocol();
  const [transport] = await createConnection(() => client, {
    port: listening.addrs[0]!.port,
    keepAlive: true,
  });
  transport.write(bytes("alive"));
  await within(server.waitForBytes(5), "the bytes");
  transport.close();
  await within(server.waitFor("connectionLost"), "the end");
});
