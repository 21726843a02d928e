import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import net from "node:net";
import tls from "node:tls";
import {
  connectAcceptedConn,
  createConnection,
} from "../../transports/create_connection.ts";
import { createReconnectingConnection } from "../../transports/create_reconnecting_connection.ts";
import {
  createServer,
  type CreateServerOptions,
  type Server,
} from "../../transports/server.ts";
import {
  startTls,
  type StartTlsOptions,
  type TlsClientOptions,
} from "../../transports/start_tls.ts";
import type {
  ErrorContext,
  StreamProtocol,
  Transport,
} from "../../transports/transport.ts";
import {
  assertBytes,
  concat,
  pattern,
  readExactly,
  readUntilClosed,
  RecordingBufferedProtocol,
  RecordingProtocol,
  within,
  writeAll,
} from "../_test_utils.ts";

// Fixtures made by tests/testdata/make_certs.sh: a CA, a certificate for
// localhost and 127.0.0.1 signed by it, and an unrelated CA.
const testdata = new URL("../testdata/", import.meta.url);
const CA = await Deno.readTextFile(new URL("ca.pem", testdata));
const OTHER_CA = await Deno.readTextFile(new URL("other_ca.pem", testdata));
const CERT = await Deno.readTextFile(new URL("server.pem", testdata));
const KEY = await Deno.readTextFile(new URL("server_key.pem", testdata));

const HOST = "127.0.0.1";
const MiB = 1024 * 1024;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Tells whether `conn` is a `Deno.TlsConn`: it has `handshake()`. */
function isTlsConn(conn: Deno.Conn | undefined): boolean {
  return conn !== undefined && "handshake" in conn &&
    typeof conn.handshake === "function";
}

/** Records callbacks, counts bytes, and can wait for a byte count. */
class Collector extends RecordingProtocol {
  size = 0;
  alpnAtConnectionMade: unknown = "unset";
  #want = Infinity;
  #reached: (() => void) | undefined;

  override connectionMade(transport: Transport): void {
    this.alpnAtConnectionMade = transport.getExtraInfo("alpnProtocol");
    super.connectionMade(transport);
  }
  override dataReceived(data: Uint8Array): void {
    super.dataReceived(data);
    this.size += data.byteLength;
    if (this.size >= this.#want) this.#reached?.();
  }
  /** Resolves once `nbytes` bytes in all have arrived. */
  untilSize(nbytes: number): Promise<void> {
    if (this.size >= nbytes) return Promise.resolve();
    return new Promise((resolve) => {
      this.#want = nbytes;
      this.#reached = resolve;
    });
  }
}

/** Writes back whatever it receives. */
class Echo extends Collector {
  override dataReceived(data: Uint8Array): void {
    super.dataReceived(data);
    this.transport?.write(data);
  }
}

/**
 * A `BufferedProtocol` whose every buffer is a subarray of one slab at an
 * odd offset and of an odd length, that can echo what it receives.
 */
class OddBuffers extends RecordingBufferedProtocol {
  size = 0;
  #slab = new Uint8Array(40_000);
  #count = 0;
  #want = Infinity;
  #reached: (() => void) | undefined;

  constructor(readonly echo: boolean) {
    super(1);
  }
  override getBuffer(sizeHint: number): Uint8Array {
    const offset = 1 + (this.#count % 7);
    const length = 997 + ((this.#count * 7919) % 30_011);
    this.#count++;
    this.buffer = this.#slab.subarray(offset, offset + length);
    return super.getBuffer(sizeHint);
  }
  override bufferUpdated(nbytes: number): void {
    super.bufferUpdated(nbytes);
    this.size += nbytes;
    if (this.echo) this.transport?.write(this.chunks.at(-1)!);
    if (this.size >= this.#want) this.#reached?.();
  }
  untilSize(nbytes: number): Promise<void> {
    if (this.size >= nbytes) return Promise.resolve();
    return new Promise((resolve) => {
      this.#want = nbytes;
      this.#reached = resolve;
    });
  }
}

/** An `onError` hook that keeps errors and lets a test wait for them. */
class Errors {
  list: { error: unknown; context: ErrorContext }[] = [];
  #waiters: (() => void)[] = [];

  readonly onError = (error: unknown, context: ErrorContext): void => {
    this.list.push({ error, context });
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const resolve of waiters) resolve();
  };

  /** Resolves once `count` errors in all were reported. */
  async waitFor(count: number): Promise<void> {
    while (this.list.length < count) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }
}

/**
 * Makes a server's protocols; `first` resolves with the first one once its
 * `connectionMade` has run.
 */
function firstOf<P extends Collector | OddBuffers>(
  make: () => P,
): { factory: () => P; first: Promise<P> } {
  const { promise, resolve } = Promise.withResolvers<P>();
  return {
    factory: () => {
      const protocol = make();
      resolve(protocol.waitFor("connectionMade").then(() => protocol));
      return protocol;
    },
    first: promise,
  };
}

/** A TLS server on 127.0.0.1 with the fixture certificate. */
async function tlsServer(
  factory: () => StreamProtocol,
  options: Partial<CreateServerOptions> = {},
): Promise<{ server: Server; port: number; errors: Errors }> {
  const errors = new Errors();
  const server = await createServer(factory, {
    hostname: HOST,
    port: 0,
    tls: { cert: CERT, key: KEY },
    onError: errors.onError,
    ...options,
  });
  return { server, port: server.addrs[0]!.port, errors };
}

/**
 * Closes `server` when disposed; connections a failed assertion left open
 * are aborted, so that the failure is reported rather than a hang.
 */
function disposing(server: Server): AsyncDisposable {
  return {
    async [Symbol.asyncDispose]() {
      server.close();
      server.abortClients();
      await server.waitClosed();
    },
  };
}

/** Connects a TLS client that trusts the fixture CA. */
function connectTls<P extends StreamProtocol>(
  factory: () => P,
  port: number,
  tlsOptions: TlsClientOptions = {},
): Promise<[Transport, P]> {
  return createConnection(factory, {
    hostname: HOST,
    port,
    tls: { caCerts: [CA], ...tlsOptions },
  });
}

Deno.test("createConnection() with tls echoes 8 MiB through createServer() with tls", async () => {
  const { server, port, errors } = await tlsServer(() => new Echo());
  await using _server = disposing(server);
  const payload = pattern(8 * MiB);

  const [transport, client] = await connectTls(() => new Collector(), port);
  assert.ok(isTlsConn(transport.getExtraInfo("conn")), "a Deno.TlsConn");
  transport.write(payload);
  await client.untilSize(payload.byteLength);
  transport.close();
  await client.waitFor("connectionLost");

  assertBytes(client.received(), payload);
  assert.equal(client.lostWith, undefined);
  assert.deepEqual(errors.list, []);
});

Deno.test("createServer() with tls completes the handshake before connectionMade and reports ALPN", async (t) => {
  const { factory, first } = firstOf(() => new Echo());
  const { server, port, errors } = await tlsServer(factory, {
    tls: { cert: CERT, key: KEY, alpnProtocols: ["h2", "http/1.1"] },
  });
  await using _server = disposing(server);

  await t.step("both sides see the protocol agreed by ALPN", async () => {
    const [transport, client] = await connectTls(() => new Collector(), port, {
      alpnProtocols: ["x-unknown", "http/1.1"],
    });
    const serverSide = await first;
    assert.equal(transport.getExtraInfo("alpnProtocol"), "http/1.1");
    assert.equal(client.alpnAtConnectionMade, "http/1.1");
    assert.equal(serverSide.alpnAtConnectionMade, "http/1.1");
    transport.close();
    await serverSide.waitFor("connectionLost");
  });

  await t.step(
    "alpnProtocol is null when the client asks for none",
    async () => {
      const [transport, client] = await connectTls(() => new Collector(), port);
      assert.equal(transport.getExtraInfo("alpnProtocol"), null);
      assert.equal(client.alpnAtConnectionMade, null);
      transport.close();
      await client.waitFor("connectionLost");
    },
  );

  await t.step("a plain TCP transport has no alpnProtocol", async () => {
    await using plain = await createServer(() => new Echo(), {
      hostname: HOST,
      port: 0,
    });
    const [transport, client] = await createConnection(() => new Collector(), {
      port: plain.addrs[0]!.port,
    });
    assert.equal(transport.getExtraInfo("alpnProtocol"), undefined);
    transport.close();
    await client.waitFor("connectionLost");
  });
  assert.deepEqual(errors.list, []);
});

Deno.test("connectAcceptedConn() completes the handshake of a Deno.TlsConn before connectionMade", async () => {
  using listener = Deno.listenTls({
    hostname: HOST,
    port: 0,
    cert: CERT,
    key: KEY,
    alpnProtocols: ["echo"],
  });
  const [[transport, client], accepted] = await Promise.all([
    connectTls(() => new Collector(), listener.addr.port, {
      alpnProtocols: ["echo"],
    }),
    listener.accept(),
  ]);
  const [serverTransport, serverSide] = await connectAcceptedConn(
    () => new Echo(),
    accepted,
  );
  assert.equal(serverSide.alpnAtConnectionMade, "echo");
  assert.equal(serverTransport.getExtraInfo("alpnProtocol"), "echo");
  assert.equal(client.alpnAtConnectionMade, "echo");
  transport.write(encoder.encode("hi"));
  await client.untilSize(2);
  transport.close();
  await serverSide.waitFor("connectionLost");
  assert.equal(decoder.decode(client.received()), "hi");
});

Deno.test("createConnection() with tls rejects a certificate it cannot verify", async (t) => {
  const { server, port, errors } = await tlsServer(() => new Echo());
  await using _server = disposing(server);
  let made = 0;

  await t.step("signed by a CA it does not trust", async () => {
    await assert.rejects(
      connectTls(
        () => {
          made++;
          return new Collector();
        },
        port,
        { caCerts: [OTHER_CA] },
      ),
      (error: Error) => {
        // Deno's class and message, with the address, and Deno's error as
        // the cause.
        assert.ok(error instanceof Deno.errors.InvalidData, String(error));
        assert.match(error.message, /UnknownIssuer/);
        assert.match(error.message, new RegExp(`${HOST}:${port}`));
        assert.ok(error.cause instanceof Deno.errors.InvalidData);
        return true;
      },
    );
    await errors.waitFor(1);
  });

  await t.step("issued for another name", async () => {
    await assert.rejects(
      connectTls(
        () => {
          made++;
          return new Collector();
        },
        port,
        { serverName: "example.com" },
      ),
      /NotValidForName|certificate/i,
    );
    await errors.waitFor(2);
  });

  assert.equal(made, 0, "no protocol is made for a failed handshake");
  for (const { context } of errors.list) {
    assert.match(context.message, /TLS handshake with 127\.0\.0\.1:\d+ failed/);
  }
  assert.ok(server.isServing());
});

Deno.test("Server drops only the connection whose TLS handshake fails", async () => {
  const { factory, first } = firstOf(() => new Echo());
  const { server, port, errors } = await tlsServer(factory);
  await using _server = disposing(server);

  // A plain-TCP client speaks HTTP to the TLS server.
  const plain = await Deno.connect({ hostname: HOST, port });
  await plain.write(encoder.encode("GET / HTTP/1.0\r\n\r\n"));
  await errors.waitFor(1);
  plain.close();
  assert.match(String(errors.list[0]!.error), /InvalidContentType|corrupt/);
  assert.equal(errors.list[0]!.context.transport, undefined);

  // The server goes on serving TLS clients.
  assert.ok(server.isServing());
  const [transport, client] = await connectTls(() => new Collector(), port);
  transport.write(encoder.encode("still there?"));
  await client.untilSize(12);
  assert.equal(decoder.decode(client.received()), "still there?");
  transport.close();
  await (await first).waitFor("connectionLost");
  assert.equal(errors.list.length, 1);
});

Deno.test("createServer() with tls drops a client whose handshake times out", async () => {
  const { server, port, errors } = await tlsServer(() => new Echo(), {
    handshakeTimeout: 200,
  });
  await using _server = disposing(server);

  using _silent = await Deno.connect({ hostname: HOST, port });
  await errors.waitFor(1);
  assert.ok(errors.list[0]!.error instanceof Deno.errors.TimedOut);
  assert.match(String(errors.list[0]!.error), /longer than 200 ms/);
  // The server no longer counts the connection. (Deno keeps the socket
  // itself open until the client sends something or goes away.)
  server.close();
  await server.waitClosed();
});

Deno.test("createConnection() with tls rejects with TimedOut when the server never answers", async () => {
  using listener = Deno.listen({ hostname: HOST, port: 0 });
  const accepted = listener.accept();
  await assert.rejects(
    createConnection(() => new Collector(), {
      hostname: HOST,
      port: listener.addr.port,
      tls: { caCerts: [CA] },
      handshakeTimeout: 200,
    }),
    (error) => error instanceof Deno.errors.TimedOut,
  );
  (await accepted).close();
});

Deno.test("createConnection() and createServer() check handshakeTimeout", async () => {
  await assert.rejects(
    createConnection(() => new Collector(), {
      port: 1,
      tls: {},
      handshakeTimeout: 0,
    }),
    RangeError,
  );
  await assert.rejects(
    createServer(() => new Collector(), {
      hostname: HOST,
      port: 0,
      tls: { cert: CERT, key: KEY },
      handshakeTimeout: -1,
    }),
    RangeError,
  );
});

Deno.test("Server.waitClosed() waits for TLS handshakes in progress", async (t) => {
  /** Connects a silent TCP client, then a TLS client; FIFO accept means the
   * silent one's handshake is in progress once the TLS one is made. */
  async function withSilentClient(
    options: Partial<CreateServerOptions>,
  ): Promise<{ server: Server; errors: Errors; silent: Deno.Conn }> {
    const { factory, first } = firstOf(() => new Echo());
    const { server, port, errors } = await tlsServer(factory, options);
    const silent = await Deno.connect({ hostname: HOST, port });
    const [transport, client] = await connectTls(() => new Collector(), port);
    await first;
    transport.close();
    await client.waitFor("connectionLost");
    return { server, errors, silent };
  }

  await t.step("until they time out", async () => {
    const { server, errors, silent } = await withSilentClient({
      handshakeTimeout: 300,
    });
    server.close();
    await server.waitClosed();
    assert.equal(errors.list.length, 1, "timed out before waitClosed()");
    assert.ok(errors.list[0]!.error instanceof Deno.errors.TimedOut);
    silent.close();
  });

  await t.step("unless closeClients() drops them", async () => {
    const { server, errors, silent } = await withSilentClient({});
    server.close();
    server.closeClients();
    await server.waitClosed();
    assert.deepEqual(errors.list, [], "a dropped handshake is no error");
    silent.close();
  });
});

Deno.test("StreamTransport.writeEof() over TLS sends close_notify; the peer reads EOF and replies", async () => {
  class Replier extends Collector {
    override eofReceived(): boolean {
      super.eofReceived();
      this.transport?.write(encoder.encode(`got ${this.size} bytes`));
      this.transport?.close();
      return true;
    }
  }
  const { factory, first } = firstOf(() => new Replier());
  const { server, port, errors } = await tlsServer(factory);
  await using _server = disposing(server);

  const [transport, client] = await connectTls(() => new Collector(), port);
  assert.equal(transport.canWriteEof(), true);
  transport.write(encoder.encode("ping"));
  transport.writeEof();
  assert.throws(() => transport.write(encoder.encode("late")), TypeError);
  await client.waitFor("connectionLost");

  const serverSide = await first;
  await serverSide.waitFor("connectionLost");
  assert.equal(decoder.decode(client.received()), "got 4 bytes");
  assert.equal(
    client.calls.join(" → "),
    "connectionMade → dataReceived → eofReceived → connectionLost",
  );
  assert.equal(
    serverSide.calls.join(" → "),
    "connectionMade → dataReceived → eofReceived → connectionLost",
  );
  assert.equal(client.lostWith, undefined);
  assert.equal(serverSide.lostWith, undefined);
  assert.deepEqual(errors.list, []);
});

Deno.test("StreamTransport.close() over TLS flushes every buffered byte first", async () => {
  const { factory, first } = firstOf(() => new Collector());
  const { server, port, errors } = await tlsServer(factory);
  await using _server = disposing(server);
  const payload = pattern(4 * MiB, 7);

  const [transport, client] = await connectTls(() => new Collector(), port);
  transport.write(payload.subarray(0, MiB));
  transport.write(payload.subarray(MiB));
  transport.close();
  assert.ok(transport.getWriteBufferSize() > 0);
  await client.waitFor("connectionLost");

  const serverSide = await first;
  await serverSide.waitFor("connectionLost");
  assertBytes(serverSide.received(), payload);
  assert.equal(serverSide.count("eofReceived"), 1);
  assert.equal(serverSide.lostWith, undefined);
  assert.equal(client.lostWith, undefined);
  assert.deepEqual(errors.list, []);
});

Deno.test("StreamTransport over TLS drives a BufferedProtocol with odd buffers", async () => {
  const { factory, first } = firstOf(() => new OddBuffers(true));
  const { server, port, errors } = await tlsServer(factory);
  await using _server = disposing(server);
  const payload = pattern(2 * MiB, 3);

  const [transport, client] = await connectTls(
    () => new OddBuffers(false),
    port,
  );
  transport.write(payload);
  await client.untilSize(payload.byteLength);
  transport.close();
  await client.waitFor("connectionLost");
  await (await first).waitFor("connectionLost");

  assertBytes(client.received(), payload);
  assertBytes((await first).received(), payload);
  assert.ok(client.count("bufferUpdated") > 10);
  assert.deepEqual(errors.list, []);
});

Deno.test("StreamTransport over TLS pauses and resumes writing as over TCP", async () => {
  class Paused extends Collector {
    override connectionMade(transport: Transport): void {
      super.connectionMade(transport);
      transport.pauseReading();
    }
  }
  class Writer extends Collector {
    sizeAtResume = -1;
    override resumeWriting(): void {
      super.resumeWriting();
      this.sizeAtResume = this.transport!.getWriteBufferSize();
    }
  }
  const { factory, first } = firstOf(() => new Paused());
  const { server, port, errors } = await tlsServer(factory);
  await using _server = disposing(server);
  const payload = pattern(8 * MiB, 5);

  const [transport, client] = await connectTls(() => new Writer(), port);
  assert.equal(transport.write(payload), false);
  assert.deepEqual(client.calls, ["connectionMade", "pauseWriting"]);

  const serverSide = await first;
  serverSide.transport?.resumeReading();
  await client.waitFor("resumeWriting");
  assert.ok(client.sizeAtResume <= transport.getWriteBufferLimits().low);
  await serverSide.untilSize(payload.byteLength);
  transport.close();
  await serverSide.waitFor("connectionLost");

  assert.equal(client.count("pauseWriting"), 1);
  assert.equal(client.count("resumeWriting"), 1);
  assertBytes(serverSide.received(), payload);
  assert.deepEqual(errors.list, []);
});

Deno.test("StreamTransport over TLS reports a TCP close without close_notify as an error, not EOF", async () => {
  const { factory, first } = firstOf(() => new Collector());
  const { server, port, errors } = await tlsServer(factory);
  await using _server = disposing(server);

  // A relay between a TLS client and the server, to cut the TCP
  // connection under the TLS session.
  using relay = Deno.listen({ hostname: HOST, port: 0 });
  const connecting = Deno.connectTls({
    hostname: HOST,
    port: relay.addr.port,
    caCerts: [CA],
  });
  const down = await relay.accept();
  const up = await Deno.connect({ hostname: HOST, port });
  const pumps = [pump(down, up), pump(up, down)];
  const client = await connecting;
  await client.write(encoder.encode("partial"));
  const serverSide = await first;
  await serverSide.untilSize(7);

  up.close();
  down.close();
  await Promise.all(pumps);
  client.close();
  await serverSide.waitFor("connectionLost");
  assert.match(String(serverSide.lostWith), /close_notify/);
  assert.equal(serverSide.count("eofReceived"), 0);
  assert.deepEqual(errors.list, []);
});

/** Copies `from` to `to` until either fails or `from` ends. */
async function pump(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const buffer = new Uint8Array(64 * 1024);
  try {
    while (true) {
      const n = await from.read(buffer);
      if (n === null) return;
      let offset = 0;
      while (offset < n) offset += await to.write(buffer.subarray(offset, n));
    }
  } catch {
    // The test closed one side.
  }
}

// STARTTLS. Deno has no server-side startTls, so the server is built with
// node:net and node:tls: it greets, reads plain text up to "STARTTLS\r\n",
// optionally says go ahead, then wraps the same socket in a TLSSocket,
// greets again over TLS and echoes everything until the client ends.

const GREETING = "220 ready\r\n";
const GO_AHEAD = "220 go ahead\r\n";
const TLS_GREETING = "250 welcome over TLS\r\n";
const STARTTLS = "STARTTLS\r\n";

interface StartTlsServer extends AsyncDisposable {
  port: number;
  /** The plain text the server read before upgrading. */
  plain: Promise<string>;
  /** What the server read over TLS, once the client ended the stream. */
  secure: Promise<Uint8Array>;
}

async function listenStartTls(goAhead: boolean): Promise<StartTlsServer> {
  const plain = Promise.withResolvers<string>();
  const secure = Promise.withResolvers<Uint8Array>();
  secure.promise.catch(() => {});
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    socket.write(GREETING);
    let got = Buffer.alloc(0);
    const upgrade = (rest: Buffer) => {
      if (rest.length > 0) socket.unshift(rest);
      const secured = new tls.TLSSocket(socket, {
        isServer: true,
        cert: CERT,
        key: KEY,
      });
      sockets.add(secured);
      const chunks: Uint8Array[] = [];
      secured.on("secure", () => secured.write(TLS_GREETING));
      secured.on("data", (chunk: Buffer) => {
        chunks.push(new Uint8Array(chunk));
        secured.write(chunk);
      });
      secured.on("end", () => {
        secure.resolve(concat(chunks));
        secured.end();
      });
      secured.on("error", (error) => secure.reject(error));
    };
    const onData = (chunk: Buffer) => {
      got = Buffer.concat([got, chunk]);
      const at = got.indexOf(STARTTLS);
      if (at < 0) return;
      const end = at + STARTTLS.length;
      socket.off("data", onData);
      socket.pause();
      plain.resolve(got.subarray(0, end).toString("latin1"));
      const rest = got.subarray(end);
      if (goAhead) socket.write(GO_AHEAD, () => upgrade(rest));
      else upgrade(rest);
    };
    socket.on("data", onData);
  });
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    plain: plain.promise,
    secure: secure.promise,
    [Symbol.asyncDispose]: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * The client side of the conversation: on the greeting it sends
 * `preamble` and STARTTLS, then upgrades on the go-ahead (or at once,
 * without one). Data after the upgrade is kept in `chunks`.
 */
class StartTlsClient extends Collector {
  plainText = "";
  state: "plain" | "asked" | "upgrading" | "tls" = "plain";
  upgraded: Promise<Transport>;
  #upgrade = Promise.withResolvers<Transport>();

  constructor(
    readonly options: {
      goAhead: boolean;
      preamble?: string;
      tls?: StartTlsOptions;
      /** Pause reading and set limits, then upgrade in a later microtask. */
      pauseFirst?: boolean;
    },
  ) {
    super();
    this.upgraded = this.#upgrade.promise;
    this.upgraded.catch(() => {});
  }

  override dataReceived(data: Uint8Array): void {
    if (this.state === "tls") return super.dataReceived(data);
    assert.notEqual(this.state, "upgrading", "no data while upgrading");
    this.plainText += decoder.decode(data);
    const transport = this.transport!;
    if (this.state === "plain" && this.plainText.endsWith(GREETING)) {
      transport.write(encoder.encode(this.options.preamble ?? ""));
      transport.write(encoder.encode(STARTTLS));
      this.state = "asked";
      if (!this.options.goAhead) this.#start(transport);
    } else if (this.state === "asked" && this.plainText.endsWith(GO_AHEAD)) {
      this.#start(transport);
    }
  }

  #start(transport: Transport): void {
    this.state = "upgrading";
    const begin = () =>
      startTls(transport, this, {
        caCerts: [CA],
        ...this.options.tls,
      }).then((upgraded) => {
        this.state = "tls";
        this.transport = upgraded;
        this.#upgrade.resolve(upgraded);
      }, this.#upgrade.reject);
    if (!this.options.pauseFirst) {
      begin();
      return;
    }
    transport.setWriteBufferLimits({ high: 4096 });
    transport.pauseReading();
    queueMicrotask(begin);
  }
}

Deno.test("startTls() upgrades a live connection mid-conversation", async (t) => {
  await t.step("after the server's go-ahead, losing no byte", async () => {
    await using peer = await listenStartTls(true);
    const [plainTransport, client] = await createConnection(
      () => new StartTlsClient({ goAhead: true, preamble: "EHLO test\r\n" }),
      { hostname: HOST, port: peer.port },
    );
    const transport = await client.upgraded;
    assert.notEqual(transport, plainTransport);
    assert.ok(plainTransport.isClosing());
    assert.equal(transport.getExtraInfo("alpnProtocol"), null);
    assert.ok(isTlsConn(transport.getExtraInfo("conn")), "a Deno.TlsConn");

    const payload = pattern(MiB, 11);
    transport.write(payload);
    transport.writeEof();
    await client.waitFor("connectionLost");

    assert.equal(await peer.plain, `EHLO test\r\n${STARTTLS}`);
    assert.equal(client.plainText, GREETING + GO_AHEAD);
    assertBytes(await peer.secure, payload);
    assertBytes(
      client.received(),
      concat([encoder.encode(TLS_GREETING), payload]),
    );
    assert.equal(client.count("connectionMade"), 1);
    assert.equal(client.lostWith, undefined);
  });

  await t.step(
    "flushing plain text still buffered when it is called",
    async () => {
      await using peer = await listenStartTls(false);
      const preamble = `NOOP ${"x".repeat(256 * 1024)}\r\n`;
      const [plainTransport, client] = await createConnection(
        () => new StartTlsClient({ goAhead: false, preamble }),
        { hostname: HOST, port: peer.port },
      );
      const transport = await client.upgraded;
      assert.equal(plainTransport.getWriteBufferSize(), 0);
      transport.write(encoder.encode("after"));
      transport.writeEof();
      await client.waitFor("connectionLost");

      assert.equal(await peer.plain, preamble + STARTTLS);
      assert.equal(decoder.decode(await peer.secure), "after");
      assert.equal(decoder.decode(client.received()), TLS_GREETING + "after");
    },
  );

  await t.step(
    "reading even after a pause for the go-ahead, as asyncio, with the write buffer limits carried over",
    async () => {
      await using peer = await listenStartTls(true);
      const [, client] = await createConnection(
        () => new StartTlsClient({ goAhead: true, pauseFirst: true }),
        { hostname: HOST, port: peer.port },
      );
      const transport = await client.upgraded;
      assert.equal(transport.isReading(), true);
      assert.deepEqual(transport.getWriteBufferLimits(), {
        high: 4096,
        low: 1024,
      });
      await client.untilSize(TLS_GREETING.length);
      transport.write(encoder.encode("x"));
      transport.writeEof();
      await client.waitFor("connectionLost");
      assert.equal(decoder.decode(client.received()), TLS_GREETING + "x");
      assert.equal(client.count("connectionMade"), 1);
    },
  );
});

Deno.test("startTls() rejects and loses the connection when the handshake fails", async () => {
  await using peer = await listenStartTls(true);
  const [plainTransport, client] = await createConnection(
    () => new StartTlsClient({ goAhead: true, tls: { caCerts: [OTHER_CA] } }),
    { hostname: HOST, port: peer.port },
  );
  const error = await client.upgraded.then(
    () => assert.fail("the upgrade should fail"),
    (error: Error) => error,
  );
  assert.match(error.message, /UnknownIssuer/);
  await client.waitFor("connectionLost");
  assert.equal(client.lostWith, error);
  assert.ok(plainTransport.isClosing());
  assert.deepEqual(client.calls, ["connectionMade", "connectionLost"]);
  await assert.rejects(peer.secure);
});

Deno.test("startTls() rejects with TypeError and leaves the transport as it was", async (t) => {
  await t.step("when a read is in flight", async () => {
    await using peer = await listenStartTls(true);
    const [transport, client] = await createConnection(
      () => new Collector(),
      { hostname: HOST, port: peer.port },
    );
    await client.untilSize(GREETING.length);
    await assert.rejects(
      startTls(transport, client, { caCerts: [CA] }),
      (error) =>
        error instanceof TypeError && /read is in flight/.test(error.message),
    );
    assert.equal(transport.isClosing(), false);
    transport.write(encoder.encode("EHLO\r\n"));
    transport.close();
    await client.waitFor("connectionLost");
    assert.equal(client.lostWith, undefined);
  });

  await t.step("when the connection already uses TLS", async () => {
    const { server, port } = await tlsServer(() => new Echo());
    await using _server = disposing(server);
    const [transport, client] = await connectTls(() => new Collector(), port);
    await assert.rejects(startTls(transport, client), TypeError);
    assert.equal(transport.isClosing(), false);
    transport.close();
    await client.waitFor("connectionLost");
  });
});

/** Pauses in `dataReceived`, where `startTls` may be called: no read in flight. */
class PausesOnData extends Collector {
  override dataReceived(data: Uint8Array): void {
    super.dataReceived(data);
    this.transport!.pauseReading();
  }
}

Deno.test("startTls() checks the protocol and the TLS options before it touches the connection, which stays usable", async (t) => {
  const cases: [string, unknown, unknown, RegExp][] = [
    ["a protocol with no dataReceived()", {}, {}, /dataReceived/],
    ["a protocol that is not an object", 5, {}, /protocol/],
    ["caCerts as one string", undefined, { caCerts: CA }, /caCerts/],
    ["alpnProtocols as one string", undefined, {
      alpnProtocols: "h2",
    }, /alpnProtocols/],
    ["serverName as a number", undefined, { serverName: 5 }, /serverName/],
    ["options that are not an object", undefined, "localhost", /options/],
  ];
  for (const [name, badProtocol, badOptions, names] of cases) {
    await t.step(name, async () => {
      using listener = Deno.listen({ hostname: HOST, port: 0 });
      const [transport, client] = await createConnection(
        () => new PausesOnData(),
        { hostname: HOST, port: listener.addr.port },
      );
      using server = await listener.accept();
      await writeAll(server, encoder.encode("go"));
      await within(client.untilSize(2), "the go-ahead");

      const options = typeof badOptions === "object"
        ? { caCerts: [CA], handshakeTimeout: 1_000, ...badOptions }
        : badOptions;
      await assert.rejects(
        startTls(
          transport,
          (badProtocol ?? client) as StreamProtocol,
          options as StartTlsOptions,
        ),
        (error: unknown) =>
          error instanceof TypeError && names.test(error.message),
      );

      // The plain-text connection goes on as if nothing had happened.
      assert.equal(transport.isClosing(), false);
      transport.resumeReading();
      transport.write(encoder.encode("still plain"));
      assert.equal(
        decoder.decode(await within(readExactly(server, 11), "the write")),
        "still plain",
      );
      await writeAll(server, encoder.encode("!"));
      await within(client.untilSize(3), "the reply");
      transport.close();
      await within(client.waitFor("connectionLost"), "connectionLost");
      assert.equal(client.lostWith, undefined);
      assert.equal(decoder.decode(client.received()), "go!");
    });
  }
});

/** Upgrades the accepted socket to TLS as a client, from `connectionMade`. */
class UpgradesOnConnect extends RecordingProtocol {
  /** The `startTls()` call: its result, or what it rejected with. */
  upgrade: Promise<unknown> | undefined;

  override connectionMade(transport: Transport): void {
    super.connectionMade(transport);
    this.upgrade = startTls(transport, this, { caCerts: [CA] }).catch((e) => e);
  }
}

Deno.test("A server's abortClients() and shutdown() end a connection whose startTls() is still in its handshake", async (t) => {
  for (const stop of ["abortClients", "shutdown"] as const) {
    await t.step(stop, async () => {
      const protocol = new UpgradesOnConnect();
      const server = await createServer(() => protocol, {
        hostname: HOST,
        port: 0,
      });
      // The peer never answers the ClientHello.
      const peer = await Deno.connect({
        hostname: HOST,
        port: server.addrs[0]!.port,
      });
      try {
        await within(peer.read(new Uint8Array(4096)), "the ClientHello");
        if (stop === "abortClients") {
          server.abortClients();
          server.close();
          await within(server.waitClosed(), "waitClosed()");
        } else {
          await within(server.shutdown({ gracePeriod: 10 }), "shutdown()");
        }
        const error = await protocol.upgrade;
        assert.ok(
          error instanceof Deno.errors.ConnectionAborted,
          String(error),
        );
        await within(protocol.waitFor("connectionLost"), "connectionLost");
        assert.equal(protocol.lostWith, error);
      } finally {
        peer.close();
      }
    });
  }
});

Deno.test("createReconnectingConnection(): after startTls(), current and connected() give the TLS transport", async () => {
  await using peer = await listenStartTls(true);
  const client = createReconnectingConnection(
    () => new StartTlsClient({ goAhead: true }),
    { hostname: HOST, port: peer.port },
    { initialDelay: 10 },
  );
  try {
    const [, protocol] = await within(client.connected(), "the connection");
    const upgraded = await within(protocol.upgraded, "the upgrade");
    assert.equal(client.current?.[0], upgraded);
    assert.equal((await client.connected())[0], upgraded);
  } finally {
    client.close();
    await within(client.closed, "the client to stop");
  }
});

Deno.test("close() while startTls() flushes the old write buffer: the buffer goes out, then the connection ends without a handshake", async () => {
  const size = 8 * 1024 * 1024;
  class FlushesThenUpgrades extends RecordingProtocol {
    upgrade: Promise<unknown> | undefined;
    override connectionMade(transport: Transport): void {
      super.connectionMade(transport);
      transport.write(new Uint8Array(size));
      this.upgrade = startTls(transport, this, { caCerts: [CA] }).catch((e) =>
        e
      );
    }
  }
  const protocol = new FlushesThenUpgrades();
  await using server = await createServer(() => protocol, {
    hostname: HOST,
    port: 0,
  });
  const peer = await Deno.connect({
    hostname: HOST,
    port: server.addrs[0]!.port,
  });
  try {
    await within(protocol.waitFor("connectionMade"), "connectionMade");
    protocol.transport!.close();
    // Every byte written before, then EOF: no ClientHello.
    const received = await within(readUntilClosed(peer), "the peer's EOF");
    assert.equal(received.byteLength, size);
    const error = await protocol.upgrade;
    assert.ok(error instanceof Deno.errors.ConnectionAborted, String(error));
    await within(protocol.waitFor("connectionLost"), "connectionLost");
  } finally {
    peer.close();
  }
});
