import assert from "node:assert/strict";
import {
  assertBytes,
  bytes,
  concat,
  pattern,
  readExactly,
  readUntilClosed,
  text,
  within,
  writeAll,
} from "../_test_utils.ts";
import { BackgroundWriter, Example, MiB, mib } from "./_example.ts";

const SCRIPT = "examples/kv_server.ts";
const FLAGS = ["--allow-net"];
const HOST = "127.0.0.1";

/** A request as clients send it: an array of bulk strings. */
function command(...args: (string | Uint8Array)[]): Uint8Array {
  const parts = args.map((arg) => typeof arg === "string" ? bytes(arg) : arg);
  return concat([
    bytes(`*${parts.length}\r\n`),
    ...parts.flatMap((part) => [
      bytes(`$${part.byteLength}\r\n`),
      part,
      bytes("\r\n"),
    ]),
  ]);
}

/** Sends `requests`, then reads exactly `expected` back and compares. */
async function exchange(
  conn: Deno.Conn,
  requests: Uint8Array,
  expected: string,
): Promise<void> {
  await writeAll(conn, requests);
  const reply = await within(
    readExactly(conn, bytes(expected).byteLength),
    `the replies to ${JSON.stringify(text(requests).slice(0, 60))}`,
  );
  assert.equal(text(reply), expected);
}

/** Starts the example on a free port. */
function start(...args: string[]): Example {
  return Example.start(SCRIPT, FLAGS, ["--port", "0", ...args]);
}

Deno.test("examples/kv_server.ts answers RESP requests, pipelined and split at any byte, and exits on SIGTERM", async (t) => {
  await using server = start();
  const port = await server.port();
  const requests = concat([
    command("PING"),
    command("ping", "hi"),
    command("SET", "k", "v1"),
    command("GET", "k"),
    command("GET", "missing"),
    command("SET", "bin", new Uint8Array([0, 13, 10, 255])),
    command("GET", "bin"),
    command("EXISTS", "k", "bin", "missing", "k"),
    command("INCR", "n"),
    command("INCR", "n"),
    command("SET", "n", "9223372036854775806"),
    command("INCR", "n"),
    command("DEL", "k", "n", "missing"),
    command("ECHO", ""),
    command("COMMAND", "DOCS"),
    bytes("*0\r\n*-1\r\n"), // Empty requests: no answer.
  ]);
  const expected = "+PONG\r\n" +
    "$2\r\nhi\r\n" +
    "+OK\r\n" +
    "$2\r\nv1\r\n" +
    "$-1\r\n" +
    "+OK\r\n" +
    "$4\r\n\0\r\n\xff\r\n" +
    ":3\r\n" +
    ":1\r\n" +
    ":2\r\n" +
    "+OK\r\n" +
    ":9223372036854775807\r\n" +
    ":2\r\n" +
    "$0\r\n\r\n" +
    "*0\r\n";
  const expectedBytes = concat([
    bytes(expected.slice(0, expected.indexOf("\xff"))),
    new Uint8Array([255]),
    bytes(expected.slice(expected.indexOf("\xff") + 1)),
  ]);

  await t.step("in one write", async () => {
    using conn = await Deno.connect({ hostname: HOST, port });
    await writeAll(conn, requests);
    const reply = await within(
      readExactly(conn, expectedBytes.byteLength),
      "the replies",
    );
    assertBytes(reply, expectedBytes, "replies");
  });

  await t.step("one byte at a time", async () => {
    using conn = await Deno.connect({ hostname: HOST, port });
    conn.setNoDelay(true);
    for (let i = 0; i < requests.byteLength; i++) {
      await writeAll(conn, requests.subarray(i, i + 1));
    }
    const reply = await within(
      readExactly(conn, expectedBytes.byteLength),
      "the replies",
    );
    assertBytes(reply, expectedBytes, "replies");
  });

  await t.step("answers all before closing at the client's EOF", async () => {
    using conn = await Deno.connect({ hostname: HOST, port });
    await writeAll(
      conn,
      concat([command("SET", "a", "1"), command("GET", "a")]),
    );
    await conn.closeWrite();
    assert.equal(
      text(await within(readUntilClosed(conn), "the close")),
      "+OK\r\n$1\r\n1\r\n",
    );
  });

  await t.step("QUIT answers +OK and closes", async () => {
    using conn = await Deno.connect({ hostname: HOST, port });
    await writeAll(conn, concat([command("QUIT"), command("PING")]));
    assert.equal(
      text(await within(readUntilClosed(conn), "the close")),
      "+OK\r\n",
    );
  });

  server.kill("SIGTERM");
  assert.equal((await server.exited()).code, 0);
  assert.ok(server.stdout.lines.includes("key-value server closed"));
});

Deno.test("examples/kv_server.ts answers inline commands, with quoted words", async () => {
  await using server = start();
  const port = await server.port();
  using conn = await Deno.connect({ hostname: HOST, port });
  await exchange(
    conn,
    bytes(
      'PING\r\nset greeting "hello world"\r\nGET greeting\n' +
        "  \r\n" + // A blank line: no answer.
        `SET q "a\\"b\\\\c\\x41\\n" \r\nGET q\r\n` +
        "SET s 'it\\'s'\r\nGET s\r\n" +
        'set mid x"y z"\r\nget mid\r\n',
    ),
    "+PONG\r\n+OK\r\n$11\r\nhello world\r\n" +
      '+OK\r\n$7\r\na"b\\cA\n\r\n' +
      "+OK\r\n$4\r\nit's\r\n" +
      "+OK\r\n$4\r\nxy z\r\n",
  );
});

Deno.test("examples/kv_server.ts answers errors, and disconnects a client that breaks the protocol", async (t) => {
  await using server = start("--max-bulk", "1024");
  const port = await server.port();

  await t.step("command errors: the connection goes on", async () => {
    using conn = await Deno.connect({ hostname: HOST, port });
    await exchange(
      conn,
      concat([
        command("NOPE", "a", "b"),
        command("GET"),
        command("GET", "a", "b"),
        command("SET", "k", "v", "EX", "10"),
        command("SET", "k", "v"),
        command("INCR", "k"),
        command("SET", "big", "9223372036854775807"),
        command("INCR", "big"),
        // Values outside int64 are not integers, as for Redis.
        command("SET", "over", "9223372036854775808"),
        command("INCR", "over"),
        command("SET", "under", "-9223372036854775809"),
        command("INCR", "under"),
        command("SET", "min", "-9223372036854775808"),
        command("INCR", "min"),
        // Names compare in ASCII only: no Unicode case mapping.
        command("p\u0131ng"),
        command("\u017Fet", "x", "1"),
        command("pInG"),
        command("PING"),
      ]),
      "-ERR unknown command 'NOPE', with args beginning with: 'a' 'b' \r\n" +
        "-ERR wrong number of arguments for 'get' command\r\n" +
        "-ERR wrong number of arguments for 'get' command\r\n" +
        "-ERR syntax error\r\n" +
        "+OK\r\n" +
        "-ERR value is not an integer or out of range\r\n" +
        "+OK\r\n" +
        "-ERR increment or decrement would overflow\r\n" +
        "+OK\r\n" +
        "-ERR value is not an integer or out of range\r\n" +
        "+OK\r\n" +
        "-ERR value is not an integer or out of range\r\n" +
        "+OK\r\n" +
        ":-9223372036854775807\r\n" +
        "-ERR unknown command 'p\u0131ng', with args beginning with: \r\n" +
        "-ERR unknown command '\u017Fet', with args beginning with: 'x' '1' \r\n" +
        "+PONG\r\n" +
        "+PONG\r\n",
    );
  });

  const broken: [string, Uint8Array, string][] = [
    [
      "a bulk length that is not a number",
      bytes("*1\r\n$x\r\n"),
      "invalid bulk length",
    ],
    [
      "a string over --max-bulk",
      command("SET", "k", "x".repeat(1025)),
      "invalid bulk length",
    ],
    [
      "an array of over 1,024 strings",
      bytes("*1025\r\n"),
      "invalid multibulk length",
    ],
    ["a string without its $", bytes("*1\r\n:1\r\n"), "expected '$', got ':'"],
    [
      "unbalanced quotes",
      bytes('SET k "v\r\n'),
      "unbalanced quotes in request",
    ],
    [
      "an inline line over 64 KiB",
      bytes("x".repeat(65 * 1024)),
      "too big inline request",
    ],
    [
      "a count line over 64 KiB",
      bytes(`*${"1".repeat(65 * 1024)}`),
      "too big mbulk count string",
    ],
  ];
  for (const [name, request, error] of broken) {
    await t.step(name, async () => {
      using conn = await Deno.connect({ hostname: HOST, port });
      // What comes after a whole broken request is not run; a request cut
      // off by a limit has nothing after it, so the limit is what stops it.
      const after = request.includes(0x0a) ? [command("PING")] : [];
      await writeAll(conn, concat([command("PING"), request, ...after]));
      assert.equal(
        text(await within(readUntilClosed(conn), "the close")),
        `+PONG\r\n-ERR Protocol error: ${error}\r\n`,
      );
    });
  }
});

Deno.test("examples/kv_server.ts refuses writes over --max-memory with -OOM", async () => {
  await using server = start("--max-memory", "100");
  const port = await server.port();
  using conn = await Deno.connect({ hostname: HOST, port });
  await exchange(
    conn,
    concat([
      command("SET", "a", "x".repeat(90)),
      command("SET", "b", "x".repeat(10)),
      command("SET", "a", "x".repeat(80)), // Replacing frees the old value.
      command("SET", "b", "x".repeat(10)),
      command("DEL", "a"),
      command("INCR", "n"),
    ]),
    "+OK\r\n" +
      "-OOM command not allowed when used memory > 'maxmemory'.\r\n" +
      "+OK\r\n+OK\r\n:1\r\n:1\r\n",
  );
});

/** The value the pipelining clients ask for again and again. */
const VALUE_SIZE = 128 * 1024;
/** What the flooding client sends at most: 760,000 GETs. */
const FLOOD = 16 * MiB;
/** How long writes must block before the client counts them as stalled. */
const STALL_MS = 500;
/**
 * How much the server's resident memory may grow while a client floods it
 * with GETs and reads nothing. With flow control it holds its write buffer
 * and about one reply, and stops reading, so the client's writes stall
 * (after about 3.7 MiB, in the socket buffers): it grew by 0.1-0.7 MiB
 * here. Replies share the stored value (no copy), but each still costs its
 * header and a place in the write queue: the same server without flow
 * control grew by 70-116 MiB on the first 255,000 GETs, and on with every
 * GET it read. 16 MiB is far from both.
 */
const MAX_GROWTH = 16 * MiB;

Deno.test("examples/kv_server.ts holds pipelined GETs while their replies are not read", async (t) => {
  await using server = start();
  const port = await server.port();
  const value = pattern(VALUE_SIZE);
  const get = command("GET", "big");
  const reply = concat([bytes(`$${VALUE_SIZE}\r\n`), value, bytes("\r\n")]);
  {
    using conn = await Deno.connect({ hostname: HOST, port });
    await exchange(conn, command("SET", "big", value), "+OK\r\n");
  }

  await t.step(
    "answers every one of 1,000 GETs once the client reads",
    async () => {
      using conn = await Deno.connect({ hostname: HOST, port });
      await writeAll(conn, concat(new Array(1_000).fill(get)));
      // Read late: the server pauses on the way, and resumes.
      await new Promise((resolve) => setTimeout(resolve, 200));
      for (let i = 0; i < 1_000; i++) {
        const got = await within(
          readExactly(conn, reply.byteLength),
          `reply ${i}`,
        );
        assertBytes(got, reply, `reply ${i}`);
      }
      await exchange(conn, command("PING"), "+PONG\r\n");
    },
  );

  await t.step(
    "stays within a few MiB while a client floods it and reads nothing",
    async () => {
      const conn = await Deno.connect({ hostname: HOST, port });
      try {
        const before = await server.rss();
        const gets = concat(new Array(FLOOD / get.byteLength | 0).fill(get));
        const writer = new BackgroundWriter(conn, gets);
        const stalled = await writer.stalled(STALL_MS);
        const growth = await server.peakRss() - before;
        assert.ok(
          growth <= MAX_GROWTH,
          `the server grew by ${mib(growth)} (more than ${
            mib(MAX_GROWTH)
          }) while the client sent ${
            writer.written / get.byteLength | 0
          } GETs and read nothing`,
        );
        assert.ok(stalled, "the client's writes never blocked");
        for (let i = 0; i < 10; i++) {
          const got = await within(
            readExactly(conn, reply.byteLength),
            `reply ${i}`,
          );
          assertBytes(got, reply, `reply ${i}`);
        }
      } finally {
        conn.close();
      }
      using other = await Deno.connect({ hostname: HOST, port });
      await exchange(other, command("PING"), "+PONG\r\n");
    },
  );
});
