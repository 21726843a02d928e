import assert from "node:assert/strict";
import type { SubprocessTransport } from "../../transports/transport.ts";
import {
  assertBytes,
  bytes,
  flowCalls,
  NOT_BYTES,
  pattern,
  quietPeriod,
} from "../_test_utils.ts";
import {
  assertOrder,
  type CallbackName,
  exec,
  lines,
  MIB,
  PausedAtStart,
  printLines,
  RecordingSubprocessProtocol,
  shell,
} from "./_subprocess_utils.ts";

Deno.test("ChildProcessTransport calls pipe callbacks first, processExited once, connectionLost last", async (t) => {
  await t.step(
    "a child that prints on stdout and stderr, then exits",
    async () => {
      const protocol = new RecordingSubprocessProtocol();
      await shell(protocol, "printf out; printf err >&2; exit 3");
      await protocol.waitFor("connectionLost");

      assertOrder(protocol);
      assert.equal(protocol.text(1), "out");
      assert.equal(protocol.text(2), "err");
      assert.equal(protocol.returncodeAtExit, 3);
      assert.equal(protocol.lostWith, undefined);
      for (const fd of [0, 1, 2] as const) {
        assert.equal(protocol.pipeErrors.get(fd), undefined, `fd ${fd}`);
      }
    },
  );

  await t.step("1 MiB through cat arrives whole and in order", async () => {
    const protocol = new RecordingSubprocessProtocol();
    const { stdin } = await exec(protocol, "cat");
    const data = pattern(MIB, 3);
    stdin.write(data);
    stdin.writeEof();
    await protocol.waitFor("connectionLost");

    assertOrder(protocol);
    assertBytes(protocol.received(1), data, "stdout");
    assert.equal(protocol.bytes(2), 0);
    assert.equal(protocol.returncodeAtExit, 0);
  });

  await t.step(
    "1 MiB from head -c, which exits right after writing it",
    async () => {
      const protocol = new RecordingSubprocessProtocol();
      await exec(protocol, "head", ["-c", String(MIB), "/dev/zero"], {
        stdin: "null",
      });
      await protocol.waitFor("connectionLost");

      assertOrder(protocol, [1, 2]);
      const out = protocol.received(1);
      assert.equal(out.byteLength, MIB);
      assert.ok(out.every((byte) => byte === 0), "all zero");
      assert.equal(protocol.returncodeAtExit, 0);
    },
  );

  await t.step(
    "1 MiB on stdout and 512 KiB on stderr at once",
    async () => {
      const protocol = new RecordingSubprocessProtocol();
      await shell(
        protocol,
        `head -c ${MIB} /dev/zero & head -c ${MIB / 2} /dev/zero >&2; wait`,
        { stdin: "null" },
      );
      await protocol.waitFor("connectionLost");

      assertOrder(protocol, [1, 2]);
      assert.equal(protocol.bytes(1), MIB);
      assert.equal(protocol.bytes(2), MIB / 2);
    },
  );

  await t.step(
    "a child that closes stdout early and keeps running",
    async () => {
      const protocol = new RecordingSubprocessProtocol();
      // Closes stdout, then copies stdin to stderr until EOF.
      const { transport, stdin } = await shell(
        protocol,
        "exec >&-; exec cat >&2",
      );
      await protocol.waitFor("pipeConnectionLost(1)");

      assert.equal(transport.getReturncode(), null);
      assert.equal(protocol.count("processExited"), 0);
      assert.equal(protocol.count("connectionLost"), 0);
      stdin.write(bytes("still running\n"));
      await protocol.waitForBytes(2, 14);
      assert.equal(protocol.text(2), "still running\n");
      assert.equal(protocol.count("connectionLost"), 0);

      stdin.writeEof();
      await protocol.waitFor("connectionLost");
      assertOrder(protocol);
      assert.ok(
        protocol.calls.indexOf("pipeConnectionLost(1)") <
          protocol.calls.indexOf("processExited"),
      );
      assert.equal(protocol.bytes(1), 0);
      assert.equal(protocol.returncodeAtExit, 0);
    },
  );

  await t.step(
    "a grandchild that keeps stdout open after the child exited",
    async () => {
      class Watching extends RecordingSubprocessProtocol {
        callsAtExit: CallbackName[] = [];
        override processExited(): void {
          super.processExited();
          this.callsAtExit = [...this.calls];
        }
      }
      const protocol = new Watching();
      // The grandchild holds stdout and stdin; it prints once its stdin,
      // which the transport closes when the child exits, reaches EOF.
      await shell(protocol, "exec 3<&0; (cat <&3; echo late) & exit 0");
      await protocol.waitFor("connectionLost");

      assertOrder(protocol);
      assert.equal(protocol.text(1), "late\n");
      assert.deepEqual(protocol.callsAtExit, [
        "connectionMade",
        "processExited",
      ]);
      assert.equal(protocol.returncodeAtExit, 0);
      assert.equal(protocol.returncodeAtLost, 0);
    },
  );
});

// stdin.

Deno.test("ChildProcessTransport stdin pipe writes to the child", async (t) => {
  await t.step("write() then writeEof(): cat echoes it exactly", async () => {
    const protocol = new RecordingSubprocessProtocol();
    const { stdin } = await exec(protocol, "cat");
    assert.equal(stdin.canWriteEof(), true);
    assert.equal(stdin.write(bytes("hello ")), true);
    assert.equal(stdin.write(new Uint8Array(0)), true);
    assert.equal(stdin.write(bytes("world\n")), true);
    stdin.writeEof();
    await protocol.waitFor("connectionLost");

    assertOrder(protocol);
    assert.equal(protocol.text(1), "hello world\n");
    assert.equal(protocol.pipeErrors.get(0), undefined);
  });

  await t.step(
    "4 MiB honouring write() and pauseWriting/resumeWriting",
    async () => {
      const protocol = new RecordingSubprocessProtocol();
      const { stdin } = await exec(protocol, "cat");
      const data = pattern(4 * MIB, 5);
      const chunk = 64 * 1024;
      const { high } = stdin.getWriteBufferLimits();
      let falses = 0;
      for (let offset = 0; offset < data.byteLength; offset += chunk) {
        const paused = protocol.count("pauseWriting");
        const ok = stdin.write(data.subarray(offset, offset + chunk));
        assert.equal(
          ok,
          stdin.getWriteBufferSize() <= high,
          "write() tells whether the buffer is within the high mark",
        );
        if (!ok) {
          falses++;
          assert.equal(
            protocol.count("pauseWriting"),
            paused + 1,
            "pauseWriting inside write()",
          );
          await protocol.waitFor("resumeWriting", paused + 1);
          assert.ok(stdin.getWriteBufferSize() <= high / 4);
        }
      }
      stdin.writeEof();
      await protocol.waitFor("connectionLost");

      assertOrder(protocol);
      assert.ok(falses > 0, "the buffer went over the high mark");
      assert.equal(protocol.count("pauseWriting"), falses);
      assert.equal(protocol.count("resumeWriting"), falses);
      assert.equal(stdin.getWriteBufferSize(), 0);
      assertBytes(protocol.received(1), data, "stdout");
    },
  );

  await t.step("writelines() writes the chunks joined", async () => {
    const protocol = new RecordingSubprocessProtocol();
    const { stdin } = await exec(protocol, "cat");
    assert.equal(
      stdin.writelines(
        ["one\n", "two\n", "three\n"].map((line) => bytes(line)),
      ),
      true,
    );
    stdin.writelines([bytes("four\n")]);
    stdin.writelines([]);
    assert.throws(
      () =>
        stdin.writelines([
          bytes("five\n"),
          "six\n" as unknown as Uint8Array,
        ]),
      TypeError,
    );
    stdin.writeEof();
    await protocol.waitFor("connectionLost");

    assert.equal(protocol.text(1), "one\ntwo\nthree\nfour\n");
  });

  await t.step(
    "write() of anything but a Uint8Array is a TypeError",
    async () => {
      const protocol = new RecordingSubprocessProtocol();
      const { stdin } = await exec(protocol, "cat");
      for (const [what, value] of NOT_BYTES) {
        assert.throws(
          () => stdin.write(value as Uint8Array),
          TypeError,
          what,
        );
        assert.equal(stdin.getWriteBufferSize(), 0, what);
      }
      stdin.write(bytes("ok"));
      stdin.writeEof();
      await protocol.waitFor("connectionLost");

      assert.equal(protocol.text(1), "ok");
    },
  );

  await t.step("write() after writeEof() is a TypeError", async () => {
    const protocol = new RecordingSubprocessProtocol();
    const { stdin } = await exec(protocol, "cat");
    stdin.write(bytes("before"));
    stdin.writeEof();
    assert.throws(() => stdin.write(bytes("after")), TypeError);
    stdin.writeEof();
    await protocol.waitFor("connectionLost");
    // Still a mistake once stdin is closed and the child gone.
    assert.throws(() => stdin.write(bytes("later")), TypeError);

    assert.equal(protocol.text(1), "before");
  });

  await t.step(
    "write() after the pipe's close() is dropped silently",
    async () => {
      const protocol = new RecordingSubprocessProtocol();
      const { stdin } = await exec(protocol, "cat");
      stdin.write(bytes("before"));
      stdin.close();
      assert.equal(stdin.isClosing(), true);
      assert.doesNotThrow(() => stdin.write(bytes("after")));
      await protocol.waitFor("connectionLost");

      assert.equal(protocol.text(1), "before");
      assert.equal(stdin.getWriteBufferSize(), 0);
      assert.doesNotThrow(() => stdin.write(bytes("later")));
    },
  );

  await t.step(
    "write() after the transport's close() is dropped silently",
    async () => {
      const protocol = new RecordingSubprocessProtocol();
      const { transport, stdin } = await exec(protocol, "cat");
      transport.close();
      assert.doesNotThrow(() => stdin.write(bytes("after")));
      await protocol.waitFor("connectionLost");

      assert.doesNotThrow(() => stdin.write(bytes("later")));
      assert.equal(stdin.getWriteBufferSize(), 0);
      assert.equal(protocol.bytes(1), 0);
    },
  );

  await t.step("write buffer size and limits", async () => {
    const protocol = new RecordingSubprocessProtocol();
    await using cat = await exec(protocol, "cat");
    const { stdin } = cat;
    assert.deepEqual(stdin.getWriteBufferLimits(), {
      high: 64 * 1024,
      low: 16 * 1024,
    });
    stdin.setWriteBufferLimits({ high: 100 });
    assert.deepEqual(stdin.getWriteBufferLimits(), { high: 100, low: 25 });
    stdin.setWriteBufferLimits({ low: 10 });
    assert.deepEqual(stdin.getWriteBufferLimits(), { high: 40, low: 10 });
    assert.throws(
      () => stdin.setWriteBufferLimits({ high: 10, low: 20 }),
      RangeError,
    );
    assert.throws(() => stdin.setWriteBufferLimits({ low: -1 }), RangeError);
    assert.deepEqual(stdin.getWriteBufferLimits(), { high: 40, low: 10 });

    // Counted synchronously, then flushed.
    assert.equal(stdin.getWriteBufferSize(), 0);
    assert.equal(stdin.write(pattern(30, 1)), true);
    assert.equal(stdin.getWriteBufferSize(), 30);
    assert.equal(protocol.count("pauseWriting"), 0);
    assert.equal(stdin.write(pattern(20, 2)), false);
    assert.equal(stdin.getWriteBufferSize(), 50);
    assert.equal(protocol.count("pauseWriting"), 1);
    await protocol.waitFor("resumeWriting");
    await protocol.waitForBytes(1, 50);
    assert.equal(stdin.getWriteBufferSize(), 0);

    // Setting limits re-checks the buffer at once.
    stdin.setWriteBufferLimits({ high: 1000, low: 0 });
    stdin.write(pattern(100, 3));
    assert.equal(protocol.count("pauseWriting"), 1);
    stdin.setWriteBufferLimits({ high: 50, low: 0 });
    assert.equal(protocol.count("pauseWriting"), 2);
    await protocol.waitFor("resumeWriting", 2);
    await protocol.waitForBytes(1, 150);

    assert.equal(
      flowCalls(protocol.calls),
      "pauseWriting resumeWriting pauseWriting resumeWriting",
    );
    const expected = new Uint8Array(150);
    expected.set(pattern(30, 1), 0);
    expected.set(pattern(20, 2), 30);
    expected.set(pattern(100, 3), 50);
    assertBytes(protocol.received(1), expected, "stdout");
  });
});

// stdin when the child exits.

Deno.test("ChildProcessTransport closes stdin when the child exits", async (t) => {
  await t.step(
    "with data queued: pipeConnectionLost(0, BrokenPipe), then connectionLost(undefined)",
    async () => {
      class WritesAtOnce extends RecordingSubprocessProtocol {
        accepted: boolean | undefined;
        override connectionMade(transport: SubprocessTransport): void {
          super.connectionMade(transport);
          this.accepted = transport.getPipeTransport(0)?.write(pattern(MIB, 7));
        }
      }
      const protocol = new WritesAtOnce();
      const { stdin } = await shell(protocol, "exit 0");
      await protocol.waitFor("connectionLost");

      assertOrder(protocol);
      assert.equal(protocol.accepted, false);
      const error = protocol.pipeErrors.get(0);
      assert.ok(
        error instanceof Deno.errors.BrokenPipe,
        `pipeConnectionLost(0, ${error})`,
      );
      assert.equal(protocol.lostWith, undefined);
      assert.equal(protocol.returncodeAtExit, 0);
      assert.equal(stdin.getWriteBufferSize(), 0);
      assert.equal(stdin.isClosing(), true);
      assert.doesNotThrow(() => stdin.write(bytes("late")));
    },
  );

  await t.step("idle: pipeConnectionLost(0, undefined)", async () => {
    const protocol = new RecordingSubprocessProtocol();
    const { stdin } = await shell(protocol, "exit 0");
    await protocol.waitFor("connectionLost");

    assertOrder(protocol);
    assert.ok(protocol.pipeErrors.has(0));
    assert.equal(protocol.pipeErrors.get(0), undefined);
    assert.equal(protocol.lostWith, undefined);
    assert.equal(stdin.isClosing(), true);
  });
});

// Pausing stdout.

// Pausing in the data callback, as every transport that reads:
// lifecycle_test.ts.
Deno.test("ChildProcessTransport stdout pipe pauses and resumes reading", async (t) => {
  await t.step(
    "paused in connectionMade: nothing arrives until resumeReading()",
    async () => {
      const protocol = new PausedAtStart();
      // About 3 KB in 400 writes: less than even the smallest pipe holds.
      const { stdout } = await shell(
        protocol,
        `${printLines(400)}; echo done >&2`,
        { stdin: "null" },
      );
      assert.equal(stdout.isReading(), false);
      await protocol.waitFor("processExited");
      await protocol.waitFor("pipeConnectionLost(2)");
      await quietPeriod();

      assert.equal(protocol.count("pipeDataReceived(1)"), 0);
      assert.equal(protocol.count("pipeConnectionLost(1)"), 0);
      assert.equal(protocol.count("connectionLost"), 0);
      assert.equal(protocol.text(2), "done\n");
      stdout.resumeReading();
      assert.equal(stdout.isReading(), true);
      await protocol.waitFor("connectionLost");

      assertOrder(protocol, [1, 2]);
      assert.equal(protocol.text(1), lines(400));
      assert.equal(stdout.isReading(), false);
    },
  );

  await t.step(
    "2 MiB through cat: each pause stops pipeDataReceived(1), nothing lost",
    async () => {
      const protocol = new RecordingSubprocessProtocol();
      const { stdin, stdout } = await exec(protocol, "cat");
      const data = pattern(2 * MIB, 11);
      stdin.write(data);
      stdin.writeEof();
      assert.equal(stdout.isReading(), true);

      for (const at of [64 * 1024, MIB, MIB + MIB / 2]) {
        await protocol.waitForBytes(1, at);
        stdout.pauseReading();
        stdout.pauseReading();
        assert.equal(stdout.isReading(), false);
        const count = protocol.count("pipeDataReceived(1)");
        await quietPeriod();
        assert.equal(
          protocol.count("pipeDataReceived(1)"),
          count,
          `no output while paused at ${at}`,
        );
        assert.equal(protocol.count("pipeConnectionLost(1)"), 0);
        stdout.resumeReading();
        stdout.resumeReading();
        assert.equal(stdout.isReading(), true);
      }
      await protocol.waitFor("connectionLost");

      assertOrder(protocol);
      assertBytes(protocol.received(1), data, "stdout");
      assert.equal(stdout.isReading(), false);
    },
  );
});

// Pipe transports and extra info.

Deno.test("ChildProcessTransport.getPipeTransport() gives a transport for each piped stream only", async (t) => {
  await t.step("all piped: stdin writes, stdout and stderr read", async () => {
    const protocol = new RecordingSubprocessProtocol();
    await using cat = await exec(protocol, "cat");
    const { transport } = cat;
    const stdin = transport.getPipeTransport(0);
    assert.ok(stdin, "stdin is piped");
    assert.equal(typeof stdin.write, "function");
    assert.equal(typeof stdin.writeEof, "function");
    for (const fd of [1, 2] as const) {
      const pipe = transport.getPipeTransport(fd);
      assert.ok(pipe, `fd ${fd} is piped`);
      assert.equal(typeof pipe.pauseReading, "function", `fd ${fd}`);
      assert.equal(pipe.isReading(), true, `fd ${fd}`);
      assert.equal(pipe.isClosing(), false, `fd ${fd}`);
    }
    assert.ok(stdin.getExtraInfo("pipe") instanceof WritableStream);
    assert.ok(
      transport.getPipeTransport(1)!.getExtraInfo("pipe") instanceof
        ReadableStream,
    );
    assert.equal(stdin.getExtraInfo("nothing", "default"), "default");
  });

  await t.step(
    "an fd other than 0, 1 or 2 has none, as asyncio's None",
    async () => {
      const protocol = new RecordingSubprocessProtocol();
      await using cat = await exec(protocol, "cat");
      for (const fd of [3, -1, 1.5, "1", "2", null, undefined]) {
        assert.equal(
          cat.transport.getPipeTransport(fd as 0 | 1 | 2),
          undefined,
          `fd ${JSON.stringify(fd)}`,
        );
      }
    },
  );

  await t.step('"null" streams have none', async () => {
    const protocol = new RecordingSubprocessProtocol();
    const { transport } = await shell(protocol, "echo hidden; exit 4", {
      stdin: "null",
      stdout: "null",
      stderr: "null",
    });
    for (const fd of [0, 1, 2] as const) {
      assert.equal(transport.getPipeTransport(fd), undefined, `fd ${fd}`);
    }
    await protocol.waitFor("connectionLost");

    assertOrder(protocol, []);
    assert.deepEqual(protocol.calls, [
      "connectionMade",
      "processExited",
      "connectionLost",
    ]);
    assert.equal(transport.getReturncode(), 4);
  });

  await t.step("only stdout piped", async () => {
    const protocol = new RecordingSubprocessProtocol();
    const { transport } = await shell(protocol, "echo out; echo err >&2", {
      stdin: "null",
      stderr: "null",
    });
    assert.equal(transport.getPipeTransport(0), undefined);
    assert.notEqual(transport.getPipeTransport(1), undefined);
    assert.equal(transport.getPipeTransport(2), undefined);
    await protocol.waitFor("connectionLost");

    assertOrder(protocol, [1]);
    assert.equal(protocol.text(1), "out\n");
    assert.equal(protocol.bytes(2), 0);
  });
});
