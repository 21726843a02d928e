import assert from "node:assert/strict";
import { openConnection, startServer, StreamReader } from "../../mod.ts";
import { bytes, text, within } from "../_test_utils.ts";
import { hasSettled } from "./_streams_utils.ts";

Deno.test("StreamReader reads take a signal: aborting rejects that read and the next read gets the next data", async (t) => {
  const reads: [
    string,
    (reader: StreamReader, signal: AbortSignal) => Promise<Uint8Array>,
  ][] = [
    ["read(n)", (reader, signal) => reader.read(100, { signal })],
    ["readline()", (reader, signal) => reader.readline({ signal })],
    [
      "readuntil()",
      (reader, signal) => reader.readuntil(bytes("\n"), { signal }),
    ],
    ["readexactly()", (reader, signal) => reader.readexactly(6, { signal })],
  ];
  for (const [name, start] of reads) {
    await t.step(name, async () => {
      const reader = new StreamReader();
      reader.feedData(bytes("par"));
      const controller = new AbortController();
      const reason = new Error("timed out");
      const pending = name === "read(n)"
        // read(n) returns what is there; wait on an empty buffer instead.
        ? (await reader.read(3), start(reader, controller.signal))
        : start(reader, controller.signal);
      controller.abort(reason);
      await assert.rejects(pending, (error) => error === reason);
      reader.feedData(bytes("tial\nnext\n"));
      const expected = name === "read(n)" ? "tial\nnext\n" : "partial\n";
      const first = name === "readexactly()"
        ? await reader.readexactly(8)
        : name === "read(n)"
        ? await reader.read(100)
        : await reader.readline();
      assert.equal(text(first), expected);
    });
  }

  await t.step(
    "read() until EOF, cancelled half-way, loses nothing",
    async () => {
      const reader = new StreamReader(4);
      const controller = new AbortController();
      const pending = reader.read(-1, { signal: controller.signal });
      reader.feedData(bytes("0123456789"));
      await new Promise((resolve) => setTimeout(resolve, 0));
      controller.abort();
      await assert.rejects(pending);
      reader.feedData(bytes("abc"));
      reader.feedEof();
      assert.equal(text(await reader.read()), "0123456789abc");
    },
  );

  await t.step(
    "an already aborted signal rejects at once, reading nothing",
    async () => {
      const reader = new StreamReader();
      reader.feedData(bytes("line\n"));
      await assert.rejects(
        reader.readline({ signal: AbortSignal.abort() }),
        DOMException,
      );
      assert.equal(text(await reader.readline()), "line\n");
    },
  );
});

Deno.test("StreamReader reads reject when aborted right after data woke them, and keep what arrived", async (t) => {
  const reads: [
    string,
    (reader: StreamReader, signal: AbortSignal) => Promise<Uint8Array>,
  ][] = [
    ["readexactly()", (reader, signal) => reader.readexactly(10, { signal })],
    [
      "readuntil()",
      (reader, signal) => reader.readuntil(bytes("\n"), { signal }),
    ],
    ["readline()", (reader, signal) => reader.readline({ signal })],
    ["read() until EOF", (reader, signal) => reader.read(-1, { signal })],
  ];
  for (const [name, start] of reads) {
    await t.step(name, async () => {
      const reader = new StreamReader();
      const controller = new AbortController();
      const reason = new Error("cancelled");
      const pending = start(reader, controller.signal);
      assert.equal(await hasSettled(pending), false);
      // Data wakes the read; the abort comes before the read runs again.
      reader.feedData(bytes("part"));
      controller.abort(reason);
      assert.equal(await hasSettled(pending), true, "the abort was missed");
      await assert.rejects(pending, (error) => error === reason);
      reader.feedData(bytes("ial\n"));
      reader.feedEof();
      assert.equal(text(await reader.read()), "partial\n");
    });
  }
});

Deno.test("StreamReader.readline() with AbortSignal.timeout() over a socket: a slow line times out, the reader goes on", async () => {
  const gate = Promise.withResolvers<void>();
  await using server = await startServer(async (_reader, writer) => {
    await gate.promise;
    writer.write(bytes("late line\n"));
    await writer.drain();
    writer.close();
  }, { hostname: "127.0.0.1", port: 0 });
  const [reader, writer] = await openConnection({
    port: server.addrs[0]!.port,
  });
  await assert.rejects(
    reader.readline({ signal: AbortSignal.timeout(20) }),
    (error: Error) => error.name === "TimeoutError",
  );
  gate.resolve();
  assert.equal(
    text(await within(reader.readline(), "the late line")),
    "late line\n",
  );
  writer.close();
  await writer.waitClosed();
});
