/**
 * What every kind of transport does, tested once over the table of kinds in
 * `_kinds.ts`: stream (TCP, Unix, TLS), datagram (IPv4, IPv6), a child
 * process, and a child's stdout and stdin pipes. What only one kind does is
 * tested in that kind's files.
 */
import assert from "node:assert/strict";
import {
  assertBytes,
  concat,
  errorCollector,
  flowCalls,
  pattern,
} from "../_test_utils.ts";
import {
  assertOrder,
  type Kind,
  KindProtocol,
  KINDS,
  type Opened,
} from "./_kinds.ts";

/**
 * Some traffic each way the kind has: the writer sends 1000 bytes that the
 * peer gets, and the peer sends 100 bytes that the protocol gets.
 */
async function exchange(
  kind: Kind,
  opened: Opened,
  protocol: KindProtocol,
): Promise<void> {
  if (kind.writes) {
    const data = pattern(1000, 1);
    opened.writer.write(data);
    assertBytes(await opened.receive(data.byteLength), data, "the peer got");
  }
  if (kind.reads) {
    const before = protocol.bytes();
    const data = pattern(100, 2);
    await opened.send(data);
    await protocol.waitForBytes(before + data.byteLength);
    assertBytes(protocol.received().subarray(before), data, "the protocol got");
  }
}

/** The name of `kind`'s data callback, as onError messages give it. */
function callbackName(kind: Kind): string {
  return kind.dataCall.replace(/\(\d\)$/, "");
}

// 1. connectionMade first, connectionLost last and once.

Deno.test("BaseTransport calls connectionMade first and connectionLost last, once, with undefined after a clean end", async (t) => {
  for (const kind of KINDS) {
    for (const end of kind.ends) {
      await t.step(`${kind.name}: after ${end.name}`, async () => {
        const protocol = new KindProtocol();
        await using opened = await kind.open(protocol);
        await protocol.waitFor("connectionMade");
        await exchange(kind, opened, protocol);
        await end.run(opened);
        await protocol.waitFor("connectionLost");

        assert.equal(protocol.lostWith, undefined);
        assert.equal(opened.transport.isClosing(), true);
        // The peer sees the end; by then any second call would have come.
        assert.equal((await opened.afterEnd()).byteLength, 0);
        assert.equal(protocol.count("connectionLost"), 1);
        assertOrder(kind, protocol);
      });
    }
  }
});

Deno.test("BaseTransport calls no callback after connectionLost", async (t) => {
  for (const kind of KINDS) {
    for (const end of kind.ends.filter((end) => !end.halfCloses)) {
      await t.step(`${kind.name}: after ${end.name}`, async () => {
        const protocol = new KindProtocol();
        await using opened = await kind.open(protocol);
        await protocol.waitFor("connectionMade");
        await end.run(opened);
        await protocol.waitFor("connectionLost");
        const calls = [...protocol.calls];

        const next = new KindProtocol();
        opened.poke(next);
        if (kind.writes) assert.equal(opened.writer.getWriteBufferSize(), 0);
        if (kind.reads) assert.equal(opened.reader.isReading(), false);
        assert.equal(opened.transport.isClosing(), true);
        assert.equal((await opened.afterEnd()).byteLength, 0);
        assert.deepEqual(protocol.calls, calls);
        assert.deepEqual(next.calls, []);
      });
    }
  }
});

// 3. close() and abort().

Deno.test("BaseTransport.close() and abort() are idempotent, and isClosing() is true from the first call", async (t) => {
  const close = (opened: Opened) => opened.transport.close();
  const abort = (opened: Opened) => opened.abort();
  const sequences: [string, ((opened: Opened) => void)[]][] = [
    ["close() twice", [close, close]],
    ["abort() twice", [abort, abort]],
    ["abort() after close()", [close, abort]],
    ["close() after abort()", [abort, close]],
  ];
  for (const kind of KINDS) {
    for (const [name, calls] of sequences) {
      if (!kind.aborts && calls.includes(abort)) continue;
      await t.step(`${kind.name}: ${name}`, async () => {
        const protocol = new KindProtocol();
        await using opened = await kind.open(protocol);
        await protocol.waitFor("connectionMade");
        const sent = kind.writes ? kind.bulk(3) : [];
        for (const chunk of sent) opened.writer.write(chunk);

        for (const call of calls) {
          call(opened);
          assert.equal(opened.transport.isClosing(), true);
        }
        if (kind.writes && kind.flushes && name === "close() twice") {
          const all = concat(sent);
          assertBytes(await opened.receive(all.byteLength), all, "flushed");
        }
        await opened.afterEnd();
        await protocol.waitFor("connectionLost");
        opened.transport.close();
        if (kind.aborts) opened.abort();

        assert.equal((await opened.afterEnd()).byteLength, 0);
        assert.equal(protocol.count("connectionLost"), 1);
        assert.equal(protocol.lostWith, undefined);
        assertOrder(kind, protocol);
        if (!kind.echoes) {
          assert.deepEqual(
            protocol.calls.filter((call) =>
              call !== "pauseWriting" && call !== "resumeWriting"
            ),
            ["connectionMade", "connectionLost"],
          );
        }
      });
    }
  }
});

// 8. pauseReading() and resumeReading().

/**
 * Resolves once all that the peer sent arrived: at connectionLost for a
 * kind with EOF (sent after it), else once `nbytes` bytes came in all.
 */
async function allArrived(
  kind: Kind,
  protocol: KindProtocol,
  nbytes: number,
): Promise<void> {
  if (kind.eofCall === undefined) await protocol.waitForBytes(nbytes);
  else await protocol.waitFor("connectionLost");
}

/** Closes `opened` unless it is lost already, and checks the whole run. */
async function finish(
  kind: Kind,
  opened: Opened,
  protocol: KindProtocol,
): Promise<void> {
  if (protocol.count("connectionLost") === 0) opened.transport.close();
  await protocol.waitFor("connectionLost");
  assert.equal(protocol.lostWith, undefined);
  assertOrder(kind, protocol);
}

/** Sends `messages`, then EOF if the kind has one. */
async function sendAll(kind: Kind, opened: Opened, messages: Uint8Array[]) {
  for (const message of messages) await opened.send(message);
  if (kind.eofCall !== undefined) await opened.sendEof();
}

/**
 * Makes `protocol` pause reading in its `n`th data callback when
 * `pauseIn(n)`, and counts the data callbacks that come while paused.
 */
function pauseInDataCallback(
  kind: Kind,
  opened: Opened,
  protocol: KindProtocol,
  pauseIn: (n: number) => boolean,
): { whileHeld: number } {
  const paused = { whileHeld: 0 };
  protocol.hook = (call) => {
    if (call !== kind.dataCall) return;
    if (!opened.reader.isReading()) paused.whileHeld++;
    if (pauseIn(protocol.count(kind.dataCall))) opened.reader.pauseReading();
  };
  return paused;
}

/** The total size of `chunks`. */
function sizeOf(chunks: Uint8Array[]): number {
  return chunks.reduce((total, chunk) => total + chunk.byteLength, 0);
}

Deno.test("ReadTransport.pauseReading() holds data until resumeReading(), losing and reordering no byte", async (t) => {
  const readers = KINDS.filter((kind) => kind.reads);

  for (const kind of readers) {
    await t.step(
      `${kind.name}: paused from the data callback, with what comes after held`,
      async () => {
        const protocol = new KindProtocol();
        await using opened = await kind.open(protocol);
        const paused = pauseInDataCallback(
          kind,
          opened,
          protocol,
          (n) => n === 1,
        );
        await protocol.waitFor("connectionMade");
        const first = pattern(1000, 91);
        const then = pattern(50 * 1024, 92);
        await opened.send(first);
        await protocol.waitFor(kind.dataCall);
        assert.equal(opened.reader.isReading(), false);
        await sendAll(kind, opened, [then]);
        await opened.settle();

        assertBytes(protocol.received(), first.subarray(0, protocol.bytes()));
        assert.equal(protocol.count(kind.dataCall), 1);
        if (kind.eofCall) assert.equal(protocol.count(kind.eofCall), 0);
        assert.equal(opened.reader.isReading(), false);
        assert.equal(opened.transport.isClosing(), false);

        opened.reader.resumeReading();
        assert.equal(opened.reader.isReading(), true);
        await allArrived(kind, protocol, first.byteLength + then.byteLength);
        assertBytes(protocol.received(), concat([first, then]));
        assert.equal(paused.whileHeld, 0, "data callbacks while paused");
        await finish(kind, opened, protocol);
        assert.equal(opened.reader.isReading(), false);
      },
    );
  }

  for (const kind of readers) {
    await t.step(
      `${kind.name}: paused twice from outside, resumed twice (pauses do not count up)`,
      async () => {
        const protocol = new KindProtocol();
        await using opened = await kind.open(protocol);
        await protocol.waitFor("connectionMade");
        assert.equal(opened.reader.isReading(), true);
        opened.reader.pauseReading();
        opened.reader.pauseReading();
        assert.equal(opened.reader.isReading(), false);
        const first = pattern(10 * 1024, 93);
        await opened.send(first);
        await opened.settle();
        assert.equal(protocol.count(kind.dataCall), 0);

        opened.reader.resumeReading();
        opened.reader.resumeReading();
        assert.equal(opened.reader.isReading(), true);
        const then = kind.bulk(94);
        await sendAll(kind, opened, then);
        await allArrived(kind, protocol, first.byteLength + sizeOf(then));
        assertBytes(protocol.received(), concat([first, ...then]));
        if (kind.boundaries) {
          assert.deepEqual(
            protocol.chunks.map((chunk) => chunk.byteLength),
            [first, ...then].map((message) => message.byteLength),
          );
        }
        await finish(kind, opened, protocol);
      },
    );
  }

  for (const kind of readers) {
    await t.step(
      `${kind.name}: resumed and paused again in one task, held data stays held`,
      async () => {
        const protocol = new KindProtocol();
        await using opened = await kind.open(protocol);
        await protocol.waitFor("connectionMade");
        opened.reader.pauseReading();
        const first = pattern(2000, 103);
        await opened.send(first);
        await opened.settle();

        opened.reader.resumeReading();
        opened.reader.pauseReading();
        await opened.settle();
        assert.equal(protocol.count(kind.dataCall), 0);
        assert.equal(opened.reader.isReading(), false);

        opened.reader.resumeReading();
        await sendAll(kind, opened, []);
        await allArrived(kind, protocol, first.byteLength);
        assertBytes(protocol.received(), first);
        await finish(kind, opened, protocol);
      },
    );
  }

  for (const kind of readers.filter((kind) => kind.eofCall !== undefined)) {
    await t.step(
      `${kind.name}: an EOF that arrives while paused is held too`,
      async () => {
        const protocol = new KindProtocol();
        await using opened = await kind.open(protocol);
        await protocol.waitFor("connectionMade");
        opened.reader.pauseReading();
        await opened.sendEof();
        await opened.settle();
        assert.equal(protocol.count(kind.eofCall!), 0);
        assert.equal(opened.transport.isClosing(), false);

        opened.reader.resumeReading();
        await protocol.waitFor("connectionLost");
        assert.equal(protocol.count(kind.dataCall), 0);
        assert.deepEqual(protocol.calls.slice(-2), [
          kind.eofCall,
          "connectionLost",
        ]);
        await finish(kind, opened, protocol);
      },
    );
  }

  for (const kind of readers) {
    await t.step(
      `${kind.name}: paused in every data callback, one callback per resume, nothing lost`,
      async () => {
        const protocol = new KindProtocol();
        await using opened = await kind.open(protocol);
        const paused = pauseInDataCallback(kind, opened, protocol, () => true);
        await protocol.waitFor("connectionMade");
        const messages = kind.bulk(98);
        const total = sizeOf(messages);
        const sending = sendAll(kind, opened, messages);
        // Bounded: each callback brings a byte at least.
        for (let n = 1; n <= total && protocol.bytes() < total; n++) {
          await protocol.waitFor(kind.dataCall, n);
          await opened.settle(1);
          assert.equal(protocol.count(kind.dataCall), n, "one per resume");
          assert.equal(opened.reader.isReading(), false);
          if (kind.eofCall) assert.equal(protocol.count(kind.eofCall), 0);
          opened.reader.resumeReading();
        }
        await sending;
        await allArrived(kind, protocol, total);

        assertBytes(protocol.received(), concat(messages));
        if (kind.boundaries) {
          assert.deepEqual(
            protocol.chunks.map((chunk) => chunk.byteLength),
            messages.map((message) => message.byteLength),
          );
        }
        assert.equal(paused.whileHeld, 0, "data callbacks while paused");
        await finish(kind, opened, protocol);
      },
    );
  }

  for (const kind of readers) {
    await t.step(
      `${kind.name}: paused in the data callback and resumed a microtask later, nothing lost`,
      async () => {
        const protocol = new KindProtocol();
        await using opened = await kind.open(protocol);
        protocol.hook = (call) => {
          if (call !== kind.dataCall) return;
          opened.reader.pauseReading();
          queueMicrotask(() => opened.reader.resumeReading());
        };
        await protocol.waitFor("connectionMade");
        const messages = kind.bulk(13);
        await sendAll(kind, opened, messages);
        await allArrived(kind, protocol, sizeOf(messages));
        assertBytes(protocol.received(), concat(messages));
        await finish(kind, opened, protocol);
      },
    );
  }

  for (const kind of readers) {
    await t.step(
      `${kind.name}: close() while paused drops what is held`,
      async () => {
        const protocol = new KindProtocol();
        await using opened = await kind.open(protocol);
        await protocol.waitFor("connectionMade");
        opened.reader.pauseReading();
        await opened.send(pattern(100, 7));
        await opened.settle();
        opened.transport.close();
        assert.equal(opened.reader.isReading(), false);
        opened.reader.resumeReading();
        await protocol.waitFor("connectionLost");

        assert.equal(protocol.count(kind.dataCall), 0);
        assert.equal(protocol.count("eofReceived"), 0);
        await finish(kind, opened, protocol);
      },
    );
  }
});

// 9. A protocol callback that throws.

Deno.test("BaseTransport closes only the transport whose data callback throws, with the error, and reports it", async (t) => {
  for (const kind of KINDS.filter((kind) => kind.reads)) {
    await t.step(kind.name, async () => {
      const { errors, onError } = errorCollector();
      const error = new Error("boom");
      const failing = new KindProtocol();
      failing.hook = (call) => {
        if (call === kind.dataCall) throw error;
      };
      const working = new KindProtocol();
      await using bad = await kind.open(failing, onError);
      await using good = await kind.open(working, onError);
      await failing.waitFor("connectionMade");
      await working.waitFor("connectionMade");
      await bad.send(pattern(100, 1));
      // A second datagram waits in the socket: it is never delivered.
      if (kind.boundaries) await bad.send(pattern(100, 2));
      await failing.waitFor("connectionLost");

      assert.equal(failing.lostWith, error);
      const calls = ["connectionMade", kind.dataCall, "connectionLost"];
      assert.deepEqual(failing.calls, calls);
      assert.equal(bad.transport.isClosing(), true);
      assert.equal(errors.length, 1);
      assert.equal(errors[0]!.error, error);
      assert.match(
        errors[0]!.context.message,
        new RegExp(`protocol\\.${callbackName(kind)}\\(\\) call failed`),
      );
      assert.equal(errors[0]!.context.transport, bad.transport);
      assert.equal(errors[0]!.context.protocol, failing);

      // The other transport of the kind goes on.
      await exchange(kind, good, working);
      good.transport.close();
      await working.waitFor("connectionLost");
      assert.equal(working.lostWith, undefined);
      assertOrder(kind, working);
      assert.equal(errors.length, 1);
      await bad.afterEnd({ reset: true });
      assert.deepEqual(failing.calls, calls);
    });
  }
});

Deno.test("BaseTransport closes with the error a throwing connectionMade throws, and reports it", async (t) => {
  for (const kind of KINDS) {
    await t.step(kind.name, async () => {
      const { errors, onError } = errorCollector();
      const error = new Error("boom");
      const protocol = new KindProtocol();
      protocol.hook = (call) => {
        if (call === "connectionMade") throw error;
      };
      await using opened = await kind.open(protocol, onError);
      await protocol.waitFor("connectionLost");

      assert.equal(protocol.lostWith, error);
      assert.deepEqual(protocol.calls, ["connectionMade", "connectionLost"]);
      assert.equal(opened.transport.isClosing(), true);
      assert.equal(errors.length, 1);
      assert.equal(errors[0]!.error, error);
      assert.match(
        errors[0]!.context.message,
        /protocol\.connectionMade\(\) call failed/,
      );
      assert.equal(errors[0]!.context.transport, opened.transport);
      assert.equal(errors[0]!.context.protocol, protocol);
      await opened.afterEnd({ reset: true });
      assert.deepEqual(protocol.calls, ["connectionMade", "connectionLost"]);
    });
  }
});

Deno.test("BaseTransport reports a throwing pauseWriting or resumeWriting and goes on", async (t) => {
  for (const kind of KINDS.filter((kind) => kind.writes)) {
    await t.step(kind.name, async () => {
      const { errors, onError } = errorCollector();
      const protocol = new KindProtocol();
      let throws = 0;
      protocol.hook = (call) => {
        if (call === "pauseWriting") throw new Error(`pause ${++throws}`);
        if (call === "resumeWriting") throw new Error(`resume ${++throws}`);
      };
      await using opened = await kind.open(protocol, onError);
      await protocol.waitFor("connectionMade");
      opened.writer.setWriteBufferLimits({ high: 0 });

      const data = [pattern(500, 1), pattern(700, 2)];
      for (const [i, chunk] of data.entries()) {
        let accepted: boolean | void = undefined;
        assert.doesNotThrow(() => accepted = opened.writer.write(chunk));
        if (typeof accepted === "boolean") assert.equal(accepted, false);
        assert.equal(protocol.count("pauseWriting"), i + 1, "inside write()");
        await protocol.waitFor("resumeWriting", i + 1);
      }
      assertBytes(await opened.receive(1200), concat(data), "the peer got");
      assert.equal(opened.transport.isClosing(), false);

      assert.deepEqual(
        errors.map(({ error }) => (error as Error).message),
        ["pause 1", "resume 2", "pause 3", "resume 4"],
      );
      for (const [i, { context }] of errors.entries()) {
        assert.match(
          context.message,
          i % 2 === 0 ? /pauseWriting/ : /resumeWriting/,
        );
        assert.equal(context.transport, opened.transport);
        assert.equal(context.protocol, protocol);
      }
      assert.equal(
        flowCalls(protocol.calls),
        "pauseWriting resumeWriting pauseWriting resumeWriting",
      );

      opened.transport.close();
      await protocol.waitFor("connectionLost");
      assert.equal(protocol.lostWith, undefined);
      assert.equal(errors.length, 4);
    });
  }
});
