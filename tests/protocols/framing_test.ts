import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  createConnection,
  createServer,
  subprocessExec,
  SubprocessProtocolBase,
} from "../../mod.ts";
import { MemoryTransport } from "../../testing/mod.ts";
import { FrameTooLongError } from "../../transports/errors.ts";
import {
  LengthPrefixedProtocol,
  type LengthPrefixedProtocolOptions,
  LineProtocol,
  type LineProtocolOptions,
} from "../../protocols/framing.ts";
import type { Protocol } from "../../protocols/protocol.ts";
import type {
  ReadTransport,
  StreamProtocol,
  Transport,
} from "../../transports/transport.ts";
import {
  assertBytes,
  bytes,
  concat,
  errorCollector,
  pattern,
  random,
  readExactly,
  readUntilClosed,
  Recorder,
  RecordingBufferedProtocol,
  RecordingProtocol,
  text,
  within,
  writeAll,
} from "../_test_utils.ts";

// Helpers.

const KiB = 1024;
const MiB = 1024 * KiB;

/** Splits `data` into views of 1 to `max` bytes, sizes drawn from `next`. */
function chunk(
  data: Uint8Array,
  next: (bound: number) => number,
  max: number,
): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (let offset = 0; offset < data.byteLength;) {
    const size = 1 + next(max);
    chunks.push(data.subarray(offset, offset + size));
    offset += size;
  }
  return chunks;
}

/** Every split of `data` into two chunks, then into three. */
function* splits(data: Uint8Array): Generator<Uint8Array[]> {
  const n = data.byteLength;
  for (let i = 1; i < n; i++) {
    yield [data.subarray(0, i), data.subarray(i)];
  }
  for (let i = 1; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      yield [data.subarray(0, i), data.subarray(i, j), data.subarray(j)];
    }
  }
}

/** Gives each chunk to `protocol.dataReceived`, each in a fresh array. */
function feed(protocol: Protocol, chunks: Iterable<Uint8Array>): void {
  for (const data of chunks) protocol.dataReceived(data.slice());
}

/**
 * Gives each chunk to `protocol.dataReceived` through one reused array, as
 * a transport may for a protocol that declares `transientData`.
 */
function feedReusing(protocol: Protocol, chunks: Uint8Array[]): void {
  const buffer = new Uint8Array(
    chunks.reduce((max, data) => Math.max(max, data.byteLength), 0),
  );
  for (const data of chunks) {
    buffer.fill(0xee);
    buffer.set(data);
    protocol.dataReceived(buffer.subarray(0, data.byteLength));
  }
}

/**
 * The lines of `stream` by the spec: each ends at the first occurrence of
 * `delimiter`; what follows the last delimiter is not a line.
 */
function referenceLines(stream: Uint8Array, delimiter: Uint8Array): string[] {
  const lines: string[] = [];
  let from = 0;
  for (let at = 0; at + delimiter.byteLength <= stream.byteLength;) {
    if (delimiter.every((byte, i) => stream[at + i] === byte)) {
      lines.push(text(stream.subarray(from, at)));
      from = at = at + delimiter.byteLength;
    } else {
      at++;
    }
  }
  return lines;
}

/** A random stream of short lines over `alphabet`, each with `delimiter`. */
function randomLines(
  next: (bound: number) => number,
  alphabet: string,
  delimiter: string,
  count: number,
): Uint8Array {
  let stream = "";
  for (let i = 0; i < count; i++) {
    const length = next(4) === 0 ? 0 : next(12);
    for (let j = 0; j < length; j++) stream += alphabet[next(alphabet.length)];
    stream += delimiter;
  }
  // A last line with no delimiter yet, sometimes.
  for (let j = next(4); j > 0; j--) stream += alphabet[next(alphabet.length)];
  return bytes(stream);
}

/** `payload` after its big-endian length in `prefixLength` bytes. */
function frame(payload: Uint8Array, prefixLength: 1 | 2 | 4): Uint8Array {
  const out = new Uint8Array(prefixLength + payload.byteLength);
  let length = payload.byteLength;
  for (let i = prefixLength - 1; i >= 0; i--) {
    out[i] = length % 256;
    length = Math.floor(length / 256);
  }
  out.set(payload, prefixLength);
  return out;
}

/** Keeps every line as delivered; over-long lines throw by default. */
class Lines extends LineProtocol {
  received: Uint8Array[] = [];

  constructor(options: LineProtocolOptions = {}) {
    super(options);
  }

  override lineReceived(line: Uint8Array): void {
    this.received.push(line);
  }

  get lines(): string[] {
    return this.received.map(text);
  }
}

/** {@linkcode Lines} that drops over-long lines and notes their lengths. */
class DroppingLines extends Lines {
  exceeded: number[] = [];

  override lineLengthExceeded(length: number): void {
    this.exceeded.push(length);
  }
}

/** Decodes each line during `lineReceived`, keeping no view of it. */
class TransientLines extends LineProtocol {
  override readonly transientData = true;
  lines: string[] = [];

  override lineReceived(line: Uint8Array): void {
    this.lines.push(text(line));
  }
}

/** Keeps every frame as delivered; over-long frames throw by default. */
class Frames extends LengthPrefixedProtocol {
  received: Uint8Array[] = [];

  constructor(options: LengthPrefixedProtocolOptions = {}) {
    super(options);
  }

  override frameReceived(frame: Uint8Array): void {
    this.received.push(frame);
  }

  get frames(): string[] {
    return this.received.map(text);
  }
}

/** {@linkcode Frames} that skips over-long frames and notes their lengths. */
class SkippingFrames extends Frames {
  exceeded: number[] = [];

  override frameLengthExceeded(length: number): void {
    this.exceeded.push(length);
  }
}

/** Skips an over-long frame, and pauses there. */
class PauseOnTooLong extends SkippingFrames {
  override frameLengthExceeded(length: number): void {
    super.frameLengthExceeded(length);
    this.pauseReading();
  }
}

/** Writes `lines` to `conn`, each with `"\n"`, and reads the echo back. */
async function echoLines(conn: Deno.Conn, lines: string[]): Promise<string> {
  const sent = bytes(lines.map((line) => `${line}\n`).join(""));
  const [, echoed] = await Promise.all([
    writeAll(conn, sent),
    readExactly(conn, sent.byteLength),
  ]);
  return text(echoed);
}

// Splitting.

Deno.test("LineProtocol.dataReceived() gives the same lines however the stream is chunked", async (t) => {
  const cases: {
    delimiter: string;
    alphabet: string;
    stream: string;
    lines: string[];
  }[] = [
    {
      delimiter: "\n",
      alphabet: "a\r\n",
      stream: "one\n\ntwo\r\n\n\rend",
      lines: ["one", "", "two\r", ""],
    },
    {
      delimiter: "\r\n",
      alphabet: "a\r\n",
      stream: "one\r\n\r\ntwo\r\r\n\n\r\nend\r",
      lines: ["one", "", "two\r", "\n"],
    },
    {
      delimiter: "aab",
      alphabet: "ab",
      stream: "xaaabaabbaabaa",
      lines: ["xa", "", "b"],
    },
    {
      delimiter: "\r\n\r\n",
      alphabet: "x\r\n",
      stream: "a\r\n\r\r\n\r\n\r\n\r\nb\r\n\r\n\r\n\r",
      lines: ["a\r\n\r", "", "b"],
    },
  ];

  for (const { delimiter, alphabet, stream, lines } of cases) {
    const name = JSON.stringify(delimiter);
    const delimiterBytes = bytes(delimiter);

    await t.step(`${name}: a line ends at the first delimiter`, () => {
      assert.deepEqual(referenceLines(bytes(stream), delimiterBytes), lines);
      const protocol = new Lines({ delimiter });
      feed(protocol, [bytes(stream)]);
      assert.deepEqual(protocol.lines, lines);
    });

    await t.step(`${name}: split at every position into 2 and 3 chunks`, () => {
      for (const chunks of splits(bytes(stream))) {
        const protocol = new Lines({ delimiter });
        feed(protocol, chunks);
        assert.deepEqual(
          protocol.lines,
          lines,
          `chunks ${JSON.stringify(chunks.map(text))}`,
        );
      }
    });

    await t.step(`${name}: one byte at a time`, () => {
      const protocol = new Lines({ delimiter });
      feed(protocol, chunk(bytes(stream), () => 0, 1));
      assert.deepEqual(protocol.lines, lines);
    });

    await t.step(`${name}: 300 random streams in random chunks`, () => {
      const next = random(0x5eed + delimiter.length);
      for (let trial = 0; trial < 300; trial++) {
        const data = randomLines(next, alphabet, delimiter, 1 + next(40));
        const expected = referenceLines(data, delimiterBytes);
        const protocol = new Lines({ delimiter });
        feed(protocol, chunk(data, next, 1 + next(24)));
        assert.deepEqual(protocol.lines, expected, `trial ${trial}`);
      }
    });

    await t.step(`${name}: Uint8Array delimiter, same lines`, () => {
      const protocol = new Lines({ delimiter: delimiterBytes });
      feed(protocol, chunk(bytes(stream), random(3), 5));
      assert.deepEqual(protocol.lines, lines);
    });
  }

  await t.step("the default delimiter is \\n", () => {
    const protocol = new Lines();
    assert.deepEqual(protocol.delimiter, bytes("\n"));
    feed(protocol, [bytes("a\r\n\nb\nc")]);
    assert.deepEqual(protocol.lines, ["a\r", "", "b"]);
  });
});

Deno.test("LineProtocol.dataReceived() finds a delimiter split over 2, 3 and 4 chunks at every offset", async (t) => {
  for (const delimiter of ["\r\n", "aab", "\r\n\r\n", "abcab"]) {
    await t.step(JSON.stringify(delimiter), () => {
      // Lines of 0 to 3 bytes, so that the kept parts are often shorter
      // than the delimiter: it begins over several of them.
      const lines = ["xyz", "", "w", "uv"];
      const stream = bytes(
        lines.map((line) => line + delimiter).join("") + "q",
      );
      const n = stream.byteLength;
      for (let i = 1; i < n; i++) {
        for (let j = i; j < n; j++) {
          for (let k = j; k < n; k++) {
            // Equal cuts make fewer chunks: 2, 3 and 4 chunks in all.
            const cuts = [...new Set([0, i, j, k, n])];
            const chunks = cuts.slice(1).map((end, c) =>
              stream.subarray(cuts[c]!, end)
            );
            const protocol = new Lines({ delimiter });
            feed(protocol, chunks);
            assert.deepEqual(
              protocol.lines,
              lines,
              `chunks ${JSON.stringify(chunks.map(text))}`,
            );
          }
        }
      }
    });
  }
});

Deno.test("LineProtocol.dataReceived() splits 200,000 one-byte chunks of one line with a 4-byte delimiter", () => {
  // Each chunk costs about its own bytes plus the delimiter: a splitter
  // that went over the line kept so far for each chunk would take minutes.
  const length = 200_000;
  const protocol = new Lines({ delimiter: "\r\n\r\n", maxLineLength: length });
  const stream = concat([
    pattern(length, 7).map((byte) => byte & 0x7f | 0x20),
    bytes("\r\n\r\nnext\r\n\r\n"),
  ]);
  for (let i = 0; i < stream.byteLength; i++) {
    protocol.dataReceived(stream.subarray(i, i + 1));
  }
  assert.equal(protocol.received.length, 2);
  assertBytes(protocol.received[0]!, stream.subarray(0, length));
  assert.equal(text(protocol.received[1]!), "next");
});

Deno.test("LengthPrefixedProtocol.dataReceived() gives the same frames however the stream is chunked", async (t) => {
  for (const prefixLength of [1, 2, 4] as const) {
    await t.step(`prefix of ${prefixLength}: split at every position`, () => {
      const payloads = ["hi", "", "", "x", "hello, world", ""];
      const stream = concat(
        payloads.map((payload) => frame(bytes(payload), prefixLength)),
      );
      for (const chunks of splits(stream)) {
        const protocol = new Frames({ prefixLength });
        feed(protocol, chunks);
        assert.deepEqual(protocol.frames, payloads);
      }
    });

    await t.step(`prefix of ${prefixLength}: 300 random streams`, () => {
      const next = random(0xf4a3e + prefixLength);
      for (let trial = 0; trial < 300; trial++) {
        const payloads: Uint8Array[] = [];
        for (let i = 1 + next(20); i > 0; i--) {
          const size = next(3) === 0 ? 0 : next(prefixLength === 1 ? 256 : 700);
          payloads.push(pattern(size, trial * 64 + i));
        }
        const stream = concat(
          payloads.map((payload) => frame(payload, prefixLength)),
        );
        // A frame still partial at the end is not delivered.
        const tail = frame(pattern(50, 9), prefixLength).subarray(
          0,
          next(50 + prefixLength),
        );
        const protocol = new Frames({ prefixLength });
        feed(protocol, chunk(concat([stream, tail]), next, 1 + next(300)));
        assert.equal(protocol.received.length, payloads.length, `${trial}`);
        protocol.received.forEach((received, i) =>
          assertBytes(received, payloads[i]!, `trial ${trial}, frame ${i}`)
        );
      }
    });
  }

  await t.step("the prefix is big-endian, 4 bytes by default", () => {
    const protocol = new Frames();
    assert.equal(protocol.prefixLength, 4);
    const payload = pattern(0x010203, 5);
    feed(protocol, [new Uint8Array([0, 1, 2, 3]), payload]);
    assert.equal(protocol.received.length, 1);
    assertBytes(protocol.received[0]!, payload);
  });
});

// Views and copies.

Deno.test("LineProtocol.lineReceived() gets views of one chunk and copies of several", async (t) => {
  await t.step("a line within one chunk is a view of it", () => {
    const protocol = new Lines();
    const data = bytes("ab\ncd\n");
    protocol.dataReceived(data);
    assert.deepEqual(protocol.lines, ["ab", "cd"]);
    for (const line of protocol.received) {
      assert.equal(line.buffer, data.buffer);
    }
  });

  await t.step("a line over two chunks is joined in new memory", () => {
    const protocol = new Lines({ delimiter: "\r\n" });
    const first = bytes("ab\r\ncd");
    const second = bytes("ef\r\ngh\r\n");
    protocol.dataReceived(first);
    protocol.dataReceived(second);
    assert.deepEqual(protocol.lines, ["ab", "cdef", "gh"]);
    const [ab, cdef, gh] = protocol.received as [
      Uint8Array,
      Uint8Array,
      Uint8Array,
    ];
    assert.equal(ab.buffer, first.buffer);
    assert.notEqual(cdef.buffer, first.buffer);
    assert.notEqual(cdef.buffer, second.buffer);
    assert.equal(gh.buffer, second.buffer);
  });

  await t.step("kept lines stay intact after later chunks", () => {
    const protocol = new Lines({ delimiter: "\r\n" });
    const stream = randomLines(random(11), "ab\r\n", "\r\n", 200);
    const chunks = chunk(stream, random(12), 9);
    feed(protocol, chunks);
    const seen = protocol.lines;
    assert.deepEqual(seen, referenceLines(stream, bytes("\r\n")));
    // Nothing the protocol did later changed what it gave before.
    feed(protocol, chunk(bytes("tail\r\n".repeat(50)), random(13), 7));
    assert.deepEqual(protocol.lines.slice(0, seen.length), seen);
  });

  await t.step("transientData: right lines from a reused array", () => {
    for (const delimiter of ["\n", "\r\n", "aab", "\r\n\r\n"]) {
      const next = random(0xbeef + delimiter.length);
      for (let trial = 0; trial < 100; trial++) {
        const stream = randomLines(next, "ab\r\nx", delimiter, 1 + next(30));
        const protocol = new TransientLines({ delimiter });
        feedReusing(protocol, chunk(stream, next, 1 + next(16)));
        assert.deepEqual(
          protocol.lines,
          referenceLines(stream, bytes(delimiter)),
          `${JSON.stringify(delimiter)}, trial ${trial}`,
        );
      }
    }
  });

  await t.step(
    "without transientData, a reused array is the caller's fault",
    () => {
      // The check above would catch views kept across calls: here it does.
      const protocol = new (class extends LineProtocol {
        lines: string[] = [];
        override lineReceived(line: Uint8Array): void {
          this.lines.push(text(line));
        }
      })();
      // A piece of 256 bytes or more is kept as a view.
      const start = "a".repeat(256);
      feedReusing(protocol, [bytes(start), bytes("d\n")]);
      assert.notDeepEqual(protocol.lines, [`${start}d`]);
    },
  );

  await t.step(
    "pieces under 256 bytes are gathered in the protocol's own memory",
    () => {
      // So a line dripped in tiny chunks holds no array per chunk: here, a
      // reused array does no harm even without transientData.
      for (const size of [1, 3, 255]) {
        const line = pattern(10_000, size).map((byte) => byte & 0x7f | 0x20);
        const protocol = new Lines({ delimiter: "\r\n\r\n" });
        feedReusing(
          protocol,
          chunk(concat([line, bytes("\r\n\r\n")]), () => size - 1, size),
        );
        assert.equal(protocol.received.length, 1, `size ${size}`);
        assertBytes(protocol.received[0]!, line, `size ${size}`);
      }
    },
  );

  await t.step("small and large pieces mixed, in random chunks", () => {
    const next = random(0x9a7);
    for (let trial = 0; trial < 200; trial++) {
      const ascii = (length: number) =>
        pattern(length, trial).map((byte) => byte & 0x7f | 0x20);
      const stream = concat([
        ascii(next(2000)),
        bytes("\r\n"),
        ascii(next(600)),
        bytes("\r\n"),
      ]);
      const protocol = new Lines({ delimiter: "\r\n" });
      feed(protocol, chunk(stream, next, 1 + next(700)));
      assert.deepEqual(
        protocol.lines,
        referenceLines(stream, bytes("\r\n")),
        `trial ${trial}`,
      );
    }
  });
});

Deno.test("LengthPrefixedProtocol.frameReceived() gets views of one chunk and copies of several", async (t) => {
  await t.step("a frame within one chunk is a view of it", () => {
    const protocol = new Frames({ prefixLength: 2 });
    const data = concat([frame(bytes("ab"), 2), frame(bytes("cde"), 2)]);
    protocol.dataReceived(data);
    assert.deepEqual(protocol.frames, ["ab", "cde"]);
    for (const f of protocol.received) assert.equal(f.buffer, data.buffer);
  });

  await t.step(
    "a frame whose prefix came before is a view of its chunk",
    () => {
      const protocol = new Frames({ prefixLength: 2 });
      const payload = bytes("payload");
      protocol.dataReceived(frame(payload, 2).subarray(0, 2));
      const data = payload.slice();
      protocol.dataReceived(data);
      assert.deepEqual(protocol.frames, ["payload"]);
      assert.equal(protocol.received[0]!.buffer, data.buffer);
    },
  );

  await t.step("a frame over two chunks is gathered in its own array", () => {
    const protocol = new Frames({ prefixLength: 2 });
    const stream = concat([frame(bytes("abcdef"), 2), frame(bytes("g"), 2)]);
    const first = stream.slice(0, 5);
    const second = stream.slice(5);
    protocol.dataReceived(first);
    protocol.dataReceived(second);
    assert.deepEqual(protocol.frames, ["abcdef", "g"]);
    const [gathered, g] = protocol.received as [Uint8Array, Uint8Array];
    assert.notEqual(gathered.buffer, first.buffer);
    assert.notEqual(gathered.buffer, second.buffer);
    assert.equal(gathered.buffer.byteLength, 6);
    assert.equal(g.buffer, second.buffer);
  });

  await t.step("kept frames stay intact after later chunks", () => {
    const next = random(21);
    const payloads = Array.from(
      { length: 100 },
      (_, i) => pattern(next(200), i + 1),
    );
    const protocol = new Frames({ prefixLength: 2 });
    feed(
      protocol,
      chunk(concat(payloads.map((p) => frame(p, 2))), next, 150),
    );
    feed(protocol, chunk(frame(pattern(5000, 99), 2), next, 150));
    assert.equal(protocol.received.length, payloads.length + 1);
    payloads.forEach((payload, i) =>
      assertBytes(protocol.received[i]!, payload, `frame ${i}`)
    );
  });

  await t.step("transientData: right frames from a reused array", () => {
    const protocol = new (class extends LengthPrefixedProtocol {
      override readonly transientData = true;
      frames: Uint8Array[] = [];
      override frameReceived(frame: Uint8Array): void {
        this.frames.push(frame.slice());
      }
    })({ prefixLength: 2 });
    const next = random(22);
    const payloads = Array.from(
      { length: 100 },
      (_, i) => pattern(next(300), i + 1),
    );
    feedReusing(
      protocol,
      chunk(concat(payloads.map((p) => frame(p, 2))), next, 120),
    );
    assert.equal(protocol.frames.length, payloads.length);
    payloads.forEach((payload, i) =>
      assertBytes(protocol.frames[i]!, payload, `frame ${i}`)
    );
  });
});

// Limits.

Deno.test("LineProtocol.lineLengthExceeded() is called for a line over maxLineLength", async (t) => {
  await t.step("by default it throws FrameTooLongError, a RangeError", () => {
    const protocol = new Lines({ maxLineLength: 8 });
    assert.throws(
      () => protocol.dataReceived(bytes("ok\n123456789\nnext\n")),
      (error) => {
        assert.ok(error instanceof FrameTooLongError);
        assert.ok(error instanceof RangeError);
        assert.equal(error.name, "FrameTooLongError");
        assert.equal(error.length, 9);
        assert.equal(error.limit, 8);
        return true;
      },
    );
    assert.deepEqual(protocol.lines, ["ok"]);
  });

  await t.step("the default limit is 64 KiB", () => {
    const protocol = new Lines();
    assert.equal(protocol.maxLineLength, 64 * KiB);
    const line = "x".repeat(64 * KiB);
    feed(protocol, [bytes(`${line}\n`)]);
    assert.equal(protocol.lines[0], line);
    assert.throws(
      () => protocol.dataReceived(bytes(`${line}y\n`)),
      FrameTooLongError,
    );
  });

  await t.step("it throws once a line without delimiter grows over", () => {
    const protocol = new Lines({ maxLineLength: 8 });
    protocol.dataReceived(bytes("12345"));
    assert.throws(
      () => protocol.dataReceived(bytes("6789")),
      (error) =>
        error instanceof FrameTooLongError && error.length === 9 &&
        error.limit === 8,
    );
  });

  await t.step("an override that returns drops the line, in one chunk", () => {
    const protocol = new DroppingLines({ maxLineLength: 8 });
    feed(protocol, [bytes("ok\n123456789\nnext\n\n")]);
    assert.deepEqual(protocol.exceeded, [9]);
    assert.deepEqual(protocol.lines, ["ok", "next", ""]);
  });

  await t.step(
    "an override that returns drops the line, over many chunks",
    () => {
      const protocol = new DroppingLines({ maxLineLength: 8 });
      feed(protocol, [
        bytes("ok\n12345"),
        bytes("6789"),
        ...Array.from({ length: 50 }, () => bytes("abc")),
        bytes("d\nnext\n"),
        bytes("last\n"),
      ]);
      assert.deepEqual(protocol.exceeded, [9]);
      assert.deepEqual(protocol.lines, ["ok", "next", "last"]);
    },
  );

  for (const delimiter of ["\n", "\r\n", "\r\n\r\n", "aab"]) {
    const name = JSON.stringify(delimiter);

    await t.step(
      `${name}: a line of exactly maxLineLength is delivered, however chunked`,
      () => {
        const stream = bytes(`12345678${delimiter}ok${delimiter}`);
        for (const chunks of [[stream], ...splits(stream)]) {
          const protocol = new DroppingLines({ delimiter, maxLineLength: 8 });
          feed(protocol, chunks);
          assert.deepEqual(
            protocol.lines,
            ["12345678", "ok"],
            `chunks ${JSON.stringify(chunks.map(text))}`,
          );
          assert.deepEqual(protocol.exceeded, []);
        }
      },
    );

    await t.step(
      `${name}: an over-long line is dropped up to its delimiter, however chunked`,
      () => {
        const stream = bytes(
          `ok${delimiter}123456789${delimiter}next${delimiter}`,
        );
        for (const chunks of [[stream], ...splits(stream)]) {
          const protocol = new DroppingLines({ delimiter, maxLineLength: 8 });
          feed(protocol, chunks);
          const where = `chunks ${JSON.stringify(chunks.map(text))}`;
          assert.deepEqual(protocol.lines, ["ok", "next"], where);
          assert.equal(protocol.exceeded.length, 1, where);
          assert.ok(protocol.exceeded[0]! > 8, where);
        }
      },
    );

    await t.step(
      `${name}: random streams with over-long lines, in random chunks`,
      () => {
        const maxLineLength = 10;
        const next = random(0x10e + delimiter.length);
        for (let trial = 0; trial < 300; trial++) {
          let stream = "";
          for (let i = 1 + next(30); i > 0; i--) {
            // Short lines stay clear of the limit by a delimiter's length,
            // so that none is over it with a partial delimiter.
            const long = next(4) === 0;
            const length = long
              ? maxLineLength + 1 + next(40)
              : next(maxLineLength - delimiter.length + 2);
            for (let j = 0; j < length; j++) stream += "xy"[next(2)];
            stream += delimiter;
          }
          const data = bytes(stream);
          const all = referenceLines(data, bytes(delimiter));
          const protocol = new DroppingLines({ delimiter, maxLineLength });
          feed(protocol, chunk(data, next, 1 + next(16)));
          const where = `trial ${trial}: ${JSON.stringify(stream)}`;
          assert.deepEqual(
            protocol.lines,
            all.filter((line) => line.length <= maxLineLength),
            where,
          );
          assert.equal(
            protocol.exceeded.length,
            all.filter((line) => line.length > maxLineLength).length,
            where,
          );
        }
      },
    );
  }

  await t.step(
    "10 MiB without a delimiter, in 64 KiB chunks, keeps nothing",
    () => {
      for (const [delimiter, fill] of [["\n", 0x78], ["\r\n", 0x0d]] as const) {
        const protocol = new DroppingLines({ delimiter, maxLineLength: 1024 });
        const data = new Uint8Array(64 * KiB).fill(fill);
        protocol.dataReceived(bytes(`before${delimiter}`));
        for (let i = 0; i < 160; i++) protocol.dataReceived(data);
        protocol.dataReceived(bytes(`x${delimiter}after${delimiter}`));
        assert.deepEqual(protocol.lines, ["before", "after"]);
        assert.equal(protocol.exceeded.length, 1);
        assert.ok(protocol.exceeded[0]! > 1024);
        assert.ok(protocol.exceeded[0]! <= 64 * KiB + 1024);
      }
    },
  );
});

Deno.test("LengthPrefixedProtocol.frameLengthExceeded() is called for a frame over maxFrameLength", async (t) => {
  await t.step("by default it throws FrameTooLongError, a RangeError", () => {
    const protocol = new Frames({ prefixLength: 2, maxFrameLength: 10 });
    const stream = concat([
      frame(bytes("ok"), 2),
      frame(pattern(11), 2),
      frame(bytes("next"), 2),
    ]);
    assert.throws(
      () => protocol.dataReceived(stream),
      (error) => {
        assert.ok(error instanceof FrameTooLongError);
        assert.ok(error instanceof RangeError);
        assert.equal(error.length, 11);
        assert.equal(error.limit, 10);
        return true;
      },
    );
    assert.deepEqual(protocol.frames, ["ok"]);
  });

  await t.step("the default limit is 1 MiB", () => {
    const protocol = new Frames();
    assert.equal(protocol.maxFrameLength, MiB);
    feed(protocol, [frame(pattern(MiB), 4)]);
    assert.equal(protocol.received[0]!.byteLength, MiB);
    assert.throws(
      () => protocol.dataReceived(new Uint8Array([0, 0x10, 0, 1])),
      (error) => error instanceof FrameTooLongError && error.length === MiB + 1,
    );
  });

  await t.step("a frame of exactly maxFrameLength is delivered", () => {
    const protocol = new SkippingFrames({
      prefixLength: 1,
      maxFrameLength: 10,
    });
    feed(protocol, chunk(frame(bytes("0123456789"), 1), random(5), 3));
    assert.deepEqual(protocol.frames, ["0123456789"]);
    assert.deepEqual(protocol.exceeded, []);
  });

  await t.step("an override that returns skips exactly that frame", () => {
    const stream = concat([
      frame(bytes("ok"), 2),
      frame(bytes("x".repeat(11)), 2),
      frame(bytes(""), 2),
      frame(bytes("next"), 2),
    ]);
    for (const chunks of [[stream], ...splits(stream)]) {
      const protocol = new SkippingFrames({
        prefixLength: 2,
        maxFrameLength: 10,
      });
      feed(protocol, chunks);
      assert.deepEqual(protocol.exceeded, [11]);
      assert.deepEqual(protocol.frames, ["ok", "", "next"]);
    }
  });

  await t.step(
    "an override that pauses holds the frames after the skipped one",
    () => {
      const protocol = new PauseOnTooLong({
        prefixLength: 1,
        maxFrameLength: 2,
      });
      const transport = new MemoryTransport(protocol);
      transport.receive(new Uint8Array([3, 1, 2, 3, 1, 65, 1, 66]));
      assert.deepEqual(protocol.exceeded, [3]);
      assert.deepEqual(protocol.frames, []);
      assert.equal(transport.isReading(), false);
      protocol.resumeReading();
      assert.deepEqual(protocol.frames, ["A", "B"]);
      assert.equal(transport.isReading(), true);
    },
  );

  await t.step(
    "an override that pauses before the frame's bytes came skips them on resume",
    () => {
      const protocol = new PauseOnTooLong({
        prefixLength: 1,
        maxFrameLength: 2,
      });
      const transport = new MemoryTransport(protocol);
      transport.receive(new Uint8Array([3, 1]));
      // A read that was in flight when the transport paused.
      protocol.dataReceived(new Uint8Array([2, 3, 1, 65]));
      assert.deepEqual(protocol.frames, []);
      protocol.resumeReading();
      assert.deepEqual(protocol.frames, ["A"]);
    },
  );

  await t.step("random streams with over-long frames, in random chunks", () => {
    const next = random(0xface);
    for (let trial = 0; trial < 300; trial++) {
      const payloads: Uint8Array[] = [];
      for (let i = 1 + next(20); i > 0; i--) {
        payloads.push(pattern(next(next(4) === 0 ? 200 : 51), trial * 32 + i));
      }
      const protocol = new SkippingFrames({
        prefixLength: 2,
        maxFrameLength: 50,
      });
      feed(
        protocol,
        chunk(concat(payloads.map((p) => frame(p, 2))), next, 1 + next(80)),
      );
      const kept = payloads.filter((p) => p.byteLength <= 50);
      assert.deepEqual(
        protocol.exceeded,
        payloads.filter((p) => p.byteLength > 50).map((p) => p.byteLength),
        `trial ${trial}`,
      );
      assert.equal(protocol.received.length, kept.length, `trial ${trial}`);
      kept.forEach((payload, i) =>
        assertBytes(protocol.received[i]!, payload, `trial ${trial}, ${i}`)
      );
    }
  });

  await t.step("a 10 MiB frame is skipped in 64 KiB chunks", () => {
    const protocol = new SkippingFrames({ maxFrameLength: 1024 });
    const huge = 10 * MiB;
    const data = new Uint8Array(64 * KiB).fill(0x78);
    protocol.dataReceived(frame(new Uint8Array(0), 4).subarray(0, 4));
    protocol.dataReceived(new Uint8Array([0, huge >> 16, 0, 0]));
    for (let i = 0; i < huge / data.byteLength; i++) {
      protocol.dataReceived(data);
    }
    protocol.dataReceived(frame(bytes("after"), 4));
    assert.deepEqual(protocol.exceeded, [huge]);
    assert.deepEqual(protocol.frames, ["", "after"]);
  });
});

// Arguments.

Deno.test("LineProtocol and LengthPrefixedProtocol reject bad options", async (t) => {
  await t.step("an empty delimiter is a TypeError", () => {
    assert.throws(() => new Lines({ delimiter: "" }), TypeError);
    assert.throws(() => new Lines({ delimiter: new Uint8Array(0) }), TypeError);
  });

  await t.step(
    "a delimiter that is not a string or a Uint8Array is a TypeError",
    () => {
      const buffer = new Uint8Array([13, 10]).buffer;
      for (
        const delimiter of [
          [13, 10],
          buffer,
          new DataView(buffer),
          new Uint16Array([10]),
          10,
        ]
      ) {
        assert.throws(
          () =>
            new Lines({
              delimiter: delimiter as unknown as Uint8Array,
              maxLineLength: 16,
            }),
          (error: unknown) =>
            error instanceof TypeError && /delimiter/.test(error.message),
        );
      }
    },
  );

  for (const value of [0, -1, 1.5, NaN]) {
    await t.step(`a limit of ${value} is a RangeError`, () => {
      assert.throws(() => new Lines({ maxLineLength: value }), RangeError);
      assert.throws(() => new Frames({ maxFrameLength: value }), RangeError);
    });
  }

  await t.step("a prefixLength of 3 is a RangeError", () => {
    assert.throws(
      () => new Frames({ prefixLength: 3 as unknown as 1 | 2 | 4 }),
      RangeError,
    );
  });

  await t.step("a Uint8Array delimiter is copied, a Buffer too", () => {
    for (const delimiter of [bytes(";"), Buffer.from(";")]) {
      const protocol = new Lines({ delimiter });
      delimiter[0] = 0x2c;
      feed(protocol, [bytes("a;b,c;")]);
      assert.deepEqual(protocol.lines, ["a", "b,c"]);
    }
  });

  await t.step(
    "sendFrame() of a frame too long for its prefix is a RangeError",
    () => {
      assert.throws(
        () => new Frames({ prefixLength: 1 }).sendFrame(new Uint8Array(256)),
        RangeError,
      );
      assert.throws(
        () => new Frames({ prefixLength: 2 }).sendFrame(new Uint8Array(65536)),
        RangeError,
      );
    },
  );
});

// Pausing between messages.

Deno.test("LineProtocol.pauseReading() stops between two lines of a chunk, and resumeReading() delivers the rest", async (t) => {
  /** Pauses after each line named in `pauseAfter`. */
  class Pausing extends Lines {
    constructor(readonly pauseAfter: string[], options?: LineProtocolOptions) {
      super(options);
    }
    override lineReceived(line: Uint8Array): void {
      super.lineReceived(line);
      if (this.pauseAfter.includes(text(line))) this.pauseReading();
    }
  }

  await t.step("one chunk, paused twice", () => {
    const protocol = new Pausing(["b", "c"]);
    const transport = new MemoryTransport(protocol);
    transport.receive(bytes("a\nb\nc\nd\npart"));
    assert.deepEqual(protocol.lines, ["a", "b"]);
    assert.equal(transport.isReading(), false);
    protocol.resumeReading();
    assert.deepEqual(protocol.lines, ["a", "b", "c"]);
    assert.equal(transport.isReading(), false);
    protocol.resumeReading();
    assert.deepEqual(protocol.lines, ["a", "b", "c", "d"]);
    assert.equal(transport.isReading(), true);
    transport.receive(bytes("ial\n"));
    assert.deepEqual(protocol.lines, ["a", "b", "c", "d", "partial"]);
  });

  await t.step(
    "a chunk that arrives while paused waits behind the held lines",
    () => {
      const protocol = new Pausing(["a"], { delimiter: "\r\n" });
      const transport = new MemoryTransport(protocol);
      transport.receive(bytes("a\r\nb\r"));
      // The transport was paused: resumeReading() on it alone delivers the
      // chunk to the protocol, which holds it behind the held bytes.
      transport.resumeReading();
      transport.receive(bytes("\nc\r\n"));
      assert.deepEqual(protocol.lines, ["a"]);
      protocol.resumeReading();
      assert.deepEqual(protocol.lines, ["a", "b", "c"]);
    },
  );

  await t.step(
    "pausing and resuming within lineReceived goes on at once",
    () => {
      class Blink extends Lines {
        override lineReceived(line: Uint8Array): void {
          super.lineReceived(line);
          this.pauseReading();
          this.resumeReading();
        }
      }
      const protocol = new Blink();
      const transport = new MemoryTransport(protocol);
      transport.receive(bytes("a\nb\nc\n"));
      assert.deepEqual(protocol.lines, ["a", "b", "c"]);
      assert.equal(transport.isReading(), true);
    },
  );

  await t.step("held bytes of transient data are copied", () => {
    const protocol = new (class extends TransientLines {
      override lineReceived(line: Uint8Array): void {
        super.lineReceived(line);
        if (this.lines.length === 1) this.pauseReading();
      }
    })();
    const transport = new MemoryTransport(protocol);
    const chunk = bytes("a\nb\nc\n");
    protocol.dataReceived(chunk);
    chunk.fill(120); // the transport reuses its block: "xxxxxx"
    protocol.resumeReading();
    assert.deepEqual(protocol.lines, ["a", "b", "c"]);
    assert.equal(transport.isReading(), true);
  });

  await t.step(
    "a line that throws on resume aborts the connection and the error reaches the caller",
    () => {
      const protocol = new (class extends Pausing {
        override lineReceived(line: Uint8Array): void {
          if (text(line) === "b") throw new Error("bad line");
          super.lineReceived(line);
        }
      })(["a"]);
      const transport = new MemoryTransport(protocol);
      transport.receive(bytes("a\nb\nc\n"));
      assert.throws(() => protocol.resumeReading(), /bad line/);
      assert.equal(transport.isClosing(), true);
      assert.deepEqual(protocol.lines, ["a"]);
    },
  );

  await t.step("resumeReading() without a pause does nothing", () => {
    const protocol = new Lines();
    const transport = new MemoryTransport(protocol);
    protocol.resumeReading();
    transport.receive(bytes("a\n"));
    assert.deepEqual(protocol.lines, ["a"]);
  });
});

Deno.test("LengthPrefixedProtocol.pauseReading() stops between two frames of a chunk", () => {
  class Pausing extends Frames {
    override frameReceived(frame: Uint8Array): void {
      super.frameReceived(frame);
      if (text(frame) !== "d") this.pauseReading();
    }
  }
  const protocol = new Pausing({ prefixLength: 2 });
  const transport = new MemoryTransport(protocol);
  const stream = concat(["a", "", "c", "d"].map((f) => frame(bytes(f), 2)));
  transport.receive(stream.subarray(0, stream.byteLength - 1));
  assert.deepEqual(protocol.frames, ["a"]);
  assert.equal(transport.isReading(), false);
  protocol.resumeReading();
  assert.deepEqual(protocol.frames, ["a", ""]);
  protocol.resumeReading();
  assert.deepEqual(protocol.frames, ["a", "", "c"]);
  protocol.resumeReading();
  assert.equal(transport.isReading(), true);
  transport.receive(stream.subarray(stream.byteLength - 1));
  assert.deepEqual(protocol.frames, ["a", "", "c", "d"]);
});

Deno.test("LineProtocol paused after every line answers 2,000 pipelined lines in order over a socket", async () => {
  const count = 2000;
  const done = Promise.withResolvers<void>();
  let lost: Error | undefined;
  class OneAtATime extends LineProtocol {
    override lineReceived(line: Uint8Array): void {
      // Answer each line a little later, as a server awaiting a lookup.
      this.pauseReading();
      Promise.resolve().then(() => {
        if (this.transport?.isClosing()) return;
        this.sendLine(line);
        this.resumeReading();
      });
    }
    override connectionLost(exc: Error | undefined): void {
      lost = exc;
      done.resolve();
    }
  }
  await using server = await createServer(() => new OneAtATime(), {
    hostname: "127.0.0.1",
    port: 0,
  });
  const { port } = server.addrs[0]!;
  const lines = Array.from({ length: count }, (_, i) => `line ${i}`);
  {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    assert.equal(
      await within(echoLines(conn, lines), "echo"),
      lines.map((l) => `${l}\n`).join(""),
    );
  }
  await within(done.promise, "connectionLost");
  assert.equal(lost, undefined);
});

// Switching protocols.

Deno.test("LineProtocol hands the bytes after the line that switched protocols to the new protocol", async (t) => {
  /** Switches the transport to `next` on the line "RAW". */
  class Command extends Lines {
    constructor(readonly next: StreamProtocol, options?: LineProtocolOptions) {
      super(options);
    }
    override lineReceived(line: Uint8Array): void {
      super.lineReceived(line);
      if (text(line) === "RAW") this.transport!.setProtocol(this.next);
    }
  }

  await t.step(
    "a Protocol gets the rest of the chunk, partial line included",
    () => {
      const raw = new RecordingProtocol();
      const protocol = new Command(raw);
      const transport = new MemoryTransport(protocol);
      transport.receive(bytes("HELLO\nRAW\nbinary\npayload"));
      transport.receive(bytes("-more"));
      assert.equal(transport.getProtocol(), raw);
      assert.deepEqual(protocol.lines, ["HELLO", "RAW"]);
      assert.equal(text(raw.received()), "binary\npayload-more");
    },
  );

  await t.step("at every split into 2 and 3 chunks", () => {
    const stream = bytes("a\r\nRAW\r\nb\r\nc");
    for (const chunks of splits(stream)) {
      const raw = new RecordingProtocol();
      const protocol = new Command(raw, { delimiter: "\r\n" });
      const transport = new MemoryTransport(protocol);
      for (const chunk of chunks) transport.receive(chunk);
      const name = `chunks ${JSON.stringify(chunks.map(text))}`;
      assert.deepEqual(protocol.lines, ["a", "RAW"], name);
      assert.equal(text(raw.received()), "b\r\nc", name);
    }
  });

  await t.step("a BufferedProtocol gets the rest through its buffers", () => {
    const raw = new RecordingBufferedProtocol(3);
    const protocol = new Command(raw);
    const transport = new MemoryTransport(protocol);
    transport.receive(bytes("RAW\nbinary\npayload"));
    assert.deepEqual(protocol.lines, ["RAW"]);
    assert.equal(text(raw.received()), "binary\npayload");
    assert.deepEqual(raw.sizeHints, [14, 11, 8, 5, 2]);
  });

  await t.step(
    "a BufferedProtocol whose getBuffer() fails loses the connection",
    async () => {
      const lost = Promise.withResolvers<Error | undefined>();
      const protocol = new Command({
        getBuffer: () => new Uint8Array(0),
        bufferUpdated() {},
        connectionLost: (exc) => lost.resolve(exc),
      });
      const { errors, onError } = errorCollector();
      const transport = new MemoryTransport(protocol, { onError });
      transport.receive(bytes("RAW\nbinary"));
      assert.equal(transport.isClosing(), true);
      const exc = await lost.promise;
      assert.ok(exc instanceof TypeError);
      assert.match(exc.message, /getBuffer\(\) must return/);
      assert.equal(errors.length, 1);
    },
  );

  await t.step("transient data is copied for a protocol that keeps it", () => {
    const raw = new RecordingProtocol();
    const protocol = new (class extends Command {
      override readonly transientData = true;
    })(raw);
    new MemoryTransport(protocol);
    feedReusing(protocol, [bytes("RAW\nab")]);
    assert.equal(text(raw.received()), "ab");
  });

  await t.step(
    "a line that pauses, then switches, hands the rest over at once",
    () => {
      const raw = new RecordingProtocol();
      const protocol = new (class extends Command {
        override lineReceived(line: Uint8Array): void {
          this.pauseReading();
          super.lineReceived(line);
        }
      })(raw);
      const transport = new MemoryTransport(protocol);
      transport.receive(bytes("RAW\nbinary\n"));
      assert.deepEqual(protocol.lines, ["RAW"]);
      assert.equal(text(raw.received()), "binary\n");
      // The transport stays paused until resumed.
      assert.equal(transport.isReading(), false);
      transport.resumeReading();
      assert.equal(transport.isReading(), true);
    },
  );

  await t.step(
    "a switch while lines are held hands them over on resumeReading()",
    () => {
      class PauseFirst extends Lines {
        override lineReceived(line: Uint8Array): void {
          super.lineReceived(line);
          this.pauseReading();
        }
      }
      const protocol = new PauseFirst();
      const transport = new MemoryTransport(protocol);
      transport.receive(bytes("STARTTLS\nhandshake"));
      assert.equal(transport.isReading(), false);
      // Later, once the async work for "STARTTLS" is done:
      const raw = new RecordingProtocol();
      transport.setProtocol(raw);
      protocol.resumeReading();
      assert.deepEqual(protocol.lines, ["STARTTLS"]);
      assert.equal(text(raw.received()), "handshake");
      assert.equal(transport.isReading(), true);
    },
  );

  await t.step("switched back and forth in one chunk, it starts afresh", () => {
    // SMTP's BDAT: "BDAT n" announces n raw bytes, then lines again.
    class Session extends Lines {
      readonly raw = new Chunk(this);
      override lineReceived(line: Uint8Array): void {
        super.lineReceived(line);
        const match = /^BDAT (\d+)$/.exec(text(line));
        if (match === null) return;
        this.raw.left = Number(match[1]);
        this.transport!.setProtocol(this.raw);
      }
    }
    /** Takes `left` bytes, then gives the rest back to `session`. */
    class Chunk extends RecordingProtocol {
      left = 0;
      constructor(readonly session: Session) {
        super();
      }
      override dataReceived(data: Uint8Array): void {
        const take = Math.min(this.left, data.byteLength);
        super.dataReceived(data.subarray(0, take));
        this.left -= take;
        if (this.left > 0) return;
        this.session.transport!.setProtocol(this.session);
        if (take < data.byteLength) {
          this.session.dataReceived(data.subarray(take));
        }
      }
    }
    const stream = bytes("BDAT 3\nx\nyBDAT 2\n\n\nQUIT\n");
    for (const chunks of splits(stream)) {
      const protocol = new Session();
      const transport = new MemoryTransport(protocol);
      for (const chunk of chunks) transport.receive(chunk);
      const name = `chunks ${JSON.stringify(chunks.map(text))}`;
      assert.deepEqual(protocol.lines, ["BDAT 3", "BDAT 2", "QUIT"], name);
      assert.equal(text(protocol.raw.received()), "x\ny\n\n", name);
    }
  });

  await t.step(
    "a switch to a protocol that takes no bytes is not a switch of the stream",
    async () => {
      // A child's pipe gives the child's protocol, which may feed a
      // LineProtocol from pipeDataReceived and be switched itself.
      const done = Promise.withResolvers<void>();
      class Child extends SubprocessProtocolBase {
        override connectionLost(exc: Error | undefined): void {
          super.connectionLost(exc);
          done.resolve();
        }
      }
      const [child] = await subprocessExec(() => new Child(), "true", [], {
        stdin: "null",
        stdout: "piped",
        stderr: "null",
      });
      const lines: string[] = [];
      class PipeLines extends LineProtocol<ReadTransport> {
        override lineReceived(line: Uint8Array): void {
          lines.push(text(line));
          child.setProtocol(new Child());
        }
      }
      const protocol = new PipeLines();
      protocol.connectionMade(child.getPipeTransport(1)!);
      protocol.dataReceived(bytes("a\nb\nc"));
      protocol.dataReceived(bytes("\n"));
      assert.deepEqual(lines, ["a", "b", "c"]);
      await within(done.promise, "the child's end");
    },
  );

  await t.step("a protocol that feeds it is not taken for a switch", () => {
    const inner = new Lines();
    const outer: Protocol = {
      connectionMade: (transport) => inner.connectionMade(transport),
      dataReceived: (data) => inner.dataReceived(data),
    };
    const transport = new MemoryTransport(outer);
    transport.receive(bytes("a\nb\nc"));
    transport.receive(bytes("\n"));
    assert.equal(transport.getProtocol(), outer);
    assert.deepEqual(inner.lines, ["a", "b", "c"]);
  });
});

Deno.test("LengthPrefixedProtocol hands the bytes after the frame that switched protocols to the new protocol", async (t) => {
  const stream = concat([
    frame(bytes("a"), 1),
    frame(bytes("RAW"), 1),
    frame(bytes("b"), 1),
    bytes("tail"),
  ]);

  await t.step("from frameReceived, at every split into 2 and 3 chunks", () => {
    for (const chunks of splits(stream)) {
      const raw = new RecordingProtocol();
      const protocol = new (class extends Frames {
        override frameReceived(frame: Uint8Array): void {
          super.frameReceived(frame);
          if (text(frame) === "RAW") this.transport!.setProtocol(raw);
        }
      })({ prefixLength: 1 });
      const transport = new MemoryTransport(protocol);
      for (const chunk of chunks) transport.receive(chunk);
      const name = `chunks ${JSON.stringify(chunks.map(text))}`;
      assert.deepEqual(protocol.frames, ["a", "RAW"], name);
      assertBytes(
        raw.received(),
        concat([frame(bytes("b"), 1), bytes("tail")]),
      );
    }
  });

  await t.step("from frameLengthExceeded, the frame's bytes too", () => {
    const raw = new RecordingBufferedProtocol();
    const protocol = new (class extends SkippingFrames {
      override frameLengthExceeded(length: number): void {
        super.frameLengthExceeded(length);
        this.transport!.setProtocol(raw);
      }
    })({ prefixLength: 1, maxFrameLength: 2 });
    const transport = new MemoryTransport(protocol);
    transport.receive(new Uint8Array([1, 65, 4, 1, 2]));
    transport.receive(new Uint8Array([3, 4, 1, 66]));
    assert.deepEqual(protocol.frames, ["A"]);
    assert.deepEqual(protocol.exceeded, [4]);
    assertBytes(raw.received(), new Uint8Array([1, 2, 3, 4, 1, 66]));
    // Set again, it starts at a prefix: nothing is left to skip.
    transport.setProtocol(protocol);
    transport.receive(new Uint8Array([1, 67]));
    assert.deepEqual(protocol.frames, ["A", "C"]);
  });
});

// Closing.

Deno.test("LineProtocol and LengthPrefixedProtocol deliver nothing more from a chunk once the transport closes", async (t) => {
  class Closer extends Lines {
    override lineReceived(line: Uint8Array): void {
      super.lineReceived(line);
      if (text(line) === "quit") this.transport?.close();
    }
  }
  const lineCases: [string, string, Uint8Array[]][] = [
    ["a line in the chunk", "\n", [bytes("a\nquit\nb\nc\n")]],
    ["a line over two chunks", "\n", [bytes("a\nqu"), bytes("it\nb\nc\n")]],
    ["a delimiter over two chunks", "\r\n", [
      bytes("a\r\nquit\r"),
      bytes("\nb\r\nc\r\n"),
    ]],
  ];
  for (const [name, delimiter, chunks] of lineCases) {
    await t.step(`lineReceived: ${name}`, () => {
      const protocol = new Closer({ delimiter });
      const transport = new MemoryTransport(protocol);
      for (const chunk of chunks) transport.receive(chunk);
      assert.equal(transport.isClosing(), true);
      assert.deepEqual(protocol.lines, ["a", "quit"]);
    });
  }

  class FrameCloser extends Frames {
    override frameReceived(frame: Uint8Array): void {
      super.frameReceived(frame);
      if (this.received.length === 2) this.transport?.close();
    }
  }
  const stream = (second: string) =>
    concat(["a", second, "b", "c"].map((f) => frame(bytes(f), 1)));
  const frameCases: [string, Uint8Array[]][] = [
    ["a frame in the chunk", [stream("quit")]],
    ["a frame over two chunks", [
      stream("quit").subarray(0, 5),
      stream("quit").subarray(5),
    ]],
    ["an empty frame", [stream("")]],
  ];
  for (const [name, chunks] of frameCases) {
    await t.step(`frameReceived: ${name}`, () => {
      const protocol = new FrameCloser({ prefixLength: 1 });
      const transport = new MemoryTransport(protocol);
      for (const chunk of chunks) transport.receive(chunk);
      assert.equal(transport.isClosing(), true);
      assert.equal(protocol.received.length, 2);
    });
  }

  await t.step("frameLengthExceeded that closes: no frame after it", () => {
    class CloseOnTooLong extends Frames {
      override frameLengthExceeded(_length: number): void {
        this.transport?.close();
      }
    }
    const protocol = new CloseOnTooLong({ prefixLength: 1, maxFrameLength: 2 });
    const transport = new MemoryTransport(protocol);
    transport.receive(new Uint8Array([3, 1, 2, 3, 1, 65, 1, 66]));
    assert.equal(transport.isClosing(), true);
    assert.equal(protocol.received.length, 0);
  });

  await t.step("over a socket", async () => {
    const made = new Recorder<"made" | "lost">();
    const protocols: Closer[] = [];
    const lost: (Error | undefined)[] = [];
    await using server = await createServer(() => {
      const protocol = new (class extends Closer {
        override connectionLost(exc: Error | undefined): void {
          super.connectionLost(exc);
          lost.push(exc);
          made.record("lost");
        }
      })();
      protocols.push(protocol);
      made.record("made");
      return protocol;
    }, { hostname: "127.0.0.1", port: 0 });
    const { port } = server.addrs[0]!;
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(conn, bytes("a\nquit\nb\nc\n"));
    await within(made.waitFor("lost"), "connectionLost");
    assert.deepEqual(protocols[0]!.lines, ["a", "quit"]);
    assert.deepEqual(lost, [undefined]);
  });
});

Deno.test("LineProtocol.resumeReading() and LengthPrefixedProtocol.resumeReading() deliver no held message once the transport closes", async (t) => {
  /** Pauses after each line, as a server that answers each one later. */
  class OneAtATime extends Lines {
    log: string[] = [];
    readonly lost = Promise.withResolvers<void>();
    override lineReceived(line: Uint8Array): void {
      super.lineReceived(line);
      this.log.push(`line ${text(line)}`);
      this.pauseReading();
    }
    override connectionLost(exc: Error | undefined): void {
      super.connectionLost(exc);
      this.log.push("lost");
      this.lost.resolve();
    }
  }

  await t.step("LineProtocol, after close()", () => {
    const protocol = new OneAtATime();
    const transport = new MemoryTransport(protocol);
    transport.receive(bytes("a\nb\nc\n"));
    transport.close();
    protocol.resumeReading();
    assert.deepEqual(protocol.lines, ["a"]);
  });

  await t.step("LineProtocol, after abort() and connectionLost", async () => {
    const protocol = new OneAtATime();
    const transport = new MemoryTransport(protocol);
    transport.receive(bytes("a\nb\nc\n"));
    transport.abort();
    await protocol.lost.promise;
    protocol.resumeReading();
    assert.deepEqual(protocol.log, ["line a", "lost"]);
  });

  /** Pauses after each frame. */
  class FrameAtATime extends Frames {
    readonly lost = Promise.withResolvers<void>();
    override frameReceived(frame: Uint8Array): void {
      super.frameReceived(frame);
      this.pauseReading();
    }
    override connectionLost(exc: Error | undefined): void {
      super.connectionLost(exc);
      this.lost.resolve();
    }
  }
  const stream = concat(["a", "", "b"].map((f) => frame(bytes(f), 1)));

  await t.step("LengthPrefixedProtocol, after close()", () => {
    const protocol = new FrameAtATime({ prefixLength: 1 });
    const transport = new MemoryTransport(protocol);
    transport.receive(stream);
    transport.close();
    protocol.resumeReading();
    assert.deepEqual(protocol.frames, ["a"]);
  });

  await t.step(
    "LengthPrefixedProtocol, after abort() and connectionLost",
    async () => {
      const protocol = new FrameAtATime({ prefixLength: 1 });
      const transport = new MemoryTransport(protocol);
      transport.receive(stream);
      transport.abort();
      await protocol.lost.promise;
      protocol.resumeReading();
      assert.deepEqual(protocol.frames, ["a"]);
    },
  );
});

// Over sockets.

/** Echoes each line with `sendLine`. */
class LineEcho extends LineProtocol {
  lines = 0;
  lostWith: Error | undefined;

  constructor(
    readonly recorder: Recorder<"made" | "lost">,
    options: LineProtocolOptions = {},
  ) {
    super(options);
  }

  override connectionMade(transport: Transport): void {
    super.connectionMade(transport);
    this.recorder.record("made");
  }
  override lineReceived(line: Uint8Array): void {
    this.lines++;
    this.sendLine(line);
  }
  override connectionLost(exc: Error | undefined): void {
    super.connectionLost(exc);
    this.lostWith = exc;
    this.recorder.record("lost");
  }
}

Deno.test("LineProtocol echoes every line in order over a socket", async () => {
  const recorder = new Recorder<"made" | "lost">();
  const { errors, onError } = errorCollector();
  const protocols: LineEcho[] = [];
  await using server = await createServer(() => {
    const protocol = new LineEcho(recorder, { delimiter: "\r\n" });
    protocols.push(protocol);
    return protocol;
  }, { hostname: "127.0.0.1", port: 0, onError });
  const { port } = server.addrs[0]!;
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });

  const next = random(77);
  // Lone "\r" and "\n" in lines, and lines ending in "\r".
  const lines = Array.from(
    { length: 2000 },
    (_, i) =>
      `${i}:${"z".repeat(next(40))}${"ab\r\n"[next(4)]!.repeat(next(3))}`,
  );
  const sent = bytes(lines.map((line) => `${line}\r\n`).join(""));
  const [, echoed] = await within(
    Promise.all([
      (async () => {
        for (const piece of chunk(sent, next, 97)) await writeAll(conn, piece);
      })(),
      readExactly(conn, sent.byteLength),
    ]),
    "the echo",
  );
  assertBytes(echoed, sent, "echo");
  assert.equal(protocols[0]!.lines, lines.length);
  conn.close();
  await within(recorder.waitFor("lost"), "connectionLost");
  assert.deepEqual(errors, []);
});

Deno.test("LengthPrefixedProtocol round-trips frames of 0 B to 1 MiB over a socket", async () => {
  class FrameEcho extends LengthPrefixedProtocol {
    override frameReceived(frame: Uint8Array): void {
      this.sendFrame(frame);
    }
  }
  class Client extends LengthPrefixedProtocol {
    frames: Uint8Array[] = [];
    recorder = new Recorder<"frame" | "lost">();
    override frameReceived(frame: Uint8Array): void {
      this.frames.push(frame);
      this.recorder.record("frame");
    }
    override connectionLost(exc: Error | undefined): void {
      super.connectionLost(exc);
      this.recorder.record("lost");
    }
  }
  const options = { maxFrameLength: 2 * MiB } as const;
  const { errors, onError } = errorCollector();
  await using server = await createServer(() => new FrameEcho(options), {
    hostname: "127.0.0.1",
    port: 0,
    onError,
  });
  const { port } = server.addrs[0]!;
  const [transport, client] = await createConnection(
    () => new Client(options),
    { hostname: "127.0.0.1", port, onError },
  );

  const payloads = [0, 1, 1000, 100 * KiB, MiB].map((size, i) =>
    pattern(size, i + 1)
  );
  for (const payload of payloads) client.sendFrame(payload);
  await within(client.recorder.waitFor("frame", payloads.length), "frames");
  assert.equal(client.frames.length, payloads.length);
  payloads.forEach((payload, i) =>
    assertBytes(client.frames[i]!, payload, `frame ${i}`)
  );
  transport.close();
  await within(client.recorder.waitFor("lost"), "connectionLost");
  assert.deepEqual(errors, []);
});

Deno.test("LineProtocol closes only the connection of a peer that sends an over-long line", async () => {
  const recorder = new Recorder<"made" | "lost">();
  const protocols: LineEcho[] = [];
  const { errors, onError } = errorCollector();
  await using server = await createServer(() => {
    const protocol = new LineEcho(recorder, { maxLineLength: 1024 });
    protocols.push(protocol);
    return protocol;
  }, { hostname: "127.0.0.1", port: 0, onError });
  const { port } = server.addrs[0]!;

  using good = await Deno.connect({ hostname: "127.0.0.1", port });
  assert.equal(await echoLines(good, ["first"]), "first\n");
  using hostile = await Deno.connect({ hostname: "127.0.0.1", port });
  await within(recorder.waitFor("made", 2), "the second connection");
  await writeAll(hostile, bytes("x".repeat(4 * KiB)));
  await within(recorder.waitFor("lost"), "connectionLost");
  await within(readUntilClosed(hostile), "the hostile peer's EOF");

  const bad = protocols[1]!;
  assert.ok(bad.lostWith instanceof FrameTooLongError);
  assert.equal(bad.lostWith.limit, 1024);
  assert.ok(bad.lostWith.length > 1024);
  assert.equal(errors.length, 1);
  assert.equal(errors[0]!.error, bad.lostWith);
  assert.match(errors[0]!.context.message, /protocol\.dataReceived\(\)/);
  assert.equal(errors[0]!.context.protocol, bad);

  assert.equal(protocols[0]!.transport!.isClosing(), false);
  assert.equal(
    await echoLines(good, ["still", "", "here"]),
    "still\n\nhere\n",
  );
  good.close();
  await within(recorder.waitFor("lost", 2), "the good connection's end");
  assert.equal(protocols[0]!.lostWith, undefined);
  assert.equal(errors.length, 1);
  assert.equal(protocols[0]!.transport?.isClosing(), true);
});
