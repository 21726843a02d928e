import assert from "node:assert/strict";
import {
  assertBytes,
  pattern,
  readExactly,
  readUntilClosed,
  within,
  writeAll,
} from "../_test_utils.ts";
import { BackgroundWriter, Example, MiB, mib } from "./_example.ts";

const SCRIPT = "examples/echo_server.ts";
const FLAGS = ["--allow-net"];
const HOST = "127.0.0.1";
/** What the client sends without reading. */
const TOTAL = 64 * MiB;
/** How long writes must block before the client counts them as stalled. */
const STALL_MS = 500;
/**
 * How much the server's resident memory may grow while a client sends and
 * reads nothing. With flow control the server holds its write buffer (64
 * KiB) and its read memory, and the rest waits in the socket buffers
 * (kernel memory, not the server's): it grew by 1.6-2.1 MiB here. Without
 * flow control it reads on and buffers all the client sends: the echo
 * server before it paused reading grew by 62-64 MiB in this test. 8 MiB is
 * well above the noise and far below an unbounded buffer.
 */
const MAX_GROWTH = 8 * MiB;

Deno.test("examples/echo_server.ts stays within a few MiB while a client sends 64 MiB and reads nothing, then echoes every byte and exits on SIGTERM", async (t) => {
  const data = pattern(TOTAL);
  for (
    const [name, args] of [
      ["Protocol with transientData", []],
      ["BufferedProtocol (--buffered)", ["--buffered"]],
    ] as const
  ) {
    await t.step(name, async () => {
      await using server = Example.start(SCRIPT, FLAGS, [
        "--port",
        "0",
        ...args,
      ]);
      const conn = await Deno.connect({
        hostname: HOST,
        port: await server.port(),
      });
      try {
        await echoWithoutReading(server, conn, data);
      } finally {
        conn.close();
      }
      server.kill("SIGTERM");
      assert.equal((await server.exited()).code, 0);
      assert.ok(server.stdout.lines.includes("echo server closed"));
    });
  }
});

/**
 * Sends `data` without reading until the writes block, checks how much the
 * server grew meanwhile, then reads the echo back; ends with EOF both ways.
 */
async function echoWithoutReading(
  server: Example,
  conn: Deno.Conn,
  data: Uint8Array,
): Promise<void> {
  // One echo first, so that the baseline has a connection that served.
  const warm = pattern(MiB, 7);
  const [, echoed] = await within(
    Promise.all([writeAll(conn, warm), readExactly(conn, MiB)]),
    "the warm-up echo",
  );
  assertBytes(echoed, warm, "warm-up echo");

  const before = await server.rss();
  const writer = new BackgroundWriter(conn, data);
  const stalled = await writer.stalled(STALL_MS);
  const growth = await server.peakRss() - before;
  assert.ok(
    growth <= MAX_GROWTH,
    `the server grew by ${mib(growth)} (more than ${
      mib(MAX_GROWTH)
    }) while the client wrote ${mib(writer.written)} and read nothing`,
  );
  assert.ok(
    stalled,
    `the client's writes never blocked: the server read all ${
      mib(data.byteLength)
    }`,
  );

  const back = await within(
    readExactly(conn, data.byteLength),
    "the echo",
    30_000,
  );
  await within(writer.done, "the last write");
  assertBytes(back, data, "echo");
  await conn.closeWrite();
  const after = await within(readUntilClosed(conn), "the server's close");
  assert.equal(after.byteLength, 0);
}

Deno.test("examples/echo_server.ts stops listening on SIGTERM, and a second SIGTERM aborts a client that does not read", async () => {
  await using server = Example.start(SCRIPT, FLAGS, [
    "--port",
    "0",
    "--buffered",
  ]);
  const port = await server.port();
  const conn = await Deno.connect({ hostname: HOST, port });
  try {
    // The server's write buffer fills: closing it cannot flush.
    const writer = new BackgroundWriter(conn, pattern(16 * MiB));
    assert.ok(await writer.stalled(STALL_MS), "the writes should block");

    server.kill("SIGTERM");
    await server.stderr.waitFor(/^shutting down/, 5_000);
    await within(refused(port), "the listener to close");
    assert.equal(server.status, undefined, "it waits for the client");

    server.kill("SIGTERM");
    // The grace period is 10 s: an exit well before it is the abort's.
    assert.equal((await server.exited(5_000)).code, 0);
    await within(readUntilClosed(conn), "the connection's end");
    await writer.done.catch(() => {}); // Its last write fails: reset.
  } finally {
    conn.close();
  }
});

/**
 * Resolves once connecting to `port` is refused. Deno closes a listener's
 * socket just after `close()`, so a connection may still get in meanwhile
 * (and be closed at once), or wait in the listener's backlog and be reset
 * when it closes: each such attempt tries again.
 */
async function refused(port: number): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    try {
      const conn = await Deno.connect({ hostname: HOST, port });
      conn.close();
    } catch (error) {
      if (error instanceof Deno.errors.ConnectionRefused) return;
      if (!(error instanceof Deno.errors.ConnectionReset)) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`Connections to ${port} are still accepted`);
}
