import assert from "node:assert/strict";
import {
  createReconnectingConnection,
  createServer,
  ProtocolBase,
  type Server,
} from "../../mod.ts";
import { bytes, RecordingProtocol, within } from "../_test_utils.ts";

/** A server on `port` (0: a free one) that echoes. */
function echoServer(port: number): Promise<Server<Deno.NetAddr>> {
  class Echo extends ProtocolBase {
    override dataReceived(data: Uint8Array): void {
      this.transport?.write(data);
    }
  }
  return createServer(() => new Echo(), { hostname: "127.0.0.1", port });
}

Deno.test("createReconnectingConnection() connects again, with a fresh protocol, after the server goes away and comes back", async () => {
  let server = await echoServer(0);
  const port = server.addrs[0]!.port;
  const protocols: RecordingProtocol[] = [];
  const stop = new AbortController();
  const client = createReconnectingConnection(
    () => {
      const protocol = new RecordingProtocol();
      protocols.push(protocol);
      return protocol;
    },
    { hostname: "127.0.0.1", port },
    {
      initialDelay: 20,
      maxDelay: 100,
      signal: stop.signal,
    },
  );
  try {
    const [first, firstProtocol] = await within(
      client.connected(),
      "the first connection",
    );
    first.write(bytes("one"));
    await within(firstProtocol.waitForBytes(3), "the first echo");

    // The server goes away: the connection drops, connects are refused.
    await server.shutdown({ gracePeriod: 0 });
    await within(firstProtocol.waitFor("connectionLost"), "the drop");
    assert.equal(client.current, undefined);
    await new Promise((resolve) => setTimeout(resolve, 60));

    // It comes back on the same port: the client finds it.
    server = await echoServer(port);
    const [second, secondProtocol] = await within(
      client.connected(),
      "the reconnection",
      10_000,
    );
    assert.notEqual(secondProtocol, firstProtocol);
    second.write(bytes("two"));
    await within(secondProtocol.waitForBytes(3), "the second echo");
    assert.equal(client.connections, 2);
  } finally {
    stop.abort();
    await within(client.closed, "the client to stop");
    await server.shutdown({ gracePeriod: 0 });
  }
  assert.equal(protocols.at(-1)!.count("connectionLost"), 1);
});

Deno.test("createReconnectingConnection(): close() stops retrying a server that is not there, and bad options are RangeErrors", async () => {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = probe.addr.port;
  probe.close();
  const client = createReconnectingConnection(() => new ProtocolBase(), {
    hostname: "127.0.0.1",
    port,
  }, { initialDelay: 5, maxDelay: 20 });
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(client.connections, 0);
  const waiting = client.connected();
  client.close();
  await assert.rejects(waiting, TypeError);
  await within(client.closed, "the client to stop");
  assert.throws(
    () =>
      createReconnectingConnection(() => new ProtocolBase(), { port }, {
        factor: 0.5,
      }),
    RangeError,
  );
});
