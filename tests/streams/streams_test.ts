import assert from "node:assert/strict";
import {
  type ClientConnected,
  DEFAULT_LIMIT,
  type ErrorHandler,
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
  NOT_BYTES,
  pattern,
  text,
  within,
} from "../_test_utils.ts";
import {
  collectLines,
  fakeConnected,
  hasSettled,
  rejection,
} from "./_streams_utils.ts";

// Helpers.

const LOCAL = { hostname: "127.0.0.1", port: 0 } as const;
/** More than loopback's kernel buffers take while the peer reads nothing. */
const BLOCKED = new Uint8Array(16 * 1024 * 1024);

/** The TCP port a server listens on. */
function portOf(server: Server<Deno.NetAddr>): number {
  return server.addrs[0]!.port;
}

/** `count` numbered lines of growing length, each ending in `\n`. */
function numberedLines(count: number): Uint8Array[] {
  return Array.from(
    { length: count },
    (_, i) => bytes(`line ${i}: ${"x".repeat(i % 257)}\n`),
  );
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
  const peer = writer.getExtraInfo("peername");
  assert.equal(peer?.transport, "tcp");
  assert.equal(peer.transport === "tcp" && peer.port, portOf(server));
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

Deno.test("startServer() with an onError that throws: both errors go to stderr, and the connection still closes", async (t) => {
  for (const how of ["throws", "rejects"] as const) {
    await t.step(`clientConnected ${how}`, async () => {
      const boom = new Error(`boom: ${how}`);
      const handlerFailure = new Error("onError failed");
      const printed: unknown[][] = [];
      const consoleError = console.error;
      console.error = (...args: unknown[]) => void printed.push(args);
      try {
        await using server = await startServer((reader) => {
          if (how === "throws") throw boom;
          return reader.readline().then(() => Promise.reject(boom));
        }, {
          ...LOCAL,
          onError: () => {
            throw handlerFailure;
          },
        });
        const [reader, writer] = await openConnection({ port: portOf(server) });
        writer.write(bytes("go\n"));
        const eof = await within(reader.read(), "the failed connection's EOF");
        assert.equal(eof.byteLength, 0);
        await closeClient(writer);
      } finally {
        console.error = consoleError;
      }
      assert.deepEqual(printed.map((args) => args[1]), [handlerFailure, boom]);
      assert.match(String(printed[0]![0]), /onError/);
      assert.match(String(printed[1]![0]), /clientConnected/);
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

  for (const [name, value] of NOT_BYTES) {
    await t.step(
      `feedData() with ${name} is a TypeError, and the reader goes on`,
      async () => {
        const reader = new StreamReader();
        reader.feedData(bytes("kept "));
        assert.throws(
          () => reader.feedData(value as Uint8Array),
          (error: Error) =>
            error instanceof TypeError && /data/.test(error.message),
        );
        reader.feedData(bytes("and more"));
        reader.feedEof();
        assert.equal(text(await reader.read()), "kept and more");
      },
    );

    await t.step(
      `readuntil() with ${name} as a separator, alone or in an array, is a TypeError`,
      async () => {
        const reader = new StreamReader();
        reader.feedData(bytes("data\n"));
        // Alone, undefined is the default separator.
        const alone = value === undefined ? [] : [value];
        for (const separator of [...alone, [bytes("\n"), value]]) {
          await assert.rejects(
            reader.readuntil(separator as Uint8Array),
            (error: Error) =>
              error instanceof TypeError && /separator/.test(error.message),
          );
        }
        assert.equal(
          text(await reader.readline()),
          "data\n",
          "nothing consumed",
        );
      },
    );
  }

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
    "startServer(), startUnixServer(), openConnection() and openUnixConnection() with an onError that is not a function reject with TypeError before listening or connecting",
    async () => {
      const onError = 5 as unknown as ErrorHandler;
      const namesOnError = (error: Error) =>
        error instanceof TypeError && /onError/.test(error.message);
      await assert.rejects(
        () => startServer(echoLines, { ...LOCAL, onError }),
        namesOnError,
      );
      const dir = await Deno.makeTempDir();
      try {
        const path = `${dir}/never.sock`;
        await assert.rejects(
          () => startUnixServer(echoLines, { path, onError }),
          namesOnError,
        );
        await assert.rejects(Deno.lstat(path), Deno.errors.NotFound);
        await assert.rejects(
          () => openUnixConnection({ path, onError }),
          namesOnError,
        );
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
      const { server, errors } = await serve(echoLines);
      await using _server = server;
      await assert.rejects(
        () => openConnection({ port: portOf(server), onError }),
        namesOnError,
      );
      assert.deepEqual(errors, []);
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
