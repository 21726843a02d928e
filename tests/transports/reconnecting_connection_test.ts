import assert from "node:assert/strict";
import {
  createReconnectingConnection,
  createServer,
  ProtocolBase,
  type Server,
  type Transport,
} from "../../mod.ts";
import type { CreateConnectionOptions, ErrorContext } from "../../mod.ts";
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
  const refused: unknown[] = [];
  const client = createReconnectingConnection(
    () => {
      const protocol = new RecordingProtocol();
      protocols.push(protocol);
      return protocol;
    },
    { hostname: "127.0.0.1", port, onError: (error) => refused.push(error) },
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
  // The tries while the server was away were reported, and nothing else.
  for (const error of refused) {
    assert.ok(error instanceof Deno.errors.ConnectionRefused, `${error}`);
  }
});

Deno.test("createReconnectingConnection(): from connectionLost on, current is undefined and connected() waits for the next connection", async () => {
  // The server closes the first connection at once.
  let accepted = 0;
  await using server = await createServer(() => ({
    connectionMade(transport: Transport) {
      if (++accepted === 1) transport.close();
    },
    dataReceived() {},
  }), { hostname: "127.0.0.1", port: 0 });
  const firstLost = Promise.withResolvers<{
    lostTransport: Transport;
    current: unknown;
    next: Promise<[Transport, ProtocolBase]>;
  }>();
  let made = 0;
  const client: ReturnType<typeof createReconnectingConnection<ProtocolBase>> =
    createReconnectingConnection(
      () => {
        const first = ++made === 1;
        return new (class extends ProtocolBase {
          override connectionLost(): void {
            // As code that resends what is pending on reconnect does.
            if (first) {
              firstLost.resolve({
                lostTransport: this.transport!,
                current: client.current,
                next: client.connected(),
              });
            }
          }
        })();
      },
      { hostname: "127.0.0.1", port: server.addrs[0]!.port },
      {
        initialDelay: 5,
      },
    );
  try {
    const { lostTransport, current, next } = await within(
      firstLost.promise,
      "the first connection's loss",
    );
    assert.equal(current, undefined);
    const [transport] = await within(next, "the next connection");
    assert.notEqual(transport, lostTransport);
    assert.equal(transport.isClosing(), false);
    assert.equal(client.connections, 2);
  } finally {
    client.close();
    await within(client.closed, "the client to stop");
  }
});

Deno.test("createReconnectingConnection(): close() stops retrying a server that is not there, and bad options are RangeErrors", async () => {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = probe.addr.port;
  probe.close();
  const client = createReconnectingConnection(() => new ProtocolBase(), {
    hostname: "127.0.0.1",
    port,
    onError: () => {},
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

Deno.test("createReconnectingConnection() throws at once for bad options, as createConnection() does, and tries nothing", async (t) => {
  const cases: [string, unknown, typeof TypeError][] = [
    ["port", { port: 70000 }, RangeError],
    ["port", { port: "80" }, TypeError],
    ["options", undefined, TypeError],
    ["hostname", { port: 1, hostname: 5 }, TypeError],
    ["idleTimeout", { port: 1, idleTimeout: -1 }, RangeError],
    ["handshakeTimeout", { port: 1, handshakeTimeout: 5 }, TypeError],
    ["signal", { port: 1, signal: {} }, TypeError],
    ["onError", { port: 1, onError: "log" }, TypeError],
    ["tls.caCerts", { port: 1, tls: { caCerts: "PEM" } }, TypeError],
  ];
  for (const [option, options, type] of cases) {
    await t.step(`${option}: ${Deno.inspect(options)}`, () => {
      let calls = 0;
      assert.throws(
        () =>
          createReconnectingConnection(() => {
            calls++;
            return new ProtocolBase();
          }, options as CreateConnectionOptions),
        (error: unknown) =>
          error instanceof type && error.message.includes(option),
      );
      assert.equal(calls, 0);
    });
  }

  await t.step("a backoff that is not a number is a TypeError", () => {
    assert.throws(
      () =>
        createReconnectingConnection(() => new ProtocolBase(), { port: 1 }, {
          initialDelay: "5" as never,
        }),
      (error: unknown) =>
        error instanceof TypeError && error.message.includes("initialDelay"),
    );
  });

  await t.step("a reconnect signal that is not an AbortSignal", () => {
    assert.throws(
      () =>
        createReconnectingConnection(() => new ProtocolBase(), { port: 1 }, {
          signal: {} as AbortSignal,
        }),
      (error: unknown) =>
        error instanceof TypeError &&
        error.message.includes("signal must be an AbortSignal"),
    );
  });
});

/** An `onError` that keeps what it gets and wakes whoever waits for `count`. */
function reports() {
  const errors: { error: unknown; context: ErrorContext }[] = [];
  const waiters: { count: number; resolve: () => void }[] = [];
  return {
    errors,
    onError(error: unknown, context: ErrorContext): void {
      errors.push({ error, context });
      for (const waiter of waiters) {
        if (errors.length >= waiter.count) waiter.resolve();
      }
    },
    /** Resolves once `count` errors were reported. */
    until(count: number): Promise<void> {
      if (errors.length >= count) return Promise.resolve();
      const { promise, resolve } = Promise.withResolvers<void>();
      waiters.push({ count, resolve });
      return within(promise, `${count} reports`);
    },
  };
}

Deno.test("createReconnectingConnection() reports each failed try to onError", async (t) => {
  await t.step("a refused connect, with the address and the wait", async () => {
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = probe.addr.port;
    probe.close();
    const seen = reports();
    const client = createReconnectingConnection(() => new ProtocolBase(), {
      hostname: "127.0.0.1",
      port,
      onError: seen.onError,
    }, { initialDelay: 5, maxDelay: 20 });
    await seen.until(2);
    client.close();
    await within(client.closed, "the client to stop");
    for (const { error, context } of seen.errors) {
      assert.ok(error instanceof Deno.errors.ConnectionRefused, `${error}`);
      assert.match(
        context.message,
        new RegExp(
          `connecting to 127\\.0\\.0\\.1:${port} failed; trying again in \\d+ ms`,
        ),
      );
    }
  });

  await t.step("a protocol factory that throws", async () => {
    await using server = await createServer(() => new ProtocolBase(), {
      hostname: "127.0.0.1",
      port: 0,
    });
    const seen = reports();
    const bug = new Error("factory bug");
    const client = createReconnectingConnection(() => {
      throw bug;
    }, {
      hostname: "127.0.0.1",
      port: server.addrs[0]!.port,
      onError: seen.onError,
    }, { initialDelay: 5, maxDelay: 20 });
    await seen.until(2);
    client.close();
    await within(client.closed, "the client to stop");
    assert.equal(client.connections, 0);
    for (const { error } of seen.errors) assert.equal(error, bug);
  });

  await t.step("a connectionMade that throws, once per try", async () => {
    await using server = await createServer(() => new ProtocolBase(), {
      hostname: "127.0.0.1",
      port: 0,
    });
    const seen = reports();
    let tries = 0;
    const client = createReconnectingConnection(() => {
      tries++;
      return {
        connectionMade() {
          throw new Error("connectionMade bug");
        },
        dataReceived() {},
      };
    }, {
      hostname: "127.0.0.1",
      port: server.addrs[0]!.port,
      onError: seen.onError,
    }, { initialDelay: 5, maxDelay: 20 });
    await seen.until(2);
    client.close();
    await within(client.closed, "the client to stop");
    assert.equal(seen.errors.length, tries);
    for (const { context } of seen.errors) {
      assert.equal(
        context.message,
        "Fatal error: protocol.connectionMade() call failed",
      );
    }
  });
});

Deno.test("createReconnectingConnection(): the connect options' signal stops it too", async () => {
  await using server = await echoServer(0);
  const stop = new AbortController();
  const protocol = new RecordingProtocol();
  const client = createReconnectingConnection(() => protocol, {
    hostname: "127.0.0.1",
    port: server.addrs[0]!.port,
    signal: stop.signal,
  }, { initialDelay: 10 });
  await within(client.connected(), "the connection");
  stop.abort();
  await within(client.closed, "the client to stop");
  await within(protocol.waitFor("connectionLost"), "the connection's end");
  await assert.rejects(client.connected(), TypeError);
});
