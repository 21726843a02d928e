import assert from "node:assert/strict";
import {
  type ClientConnected,
  DEFAULT_LIMIT,
  IncompleteReadError,
  LimitOverrunError,
  openConnection,
  openUnixConnection,
  type Server,
  startServer,
  startUnixServer,
  StreamReader,
  type StreamWriter,
} from "../../mod.ts";
import {
  assertBytes,
  bytes,
  concat,
  errorCollector,
  pattern,
  random,
  StubTransport,
  text,
  within,
} from "../_test_utils.ts";

// Helpers.

const LOCAL = { hostname: "127.0.0.1", port: 0 } as const;
/** More than loopback's kernel buffers take while the peer reads nothing. */
const BLOCKED = new Uint8Array(16 * 1024 * 1024);

/** The TCP port a server listens on. */
function portOf(server: Server<Deno.NetAddr>): number {
  return server.addrs[0]!.port;
}

/**
 * Lets every pending microtask run, then tells whether `promise` settled.
 * Deterministic without sockets; over sockets, only where the peer cannot
 * make progress.
 */
async function hasSettled(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  promise.then(() => settled = true, () => settled = true);
  // Bounded: far more turns than any chain of awaits in the reader takes.
  for (let i = 0; i < 50 && !settled; i++) await undefined;
  return settled;
}

/** Resolves with what `promise` rejects with; fails if it resolves. */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  assert.fail("expected a rejection");
}

/**
 * The read-side calls a `StreamReader` makes on its transport, counted;
 * pausing twice or resuming while not paused fails at once.
 */
class FakeTransport extends StubTransport {
  pauses = 0;
  resumes = 0;
  closes = 0;

  override pauseReading(): void {
    assert.ok(this.reading, "pauseReading() while already paused");
    super.pauseReading();
    this.pauses++;
  }
  override resumeReading(): void {
    assert.ok(!this.reading, "resumeReading() while not paused");
    super.resumeReading();
    this.resumes++;
  }
  override close(): void {
    super.close();
    this.closes++;
  }
}

/** A reader of `limit` whose transport is a {@linkcode FakeTransport}. */
function fakeConnected(limit: number): [StreamReader, FakeTransport] {
  const reader = new StreamReader(limit);
  const transport = new FakeTransport();
  reader.setTransport(transport);
  return [reader, transport];
}

/** `count` numbered lines of growing length, each ending in `\n`. */
function numberedLines(count: number): Uint8Array[] {
  return Array.from(
    { length: count },
    (_, i) => bytes(`line ${i}: ${"x".repeat(i % 257)}\n`),
  );
}

/** Collects lines with async iteration until EOF. */
async function collectLines(reader: StreamReader): Promise<Uint8Array[]> {
  const lines: Uint8Array[] = [];
  for await (const line of reader) lines.push(line);
  return lines;
}

/** Reads a Web `ReadableStream` until done and joins the chunks. */
async function collectReadable(
  readable: ReadableStream<Uint8Array>,
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const reader = readable.getReader();
  // Bounded: each chunk holds at least one byte of a finite stream.
  for (let i = 0; i < 1_000_000; i++) {
    const { done, value } = await reader.read();
    if (done) return concat(chunks);
    chunks.push(value);
  }
  assert.fail("the stream never ended");
}

/** A `clientConnected` that echoes each line, then closes at EOF. */
async function echoLines(
  reader: StreamReader,
  writer: StreamWriter,
): Promise<void> {
  for await (const line of reader) {
    writer.write(line);
    await writer.drain();
  }
  writer.close();
}

/** A `clientConnected` that reads to EOF, then answers with the count. */
async function countBytes(
  reader: StreamReader,
  writer: StreamWriter,
): Promise<void> {
  const data = await reader.read();
  writer.write(bytes(`${data.byteLength}\n`));
  await writer.drain();
  writer.close();
}

/** Starts a server on 127.0.0.1 that keeps its errors in `errors`. */
async function serve(
  clientConnected: ClientConnected,
): Promise<
  {
    server: Server<Deno.NetAddr>;
    errors: ReturnType<typeof errorCollector>["errors"];
  }
> {
  const { errors, onError } = errorCollector();
  const server = await startServer(clientConnected, { ...LOCAL, onError });
  return { server, errors };
}

/** Closes the client's side and waits until the connection is lost. */
async function closeClient(writer: StreamWriter): Promise<void> {
  writer.close();
  await within(writer.waitClosed(), "the client connection to close");
}

// StreamReader without sockets.

Deno.test("StreamReader.read() returns what is buffered, up to n, and waits when empty", async (t) => {
  await t.step("returns at most n bytes of what is there", async () => {
    const reader = new StreamReader();
    reader.feedData(bytes("hello"));
    assert.equal(text(await reader.read(3)), "hel");
    assert.equal(text(await reader.read(10)), "lo");
  });

  await t.step("waits while the buffer is empty", async () => {
    const reader = new StreamReader();
    const read = reader.read(5);
    assert.equal(await hasSettled(read), false);
    reader.feedData(new Uint8Array(0));
    assert.equal(await hasSettled(read), false, "an empty feed wakes nobody");
    reader.feedData(bytes("abc"));
    assert.equal(text(await read), "abc");
  });

  await t.step("read() with no n reads everything until EOF", async () => {
    const reader = new StreamReader(16);
    const all = reader.read();
    const data = pattern(1000, 2);
    for (let offset = 0; offset < data.byteLength; offset += 37) {
      reader.feedData(data.subarray(offset, offset + 37));
      assert.equal(await hasSettled(all), false);
    }
    reader.feedEof();
    assertBytes(await all, data);
    assert.equal((await reader.read()).byteLength, 0);
  });

  await t.step(
    "read(0) returns empty at once, with or without data",
    async () => {
      const reader = new StreamReader();
      assert.equal((await reader.read(0)).byteLength, 0);
      reader.feedData(bytes("kept"));
      assert.equal((await reader.read(0)).byteLength, 0);
      assert.equal(text(await reader.read(4)), "kept");
    },
  );

  await t.step("a waiting read returns empty at EOF", async () => {
    const reader = new StreamReader();
    const read = reader.read(5);
    assert.equal(await hasSettled(read), false);
    reader.feedEof();
    assert.equal((await read).byteLength, 0);
    assert.equal((await reader.read(5)).byteLength, 0);
  });
});

Deno.test("StreamReader.readexactly() returns exactly n bytes", async (t) => {
  await t.step("takes n bytes and leaves the rest", async () => {
    const reader = new StreamReader();
    reader.feedData(bytes("abcdef"));
    assert.equal(text(await reader.readexactly(4)), "abcd");
    assert.equal(text(await reader.read(10)), "ef");
  });

  await t.step("collects n bytes across many feeds", async () => {
    const reader = new StreamReader(64);
    const data = pattern(10_000, 3);
    const exact = reader.readexactly(data.byteLength);
    const next = random(4);
    let offset = 0;
    while (offset < data.byteLength) {
      assert.equal(await hasSettled(exact), false, `settled at ${offset}`);
      const size = 1 + next(97);
      reader.feedData(data.subarray(offset, offset + size));
      offset += size;
    }
    assertBytes(await exact, data);
  });

  await t.step(
    "at EOF throws IncompleteReadError with partial and expected",
    async () => {
      const reader = new StreamReader();
      const exact = reader.readexactly(10);
      reader.feedData(bytes("abc"));
      assert.equal(await hasSettled(exact), false);
      reader.feedEof();
      const error = await rejection(exact);
      assert.ok(error instanceof IncompleteReadError);
      assert.equal(error.name, "IncompleteReadError");
      assert.equal(text(error.partial), "abc");
      assert.equal(error.expected, 10);
      assert.ok(reader.atEof(), "the buffer was emptied into partial");
    },
  );

  await t.step("readexactly(0) returns empty", async () => {
    const reader = new StreamReader();
    assert.equal((await reader.readexactly(0)).byteLength, 0);
  });

  await t.step("a negative or fractional n is a RangeError", async () => {
    const reader = new StreamReader();
    reader.feedData(bytes("abc"));
    await assert.rejects(reader.readexactly(-1), RangeError);
    await assert.rejects(reader.readexactly(1.5), RangeError);
    assert.equal(text(await reader.read(3)), "abc", "nothing was consumed");
  });
});

Deno.test("StreamReader.readline() returns one line at a time", async (t) => {
  await t.step("each line with its newline", async () => {
    const reader = new StreamReader();
    reader.feedData(bytes("one\ntwo\nthr"));
    assert.equal(text(await reader.readline()), "one\n");
    assert.equal(text(await reader.readline()), "two\n");
    const third = reader.readline();
    assert.equal(await hasSettled(third), false);
    reader.feedData(bytes("ee\n"));
    assert.equal(text(await third), "three\n");
  });

  await t.step(
    "at EOF, the last line without newline, then empty",
    async () => {
      const reader = new StreamReader();
      reader.feedData(bytes("last"));
      reader.feedEof();
      assert.equal(text(await reader.readline()), "last");
      assert.equal((await reader.readline()).byteLength, 0);
    },
  );

  await t.step("at EOF with nothing buffered, empty", async () => {
    const reader = new StreamReader();
    const line = reader.readline();
    assert.equal(await hasSettled(line), false);
    reader.feedEof();
    assert.equal((await line).byteLength, 0);
  });
});

Deno.test("StreamReader.readuntil() reads up to and including the separator", async (t) => {
  const message = bytes("header: value\r\n\r\nbody");
  const separator = bytes("\r\n\r\n");
  const head = "header: value\r\n\r\n";

  await t.step(
    "a multi-byte separator split across two feeds at every position",
    async () => {
      for (let at = 1; at < message.byteLength; at++) {
        const reader = new StreamReader();
        const until = reader.readuntil(separator);
        reader.feedData(message.subarray(0, at));
        assert.equal(
          await hasSettled(until),
          at >= head.length,
          `split at ${at}`,
        );
        reader.feedData(message.subarray(at));
        assert.equal(text(await until), head, `split at ${at}`);
        reader.feedEof();
        assert.equal(text(await reader.read()), "body", `split at ${at}`);
      }
    },
  );

  await t.step("a multi-byte separator fed one byte at a time", async () => {
    const reader = new StreamReader();
    const until = reader.readuntil(separator);
    for (let at = 0; at < head.length; at++) {
      assert.equal(await hasSettled(until), false, `after ${at} bytes`);
      reader.feedData(message.subarray(at, at + 1));
    }
    assert.equal(text(await until), head);
  });

  await t.step("with an array of separators, the earliest wins", async () => {
    const reader = new StreamReader();
    reader.feedData(bytes("a;b\r\nc;"));
    const separators = [bytes("\r\n"), bytes(";")];
    assert.equal(text(await reader.readuntil(separators)), "a;");
    assert.equal(text(await reader.readuntil(separators)), "b\r\n");
    assert.equal(text(await reader.readuntil(separators)), "c;");
  });

  await t.step(
    "with an array of separators at the same position, the shortest wins",
    async () => {
      const reader = new StreamReader();
      reader.feedData(bytes("xabcd"));
      assert.equal(
        text(await reader.readuntil([bytes("abc"), bytes("ab")])),
        "xab",
      );
      assert.equal(text(await reader.read(10)), "cd");
    },
  );

  await t.step(
    "with an array of separators, the match does not depend on how the data is split (asyncio: the one that ends first)",
    async () => {
      const separators = [bytes("abcd"), bytes("c")];
      const whole = new StreamReader();
      whole.feedData(bytes("xabcd"));
      const split = new StreamReader();
      const until = split.readuntil(separators);
      split.feedData(bytes("xabc"));
      await hasSettled(until);
      split.feedData(bytes("d"));
      assert.equal(text(await until), "xabc");
      assert.equal(text(await whole.readuntil(separators)), "xabc");
    },
  );

  await t.step(
    "at EOF throws IncompleteReadError with everything buffered, and empties the buffer",
    async () => {
      const reader = new StreamReader();
      reader.feedData(bytes("no separator"));
      reader.feedEof();
      const error = await rejection(reader.readuntil(separator));
      assert.ok(error instanceof IncompleteReadError);
      assert.equal(text(error.partial), "no separator");
      assert.equal(error.expected, null);
      assert.ok(reader.atEof());
      assert.equal((await reader.read()).byteLength, 0);
    },
  );

  await t.step(
    "LimitOverrunError when no separator is within limit; the data stays",
    async () => {
      const reader = new StreamReader(8);
      const data = bytes("a".repeat(20));
      reader.feedData(data);
      const error = await rejection(reader.readuntil(bytes("\n")));
      assert.ok(error instanceof LimitOverrunError);
      assert.ok(error instanceof RangeError);
      assert.equal(error.name, "LimitOverrunError");
      assert.equal(error.consumed, 20);
      const twoBytes = await rejection(reader.readuntil(bytes("\r\n")));
      assert.ok(twoBytes instanceof LimitOverrunError);
      assert.equal(twoBytes.consumed, 19, "buffered + 1 - separator length");
      assertBytes(await reader.read(100), data);
    },
  );

  await t.step(
    "LimitOverrunError once more than limit bytes arrive without a separator",
    async () => {
      const reader = new StreamReader(8);
      const until = reader.readuntil(bytes("\n"));
      reader.feedData(bytes("12345678"));
      assert.equal(await hasSettled(until), false, "limit bytes may still end");
      reader.feedData(bytes("9"));
      const error = await rejection(until);
      assert.ok(error instanceof LimitOverrunError);
      assert.equal(error.consumed, 9);
      assert.equal(text(await reader.read(100)), "123456789");
    },
  );

  await t.step("a separator at position limit is within it", async () => {
    const reader = new StreamReader(8);
    reader.feedData(bytes("01234567\n"));
    assert.equal(text(await reader.readuntil(bytes("\n"))), "01234567\n");
  });

  await t.step(
    "LimitOverrunError when the separator is found beyond limit: consumed is its position",
    async () => {
      const reader = new StreamReader(8);
      reader.feedData(bytes("0123456789ab\nrest"));
      const error = await rejection(reader.readuntil(bytes("\n")));
      assert.ok(error instanceof LimitOverrunError);
      assert.equal(error.consumed, 12);
      assert.equal(text(await reader.readexactly(13)), "0123456789ab\n");
      assert.equal(text(await reader.read(10)), "rest");
    },
  );
});

Deno.test("StreamReader.readline() drops a line longer than limit", async (t) => {
  await t.step("up to its newline; the next readline() works", async () => {
    const reader = new StreamReader(8);
    reader.feedData(bytes("0123456789ab\nnext\n"));
    const error = await rejection(reader.readline());
    assert.ok(error instanceof LimitOverrunError);
    assert.ok(error instanceof RangeError);
    assert.equal(text(await reader.readline()), "next\n");
  });

  await t.step(
    "all that is buffered, if its newline has not arrived",
    async () => {
      const reader = new StreamReader(8);
      reader.feedData(bytes("x".repeat(20)));
      await assert.rejects(reader.readline(), LimitOverrunError);
      reader.feedData(bytes("ok\n"));
      assert.equal(text(await reader.readline()), "ok\n");
    },
  );
});

Deno.test("StreamReader.setException() makes pending and later reads reject with it", async (t) => {
  await t.step("a pending read rejects with it", async () => {
    const reads = [
      (reader: StreamReader) => reader.read(),
      (reader: StreamReader) => reader.read(4),
      (reader: StreamReader) => reader.readline(),
      (reader: StreamReader) => reader.readuntil(bytes("--")),
      (reader: StreamReader) => reader.readexactly(4),
    ];
    for (const [i, read] of reads.entries()) {
      const reader = new StreamReader();
      const boom = new Error(`boom ${i}`);
      const pending = read(reader);
      assert.equal(await hasSettled(pending), false);
      reader.setException(boom);
      assert.equal(await rejection(pending), boom);
      assert.equal(reader.exception(), boom);
    }
  });

  await t.step(
    "later reads reject with it, even with data buffered",
    async () => {
      const reader = new StreamReader();
      const boom = new Error("boom");
      assert.equal(reader.exception(), undefined);
      reader.feedData(bytes("data\n"));
      reader.setException(boom);
      assert.equal(await rejection(reader.read()), boom);
      assert.equal(await rejection(reader.read(1)), boom);
      assert.equal(await rejection(reader.readline()), boom);
      assert.equal(await rejection(reader.readuntil(bytes("\n"))), boom);
      assert.equal(await rejection(reader.readexactly(1)), boom);
      assert.equal(await rejection(collectLines(reader)), boom);
    },
  );
});

Deno.test("StreamReader allows one waiting read at a time: a second one throws TypeError", async () => {
  const seconds = [
    (reader: StreamReader) => reader.read(1),
    (reader: StreamReader) => reader.read(),
    (reader: StreamReader) => reader.readline(),
    (reader: StreamReader) => reader.readuntil(bytes("\n")),
    (reader: StreamReader) => reader.readexactly(1),
  ];
  for (const second of seconds) {
    const reader = new StreamReader();
    const first = reader.read(10);
    assert.equal(await hasSettled(first), false);
    await assert.rejects(second(reader), TypeError);
    reader.feedData(bytes("for the first"));
    assert.equal(text(await first), "for the fi");
  }
});

Deno.test("StreamReader async iteration yields lines until EOF", async (t) => {
  await t.step("lines fed at once, the last without newline", async () => {
    const reader = new StreamReader();
    reader.feedData(bytes("a\n\nb\nc"));
    reader.feedEof();
    assert.deepEqual((await collectLines(reader)).map(text), [
      "a\n",
      "\n",
      "b\n",
      "c",
    ]);
  });

  await t.step("lines fed in pieces while iterating", async () => {
    const reader = new StreamReader();
    const lines = collectLines(reader);
    const data = bytes("first line\nsecond\nthird\n");
    for (let offset = 0; offset < data.byteLength; offset += 5) {
      reader.feedData(data.subarray(offset, offset + 5));
      assert.equal(await hasSettled(lines), false);
    }
    reader.feedEof();
    assert.deepEqual((await lines).map(text), [
      "first line\n",
      "second\n",
      "third\n",
    ]);
  });
});

Deno.test("StreamReader.atEof() is true once EOF was fed and the buffer is empty", async () => {
  const reader = new StreamReader();
  assert.equal(reader.atEof(), false);
  reader.feedData(bytes("ab"));
  assert.equal(reader.atEof(), false);
  reader.feedEof();
  assert.equal(reader.atEof(), false, "data is still buffered");
  assert.equal(text(await reader.read(1)), "a");
  assert.equal(reader.atEof(), false);
  assert.equal(text(await reader.read(1)), "b");
  assert.equal(reader.atEof(), true);
});

Deno.test("StreamReader returns every byte once, in order, through mixed feeds and reads", async () => {
  const data = pattern(256 * 1024, 11);
  const separators = [bytes("\r\n"), new Uint8Array([0x00])];
  const [reader, transport] = fakeConnected(2048);
  const next = random(12);
  const out: Uint8Array[] = [];
  let fed = 0;
  // Bounded: every operation consumes at least one byte or ends it.
  for (let i = 0; i < data.byteLength && !reader.atEof(); i++) {
    const op = next(4);
    const size = 1 + next(4096);
    const pending = op === 0
      ? reader.read(size)
      : op === 1
      ? reader.readexactly(size)
      : reader.readuntil(op === 2 ? separators[0]! : separators);
    for (let feeds = 0; !(await hasSettled(pending)); feeds++) {
      assert.ok(feeds <= data.byteLength, "a read never settled");
      if (fed < data.byteLength) {
        const chunk = 1 + next(8192);
        reader.feedData(data.subarray(fed, fed + chunk));
        fed = Math.min(fed + chunk, data.byteLength);
      } else {
        reader.feedEof();
      }
    }
    try {
      out.push(await pending);
    } catch (error) {
      if (error instanceof IncompleteReadError) {
        out.push(error.partial);
      } else if (error instanceof LimitOverrunError) {
        out.push(await reader.read(error.consumed));
      } else {
        throw error;
      }
    }
  }
  assertBytes(concat(out), data);
  assert.ok(transport.pauses > 0, "the buffer went over twice the limit");
  assert.equal(transport.resumes, transport.pauses);
});

// Flow control without sockets.

Deno.test("StreamReader pauses the transport over twice its limit and resumes it at the limit", async (t) => {
  await t.step("feeding over 2 * limit pauses once", () => {
    const [reader, transport] = fakeConnected(4);
    reader.feedData(new Uint8Array(8));
    assert.equal(transport.pauses, 0, "8 is not over 2 * 4");
    reader.feedData(new Uint8Array(1));
    assert.equal(transport.pauses, 1);
    reader.feedData(new Uint8Array(100));
    assert.equal(transport.pauses, 1);
    assert.equal(transport.resumes, 0);
  });

  await t.step("reading back to the limit resumes once", async () => {
    const [reader, transport] = fakeConnected(4);
    reader.feedData(new Uint8Array(12));
    assert.equal(transport.pauses, 1);
    await reader.read(7);
    assert.equal(transport.resumes, 0, "5 is over the limit");
    await reader.readexactly(1);
    assert.equal(transport.resumes, 1, "4 is at the limit");
    await reader.read(1);
    assert.equal(transport.resumes, 1);
    reader.feedData(new Uint8Array(5));
    assert.equal(transport.pauses, 1, "8 is not over 2 * 4");
    reader.feedData(new Uint8Array(1));
    assert.equal(transport.pauses, 2);
  });

  await t.step("each kind of read resumes", async () => {
    const reads = [
      (reader: StreamReader) => reader.read(100),
      (reader: StreamReader) => reader.readexactly(5),
      (reader: StreamReader) => reader.readline(),
      (reader: StreamReader) => reader.readuntil(bytes("\n")),
    ];
    for (const read of reads) {
      const [reader, transport] = fakeConnected(4);
      reader.feedData(bytes("1234\n5678"));
      assert.equal(transport.pauses, 1);
      await read(reader);
      assert.equal(transport.resumes, 1);
    }
  });

  await t.step("readline() dropping an over-long line resumes", async () => {
    const [reader, transport] = fakeConnected(4);
    reader.feedData(bytes("0123456789"));
    await assert.rejects(reader.readline(), LimitOverrunError);
    assert.equal(transport.resumes, 1);
  });

  await t.step(
    "a read that must wait for data while paused resumes",
    async () => {
      const [reader, transport] = fakeConnected(4);
      reader.feedData(new Uint8Array(9));
      assert.equal(transport.pauses, 1);
      const exact = reader.readexactly(20);
      assert.equal(await hasSettled(exact), false);
      assert.equal(transport.resumes, 1);
      reader.feedData(new Uint8Array(11));
      assert.equal((await exact).byteLength, 20);
      assert.equal(transport.pauses, 2, "20 buffered bytes paused again");
      assert.equal(transport.resumes, 2, "taking them resumed again");
    },
  );
});

// Over sockets.

Deno.test("startServer() and openConnection() echo many lines with async iteration on both ends", async () => {
  const { server, errors } = await serve(echoLines);
  await using _server = server;
  const [reader, writer] = await openConnection({ port: portOf(server) });
  const sent = numberedLines(2_000);
  const received = collectLines(reader);
  for (const [i, line] of sent.entries()) {
    writer.write(line);
    if (i % 100 === 99) await within(writer.drain(), "drain()");
  }
  writer.writeEof();
  const lines = await within(received, "the echoed lines");
  assert.equal(lines.length, sent.length);
  for (const [i, line] of lines.entries()) {
    assertBytes(line, sent[i]!, `line ${i}`);
  }
  await closeClient(writer);
  assert.deepEqual(errors, []);
});

Deno.test("StreamWriter.writelines() and getExtraInfo() pass through to the transport", async () => {
  const { server, errors } = await serve(echoLines);
  await using _server = server;
  const [reader, writer] = await openConnection({ port: portOf(server) });
  writer.writelines([bytes("one\n"), bytes("two\n"), bytes("three\n")]);
  writer.writeEof();
  assert.deepEqual((await within(collectLines(reader), "lines")).map(text), [
    "one\n",
    "two\n",
    "three\n",
  ]);
  const peer = writer.getExtraInfo("peername") as Deno.NetAddr;
  assert.equal(peer.port, portOf(server));
  assert.equal(writer.getExtraInfo("no such info", "default"), "default");
  await closeClient(writer);
  assert.deepEqual(errors, []);
});

Deno.test("StreamReader.readexactly() round-trips 1 MiB byte-exact over a socket, with drain() honoured", async () => {
  const payload = pattern(1024 * 1024, 3);
  const { server, errors } = await serve(async (reader, writer) => {
    const header = await reader.readexactly(4);
    const size = new DataView(header.buffer, header.byteOffset).getUint32(0);
    writer.write(await reader.readexactly(size));
    await writer.drain();
    writer.close();
  });
  await using _server = server;
  const [reader, writer] = await openConnection({ port: portOf(server) });
  const echoed = reader.readexactly(payload.byteLength);
  const header = new Uint8Array(4);
  new DataView(header.buffer).setUint32(0, payload.byteLength);
  writer.write(header);
  writer.write(payload);
  const { high, low } = writer.transport.getWriteBufferLimits();
  assert.ok(writer.transport.getWriteBufferSize() > high);
  await within(writer.drain(), "drain()");
  assert.ok(writer.transport.getWriteBufferSize() <= low, "drained to low");
  assertBytes(await within(echoed, "the echo"), payload, "echo");
  assert.equal((await within(reader.read(), "EOF")).byteLength, 0);
  assert.ok(reader.atEof());
  await closeClient(writer);
  assert.deepEqual(errors, []);
});

Deno.test("StreamWriter.writeEof() half-closes: the server reads to EOF and still answers", async () => {
  const question = pattern(100 * 1024, 5);
  const answer = pattern(300 * 1024, 6);
  const seen = Promise.withResolvers<
    { question: Uint8Array; after: number; atEof: boolean }
  >();
  const { server, errors } = await serve(async (reader, writer) => {
    const question = await reader.read();
    const after = await reader.read();
    seen.resolve({ question, after: after.byteLength, atEof: reader.atEof() });
    writer.write(answer);
    await writer.drain();
    writer.close();
  });
  await using _server = server;
  const [reader, writer] = await openConnection({ port: portOf(server) });
  assert.ok(writer.canWriteEof());
  writer.write(question);
  writer.writeEof();
  const got = await within(seen.promise, "the server to see EOF");
  assertBytes(got.question, question, "question");
  assert.equal(got.after, 0, "read() after EOF is empty");
  assert.ok(got.atEof);
  assertBytes(await within(reader.read(), "the answer"), answer, "answer");
  assert.ok(reader.atEof());
  await closeClient(writer);
  assert.deepEqual(errors, []);
});

Deno.test("StreamWriter.waitClosed() resolves once the connection is closed, on both ends", async () => {
  const serverClosed = Promise.withResolvers<void>();
  const { server, errors } = await serve(async (reader, writer) => {
    await reader.read();
    writer.close();
    await writer.waitClosed();
    serverClosed.resolve();
  });
  await using _server = server;
  const [, writer] = await openConnection({ port: portOf(server) });
  assert.equal(writer.isClosing(), false);
  writer.close();
  assert.equal(writer.isClosing(), true);
  await within(writer.waitClosed(), "the client to close");
  await within(writer.waitClosed(), "waitClosed() once more");
  await within(serverClosed.promise, "the server to close");
  assert.deepEqual(errors, []);
});

Deno.test("startServer() reports what clientConnected throws or rejects with to onError, and closes only that connection", async (t) => {
  for (const how of ["throws", "rejects"] as const) {
    await t.step(`clientConnected ${how}`, async () => {
      const boom = new Error(`boom: ${how}`);
      let connections = 0;
      const { server, errors } = await serve((reader, writer) => {
        connections++;
        if (connections > 1) return echoLines(reader, writer);
        if (how === "throws") throw boom;
        return Promise.reject(boom);
      });
      await using _server = server;
      const port = portOf(server);

      const [failed, failedWriter] = await openConnection({ port });
      const eof = await within(failed.read(), "the failed connection's EOF");
      assert.equal(eof.byteLength, 0);
      await closeClient(failedWriter);

      const [reader, writer] = await openConnection({ port });
      writer.write(bytes("still served\n"));
      assert.equal(
        text(await within(reader.readline(), "the echo")),
        "still served\n",
      );
      writer.writeEof();
      assert.equal((await within(reader.read(), "EOF")).byteLength, 0);
      await closeClient(writer);

      assert.equal(connections, 2);
      assert.equal(errors.length, 1);
      assert.equal(errors[0]!.error, boom);
      assert.match(errors[0]!.context.message, /clientConnected/);
    });
  }
});

Deno.test("startUnixServer() and openUnixConnection() echo over a Unix socket", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/streams.sock`;
    const { errors, onError } = errorCollector();
    {
      await using _server = await startUnixServer(echoLines, { path, onError });
      const [reader, writer] = await openUnixConnection({ path });
      writer.write(bytes("over unix\n"));
      assert.equal(
        text(await within(reader.readline(), "the echo")),
        "over unix\n",
      );
      writer.writeEof();
      assert.equal((await within(reader.read(), "EOF")).byteLength, 0);
      await closeClient(writer);
    }
    assert.deepEqual(errors, []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("StreamWriter.drain() waits while the write buffer is over the high-water mark", async (t) => {
  await t.step("resolves at once when writing is not paused", async () => {
    const { server, errors } = await serve(countBytes);
    await using _server = server;
    const [reader, writer] = await openConnection({ port: portOf(server) });
    writer.write(bytes("small"));
    assert.equal(await hasSettled(writer.drain()), true);
    writer.writeEof();
    assert.equal(text(await within(reader.readline(), "the count")), "5\n");
    await closeClient(writer);
    assert.deepEqual(errors, []);
  });

  for (const waiters of [1, 100]) {
    await t.step(
      `with setWriteBufferLimits({ high: 0 }), ${waiters} drain() calls wait until every byte is flushed`,
      async () => {
        // The server reads nothing until told: more than the kernel buffers
        // and the server's reader hold stays in the client's write buffer.
        const reading = Promise.withResolvers<void>();
        const { server, errors } = await serve(async (reader, writer) => {
          await reading.promise;
          await countBytes(reader, writer);
        });
        await using _server = server;
        const [reader, writer] = await openConnection({ port: portOf(server) });
        writer.transport.setWriteBufferLimits({ high: 0 });
        writer.write(BLOCKED);
        assert.equal(writer.transport.getWriteBufferSize(), BLOCKED.byteLength);
        const drains = Array.from({ length: waiters }, () => writer.drain());
        assert.equal(await hasSettled(Promise.race(drains)), false);
        reading.resolve();
        await within(Promise.all(drains), "every drain()");
        assert.equal(writer.transport.getWriteBufferSize(), 0);
        writer.writeEof();
        assert.equal(
          text(await within(reader.readline(), "the count")),
          `${BLOCKED.byteLength}\n`,
        );
        await closeClient(writer);
        assert.deepEqual(errors, []);
      },
    );
  }
});

Deno.test("StreamWriter.drain() rejects once the connection is lost", async (t) => {
  await t.step("after close(): ConnectionReset", async () => {
    const { server, errors } = await serve(countBytes);
    await using _server = server;
    const [, writer] = await openConnection({ port: portOf(server) });
    await closeClient(writer);
    await assert.rejects(writer.drain(), Deno.errors.ConnectionReset);
    assert.deepEqual(errors, []);
  });

  await t.step(
    "with the read side's exception, once there is one",
    async () => {
      const { server, errors } = await serve(countBytes);
      await using _server = server;
      const [reader, writer] = await openConnection({ port: portOf(server) });
      const boom = new Error("boom");
      reader.setException(boom);
      assert.equal(await rejection(writer.drain()), boom);
      await closeClient(writer);
      assert.deepEqual(errors, []);
    },
  );

  await t.step(
    "after the peer resets: a waiting drain() and later ones reject with the connection's error",
    async () => {
      // The server stops after one byte; the rest of 16 MiB, more than the
      // kernel buffers hold, is unread when it aborts: the peer resets.
      const { server, errors } = await serve(async (reader, writer) => {
        await reader.readexactly(1);
        writer.transport.abort();
      });
      await using _server = server;
      const [reader, writer] = await openConnection({ port: portOf(server) });
      writer.transport.setWriteBufferLimits({ high: 0 });
      writer.write(new Uint8Array(16 * 1024 * 1024));
      const waiting = rejection(writer.drain());
      const lost = await within(
        rejection(writer.waitClosed()),
        "the connection to be lost",
      );
      assert.ok(lost instanceof Error);
      assert.equal(reader.exception(), lost);
      assert.equal(await within(waiting, "the waiting drain()"), lost);
      assert.equal(await rejection(writer.drain()), lost);
      assert.equal(await rejection(reader.read()), lost);
      assert.deepEqual(errors, []);
    },
  );
});

// Web Streams.

Deno.test("StreamReader.readable piped into StreamWriter.writable echoes every byte", async () => {
  const { server, errors } = await serve(async (reader, writer) => {
    await reader.readable.pipeTo(writer.writable);
    writer.close();
  });
  await using _server = server;
  const [reader, writer] = await openConnection({ port: portOf(server) });
  const payload = pattern(384 * 1024, 9);
  const received = collectReadable(reader.readable);
  const sink = writer.writable.getWriter();
  for (let offset = 0; offset < payload.byteLength; offset += 10_000) {
    await within(
      sink.write(payload.subarray(offset, offset + 10_000)),
      "a write to the writable",
    );
  }
  await within(sink.close(), "the writable to close");
  assertBytes(await within(received, "the echo"), payload, "echo");
  assert.ok(reader.atEof());
  await closeClient(writer);
  assert.deepEqual(errors, []);
});

Deno.test("StreamReader.readable closes at EOF, errors with the reader's exception, and closes the transport when cancelled", async (t) => {
  await t.step("closes at EOF", async () => {
    const reader = new StreamReader();
    const collected = collectReadable(reader.readable);
    reader.feedData(bytes("some "));
    assert.equal(await hasSettled(collected), false);
    reader.feedData(bytes("bytes"));
    reader.feedEof();
    assert.equal(text(await collected), "some bytes");
  });

  await t.step("errors with the reader's exception", async () => {
    const reader = new StreamReader();
    const boom = new Error("boom");
    const collected = collectReadable(reader.readable);
    assert.equal(await hasSettled(collected), false);
    reader.setException(boom);
    assert.equal(await rejection(collected), boom);
  });

  await t.step("cancelling it closes the transport", async () => {
    const [reader, transport] = fakeConnected(DEFAULT_LIMIT);
    await reader.readable.cancel();
    assert.equal(transport.closes, 1);
  });

  await t.step("cancelling it closes a real connection", async () => {
    const { server, errors } = await serve(countBytes);
    await using _server = server;
    const [reader, writer] = await openConnection({ port: portOf(server) });
    await reader.readable.cancel();
    assert.ok(writer.isClosing());
    await within(writer.waitClosed(), "the connection to close");
    assert.deepEqual(errors, []);
  });
});

// Argument checks.

Deno.test("StreamReader, readuntil() and startServer() reject bad arguments", async (t) => {
  for (const limit of [0, -1, 1.5, NaN, Infinity]) {
    await t.step(`StreamReader limit ${limit} is a RangeError`, () => {
      assert.throws(() => new StreamReader(limit), RangeError);
    });
  }

  await t.step("the default limit is 64 KiB", () => {
    assert.equal(DEFAULT_LIMIT, 64 * 1024);
    assert.equal(new StreamReader().limit, DEFAULT_LIMIT);
  });

  await t.step(
    "readuntil() with an empty separator or an empty array is a TypeError",
    async () => {
      const reader = new StreamReader();
      reader.feedData(bytes("data\n"));
      await assert.rejects(reader.readuntil(new Uint8Array(0)), TypeError);
      await assert.rejects(reader.readuntil([]), TypeError);
      await assert.rejects(
        reader.readuntil([bytes("\n"), new Uint8Array(0)]),
        TypeError,
      );
      assert.equal(text(await reader.read(10)), "data\n", "nothing consumed");
    },
  );

  await t.step(
    "startServer() and startUnixServer() with a callback that is not a function reject with TypeError",
    async () => {
      const notAFunction = "callback" as unknown as ClientConnected;
      await assert.rejects(() => startServer(notAFunction, LOCAL), TypeError);
      const dir = await Deno.makeTempDir();
      try {
        await assert.rejects(
          () => startUnixServer(notAFunction, { path: `${dir}/never.sock` }),
          TypeError,
        );
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  );

  await t.step(
    "startServer() with a limit that is not a positive integer rejects with RangeError",
    async () => {
      await assert.rejects(
        () => startServer(echoLines, { ...LOCAL, limit: 0 }),
        RangeError,
      );
    },
  );
});

Deno.test("StreamReader hands out a fed chunk read whole without a copy, and never writes into it", async () => {
  const reader = new StreamReader(1024);
  const chunk = pattern(100, 41);
  reader.feedData(chunk);
  const whole = await reader.read(1000);
  assert.equal(whole.buffer, chunk.buffer, "a view of the fed chunk");
  assertBytes(whole, pattern(100, 41));

  const first = pattern(10, 42);
  reader.feedData(first);
  const part = await reader.read(4);
  reader.feedData(pattern(10, 43));
  reader.feedData(pattern(10, 44));
  const rest = await reader.read(1000);
  assertBytes(part, pattern(10, 42).subarray(0, 4), "first part");
  assertBytes(
    rest,
    concat([
      pattern(10, 42).subarray(4),
      pattern(10, 43),
      pattern(10, 44),
    ]),
    "the rest",
  );
  assertBytes(first, pattern(10, 42), "the fed chunk is untouched");
  assertBytes(whole, pattern(100, 41), "what was handed out is untouched");
});
