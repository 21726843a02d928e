import assert from "node:assert/strict";
import {
  BufferedProtocolBase,
  connectReadPipe,
  connectWritePipe,
  ProtocolBase,
} from "../../mod.ts";
import {
  assertBytes,
  bytes,
  pattern,
  RecordingProtocol,
  text,
  within,
} from "../_test_utils.ts";

/** A child that writes `size` pattern bytes to stdout. */
function writer(size: number): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `const n = ${size}; const b = new Uint8Array(n);
       let s = 1; for (let i = 0; i < n; i++) { s ^= s << 13; s ^= s >>> 17; s ^= s << 5; b[i] = s & 255; }
       let o = 0; while (o < n) o += await Deno.stdout.write(b.subarray(o));`,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
}

Deno.test("connectReadPipe() over a child's stdout delivers every byte, then eofReceived, then connectionLost", async () => {
  const child = writer(1024 * 1024);
  const protocol = new RecordingProtocol();
  const [transport] = await connectReadPipe(() => protocol, child.stdout);
  assert.equal(transport.getExtraInfo("pipe"), child.stdout);
  await within(protocol.waitFor("connectionLost"), "the pipe's end");
  assertBytes(protocol.received(), pattern(1024 * 1024));
  assert.deepEqual(
    protocol.calls.filter((call) => call !== "dataReceived"),
    ["connectionMade", "eofReceived", "connectionLost"],
  );
  assert.equal(protocol.lostWith, undefined);
  await child.status;
});

Deno.test("connectReadPipe() pauses and resumes reading without losing a byte", async () => {
  const child = writer(512 * 1024);
  const protocol = new RecordingProtocol();
  const [transport] = await connectReadPipe(() => protocol, child.stdout);
  await within(protocol.waitFor("dataReceived"), "the first chunk");
  transport.pauseReading();
  assert.equal(transport.isReading(), false);
  const seen = protocol.count("dataReceived");
  await new Promise((resolve) => setTimeout(resolve, 20));
  // A read in flight may still land; nothing after it.
  assert.ok(protocol.count("dataReceived") <= seen + 1);
  transport.resumeReading();
  await within(protocol.waitFor("connectionLost"), "the pipe's end");
  assertBytes(protocol.received(), pattern(512 * 1024));
  await child.status;
});

Deno.test("connectReadPipe() drives a BufferedProtocol from a file", async () => {
  const path = await Deno.makeTempFile();
  try {
    const data = pattern(300_000, 5);
    await Deno.writeFile(path, data);
    const file = await Deno.open(path, { read: true });
    const chunks: Uint8Array[] = [];
    const done = Promise.withResolvers<void>();
    class Collect extends BufferedProtocolBase {
      override bufferUpdated(nbytes: number): void {
        chunks.push(this.buffer.slice(0, nbytes));
      }
      override connectionLost(): void {
        done.resolve();
      }
    }
    await connectReadPipe(() => new Collect(1000), file);
    await within(done.promise, "the file's end");
    const received = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let offset = 0;
    for (const chunk of chunks) {
      received.set(chunk, offset);
      offset += chunk.length;
    }
    assertBytes(received, data);
    assert.ok(chunks.every((chunk) => chunk.byteLength <= 1000));
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("connectReadPipe() and connectWritePipe() over a FIFO move bytes from one end to the other", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/fifo`;
    const made = await new Deno.Command("mkfifo", { args: [path] }).output();
    assert.equal(made.code, 0);
    const [reading, writing] = await Promise.all([
      Deno.open(path, { read: true }),
      Deno.open(path, { write: true }),
    ]);
    const reader = new RecordingProtocol();
    await connectReadPipe(() => reader, reading);
    const [transport] = await connectWritePipe(
      () => new ProtocolBase(),
      writing,
    );
    const data = pattern(200_000, 9);
    transport.write(data);
    transport.close();
    await within(reader.waitFor("connectionLost"), "the FIFO's end");
    assertBytes(reader.received(), data);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("connectWritePipe() over a child's stdin: flow control while it does not read, every byte once it does", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `await new Promise((r) => setTimeout(r, 100));
       let n = 0; const b = new Uint8Array(65536);
       for (;;) { const r = await Deno.stdin.read(b); if (r === null) break; n += r; }
       console.log(n);`,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const calls: string[] = [];
  const lost = Promise.withResolvers<void>();
  const [transport] = await connectWritePipe(() => ({
    pauseWriting: () => void calls.push("pauseWriting"),
    resumeWriting: () => void calls.push("resumeWriting"),
    connectionLost: () => lost.resolve(),
  }), child.stdin);
  transport.setWriteBufferLimits({ high: 64 * 1024 });
  const size = 4 * 1024 * 1024;
  for (let offset = 0; offset < size; offset += 256 * 1024) {
    transport.write(new Uint8Array(256 * 1024));
  }
  assert.deepEqual(calls, ["pauseWriting"]);
  transport.close();
  await within(lost.promise, "the pipe's end");
  assert.deepEqual(calls, ["pauseWriting", "resumeWriting"]);
  const { stdout } = await child.output();
  assert.equal(text(stdout).trim(), String(size));
});

Deno.test("connectWritePipe(): writeEof() closes the pipe, and a write after it is a TypeError", async () => {
  const chunks: Uint8Array[] = [];
  let closed = false;
  const sink = new WritableStream<Uint8Array>({
    write(chunk) {
      chunks.push(chunk.slice());
    },
    close() {
      closed = true;
    },
  });
  const lost = Promise.withResolvers<void>();
  const [transport] = await connectWritePipe(() => ({
    connectionLost: () => lost.resolve(),
  }), sink);
  transport.write(bytes("last words"));
  transport.writeEof();
  assert.equal(transport.isClosing(), true);
  assert.throws(() => transport.write(bytes("more")), TypeError);
  await within(lost.promise, "the pipe's end");
  assert.equal(closed, true);
  assert.equal(text(chunks[0]!), "last words");
});

Deno.test("connectReadPipe() and connectWritePipe() reject what they cannot use", async () => {
  await assert.rejects(
    connectReadPipe(() => new ProtocolBase(), {} as never),
    TypeError,
  );
  await assert.rejects(
    connectWritePipe(() => new ProtocolBase(), 42 as never),
    TypeError,
  );
  await assert.rejects(
    connectReadPipe(() => ({}) as never, ReadableStream.from([])),
    TypeError,
  );
});

Deno.test("connectReadPipe() and connectWritePipe() reject an async factory, saying it returned a Promise", async () => {
  const returnedPromise = (error: unknown) =>
    error instanceof TypeError &&
    /the factory returned a Promise/.test(error.message);
  const source = ReadableStream.from<Uint8Array>([]);
  await assert.rejects(
    connectReadPipe(
      (() => Promise.resolve(new ProtocolBase())) as never,
      source,
    ),
    returnedPromise,
  );
  const sink = new WritableStream<Uint8Array>();
  await assert.rejects(
    connectWritePipe(
      (() => Promise.resolve(new ProtocolBase())) as never,
      sink,
    ),
    returnedPromise,
  );
  assert.equal(source.locked, false);
  assert.equal(sink.locked, false);
});

Deno.test("connectReadPipe(): a reader object's bad count fails only its own pipe, and leaves the shared read memory intact", async (t) => {
  // A kept chunk from another pipe: a bad count must not reach the memory
  // it lives in.
  const kept = new RecordingProtocol();
  await connectReadPipe(
    () => kept,
    ReadableStream.from([bytes("keep-me-intact")]),
  );
  await within(kept.waitFor("connectionLost"), "the good pipe's end");
  const cases: [string, unknown, ErrorConstructor][] = [
    ["negative", -8, RangeError],
    ["NaN", NaN, RangeError],
    ["not whole", 1.5, RangeError],
    ["past the buffer", 1 << 30, RangeError],
    ["a string", "5", TypeError],
    ["nothing", undefined, TypeError],
  ];
  for (const [name, count, Class] of cases) {
    await t.step(name, async () => {
      const protocol = new RecordingProtocol();
      await connectReadPipe(() => protocol, {
        read: () => Promise.resolve(count as number),
      });
      await within(protocol.waitFor("connectionLost"), "the bad pipe's end");
      assert.ok(protocol.lostWith instanceof Class, String(protocol.lostWith));
      assert.equal(protocol.count("dataReceived"), 0);
    });
  }
  const other = new RecordingProtocol();
  await connectReadPipe(() => other, ReadableStream.from([bytes("after")]));
  await within(other.waitFor("connectionLost"), "the last pipe's end");
  assert.equal(text(other.received()), "after");
  assert.equal(text(kept.received()), "keep-me-intact");
});

Deno.test("connectReadPipe(): a read of 0 bytes is the end, as in asyncio", async () => {
  const protocol = new RecordingProtocol();
  let reads = 0;
  await connectReadPipe(() => protocol, {
    read(p: Uint8Array) {
      if (++reads > 1) return Promise.resolve(0);
      p.set(bytes("last"));
      return Promise.resolve(4);
    },
  });
  await within(protocol.waitFor("connectionLost"), "the pipe's end");
  assert.equal(text(protocol.received()), "last");
  assert.deepEqual(protocol.calls.slice(-2), ["eofReceived", "connectionLost"]);
  assert.equal(protocol.lostWith, undefined);
  assert.equal(reads, 2);
});

Deno.test("connectWritePipe(): a writer object that resolves with no progress or a bad count fails its pipe instead of spinning", async (t) => {
  const cases: [string, unknown, ErrorConstructor][] = [
    ["zero", 0, RangeError],
    ["negative", -1, RangeError],
    ["more than it was given", 1000, RangeError],
    ["nothing (a forgotten return)", undefined, TypeError],
  ];
  for (const [name, count, Class] of cases) {
    await t.step(name, async () => {
      const protocol = new RecordingProtocol();
      const [transport] = await connectWritePipe(() => protocol, {
        write: () => Promise.resolve(count as number),
      });
      transport.write(new Uint8Array(100));
      await within(protocol.waitFor("connectionLost"), "the bad pipe's end");
      assert.ok(protocol.lostWith instanceof Class, String(protocol.lostWith));
    });
  }
});

Deno.test("connectWritePipe(): abort() while a write is in flight ends the pipe at once, whatever the sink", async (t) => {
  const never = () => new Promise<never>(() => {});
  const sinks = {
    "a WritableStream whose write never ends": () =>
      new WritableStream<Uint8Array>({ write: never }),
    "a writer object whose write never ends": () => ({ write: never }),
  };
  for (const [name, sink] of Object.entries(sinks)) {
    await t.step(name, async () => {
      const lost = Promise.withResolvers<Error | undefined>();
      const [transport] = await connectWritePipe(() => ({
        connectionLost: (exc: Error | undefined) => lost.resolve(exc),
      }), sink());
      transport.write(bytes("stuck"));
      // The pump starts after this task: its write is in flight now.
      await new Promise((resolve) => setTimeout(resolve, 0));
      transport.abort();
      assert.equal(
        await within(lost.promise, "connectionLost after abort()"),
        undefined,
      );
      assert.equal(transport.getWriteBufferSize(), 0);
    });
  }
  await t.step("a child's stdin that the child does not read", async () => {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["eval", "await new Promise((r) => setTimeout(r, 60_000));"],
      stdin: "piped",
      stdout: "null",
      stderr: "inherit",
    }).spawn();
    const lost = Promise.withResolvers<void>();
    const [transport] = await connectWritePipe(() => ({
      connectionLost: () => lost.resolve(),
    }), child.stdin);
    // More than the OS pipe holds: the write waits for the child.
    transport.write(new Uint8Array(4 * 1024 * 1024));
    await new Promise((resolve) => setTimeout(resolve, 0));
    transport.abort();
    try {
      await within(lost.promise, "connectionLost after abort()");
    } finally {
      child.kill();
      await child.status;
    }
  });
});

Deno.test("connectReadPipe(): close() while a read waits ends the pipe at once", async () => {
  const protocol = new RecordingProtocol();
  const [transport] = await connectReadPipe(() => protocol, {
    read: () => new Promise<never>(() => {}),
  });
  await new Promise((resolve) => setTimeout(resolve, 0));
  transport.close();
  await within(
    protocol.waitFor("connectionLost"),
    "connectionLost after close()",
  );
  assert.deepEqual(protocol.calls, ["connectionMade", "connectionLost"]);
});

Deno.test("connectReadPipe() and connectWritePipe() lock a stream only once the protocol is made, and close it if connectionMade throws", async (t) => {
  const boom = new Error("factory failed");
  const badFactories: [string, () => unknown, (error: unknown) => boolean][] = [
    ["a factory that throws", () => {
      throw boom;
    }, (error) => error === boom],
    ["a factory that makes a number", () => 5, (e) => e instanceof TypeError],
    ["a factory that makes null", () => null, (e) => e instanceof TypeError],
  ];

  for (const [what, factory, expected] of badFactories) {
    await t.step(`read pipe, ${what}: the stream stays unlocked`, async () => {
      const source = ReadableStream.from([bytes("still here")]);
      await assert.rejects(
        connectReadPipe(factory as () => ProtocolBase, source),
        expected,
      );
      assert.equal(source.locked, false);
      const reader = source.getReader();
      assert.equal(text((await reader.read()).value!), "still here");
      reader.releaseLock();
    });

    await t.step(`write pipe, ${what}: the stream stays unlocked`, async () => {
      const chunks: string[] = [];
      const sink = new WritableStream<Uint8Array>({
        write(chunk) {
          chunks.push(text(chunk));
        },
      });
      await assert.rejects(
        connectWritePipe(factory as () => ProtocolBase, sink),
        expected,
      );
      assert.equal(sink.locked, false);
      const writer = sink.getWriter();
      await writer.write(bytes("still usable"));
      writer.releaseLock();
      assert.deepEqual(chunks, ["still usable"]);
    });
  }

  await t.step(
    "a locked stream is a TypeError, before the factory runs",
    async () => {
      let made = 0;
      const factory = () => {
        made++;
        return new ProtocolBase();
      };
      const source = ReadableStream.from([bytes("x")]);
      const reader = source.getReader();
      await assert.rejects(
        connectReadPipe(factory, source),
        (error: unknown) =>
          error instanceof TypeError &&
          /^Cannot connect read pipe: .*locked/.test(error.message),
      );
      reader.releaseLock();
      const sink = new WritableStream<Uint8Array>();
      const writer = sink.getWriter();
      await assert.rejects(
        connectWritePipe(factory, sink),
        (error: unknown) =>
          error instanceof TypeError &&
          /^Cannot connect write pipe: .*locked/.test(error.message),
      );
      writer.releaseLock();
      assert.equal(made, 0);
    },
  );

  await t.step(
    "connectionMade throws: the read stream is cancelled, the write stream aborted",
    async () => {
      const failure = new Error("connectionMade failed");
      const cancelled = Promise.withResolvers<void>();
      const source = new ReadableStream<Uint8Array>({
        cancel() {
          cancelled.resolve();
        },
      });
      await assert.rejects(
        connectReadPipe(
          () => ({
            connectionMade() {
              throw failure;
            },
            dataReceived() {},
          }),
          source,
          { onError() {} },
        ),
        (error) => error === failure,
      );
      await within(cancelled.promise, "the source's cancel");

      const aborted = Promise.withResolvers<void>();
      const sink = new WritableStream<Uint8Array>({
        abort() {
          aborted.resolve();
        },
      });
      await assert.rejects(
        connectWritePipe(
          () => ({
            connectionMade() {
              throw failure;
            },
          }),
          sink,
          { onError() {} },
        ),
        (error) => error === failure,
      );
      await within(aborted.promise, "the sink's abort");
    },
  );
});
