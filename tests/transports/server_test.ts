import assert from "node:assert/strict";
import {
  connectAcceptedConn,
  createConnection,
  createUnixConnection,
} from "../../transports/create_connection.ts";
import {
  createServer,
  createUnixServer,
  Server,
  type ServerOptions,
} from "../../transports/server.ts";
import type {
  ErrorContext,
  StreamProtocol,
  Transport,
} from "../../transports/transport.ts";
import {
  errorCollector,
  readExactly,
  RecordingBufferedProtocol,
  RecordingProtocol,
} from "../_test_utils.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Writes back whatever it receives. */
class Echo extends RecordingProtocol {
  override dataReceived(data: Uint8Array): void {
    super.dataReceived(data);
    this.transport?.write(data);
  }
}

/** Writes `payload` as soon as the connection is made. */
class Sender extends RecordingProtocol {
  constructor(readonly payload: Uint8Array) {
    super();
  }
  override connectionMade(transport: Transport): void {
    super.connectionMade(transport);
    transport.write(this.payload);
  }
}

/**
 * Makes the protocols of one server or connection and lets a test wait for
 * the `index`th of them to be made.
 */
class Factory<P extends StreamProtocol & RecordingLike> {
  protocols: P[] = [];
  #make: (index: number) => P;
  #waiters: (() => void)[] = [];

  constructor(make: (index: number) => P) {
    this.#make = make;
  }

  readonly make = (): P => {
    const protocol = this.#make(this.protocols.length);
    this.protocols.push(protocol);
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const resolve of waiters) resolve();
    return protocol;
  };

  /** Resolves with the `index`th protocol once its `connectionMade` ran. */
  async made(index: number): Promise<P> {
    while (this.protocols.length <= index) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
    const protocol = this.protocols[index]!;
    await protocol.waitFor("connectionMade");
    return protocol;
  }

  /** Resolves once every protocol made so far got `connectionLost`. */
  async allLost(): Promise<void> {
    await Promise.all(this.protocols.map((p) => p.waitFor("connectionLost")));
  }
}

type RecordingLike = RecordingProtocol | RecordingBufferedProtocol;

/** A raw client socket; `using` closes it unless the test did. */
interface Client extends Disposable {
  conn: Deno.Conn;
  close(): void;
}

/** Connects a raw `Deno.Conn` to `addr` (TCP on 127.0.0.1, or Unix). */
async function dial(addr: Deno.Addr): Promise<Client> {
  let conn: Deno.Conn;
  if (addr.transport === "tcp") {
    conn = await Deno.connect({ hostname: "127.0.0.1", port: addr.port });
  } else {
    assert.ok(addr.transport === "unix", `a ${addr.transport} address`);
    conn = await Deno.connect({ transport: "unix", path: addr.path });
  }
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    conn.close();
  };
  return { conn, close, [Symbol.dispose]: close };
}

/** Sends `text` through an echo server and returns what came back. */
async function echo(conn: Deno.Conn, text: string): Promise<string> {
  const data = encoder.encode(text);
  await conn.write(data);
  return decoder.decode(await readExactly(conn, data.byteLength));
}

/** Reads until EOF or a reset; returns how many bytes came. */
async function readUntilClosed(conn: Deno.Conn): Promise<number> {
  const buffer = new Uint8Array(256 * 1024);
  let total = 0;
  while (true) {
    let n: number | null;
    try {
      n = await conn.read(buffer);
    } catch {
      return total;
    }
    if (n === null) return total;
    total += n;
  }
}

/** A server on 127.0.0.1 or in a temp dir; disposing ends everything. */
interface Served extends AsyncDisposable {
  server: Server;
}

type ServerKind = "tcp" | "unix";
const KINDS: ServerKind[] = ["tcp", "unix"];

async function serve(
  kind: ServerKind,
  factory: () => StreamProtocol,
  options: ServerOptions = {},
): Promise<Served> {
  let server: Server;
  let dir: string | undefined;
  if (kind === "tcp") {
    server = await createServer(factory, {
      hostname: "127.0.0.1",
      port: 0,
      ...options,
    });
  } else {
    dir = await Deno.makeTempDir();
    server = await createUnixServer(factory, {
      path: `${dir}/server.sock`,
      ...options,
    });
  }
  return {
    server,
    async [Symbol.asyncDispose]() {
      // A no-op when the test ended everything itself, as it should.
      server.close();
      server.abortClients();
      await server.waitClosed();
      if (dir !== undefined) await Deno.remove(dir, { recursive: true });
    },
  };
}

/** `createConnection` or `createUnixConnection`, by the address kind. */
function connectTo<P extends StreamProtocol>(
  addr: Deno.Addr,
  factory: () => P,
  onError?: (error: unknown, context: ErrorContext) => void,
): Promise<[Transport, P]> {
  const hook = onError === undefined ? {} : { onError };
  if (addr.transport === "tcp") {
    return createConnection(factory, {
      hostname: "127.0.0.1",
      port: addr.port,
      ...hook,
    });
  }
  assert.ok(addr.transport === "unix", `a ${addr.transport} address`);
  return createUnixConnection(factory, { path: addr.path, ...hook });
}

/** Expects a connect to `addr` to be refused: nothing listens there. */
async function assertRefused(addr: Deno.Addr): Promise<void> {
  await assert.rejects(
    () => dial(addr),
    addr.transport === "unix"
      ? Deno.errors.NotFound
      : Deno.errors.ConnectionRefused,
  );
}

/** An `errorCollector()` that can also wait for the `count`th report. */
function reportedErrors(): ReturnType<typeof errorCollector> & {
  waitFor(count: number): Promise<void>;
} {
  const collector = errorCollector();
  let waiters: (() => void)[] = [];
  return {
    errors: collector.errors,
    onError(error, context) {
      collector.onError(error, context);
      const ready = waiters;
      waiters = [];
      for (const resolve of ready) resolve();
    },
    async waitFor(count) {
      while (collector.errors.length < count) {
        await new Promise<void>((resolve) => waiters.push(resolve));
      }
    },
  };
}

/**
 * Expects a connect to `addr` not to be served: refused, or (while Deno
 * still finishes closing a listener that had an accept in flight) reset or
 * closed without a byte.
 */
async function assertNotServed(addr: Deno.Addr): Promise<void> {
  let client: Client;
  try {
    client = await dial(addr);
  } catch (error) {
    assert.ok(
      error instanceof Deno.errors.ConnectionRefused ||
        error instanceof Deno.errors.ConnectionReset ||
        error instanceof Deno.errors.NotFound,
      `unexpected ${error}`,
    );
    return;
  }
  using _client = client;
  assert.equal(await readUntilClosed(client.conn), 0);
}

Deno.test("createServer() and createConnection() resolve with [transport, protocol] after connectionMade", async (t) => {
  for (const kind of KINDS) {
    await t.step(kind, async () => {
      const { errors, onError } = errorCollector();
      const served = new Factory(() => new Echo());
      await using s = await serve(kind, served.make, { onError });
      const { server } = s;
      assert.equal(server.isServing(), true);

      const client = new Factory(() => new RecordingProtocol());
      const [transport, protocol] = await connectTo(
        server.addrs[0]!,
        client.make,
        onError,
      );
      assert.equal(protocol, client.protocols[0]);
      assert.deepEqual(protocol.calls, ["connectionMade"]);
      assert.equal(protocol.transport, transport);
      assert.equal(transport.getProtocol(), protocol);

      const peer = await served.made(0);
      transport.write(encoder.encode("ping"));
      await protocol.waitForBytes(4);
      assert.equal(decoder.decode(protocol.received()), "ping");
      assert.equal(decoder.decode(peer.received()), "ping");
      const peername = transport.getExtraInfo("peername");
      assert.equal(peername?.transport, kind);
      if (kind === "tcp") {
        const addr = server.addrs[0];
        assert.ok(peername?.transport === "tcp" && addr?.transport === "tcp");
        assert.equal(peername.port, addr.port);
      }

      transport.close();
      await protocol.waitFor("connectionLost");
      await peer.waitFor("connectionLost");
      assert.equal(protocol.lostWith, undefined);
      assert.equal(peer.lostWith, undefined);
      server.close();
      await server.waitClosed();
      assert.equal(served.protocols.length, 1);
      assert.deepEqual(errors, []);
    });
  }
});

Deno.test("connectAcceptedConn() drives a protocol over a conn accepted by hand", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [conn, accepted] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    listener.accept(),
  ]);
  using _client = { [Symbol.dispose]: () => conn.close() };
  const [transport, protocol] = await connectAcceptedConn(
    () => new Echo(),
    accepted,
  );
  assert.deepEqual(protocol.calls, ["connectionMade"]);
  assert.equal(protocol.transport, transport);
  assert.equal(transport.getExtraInfo("conn"), accepted);

  assert.equal(await echo(conn, "hello"), "hello");
  await conn.closeWrite();
  await protocol.waitFor("connectionLost");
  assert.equal(protocol.lostWith, undefined);
  assert.equal(
    protocol.calls.join(" "),
    "connectionMade dataReceived eofReceived connectionLost",
  );
});

Deno.test("createConnection() rejects when connectionMade throws", async (t) => {
  const boom = new Error("boom in connectionMade");
  class Throwing extends RecordingProtocol {
    override connectionMade(transport: Transport): void {
      super.connectionMade(transport);
      throw boom;
    }
  }

  for (const kind of KINDS) {
    await t.step(kind, async () => {
      const served = new Factory(() => new Echo());
      await using s = await serve(kind, served.make);
      const { errors, onError } = errorCollector();
      const client = new Factory(() => new Throwing());
      await assert.rejects(
        () => connectTo(s.server.addrs[0]!, client.make, onError),
        (error) => error === boom,
      );
      const protocol = client.protocols[0]!;
      assert.equal(protocol.transport!.isClosing(), true);
      await protocol.waitFor("connectionLost");
      assert.equal(protocol.lostWith, boom);
      assert.deepEqual(protocol.calls, ["connectionMade", "connectionLost"]);
      assert.equal(errors.length, 1);
      assert.equal(errors[0]!.error, boom);
      assert.match(errors[0]!.context.message, /connectionMade/);

      // The server sees the connection end.
      const peer = await served.made(0);
      await peer.waitFor("connectionLost");
      s.server.close();
      await s.server.waitClosed();
    });
  }

  await t.step("connectAcceptedConn", async () => {
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const [conn, accepted] = await Promise.all([
      Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
      listener.accept(),
    ]);
    using _client = { [Symbol.dispose]: () => conn.close() };
    const { errors, onError } = errorCollector();
    const made = new Factory(() => new Throwing());
    await assert.rejects(
      () => connectAcceptedConn(made.make, accepted, { onError }),
      (error) => error === boom,
    );
    await made.protocols[0]!.waitFor("connectionLost");
    assert.equal(made.protocols[0]!.lostWith, boom);
    assert.equal(errors.length, 1);
    assert.equal(await readUntilClosed(conn), 0);
  });
});

Deno.test("Server closes only the connection whose protocol callback throws", async (t) => {
  const boom = new Error("boom");
  type Trigger = (client: Client) => Promise<void>;
  const sendData: Trigger = async (client) => {
    try {
      await client.conn.write(encoder.encode("data"));
    } catch {
      // getBuffer() throws before any data: the server may be gone already.
    }
  };
  const cases: [string, () => RecordingLike, Trigger][] = [
    ["dataReceived", () =>
      new (class extends Echo {
        override dataReceived(data: Uint8Array): void {
          super.dataReceived(data);
          throw boom;
        }
      })(), sendData],
    ["getBuffer", () =>
      new (class extends RecordingBufferedProtocol {
        override getBuffer(sizeHint: number): Uint8Array {
          super.getBuffer(sizeHint);
          throw boom;
        }
      })(), sendData],
    ["bufferUpdated", () =>
      new (class extends RecordingBufferedProtocol {
        override bufferUpdated(nbytes: number): void {
          super.bufferUpdated(nbytes);
          throw boom;
        }
      })(), sendData],
    ["eofReceived", () =>
      new (class extends Echo {
        override eofReceived(): boolean {
          super.eofReceived();
          throw boom;
        }
      })(), (client) => client.conn.closeWrite()],
    ["connectionMade", () =>
      new (class extends Echo {
        override connectionMade(transport: Transport): void {
          super.connectionMade(transport);
          throw boom;
        }
      })(), () => Promise.resolve()],
  ];

  for (const kind of KINDS) {
    for (const [callback, makeBad, trigger] of cases) {
      await t.step(`${kind}: ${callback}`, async () => {
        const { errors, onError, waitFor } = reportedErrors();
        const served = new Factory<RecordingLike>((index) =>
          index === 1 ? makeBad() : new Echo()
        );
        await using s = await serve(kind, served.make, { onError });
        const addr = s.server.addrs[0]!;

        using a = await dial(addr);
        assert.equal(await echo(a.conn, "first"), "first");
        using b = await dial(addr);
        const bad = await served.made(1);
        await trigger(b);
        await waitFor(1);
        assert.equal(bad.transport!.isClosing(), true);
        await bad.waitFor("connectionLost");
        assert.equal(bad.lostWith, boom);
        assert.equal(bad.calls.at(-1), "connectionLost");
        assert.equal(bad.count("connectionLost"), 1);
        assert.ok(bad.calls.includes(callback as never), bad.calls.join());
        await readUntilClosed(b.conn);

        assert.equal(errors.length, 1);
        const [{ error, context }] = errors as [typeof errors[0]];
        assert.equal(error, boom);
        assert.match(
          context.message,
          new RegExp(`protocol\\.${callback}\\(\\)`),
        );
        assert.ok(context.transport !== undefined);
        assert.equal(context.transport, bad.transport);
        assert.equal(context.protocol, bad);

        // The other connection and the server go on.
        assert.equal(await echo(a.conn, "still here"), "still here");
        assert.equal(s.server.isServing(), true);
        using c = await dial(addr);
        assert.equal(await echo(c.conn, "newcomer"), "newcomer");

        s.server.close();
        a.close();
        c.close();
        await s.server.waitClosed();
        await served.allLost();
        assert.equal(served.protocols[0]!.lostWith, undefined);
        assert.equal(served.protocols[2]!.lostWith, undefined);
        assert.equal(errors.length, 1);
      });
    }
  }
});

Deno.test("Server drops only the connection whose protocol factory fails", async (t) => {
  const boom = new Error("factory failed");
  const failures: [string, () => StreamProtocol][] = [
    ["throws", () => {
      throw boom;
    }],
    ["returns no protocol", () => ({}) as StreamProtocol],
    [
      "returns a Promise (an async factory)",
      (() => Promise.resolve(new Echo())) as unknown as () => StreamProtocol,
    ],
  ];
  for (const kind of KINDS) {
    for (const [how, fail] of failures) {
      await t.step(`${kind}: ${how}`, async () => {
        const { errors, onError } = errorCollector();
        let calls = 0;
        const served = new Factory(() => new Echo());
        const factory = () => calls++ === 1 ? fail() : served.make();
        await using s = await serve(kind, factory, { onError });
        const addr = s.server.addrs[0]!;

        using a = await dial(addr);
        assert.equal(await echo(a.conn, "first"), "first");
        using b = await dial(addr);
        assert.equal(await readUntilClosed(b.conn), 0);
        assert.equal(errors.length, 1);
        if (how === "throws") assert.equal(errors[0]!.error, boom);
        else assert.ok(errors[0]!.error instanceof TypeError);
        if (how.includes("Promise")) {
          assert.match(
            (errors[0]!.error as Error).message,
            /the factory returned a Promise/,
          );
        }
        assert.match(errors[0]!.context.message, /factory/);

        assert.equal(await echo(a.conn, "still here"), "still here");
        using c = await dial(addr);
        assert.equal(await echo(c.conn, "newcomer"), "newcomer");
        assert.equal(calls, 3);

        s.server.close();
        a.close();
        c.close();
        await s.server.waitClosed();
        await served.allLost();
        assert.equal(served.protocols.length, 2);
      });
    }
  }
});

Deno.test("Server reports a throwing connectionLost and still ends the connection", async (t) => {
  for (const kind of KINDS) {
    await t.step(kind, async () => {
      const boom = new Error("boom in connectionLost");
      const { errors, onError } = errorCollector();
      const served = new Factory(() =>
        new (class extends Echo {
          override connectionLost(exc: Error | undefined): void {
            super.connectionLost(exc);
            throw boom;
          }
        })()
      );
      await using s = await serve(kind, served.make, { onError });
      using a = await dial(s.server.addrs[0]!);
      assert.equal(await echo(a.conn, "bye"), "bye");
      s.server.close();
      a.close();
      await s.server.waitClosed();
      const protocol = served.protocols[0]!;
      assert.equal(protocol.count("connectionLost"), 1);
      assert.equal(errors.length, 1);
      assert.equal(errors[0]!.error, boom);
      assert.match(errors[0]!.context.message, /connectionLost/);
      assert.equal(errors[0]!.context.transport, protocol.transport);
    });
  }
});

Deno.test("Server.close() stops accepting and leaves open connections working", async (t) => {
  for (const kind of KINDS) {
    await t.step(kind, async () => {
      const served = new Factory(() => new Echo());
      await using s = await serve(kind, served.make);
      const { server } = s;
      const addr = server.addrs[0]!;
      using a = await dial(addr);
      assert.equal(await echo(a.conn, "before"), "before");

      server.close();
      server.close();
      assert.equal(server.isServing(), false);
      await assertNotServed(addr);
      await assert.rejects(() =>
        connectTo(addr, () => new RecordingProtocol())
      );

      assert.equal(await echo(a.conn, "after"), "after");
      assert.equal(served.protocols.length, 1);
      assert.equal(served.protocols[0]!.count("connectionLost"), 0);

      a.close();
      await server.waitClosed();
      await served.allLost();
      // Once closed, with no accept in flight, the listener is gone.
      await assertRefused(addr);
      assert.equal(served.protocols.length, 1);
    });
  }
});

Deno.test("Server.waitClosed() resolves once the server is closed and every connection ended", async (t) => {
  /** Waits for `server` and logs "waitClosed" when it resolves. */
  function watch(server: Server, log: string[]): Promise<void> {
    return server.waitClosed().then(() => void log.push("waitClosed"));
  }
  /** An echo server protocol that logs its `connectionLost`. */
  function logging(log: string[]): () => Echo {
    let index = 0;
    return () => {
      const name = `lost ${index++}`;
      return new (class extends Echo {
        override connectionLost(exc: Error | undefined): void {
          super.connectionLost(exc);
          log.push(name);
        }
      })();
    };
  }

  for (const kind of KINDS) {
    await t.step(`${kind}: called before close()`, async () => {
      const log: string[] = [];
      const served = new Factory(logging(log));
      await using s = await serve(kind, served.make);
      const { server } = s;
      using a = await dial(server.addrs[0]!);
      using b = await dial(server.addrs[0]!);
      const waits = [watch(server, log), watch(server, log)];

      assert.equal(await echo(a.conn, "open"), "open");
      assert.equal(await echo(b.conn, "open"), "open");
      assert.deepEqual(log, []);
      server.close();
      assert.equal(await echo(a.conn, "closed"), "closed");
      assert.deepEqual(log, []);

      a.close();
      await served.protocols[0]!.waitFor("connectionLost");
      assert.equal(await echo(b.conn, "last"), "last");
      assert.deepEqual(log, ["lost 0"]);
      b.close();
      await Promise.all(waits);
      assert.deepEqual(log, ["lost 0", "lost 1", "waitClosed", "waitClosed"]);
    });

    await t.step(`${kind}: called after close()`, async () => {
      const log: string[] = [];
      const served = new Factory(logging(log));
      await using s = await serve(kind, served.make);
      const { server } = s;
      using a = await dial(server.addrs[0]!);
      assert.equal(await echo(a.conn, "open"), "open");
      server.close();
      const wait = watch(server, log);
      assert.equal(await echo(a.conn, "closed"), "closed");
      assert.deepEqual(log, []);
      a.close();
      await wait;
      assert.deepEqual(log, ["lost 0", "waitClosed"]);
      // Once closed, it resolves at once.
      await server.waitClosed();
    });

    await t.step(`${kind}: no connection ever`, async () => {
      const log: string[] = [];
      await using s = await serve(kind, () => new Echo());
      const wait = watch(s.server, log);
      for (let i = 0; i < 10; i++) await Promise.resolve();
      assert.deepEqual(log, []);
      s.server.close();
      await wait;
      assert.deepEqual(log, ["waitClosed"]);
    });
  }
});

Deno.test("Server.closeClients() flushes then closes every connection", async (t) => {
  const payload = new Uint8Array(4 * 1024 * 1024).fill(7);
  for (const kind of KINDS) {
    await t.step(kind, async () => {
      const served = new Factory(() => new Sender(payload));
      await using s = await serve(kind, served.make);
      const { server } = s;
      using a = await dial(server.addrs[0]!);
      using b = await dial(server.addrs[0]!);
      await served.made(1);

      server.close();
      server.closeClients();
      for (const protocol of served.protocols) {
        assert.equal(protocol.transport!.isClosing(), true);
      }
      const [gotA, gotB] = await Promise.all([
        readUntilClosed(a.conn),
        readUntilClosed(b.conn),
      ]);
      assert.equal(gotA, payload.byteLength);
      assert.equal(gotB, payload.byteLength);
      await server.waitClosed();
      for (const protocol of served.protocols) {
        assert.equal(protocol.lostWith, undefined);
        assert.equal(protocol.count("connectionLost"), 1);
      }
    });
  }
});

Deno.test("Server.abortClients() closes every connection at once, dropping buffers", async (t) => {
  const payload = new Uint8Array(16 * 1024 * 1024).fill(7);
  for (const kind of KINDS) {
    await t.step(kind, async () => {
      const served = new Factory(() => new Sender(payload));
      await using s = await serve(kind, served.make);
      const { server } = s;
      using a = await dial(server.addrs[0]!);
      using b = await dial(server.addrs[0]!);
      await served.made(1);

      server.close();
      server.abortClients();
      for (const protocol of served.protocols) {
        const transport = protocol.transport;
        assert.ok(transport, "connectionMade gave the transport");
        assert.equal(transport.isClosing(), true);
        assert.equal(transport.getWriteBufferSize(), 0);
      }
      const reads = Promise.all([
        readUntilClosed(a.conn),
        readUntilClosed(b.conn),
      ]);
      await server.waitClosed();
      for (const protocol of served.protocols) {
        assert.equal(protocol.lostWith, undefined);
        assert.equal(protocol.count("connectionLost"), 1);
      }
      const [gotA, gotB] = await reads;
      assert.ok(gotA < payload.byteLength, `${gotA}`);
      assert.ok(gotB < payload.byteLength, `${gotB}`);
    });
  }
});

Deno.test("Server.startServing() starts a server made with startServing: false", async (t) => {
  for (const kind of KINDS) {
    await t.step(kind, async () => {
      const served = new Factory(() => new Echo());
      await using s = await serve(kind, served.make, { startServing: false });
      const { server } = s;
      assert.equal(server.isServing(), false);

      // The socket listens: the kernel queues the connection.
      using a = await dial(server.addrs[0]!);
      await a.conn.write(encoder.encode("queued"));
      assert.equal(served.protocols.length, 0);

      await server.startServing();
      assert.equal(server.isServing(), true);
      await server.startServing();
      assert.equal(decoder.decode(await readExactly(a.conn, 6)), "queued");
      assert.equal(served.protocols.length, 1);

      server.close();
      assert.equal(server.isServing(), false);
      await server.startServing();
      assert.equal(server.isServing(), false);
      a.close();
      await server.waitClosed();
    });
  }
});

Deno.test("Server.serveForever() serves until closed and every connection ended", async (t) => {
  for (const kind of KINDS) {
    await t.step(kind, async () => {
      const served = new Factory(() => new Echo());
      await using s = await serve(kind, served.make, { startServing: false });
      const { server } = s;
      let done = false;
      const forever = server.serveForever().then(() => done = true);
      assert.equal(server.isServing(), true);
      let second: unknown = "pending";
      const settled = server.serveForever().then(
        () => second = "resolved",
        (error) => second = error,
      );
      for (let i = 0; i < 5; i++) await Promise.resolve();
      assert.ok(second instanceof Error, `second call: ${second}`);
      await settled;

      using a = await dial(server.addrs[0]!);
      assert.equal(await echo(a.conn, "served"), "served");
      server.close();
      assert.equal(await echo(a.conn, "still"), "still");
      assert.equal(done, false);
      a.close();
      await forever;
      assert.equal(served.protocols[0]!.count("connectionLost"), 1);
      await assert.rejects(() => server.serveForever(), Error);
    });
  }
});

Deno.test("createServer() closes the server when its signal aborts", async (t) => {
  for (const kind of KINDS) {
    await t.step(`${kind}: aborted while serving`, async () => {
      const controller = new AbortController();
      const served = new Factory(() => new Echo());
      await using s = await serve(kind, served.make, {
        signal: controller.signal,
      });
      const { server } = s;
      const addr = server.addrs[0]!;
      using a = await dial(addr);
      assert.equal(await echo(a.conn, "before"), "before");

      controller.abort();
      assert.equal(server.isServing(), false);
      await assertNotServed(addr);
      assert.equal(await echo(a.conn, "after"), "after");
      a.close();
      await server.waitClosed();
      await served.allLost();
      await assertRefused(addr);
      assert.equal(served.protocols.length, 1);
    });

    await t.step(`${kind}: aborted before`, async () => {
      await using s = await serve(kind, () => new Echo(), {
        signal: AbortSignal.abort(),
      });
      assert.equal(s.server.isServing(), false);
      await s.server.waitClosed();
      await assertRefused(s.server.addrs[0]!);
    });
  }
});

Deno.test("Server[Symbol.asyncDispose]() closes the server and waits for its connections", async (t) => {
  for (const kind of KINDS) {
    await t.step(kind, async () => {
      const dir = await Deno.makeTempDir();
      const served = new Factory(() => new Echo());
      let addr: Deno.Addr;
      {
        await using server = kind === "tcp"
          ? await createServer(served.make, { hostname: "127.0.0.1", port: 0 })
          : await createUnixServer(served.make, { path: `${dir}/s.sock` });
        addr = server.addrs[0]!;
        using a = await dial(addr);
        assert.equal(await echo(a.conn, "scoped"), "scoped");
        a.close();
      }
      assert.equal(served.protocols[0]!.count("connectionLost"), 1);
      await assertRefused(addr);
      await Deno.remove(dir, { recursive: true });
    });
  }
});

Deno.test("Server.addrs gives the bound address", async (t) => {
  await t.step("tcp: the port the system picked", async () => {
    await using server = await createServer(() => new Echo(), {
      hostname: "127.0.0.1",
      port: 0,
    });
    assert.equal(server.addrs.length, 1);
    const addr = server.addrs[0];
    assert.ok(addr, "one address");
    assert.equal(addr.transport, "tcp");
    assert.equal(addr.hostname, "127.0.0.1");
    assert.ok(Number.isInteger(addr.port) && addr.port > 0);
    using a = await dial(addr);
    assert.equal(await echo(a.conn, "port"), "port");
    a.close();
  });

  await t.step("unix: the socket's path", async () => {
    const dir = await Deno.makeTempDir();
    const path = `${dir}/addr.sock`;
    {
      await using server = await createUnixServer(() => new Echo(), { path });
      assert.equal(server.addrs.length, 1);
      const addr = server.addrs[0];
      assert.ok(addr, "one address");
      assert.equal(addr.transport, "unix");
      assert.equal(addr.path, path);
    }
    await Deno.remove(dir, { recursive: true });
  });
});

Deno.test("createServer() and the connect functions reject bad arguments", async (t) => {
  const notAFunction = "factory" as unknown as () => Echo;
  const factory = () => new Echo();

  await t.step("a factory that is not a function is a TypeError", async () => {
    await assert.rejects(
      () => createServer(notAFunction, { hostname: "127.0.0.1", port: 0 }),
      TypeError,
    );
    await assert.rejects(
      () => createUnixServer(notAFunction, { path: "/nonexistent/x.sock" }),
      TypeError,
    );
    await assert.rejects(
      () => createConnection(notAFunction, { port: 1 }),
      TypeError,
    );
    await assert.rejects(
      () => createUnixConnection(notAFunction, { path: "/nonexistent/x" }),
      TypeError,
    );
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    assert.throws(() => new Server(listener, notAFunction), TypeError);
  });

  await t.step(
    "connectAcceptedConn() closes the conn it cannot use",
    async () => {
      using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const [conn, accepted] = await Promise.all([
        Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
        listener.accept(),
      ]);
      using _client = { [Symbol.dispose]: () => conn.close() };
      await assert.rejects(
        () => connectAcceptedConn(notAFunction, accepted),
        TypeError,
      );
      assert.equal(await readUntilClosed(conn), 0);
    },
  );

  await t.step(
    "createConnection() with an async factory is a TypeError saying it returned a Promise",
    async () => {
      using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const accepted = listener.accept();
      await assert.rejects(
        () =>
          createConnection(
            (() => Promise.resolve(new Echo())) as unknown as () => Echo,
            {
              hostname: "127.0.0.1",
              port: listener.addr.port,
            },
          ),
        (error: unknown) =>
          error instanceof TypeError &&
          /the factory returned a Promise/.test(error.message),
      );
      using conn = await accepted;
      assert.equal(await readUntilClosed(conn), 0);
    },
  );

  for (const port of [-1, 65536, 70000]) {
    await t.step(`port ${port} is a RangeError`, async () => {
      await assert.rejects(
        () => createServer(factory, { hostname: "127.0.0.1", port }),
        RangeError,
      );
      await assert.rejects(
        () => createConnection(factory, { hostname: "127.0.0.1", port }),
        RangeError,
      );
    });
  }

  for (const port of [1.5, "80", NaN, undefined, null]) {
    await t.step(`port ${Deno.inspect(port)} is a TypeError`, async () => {
      const options = { hostname: "127.0.0.1", port: port as number };
      await assert.rejects(() => createServer(factory, options), TypeError);
      await assert.rejects(() => createConnection(factory, options), TypeError);
    });
  }

  await t.step("a path that is not a string is a TypeError", async () => {
    const options = { path: 42 as unknown as string };
    await assert.rejects(() => createUnixServer(factory, options), TypeError);
    await assert.rejects(
      () => createUnixConnection(factory, options),
      TypeError,
    );
  });
});

Deno.test("createUnixServer() replaces a stale socket file and removes its own on close", async (t) => {
  await t.step("a stale socket file is removed first", async () => {
    const dir = await Deno.makeTempDir();
    const path = `${dir}/stale.sock`;
    // A process that dies without closing its listener leaves the file.
    const { success } = await new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `Deno.listen({ transport: "unix", path: ${
          JSON.stringify(path)
        } }); Deno.exit(0);`,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
    assert.equal(success, true);
    assert.equal((await Deno.lstat(path)).isSocket, true);

    const served = new Factory(() => new Echo());
    {
      await using server = await createUnixServer(served.make, { path });
      using a = await dial(server.addrs[0]!);
      assert.equal(await echo(a.conn, "fresh"), "fresh");
      a.close();
    }
    await assert.rejects(() => Deno.lstat(path), Deno.errors.NotFound);
    await Deno.remove(dir, { recursive: true });
  });

  await t.step("a file that is not a socket is left alone", async () => {
    const dir = await Deno.makeTempDir();
    const path = `${dir}/not-a.sock`;
    await Deno.writeTextFile(path, "keep me");
    await assert.rejects(() => createUnixServer(() => new Echo(), { path }));
    assert.equal(await Deno.readTextFile(path), "keep me");
    await Deno.remove(dir, { recursive: true });
  });

  await t.step("the socket file is gone after close()", async () => {
    const dir = await Deno.makeTempDir();
    const path = `${dir}/own.sock`;
    const server = await createUnixServer(() => new Echo(), { path });
    assert.equal((await Deno.lstat(path)).isSocket, true);
    server.close();
    await server.waitClosed();
    await assert.rejects(() => Deno.lstat(path), Deno.errors.NotFound);
    await Deno.remove(dir, { recursive: true });
  });
});
