import assert from "node:assert/strict";
import { createConnection, ProtocolBase } from "../../mod.ts";
import { pattern, readUntilClosed, within, writeAll } from "../_test_utils.ts";
import { BackgroundWriter, Example, MiB, mib } from "./_example.ts";

const SCRIPT = "examples/tls_proxy.ts";
const FLAGS = ["--allow-net", "--allow-read"];
const HOST = "127.0.0.1";
const CA = await Deno.readTextFile(
  new URL("../testdata/ca.pem", import.meta.url),
);
/** What goes each way. */
const TOTAL = 64 * MiB;
/** Data from the client to the backend, and back. */
const UP = pattern(TOTAL, 1);
const DOWN = pattern(TOTAL, 2);
/**
 * How much the proxy's resident memory may grow while 64 MiB go each way
 * and the backend reads slowly. With flow control it grew by 15-17 MiB
 * here, the same whether the backend reads slowly or at full speed: that
 * is garbage not yet collected (TLS reads are records of up to 16 KiB,
 * each read into fresh memory), not a backlog. The same proxy forwarding
 * without flow control grew by 102-119 MiB: it read the client's 64 MiB
 * while the backend did not. 32 MiB is well above the one and far below
 * the other.
 */
const MAX_GROWTH = 32 * MiB;

/** Starts the proxy on a free port, forwarding to `backendPort`. */
function startProxy(backendPort: number): Example {
  return Example.start(SCRIPT, FLAGS, [
    "--port",
    "0",
    "--backend",
    `${HOST}:${backendPort}`,
    "--cert",
    "tests/testdata/server.pem",
    "--key",
    "tests/testdata/server_key.pem",
  ]);
}

/** How the backend reads what the client sends. */
interface Pace {
  /** Milliseconds before its first read. */
  startAfter: number;
  /** Bytes a read takes at most. */
  readSize: number;
  /** Milliseconds between reads. */
  between: number;
}

/**
 * One backend connection: sends `down` and half-closes, and reads what
 * comes up at `pace`, checking it against `up`. Resolves with how many
 * bytes came up, once the client's EOF came through.
 */
async function serveBackend(
  conn: Deno.Conn,
  up: Uint8Array,
  down: Uint8Array,
  pace: Pace,
): Promise<number> {
  const sending = writeAll(conn, down).then(() => conn.closeWrite());
  await delay(pace.startAfter);
  const buffer = new Uint8Array(pace.readSize);
  let received = 0;
  // Bounded: each read brings at least one byte, or ends the loop.
  for (let reads = 0; reads <= up.byteLength; reads++) {
    const nbytes = await conn.read(buffer);
    if (nbytes === null) break;
    assertSame(buffer.subarray(0, nbytes), up, received, "up");
    received += nbytes;
    if (pace.between > 0) await delay(pace.between);
  }
  await sending;
  conn.close();
  return received;
}

/**
 * The TLS client: checks what comes down against `down` as it arrives,
 * and sends `up` with flow control, then half-closes.
 */
class Client extends ProtocolBase {
  override readonly transientData = true;
  received = 0;
  readonly eof = Promise.withResolvers<void>();
  readonly lost = Promise.withResolvers<Error | undefined>();
  #down: Uint8Array;

  constructor(down: Uint8Array) {
    super();
    this.#down = down;
  }

  override dataReceived(data: Uint8Array): void {
    assertSame(data, this.#down, this.received, "down");
    this.received += data.byteLength;
  }

  override eofReceived(): boolean {
    this.eof.resolve();
    return true; // Keep sending.
  }

  override connectionLost(exc: Error | undefined): void {
    super.connectionLost(exc);
    this.eof.resolve();
    this.lost.resolve(exc);
  }

  /** Sends `up` in 256 KiB writes, waiting while over the high mark. */
  async send(up: Uint8Array): Promise<void> {
    for (let offset = 0; offset < up.byteLength; offset += 256 * 1024) {
      this.transport!.write(up.subarray(offset, offset + 256 * 1024));
      await this.drain();
    }
    this.transport!.writeEof();
  }
}

/** Fails unless `chunk` is `expected` at `offset`. */
function assertSame(
  chunk: Uint8Array,
  expected: Uint8Array,
  offset: number,
  what: string,
): void {
  for (let i = 0; i < chunk.byteLength; i++) {
    if (chunk[i] !== expected[offset + i]) {
      assert.fail(
        `${what}: byte ${offset + i} is ${chunk[i]}, expected ${
          expected[offset + i]
        }`,
      );
    }
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Connects over TLS to the proxy and moves `up` and `down` through it. */
async function transfer(
  port: number,
  accepted: Promise<number>,
  up: Uint8Array,
  down: Uint8Array,
): Promise<void> {
  const [transport, client] = await createConnection(
    () => new Client(down),
    {
      hostname: HOST,
      port,
      tls: { caCerts: [CA], serverName: "localhost" },
    },
  );
  try {
    await within(client.send(up), "the upload", 60_000);
    assert.equal(await within(accepted, "the backend", 60_000), up.byteLength);
    await within(client.eof.promise, "the download", 60_000);
    assert.equal(client.received, down.byteLength);
    // Both ways are shut: the transport stays open until closed.
    transport.close();
    assert.equal(await within(client.lost.promise, "the close"), undefined);
  } finally {
    transport.abort();
  }
}

Deno.test("examples/tls_proxy.ts moves 64 MiB each way byte-exact between a TLS client and a TCP backend that reads slowly, with bounded memory, and exits on SIGTERM", async () => {
  using backend = Deno.listen({ hostname: HOST, port: 0 });
  await using proxy = startProxy(backend.addr.port);
  const port = await proxy.port();

  // A first small transfer, so that the baseline has one that was served.
  const warm = backend.accept().then((conn) =>
    serveBackend(conn, UP.subarray(0, MiB), DOWN.subarray(0, MiB), {
      startAfter: 0,
      readSize: 256 * 1024,
      between: 0,
    })
  );
  await transfer(port, warm, UP.subarray(0, MiB), DOWN.subarray(0, MiB));

  const before = await proxy.rss();
  const slow = backend.accept().then((conn) =>
    serveBackend(conn, UP, DOWN, {
      startAfter: 1_000,
      readSize: 64 * 1024,
      between: 1,
    })
  );
  await transfer(port, slow, UP, DOWN);
  const growth = await proxy.peakRss() - before;
  assert.ok(
    growth <= MAX_GROWTH,
    `the proxy grew by ${mib(growth)} (more than ${mib(MAX_GROWTH)})`,
  );
  await proxy.stdout.waitFor(
    new RegExp(`${TOTAL} bytes in, ${TOTAL} bytes out`),
  );

  proxy.kill("SIGTERM");
  assert.equal((await proxy.exited()).code, 0);
});

Deno.test("examples/tls_proxy.ts drops a client when the backend cannot be reached", async () => {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const closedPort = listener.addr.port;
  listener.close();
  await using proxy = startProxy(closedPort);
  const port = await proxy.port();
  const conn = await Deno.connectTls({
    hostname: HOST,
    port,
    caCerts: [CA],
  });
  try {
    await writeAll(conn, new TextEncoder().encode("hello"));
    const got = await within(readUntilClosed(conn), "the proxy's close");
    assert.equal(got.byteLength, 0);
  } finally {
    conn.close();
  }
  await proxy.stderr.waitFor(/^cannot reach the backend: .*refused/i, 5_000);
  proxy.kill("SIGTERM");
  assert.equal((await proxy.exited()).code, 0);
});

Deno.test("examples/tls_proxy.ts closes its relays on SIGTERM, and a second SIGTERM aborts one whose backend does not read", async () => {
  using backend = Deno.listen({ hostname: HOST, port: 0 });
  await using proxy = startProxy(backend.addr.port);
  const port = await proxy.port();
  const [transport, client] = await createConnection(
    () => new Client(DOWN),
    { hostname: HOST, port, tls: { caCerts: [CA], serverName: "localhost" } },
  );
  const conn = await backend.accept(); // And never reads.
  try {
    const writer = new BackgroundWriter({
      async write(p) {
        if (transport.isClosing()) throw new Error("Closed by the proxy");
        transport.write(p);
        await client.drain();
        return p.byteLength;
      },
    }, UP.subarray(0, 32 * MiB));
    writer.done.catch(() => {}); // Ends when the proxy closes the client.
    assert.ok(await writer.stalled(500), "the client's writes should block");

    proxy.kill("SIGTERM");
    await within(client.eof.promise, "the proxy to close the client");
    // Its backend side cannot flush: the backend does not read.
    assert.equal(proxy.status, undefined, "it waits for the backend");

    proxy.kill("SIGTERM");
    // The grace period is 10 s: an exit well before it is the abort's.
    assert.equal((await proxy.exited(5_000)).code, 0);
    await within(readUntilClosed(conn), "the backend connection's end");
  } finally {
    conn.close();
    transport.abort();
    await client.lost.promise;
  }
});
