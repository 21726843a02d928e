import assert from "node:assert/strict";
import {
  IncompleteReadError,
  LimitOverrunError,
  StreamReader,
} from "../../mod.ts";
import {
  assertBytes,
  bytes,
  concat,
  pattern,
  random,
  text,
} from "../_test_utils.ts";
import {
  collectLines,
  fakeConnected,
  hasSettled,
  rejection,
} from "./_streams_utils.ts";

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

  for (const n of [NaN, 0.5, -1.5, Infinity, -Infinity]) {
    await t.step(
      `read(${n}) is a RangeError and consumes nothing`,
      async () => {
        const [reader, calls] = fakeConnected(4);
        reader.feedData(bytes("hello world\n"));
        assert.equal(calls.pauses, 1, "over twice the limit");
        await assert.rejects(reader.read(n), RangeError);
        assert.equal(text(await reader.readexactly(5)), "hello");
        assert.equal(calls.resumes, 0, "7 bytes left: still over the limit");
        assert.equal(text(await reader.readexactly(7)), " world\n");
        assert.equal(calls.resumes, 1);
      },
    );
  }

  for (
    const [name, n] of [["a string", "5"], ["null", null], ["a bigint", 5n]]
  ) {
    await t.step(`read(n) with ${name} is a TypeError`, async () => {
      const reader = new StreamReader();
      reader.feedData(bytes("abc"));
      await assert.rejects(reader.read(n as unknown as number), TypeError);
      assert.equal(text(await reader.read(3)), "abc", "nothing consumed");
    });
  }
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
    await assert.rejects(reader.readexactly(NaN), RangeError);
    assert.equal(text(await reader.read(3)), "abc", "nothing was consumed");
  });

  await t.step("an n that is not a number is a TypeError", async () => {
    const reader = new StreamReader();
    reader.feedData(bytes("abc"));
    await assert.rejects(
      reader.readexactly("2" as unknown as number),
      TypeError,
    );
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
    "a read woken by data it cannot finish with rejects, if the exception came in the same turn",
    async () => {
      const reads = [
        (reader: StreamReader) => reader.readexactly(10),
        (reader: StreamReader) => reader.readuntil(bytes("--")),
        (reader: StreamReader) => reader.readline(),
      ];
      for (const read of reads) {
        const reader = new StreamReader();
        const boom = new Error("boom");
        const pending = read(reader);
        assert.equal(await hasSettled(pending), false);
        reader.feedData(bytes("part"));
        reader.setException(boom);
        assert.equal(await rejection(pending), boom);
      }
    },
  );

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
      const got = await pending;
      if (op >= 2) {
        // A separator ends it, and none ends earlier (asyncio's rule).
        const seps = op === 2 ? [separators[0]!] : separators;
        const endsAt = (end: number) =>
          seps.some((sep) =>
            end >= sep.byteLength &&
            sep.every((byte, k) => got[end - sep.byteLength + k] === byte)
          );
        assert.ok(endsAt(got.byteLength), "ends with a separator");
        for (let end = 1; end < got.byteLength; end++) {
          assert.ok(!endsAt(end), `a separator ends earlier, at ${end}`);
        }
      }
      out.push(got);
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
