/**
 * Faults between a client and a server: a proxy that delays, fragments,
 * stalls, resets or half-closes each connection, over every protocol kind
 * that runs over a byte stream, over TCP and TLS. Whatever the fault, each
 * end gets `connectionMade` first and exactly one `connectionLost`, last;
 * what arrives is what was sent, or a prefix of it when the fault cuts the
 * stream; and nothing leaks (sanitizers on).
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  createConnection,
  createDatagramEndpoint,
  createServer,
  DatagramProtocolBase,
  type DatagramTransport,
  type ErrorContext,
  openConnection,
  ProtocolBase,
  startServer,
  type StreamReader,
  type StreamWriter,
  subprocessExec,
  SubprocessProtocolBase,
  type SubprocessTransport,
} from "../../mod.ts";
import {
  assertBytes,
  bytes,
  concat,
  errorCollector,
  pattern,
  text,
  within,
} from "../_test_utils.ts";
import {
  assertLifecycle,
  connectWitness,
  startEchoServer,
  STREAM_KINDS,
  type StreamKind,
  tlsOptions,
  type Witness,
} from "./_echo_peers.ts";
import {
  type Direction,
  type Fault,
  type FaultProxy,
  type ProxiedConnection,
  startFaultProxy,
} from "./_fault_proxy.ts";

const KiB = 1024;
/** What the client sends through the proxy in each case. */
const SIZE = 256 * KiB;
/** One write per byte costs a system call each way: less is sent. */
const FRAGMENTED_SIZE = 16 * KiB;
/** Where a fault strikes, in bytes forwarded its way. */
const STRIKE_AT = 64 * KiB;
const TLS = await tlsOptions();
const DIRECTIONS: readonly Direction[] = ["toServer", "toClient"];
const TRANSPORTS = ["TCP", "TLS"] as const;
type Over = typeof TRANSPORTS[number];

/** One connection through the proxy, as each of its ends saw it. */
interface Exchange {
  payload: Uint8Array;
  client: Witness;
  server: Witness;
  proxy: FaultProxy;
  link: ProxiedConnection;
  /** What went to `onError`, on either end. */
  errors: { error: unknown; context: ErrorContext }[];
}

/**
 * Runs an echo server of `kind` behind a proxy with `fault`; a client of
 * `kind` sends `size` bytes and half-closes. `meanwhile` runs once both
 * ends are made; then the exchange waits for both ends to be lost and for
 * the proxy's connection to end. Whatever happens, everything is closed
 * before it returns or throws.
 */
async function exchange(
  kind: StreamKind,
  over: Over,
  fault: Fault,
  size: number,
  meanwhile?: (exchange: Exchange) => Promise<void>,
): Promise<Exchange> {
  const { errors, onError } = errorCollector();
  const tls = over === "TLS";
  const echo = await startEchoServer(kind, {
    tls: tls ? TLS.server : undefined,
    onError,
  });
  let client: Witness | undefined;
  try {
    await using proxy = await startFaultProxy({ port: echo.port, fault });
    client = await within(
      connectWitness(kind, proxy.port, {
        tls: tls ? TLS.client : undefined,
        onError,
      }),
      "the client's connect",
    );
    const payload = pattern(size, size % 251);
    client.transport!.write(payload);
    client.transport!.writeEof();
    const [link, server] = await within(
      Promise.all([proxy.connection(0), echo.end(0)]),
      "the server's protocol",
    );
    const result = { payload, client, server, proxy, link, errors };
    await meanwhile?.(result);
    await within(
      Promise.all([client.ended, server.ended]),
      "connectionLost on both ends",
    );
    await within(proxy.settled(), "the proxy's connection to end");
    return result;
  } finally {
    client?.transport?.abort();
    echo.server.close();
    echo.server.abortClients();
    await within(echo.server.waitClosed(), "the server to close");
  }
}

/** Asserts that `actual` is `expected` or the start of it. */
function assertPrefix(
  actual: Uint8Array,
  expected: Uint8Array,
  what: string,
): void {
  assert.ok(
    actual.byteLength <= expected.byteLength,
    `${what}: ${actual.byteLength} bytes, more than the ${expected.byteLength} sent`,
  );
  assertBytes(actual, expected.subarray(0, actual.byteLength), what);
}

/**
 * The errors a connection cut by the network may end with (TLS: also a
 * cut record, and a handshake that times out).
 */
const NETWORK_ERRORS = [
  Deno.errors.ConnectionReset,
  Deno.errors.BrokenPipe,
  Deno.errors.UnexpectedEof,
  Deno.errors.ConnectionAborted,
  Deno.errors.TimedOut,
];

/** Asserts that `exc` is an error the network could have caused. */
function assertNetworkError(exc: unknown, what: string): void {
  assert.ok(
    NETWORK_ERRORS.some((type) => exc instanceof type),
    `${what}: lost with ${exc}, not a network error`,
  );
}

/** Runs `body` once for each stream kind over TCP and over TLS. */
async function eachKindAndTransport(
  t: Deno.TestContext,
  prefix: string,
  body: (kind: StreamKind, over: Over) => Promise<void>,
): Promise<void> {
  for (const kind of STREAM_KINDS) {
    for (const over of TRANSPORTS) {
      await t.step(`${prefix}${kind} over ${over}`, () => body(kind, over));
    }
  }
}

/** Asserts a whole, clean echo: every byte both ways, EOF both ways. */
function assertWholeEcho(result: Exchange): void {
  const { client, server, payload, errors } = result;
  for (const [end, what] of [[client, "client"], [server, "server"]] as const) {
    assertLifecycle(end, what);
    assert.equal(
      end.calls.join(" → "),
      "connectionMade → dataReceived → eofReceived → connectionLost",
      what,
    );
    assert.equal(end.lostWith, undefined, `${what}: lost with`);
    assertBytes(end.received(), payload, `${what}: received`);
  }
  assert.deepEqual(errors, []);
}

Deno.test("createServer() and createConnection() echo every byte in order through a proxy that forwards, delays or fragments", async (t) => {
  const faults: [string, Fault, number][] = [
    ["forwards: ", { kind: "forward" }, SIZE],
    ["delays each chunk 5 ms: ", { kind: "delay", ms: 5 }, SIZE],
    ["writes 1 byte at a time: ", { kind: "fragment" }, FRAGMENTED_SIZE],
  ];
  for (const [what, fault, size] of faults) {
    await eachKindAndTransport(t, what, async (kind, over) => {
      assertWholeEcho(await exchange(kind, over, fault, size));
    });
  }
});

Deno.test("createServer() and createConnection() echo every byte in order through a proxy that stalls one direction for a while", async (t) => {
  for (const direction of DIRECTIONS) {
    const fault: Fault = {
      kind: "stall",
      direction,
      afterBytes: STRIKE_AT,
      ms: 100,
    };
    await eachKindAndTransport(t, `${direction}: `, async (kind, over) => {
      const result = await exchange(kind, over, fault, SIZE);
      assertWholeEcho(result);
      await within(result.link.struck, "the stall");
    });
  }
});

Deno.test("createServer() and createConnection() keep a stalled connection until the proxy resets it, then lose it once with an error", async (t) => {
  for (const direction of DIRECTIONS) {
    const fault: Fault = { kind: "stall", direction, afterBytes: STRIKE_AT };
    await eachKindAndTransport(t, `${direction}: `, async (kind, over) => {
      const result = await exchange(
        kind,
        over,
        fault,
        SIZE,
        async ({ client, server, proxy, link }) => {
          await within(link.struck, "the stall");
          if (over === "TCP") {
            // Both ways, the echo of exactly the bytes before the stall.
            await within(client.untilSize(STRIKE_AT), "the bytes before it");
          }
          // The client waits for the rest of the echo. The server waits
          // for the rest of the bytes, or (stalled towards the client) may
          // have got them all and flushed its echo into socket buffers.
          assert.ok(!client.calls.includes("connectionLost"), "client lost");
          if (direction === "toServer") {
            assert.ok(!server.calls.includes("connectionLost"), "server lost");
          }
          await proxy.close();
        },
      );
      const { client, server, payload, link, errors } = result;
      assertLifecycle(client, "client");
      assertLifecycle(server, "server");
      assertNetworkError(client.lostWith, "client");
      if (direction === "toServer" || server.lostWith !== undefined) {
        assertNetworkError(server.lostWith, "server");
      }
      assertPrefix(client.received(), payload, "client: received");
      assertPrefix(server.received(), payload, "server: received");
      assert.ok(client.size <= server.size, "client: more than echoed");
      assert.equal(link.forwarded[direction], STRIKE_AT, "forwarded");
      if (over === "TCP") assert.equal(client.size, STRIKE_AT);
      assert.deepEqual(errors, []);
    });
  }
});

Deno.test("createServer() and createConnection() lose a connection reset mid-stream once on each end, with what arrived a prefix", async (t) => {
  for (const direction of DIRECTIONS) {
    const fault: Fault = { kind: "reset", direction, afterBytes: STRIKE_AT };
    await eachKindAndTransport(t, `${direction}: `, async (kind, over) => {
      const result = await exchange(kind, over, fault, SIZE);
      const { client, server, payload, link, errors } = result;
      assertLifecycle(client, "client");
      assertLifecycle(server, "server");
      // The client waits for an echo that never ends; the server, when
      // the reset cuts what it receives, for the rest of it.
      assertNetworkError(client.lostWith, "client");
      if (direction === "toServer") {
        assertNetworkError(server.lostWith, "server");
      } else if (server.lostWith !== undefined) {
        assertNetworkError(server.lostWith, "server");
      }
      assertPrefix(client.received(), payload, "client: received");
      assertPrefix(server.received(), payload, "server: received");
      assert.equal(link.forwarded[direction], STRIKE_AT, "forwarded");
      const receiver = direction === "toServer" ? server : client;
      assert.ok(receiver.size <= STRIKE_AT, "bytes past the reset");
      assert.deepEqual(errors, []);
    });
  }
});

Deno.test("createServer() and createConnection() see EOF where the proxy half-closes one direction, and a prefix of the stream", async (t) => {
  for (const direction of DIRECTIONS) {
    const fault: Fault = {
      kind: "closeWrite",
      direction,
      afterBytes: STRIKE_AT,
    };
    await eachKindAndTransport(t, `${direction}: `, async (kind, over) => {
      const result = await exchange(kind, over, fault, SIZE);
      const { client, server, payload, errors } = result;
      assertLifecycle(client, "client");
      assertLifecycle(server, "server");
      const receiver = direction === "toServer" ? server : client;
      const other = direction === "toServer" ? client : server;
      if (over === "TCP") {
        // A plain EOF: clean on both ends, at exactly the cut.
        for (const end of [client, server]) {
          assert.equal(
            end.calls.join(" → "),
            "connectionMade → dataReceived → eofReceived → connectionLost",
          );
          assert.equal(end.lostWith, undefined);
        }
        assert.equal(client.size, STRIKE_AT, "client: received");
        assert.equal(
          server.size,
          direction === "toServer" ? STRIKE_AT : SIZE,
          "server: received",
        );
      } else {
        // TCP's FIN in the middle of the TLS stream, with no close_notify.
        assertNetworkError(receiver.lostWith, "receiver");
        if (other.lostWith !== undefined) {
          assertNetworkError(other.lostWith, "other end");
        }
        assert.ok(receiver.size <= STRIKE_AT, "bytes past the cut");
      }
      assertPrefix(client.received(), payload, "client: received");
      assertPrefix(server.received(), payload, "server: received");
      assert.deepEqual(errors, []);
    });
  }
});

Deno.test("createConnection() rejects, and createServer() reports once and makes no protocol, when the TLS handshake is reset, cut or stalled", async (t) => {
  const faults: Fault[] = [
    { kind: "reset", direction: "toServer", afterBytes: 100 },
    { kind: "reset", direction: "toClient", afterBytes: 100 },
    { kind: "closeWrite", direction: "toServer", afterBytes: 100 },
    { kind: "closeWrite", direction: "toClient", afterBytes: 100 },
    { kind: "stall", direction: "toServer", afterBytes: 100 },
    { kind: "stall", direction: "toClient", afterBytes: 0 },
  ];
  for (const fault of faults) {
    const what = "direction" in fault ? `${fault.kind} ${fault.direction}` : "";
    await t.step(what, async () => {
      const { errors, onError } = errorCollector();
      let made = 0;
      const server = await createServer(() => {
        made++;
        return new ProtocolBase();
      }, {
        hostname: "127.0.0.1",
        port: 0,
        tls: TLS.server,
        handshakeTimeout: 300,
        onError,
      });
      try {
        await using proxy = await startFaultProxy({
          port: server.addrs[0]!.port,
          fault,
        });
        let clientMade = 0;
        const connect = createConnection(() => {
          clientMade++;
          return new ProtocolBase();
        }, {
          hostname: "127.0.0.1",
          port: proxy.port,
          tls: TLS.client,
          handshakeTimeout: 300,
        });
        const failure = await within(
          connect.then(() => undefined, (error) => error),
          "createConnection to settle",
        );
        assertNetworkError(failure, "createConnection");
        // The server waits for handshakes in progress.
        server.close();
        await within(server.waitClosed(), "the server's handshake to end");
        assert.equal(
          errors.length,
          1,
          `errors: ${errors.map(({ error }) => String(error))}`,
        );
        assertNetworkError(errors[0]!.error, "the server's handshake");
        assert.equal(made, 0, "protocols made by the server");
        assert.equal(clientMade, 0, "protocols made by the client");
      } finally {
        server.close();
        await within(server.waitClosed(), "the server to close");
      }
    });
  }
});

Deno.test("startFaultProxy() closes connections past maxConnections and resets one that outlives maxLifetimeMs", async () => {
  const { errors, onError } = errorCollector();
  const echo = await startEchoServer("Protocol", { onError });
  try {
    await using proxy = await startFaultProxy({
      port: echo.port,
      fault: { kind: "forward" },
      maxConnections: 1,
      maxLifetimeMs: 50,
    });
    const kept = await connectWitness("Protocol", proxy.port, { onError });
    const refused = await connectWitness("Protocol", proxy.port, { onError });
    await within(
      Promise.all([kept.ended, refused.ended]),
      "both connections to end",
    );
    await within(proxy.settled(), "the proxy's connection to end");
    assert.equal(proxy.refused, 1);
    assert.equal(proxy.connections.length, 1);
    assert.equal(proxy.connections[0]!.expired, true);
    assertLifecycle(kept, "kept");
    assertLifecycle(refused, "refused");
    assertNetworkError(kept.lostWith, "kept");
    assert.deepEqual(errors, []);
  } finally {
    echo.server.close();
    await within(echo.server.waitClosed(), "the server to close");
  }
});

/** What a stream client and the stream server saw of one connection. */
interface StreamExchange {
  payload: Uint8Array;
  /** What the client read before EOF or an error. */
  echoed: Uint8Array;
  /** What the client's reads failed with, if they did. */
  readError: unknown;
  /** What the client's `waitClosed()` rejected with, if it did. */
  closeError: unknown;
  /** How each `clientConnected` call ended: `undefined`, or its error. */
  handlers: unknown[];
  /** What went to `onError`, on either end. */
  errors: { error: unknown; context: ErrorContext }[];
}

/** Reads chunks until EOF or an error; returns them and the error. */
async function readToEnd(
  reader: StreamReader,
): Promise<[Uint8Array, unknown]> {
  const chunks: Uint8Array[] = [];
  try {
    // Bounded: the peer sends at most SIZE bytes.
    for (let i = 0; i <= SIZE; i++) {
      const chunk = await reader.read(64 * KiB);
      if (chunk.byteLength === 0) break;
      chunks.push(chunk);
    }
  } catch (error) {
    return [concat(chunks), error];
  }
  return [concat(chunks), undefined];
}

/** How a stream server echoes. */
const STREAM_ECHOES = {
  "read, write, drain": async (reader: StreamReader, writer: StreamWriter) => {
    for (let i = 0; i <= SIZE; i++) {
      const chunk = await reader.read(64 * KiB);
      if (chunk.byteLength === 0) break;
      writer.write(chunk);
      await writer.drain();
    }
  },
  "readable.pipeTo(writable)": async (
    reader: StreamReader,
    writer: StreamWriter,
  ) => {
    await reader.readable.pipeTo(writer.writable);
  },
} as const;
type StreamEcho = keyof typeof STREAM_ECHOES;
/** Each stream echo over each transport. */
const STREAM_VARIANTS = (Object.keys(STREAM_ECHOES) as StreamEcho[]).flatMap(
  (echo) => TRANSPORTS.map((over) => ({ echo, over })),
);

/**
 * Runs a stream echo server (`echo` until EOF, then `close`) behind a
 * proxy with `fault`; a stream client sends `size` bytes, half-closes and
 * reads to the end.
 */
async function streamExchange(
  echo: StreamEcho,
  over: Over,
  fault: Fault,
  size: number,
): Promise<StreamExchange> {
  const { errors, onError } = errorCollector();
  const tls = over === "TLS";
  const handlers: unknown[] = [];
  const server = await startServer(async (reader, writer) => {
    try {
      await STREAM_ECHOES[echo](reader, writer);
      writer.close();
      await writer.waitClosed();
      handlers.push(undefined);
    } catch (error) {
      handlers.push(error);
      throw error;
    }
  }, {
    hostname: "127.0.0.1",
    port: 0,
    onError,
    ...(tls ? { tls: TLS.server } : {}),
  });
  try {
    await using proxy = await startFaultProxy({
      port: server.addrs[0]!.port,
      fault,
    });
    const [reader, writer] = await within(
      openConnection({
        hostname: "127.0.0.1",
        port: proxy.port,
        onError,
        ...(tls ? { tls: TLS.client } : {}),
      }),
      "the client's connect",
    );
    const payload = pattern(size, size % 251);
    writer.write(payload);
    writer.writeEof();
    const [echoed, readError] = await within(readToEnd(reader), "the echo");
    writer.close();
    const closeError = await within(
      writer.waitClosed().then(() => undefined, (error) => error),
      "the client's waitClosed()",
    );
    await within(proxy.settled(), "the proxy's connection to end");
    return { payload, echoed, readError, closeError, handlers, errors };
  } finally {
    server.close();
    server.abortClients();
    await within(server.waitClosed(), "the server to close");
  }
}

Deno.test("startServer() and openConnection() streams, Web Streams included, through a faulty proxy: a whole echo, or a prefix and an error", async (t) => {
  const intact: [string, Fault, number][] = [
    ["forwards", { kind: "forward" }, SIZE],
    ["delays each chunk 5 ms", { kind: "delay", ms: 5 }, SIZE],
    ["writes 1 byte at a time", { kind: "fragment" }, FRAGMENTED_SIZE],
    ["stalls towards the server for 100 ms", {
      kind: "stall",
      direction: "toServer",
      afterBytes: STRIKE_AT,
      ms: 100,
    }, SIZE],
  ];
  for (const [what, fault, size] of intact) {
    for (const { echo, over } of STREAM_VARIANTS) {
      await t.step(`${what}, ${echo}, over ${over}: every byte`, async () => {
        const result = await streamExchange(echo, over, fault, size);
        assertBytes(result.echoed, result.payload, "echoed");
        assert.equal(result.readError, undefined);
        assert.equal(result.closeError, undefined);
        assert.deepEqual(result.handlers, [undefined]);
        assert.deepEqual(result.errors, []);
      });
    }
  }
  for (const kind of ["reset", "closeWrite"] as const) {
    for (const direction of DIRECTIONS) {
      for (const { echo, over } of STREAM_VARIANTS) {
        const fault: Fault = { kind, direction, afterBytes: STRIKE_AT };
        await t.step(
          `${kind} ${direction}, ${echo}, over ${over}: a prefix`,
          async () => {
            const result = await streamExchange(echo, over, fault, SIZE);
            assertPrefix(result.echoed, result.payload, "echoed");
            assert.equal(result.handlers.length, 1, "clientConnected calls");
            const failures = [
              result.readError,
              result.closeError,
              ...result.handlers,
              ...result.errors.map(({ error }) => error),
            ].filter((error) => error !== undefined);
            for (const error of failures) assertNetworkError(error, "stream");
            if (kind === "reset") {
              // The client never gets the end of the echo.
              assertNetworkError(result.readError, "client's read");
            } else if (over === "TLS") {
              // TCP's FIN in the middle of the TLS stream, with no
              // close_notify: the receiver's read fails.
              const receiver = direction === "toServer"
                ? result.handlers[0]
                : result.readError;
              assertNetworkError(receiver, "receiver's read");
            } else {
              // A plain half-close: both ends see EOF at exactly the cut.
              assert.deepEqual(failures, []);
              assert.equal(result.echoed.byteLength, STRIKE_AT);
            }
          },
        );
      }
    }
  }
});

/** Records a datagram endpoint's callbacks; counts datagrams. */
class DatagramWitness extends DatagramProtocolBase {
  calls: string[] = [];
  datagrams: string[] = [];
  errorsReceived: Error[] = [];
  #lost = Promise.withResolvers<void>();
  #waiting: { count: number; resolve(): void } | undefined;

  get ended(): Promise<void> {
    return this.#lost.promise;
  }
  untilDatagrams(count: number): Promise<void> {
    if (this.datagrams.length >= count) return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#waiting = { count, resolve };
    return promise;
  }
  override connectionMade(transport: DatagramTransport): void {
    super.connectionMade(transport);
    this.calls.push("connectionMade");
  }
  override datagramReceived(data: Uint8Array): void {
    if (this.calls.at(-1) !== "datagramReceived") {
      this.calls.push("datagramReceived");
    }
    this.datagrams.push(text(data));
    if (this.datagrams.length >= (this.#waiting?.count ?? Infinity)) {
      this.#waiting?.resolve();
    }
  }
  override errorReceived(exc: Error): void {
    this.calls.push("errorReceived");
    this.errorsReceived.push(exc);
  }
  override connectionLost(exc: Error | undefined): void {
    super.connectionLost(exc);
    this.calls.push(`connectionLost(${exc})`);
    this.#lost.resolve();
  }
}

Deno.test("createDatagramEndpoint() goes on when a peer's socket goes away and when it sends to a closed port", async () => {
  const protocol = new DatagramWitness();
  const [transport] = await createDatagramEndpoint(() => protocol, {
    localAddr: { hostname: "127.0.0.1", port: 0 },
  });
  const sockname = transport.getExtraInfo("sockname") as Deno.NetAddr;
  const peer = Deno.listenDatagram({
    transport: "udp",
    hostname: "127.0.0.1",
    port: 0,
  });
  const gone = peer.addr as Deno.NetAddr;
  for (let i = 0; i < 10; i++) await peer.send(bytes(`before ${i}`), sockname);
  peer.close();
  await within(protocol.untilDatagrams(10), "the peer's datagrams");

  // The peer's port is closed now: each datagram sent there makes an ICMP
  // port unreachable, which an unconnected socket does not see.
  for (let i = 0; i < 100; i++) transport.sendto(bytes(`lost ${i}`), gone);
  const other = Deno.listenDatagram({
    transport: "udp",
    hostname: "127.0.0.1",
    port: 0,
  });
  try {
    transport.sendto(bytes("still here"), other.addr as Deno.NetAddr);
    const [reply] = await within(other.receive(), "a datagram to a live peer");
    assert.equal(text(reply), "still here");
    await other.send(bytes("after"), sockname);
    await within(protocol.untilDatagrams(11), "a datagram after");
  } finally {
    other.close();
  }

  assert.equal(transport.isClosing(), false);
  transport.close();
  await within(protocol.ended, "connectionLost");
  assert.deepEqual(
    protocol.datagrams,
    [...Array.from({ length: 10 }, (_, i) => `before ${i}`), "after"],
  );
  // Errors, if any, come between the first callback and the last.
  assert.equal(protocol.calls[0], "connectionMade");
  assert.equal(protocol.calls.at(-1), "connectionLost(undefined)");
  assert.equal(
    protocol.calls.filter((call) => call.startsWith("connectionLost")).length,
    1,
  );
});

/** Records a subprocess protocol's callbacks and what each pipe brought. */
class SubprocessWitness extends SubprocessProtocolBase {
  calls: string[] = [];
  stdout: Uint8Array[] = [];
  stdoutSize = 0;
  pipesLost = new Map<number, Error | undefined>();
  #lost = Promise.withResolvers<void>();
  #want = Infinity;
  #got: (() => void) | undefined;

  get ended(): Promise<void> {
    return this.#lost.promise;
  }
  untilStdout(size: number): Promise<void> {
    if (this.stdoutSize >= size) return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#want = size;
    this.#got = resolve;
    return promise;
  }
  override connectionMade(transport: SubprocessTransport): void {
    super.connectionMade(transport);
    this.calls.push("connectionMade");
  }
  override pipeDataReceived(fd: 1 | 2, data: Uint8Array): void {
    const call = `pipeDataReceived(${fd})`;
    if (this.calls.at(-1) !== call) this.calls.push(call);
    if (fd !== 1) return;
    this.stdout.push(data);
    this.stdoutSize += data.byteLength;
    if (this.stdoutSize >= this.#want) this.#got?.();
  }
  override pipeConnectionLost(fd: 0 | 1 | 2, exc: Error | undefined): void {
    this.calls.push(`pipeConnectionLost(${fd})`);
    this.pipesLost.set(fd, exc);
  }
  override processExited(): void {
    this.calls.push("processExited");
  }
  override connectionLost(exc: Error | undefined): void {
    super.connectionLost(exc);
    this.calls.push(`connectionLost(${exc})`);
    this.#lost.resolve();
  }
}

/** Asserts asyncio's subprocess order for the calls of `protocol`. */
function assertSubprocessLifecycle(protocol: SubprocessWitness): void {
  const { calls } = protocol;
  assert.equal(calls[0], "connectionMade");
  assert.equal(calls.at(-1), "connectionLost(undefined)");
  assert.equal(calls.filter((call) => call === "processExited").length, 1);
  assert.equal(
    calls.filter((call) => call.startsWith("connectionLost")).length,
    1,
  );
  for (const fd of [0, 1, 2]) {
    const lost = calls.indexOf(`pipeConnectionLost(${fd})`);
    assert.ok(lost > 0, `pipeConnectionLost(${fd})`);
    assert.equal(calls.lastIndexOf(`pipeConnectionLost(${fd})`), lost);
    assert.ok(calls.lastIndexOf(`pipeDataReceived(${fd})`) < lost);
  }
}

Deno.test("subprocessExec() ends once, with every pipe closed, when the child is killed mid-output or closes its stdin early", async (t) => {
  await t.step("killed mid-output: a prefix of what it wrote", async () => {
    const [transport, protocol] = await subprocessExec(
      () => new SubprocessWitness(),
      "yes",
      ["fault"],
    );
    await within(protocol.untilStdout(64 * KiB), "64 KiB of output");
    transport.kill();
    await within(protocol.ended, "connectionLost");
    assertSubprocessLifecycle(protocol);
    assert.equal(transport.getReturncode(), -9);
    const output = concat(protocol.stdout);
    const lines = bytes("fault\n".repeat(Math.ceil(output.byteLength / 6)));
    assertPrefix(output, lines, "stdout");
  });

  await t.step("stdin closed after 10 bytes: its first 10 bytes", async () => {
    const [transport, protocol] = await subprocessExec(
      () => new SubprocessWitness(),
      "head",
      ["-c", "10"],
    );
    const input = pattern(1024 * KiB, 9);
    transport.getPipeTransport(0)!.write(input);
    await within(protocol.ended, "connectionLost");
    assertSubprocessLifecycle(protocol);
    assert.equal(transport.getReturncode(), 0);
    assertBytes(concat(protocol.stdout), input.subarray(0, 10), "stdout");
    // 1 MiB does not fit in the pipe: writing the rest fails.
    const stdinLost = protocol.pipesLost.get(0);
    assert.ok(stdinLost instanceof Deno.errors.BrokenPipe, `${stdinLost}`);
  });
});
