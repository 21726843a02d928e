import assert from "node:assert/strict";
import {
  connectWritePipe,
  createConnection,
  createServer,
  ProtocolBase,
  sendfile,
  subprocessExec,
  SubprocessProtocolBase,
} from "../../mod.ts";
import { MemoryTransport } from "../../testing/mod.ts";
import {
  assertBytes,
  concat,
  pattern,
  quietPeriod,
  RecordingProtocol,
  within,
} from "../_test_utils.ts";

const LOCAL = { hostname: "127.0.0.1", port: 0 } as const;

async function withFile<T>(
  data: Uint8Array,
  use: (path: string) => Promise<T>,
): Promise<T> {
  const path = await Deno.makeTempFile();
  try {
    await Deno.writeFile(path, data);
    return await use(path);
  } finally {
    await Deno.remove(path);
  }
}

Deno.test("sendfile() sends a whole file, or a range of it, through a connection and returns the bytes sent", async (t) => {
  const data = pattern(3 * 1024 * 1024 + 17, 4);
  for (
    const [name, options, expected] of [
      ["the whole file", undefined, data],
      ["from an offset", { offset: 1000 }, data.subarray(1000)],
      ["a range", { offset: 5, count: 300_000 }, data.subarray(5, 300_005)],
      [
        "a count past the end",
        { offset: data.length - 10, count: 100 },
        data.subarray(data.length - 10),
      ],
    ] as const
  ) {
    await t.step(name, async () => {
      const receiver = new RecordingProtocol();
      await using server = await createServer(() => receiver, LOCAL);
      const [transport, protocol] = await createConnection(
        () => new RecordingProtocol(),
        {
          port: server.addrs[0]!.port,
        },
      );
      const sent = await withFile(data, async (path) => {
        using file = await Deno.open(path);
        return await sendfile(transport, file, options);
      });
      assert.equal(sent, expected.byteLength);
      assert.equal(transport.getProtocol(), protocol);
      transport.close();
      await within(receiver.waitFor("connectionLost"), "the receiver's end");
      assertBytes(receiver.received(), expected);
    });
  }
});

Deno.test("sendfile() waits on flow control: the write buffer stays near its high mark", async () => {
  const data = pattern(8 * 1024 * 1024, 2);
  const chunks: Uint8Array[] = [];
  let mostBuffered = 0;
  let release = Promise.withResolvers<void>();
  const sink = new WritableStream<Uint8Array>({
    async write(chunk) {
      chunks.push(chunk.slice());
      await release.promise; // A slow reader.
      release = Promise.withResolvers<void>();
    },
  });
  const [transport] = await connectWritePipe(() => new ProtocolBase(), sink);
  const timer = setInterval(() => {
    mostBuffered = Math.max(mostBuffered, transport.getWriteBufferSize());
    release.resolve();
  }, 1);
  try {
    const sent = await withFile(data, async (path) => {
      using file = await Deno.open(path);
      return await within(sendfile(transport, file), "sendfile", 30_000);
    });
    assert.equal(sent, data.byteLength);
  } finally {
    clearInterval(timer);
  }
  const lost = Promise.withResolvers<void>();
  transport.setProtocol({ connectionLost: () => lost.resolve() } as never);
  transport.close();
  release.resolve();
  const drain = setInterval(() => release.resolve(), 1);
  await within(lost.promise, "the pipe's end");
  clearInterval(drain);
  const total = chunks.reduce((n, chunk) => n + chunk.byteLength, 0);
  assert.equal(total, data.byteLength);
  assert.ok(mostBuffered <= 64 * 1024 + 256 * 1024, `buffered ${mostBuffered}`);
});

/**
 * A write pipe with `buffered` bytes written, whose peer takes `first` of
 * them (0: none), then stops reading. Resolves once a write is stuck;
 * `unstick()` fails it.
 */
async function stuckPipe(buffered: number, first: number) {
  const stuck = Promise.withResolvers<number>();
  const stuckWrite = Promise.withResolvers<void>();
  let taken = first === 0;
  const [transport, protocol] = await connectWritePipe(
    () => new RecordingProtocol(),
    {
      write(p: Uint8Array): Promise<number> {
        if (!taken) {
          taken = true;
          return Promise.resolve(Math.min(p.length, first));
        }
        stuckWrite.resolve();
        return stuck.promise;
      },
    },
  );
  transport.write(new Uint8Array(buffered));
  await within(stuckWrite.promise, "the stuck write");
  const unstick = () => stuck.reject(new Deno.errors.BrokenPipe("gone"));
  return { transport, protocol, unstick };
}

/** A file of `size` zero bytes that counts its reads. */
function countingFile(size: number) {
  const file = {
    reads: 0,
    position: 0,
    read(p: Uint8Array): Promise<number | null> {
      file.reads++;
      const n = Math.min(p.length, size - file.position);
      file.position += n;
      return Promise.resolve(n === 0 ? null : n);
    },
    seek: () => Promise.resolve(0),
  };
  return file;
}

Deno.test("sendfile() on a transport whose buffer is between its marks", async (t) => {
  await t.step(
    "paused since it went over high: one chunk, then it waits",
    async () => {
      // 100 KiB written, 60 KiB taken: 40 KiB left, over low (16 KiB), so
      // writing stays paused.
      const { transport, protocol, unstick } = await stuckPipe(
        100 * 1024,
        60 * 1024,
      );
      assert.equal(transport.getWriteBufferSize(), 40 * 1024);
      assert.equal(protocol.count("pauseWriting"), 1);
      assert.equal(protocol.count("resumeWriting"), 0);
      const file = countingFile(8 * 1024 * 1024);
      const sending = sendfile(transport, file).then(
        (sent) => `sent ${sent}`,
        (error) => `${error.name}`,
      );
      await quietPeriod();
      const reads = file.reads;
      const buffered = transport.getWriteBufferSize();
      transport.abort();
      unstick();
      const outcome = await within(sending, "sendfile's end");
      assert.equal(reads, 1);
      assert.equal(buffered, 40 * 1024 + 256 * 1024);
      // It was still waiting: the loss ends it.
      assert.equal(outcome, "BrokenPipe");
    },
  );

  await t.step(
    "not paused: it sends without waiting for a resume",
    async () => {
      // 40 KiB written at once: under high, so writing never paused.
      const { transport, protocol, unstick } = await stuckPipe(40 * 1024, 0);
      assert.equal(protocol.count("pauseWriting"), 0);
      const sent = await within(
        sendfile(transport, countingFile(10)),
        "sendfile",
      );
      assert.equal(sent, 10);
      assert.equal(transport.getWriteBufferSize(), 40 * 1024 + 10);
      transport.abort();
      unstick();
      await within(protocol.waitFor("connectionLost"), "the pipe's end");
    },
  );
});

Deno.test("sendfile() rejects when the connection is lost, and checks its arguments", async () => {
  await using server = await createServer(() => ({
    connectionMade(t) {
      t.abort();
    },
    dataReceived() {},
  }), LOCAL);
  const [transport] = await createConnection(() => new ProtocolBase(), {
    port: server.addrs[0]!.port,
  });
  await withFile(pattern(16 * 1024 * 1024, 1), async (path) => {
    using file = await Deno.open(path);
    await assert.rejects(within(sendfile(transport, file), "the rejection"));
    await assert.rejects(sendfile(transport, file), TypeError);
    await assert.rejects(sendfile(transport, file, { offset: -1 }), RangeError);
  });
});

Deno.test("sendfile(): a file whose read() resolves with a bad count rejects, and a read of 0 bytes is the end", async () => {
  const protocol = new RecordingProtocol();
  const [transport] = await connectWritePipe(() => protocol, {
    write: (p: Uint8Array) => Promise.resolve(p.byteLength),
  });
  const file = (count: unknown) => ({
    read: () => Promise.resolve(count as number),
    seek: () => Promise.resolve(0),
  });
  await assert.rejects(sendfile(transport, file(-8)), RangeError);
  await assert.rejects(sendfile(transport, file(NaN)), RangeError);
  await assert.rejects(sendfile(transport, file("5")), TypeError);
  assert.equal(await sendfile(transport, file(0)), 0);
  assert.equal(transport.getProtocol(), protocol);
  transport.close();
  await within(protocol.waitFor("connectionLost"), "the pipe's end");
});

Deno.test("sendfile() into a child's stdin: the child's protocol still gets its output, its pipes' ends and its exit", async () => {
  class Cat extends SubprocessProtocolBase {
    chunks: Uint8Array[] = [];
    calls: string[] = [];
    done = Promise.withResolvers<void>();
    override pipeDataReceived(fd: 1 | 2, data: Uint8Array): void {
      if (fd === 1) this.chunks.push(data.slice());
    }
    override pipeConnectionLost(fd: 0 | 1 | 2, exc: Error | undefined): void {
      super.pipeConnectionLost(fd, exc);
      this.calls.push(`pipeConnectionLost(${fd})`);
    }
    override processExited(): void {
      this.calls.push("processExited");
    }
    override connectionLost(exc: Error | undefined): void {
      super.connectionLost(exc);
      this.done.resolve();
    }
  }
  const data = pattern(600_000, 3);
  await withFile(data, async (path) => {
    const [transport, protocol] = await subprocessExec(
      () => new Cat(),
      "cat",
      [],
      {
        stdin: "piped",
        stdout: "piped",
        stderr: "null",
      },
    );
    const stdin = transport.getPipeTransport(0)!;
    using file = await Deno.open(path);
    assert.equal(await sendfile(stdin, file), data.byteLength);
    assert.equal(stdin.getProtocol(), protocol);
    stdin.close();
    await within(protocol.done.promise, "the child's end");
    assertBytes(concat(protocol.chunks), data);
    assert.ok(protocol.calls.includes("pipeConnectionLost(1)"));
    assert.ok(protocol.calls.includes("processExited"));
  });
});

Deno.test("sendfile() works with a frozen protocol object", async () => {
  const protocol = Object.freeze({ dataReceived() {}, connectionLost() {} });
  const transport = new MemoryTransport(protocol);
  const data = pattern(300_000, 5);
  await withFile(data, async (path) => {
    using file = await Deno.open(path);
    assert.equal(await sendfile(transport, file), data.byteLength);
  });
  assert.equal(transport.getProtocol(), protocol);
  assertBytes(transport.written(), data);
});
