import assert from "node:assert/strict";
import type { SubprocessProtocol } from "../../protocols/subprocess_protocol.ts";
import {
  subprocessExec,
  type SubprocessExecOptions,
  subprocessShell,
} from "../../transports/subprocess_exec.ts";
import { ChildProcessTransport } from "../../transports/_subprocess_transport.ts";
import type {
  ReadTransport,
  SubprocessTransport,
  WriteTransport,
} from "../../transports/transport.ts";
import {
  assertBytes,
  BaseRecorder,
  concat,
  errorCollector,
  flowCalls,
  NOT_BYTES,
  pattern,
  within,
} from "../_test_utils.ts";

// Helpers.

/** How long a test watches for a callback that must not come. */
const QUIET_MS = 50;
/** One mebibyte. */
const MIB = 1024 * 1024;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Lets `ms` pass, to watch for callbacks that must not come; never used to
 * wait for one that must.
 */
function quietPeriod(ms = QUIET_MS): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

type OutFd = 1 | 2;
type Fd = 0 | OutFd;

/** Names of the callbacks {@linkcode RecordingSubprocessProtocol} records. */
type CallbackName =
  | "connectionMade"
  | `pipeDataReceived(${OutFd})`
  | `pipeConnectionLost(${Fd})`
  | "processExited"
  | "pauseWriting"
  | "resumeWriting"
  | "connectionLost";

/**
 * A `SubprocessProtocol` that records each callback in `calls` (with the fd
 * of pipe callbacks), keeps the output and errors it gets, and can wait for
 * a callback.
 */
class RecordingSubprocessProtocol
  extends BaseRecorder<CallbackName, SubprocessTransport>
  implements SubprocessProtocol {
  chunks: Record<OutFd, Uint8Array[]> = { 1: [], 2: [] };
  pipeErrors = new Map<Fd, Error | undefined>();
  /** `getReturncode()` inside processExited and connectionLost. */
  returncodeAtExit: number | null | undefined;
  returncodeAtLost: number | null | undefined;

  /** Resolves once `name` has been called `count` times; fails at the deadline. */
  override waitFor(name: CallbackName, count = 1): Promise<void> {
    return within(
      super.waitFor(name, count),
      `${name} #${count} (calls: ${this.calls.join(" ")})`,
    );
  }

  pipeDataReceived(fd: OutFd, data: Uint8Array): void {
    this.chunks[fd].push(data);
    this.record(`pipeDataReceived(${fd})`);
  }
  pipeConnectionLost(fd: Fd, exc: Error | undefined): void {
    this.pipeErrors.set(fd, exc);
    this.record(`pipeConnectionLost(${fd})`);
  }
  processExited(): void {
    this.returncodeAtExit = this.transport?.getReturncode();
    this.record("processExited");
  }
  override connectionLost(exc: Error | undefined): void {
    this.returncodeAtLost = this.transport?.getReturncode();
    super.connectionLost(exc);
  }

  /** Every byte received on `fd` so far, in one array. */
  received(fd: OutFd): Uint8Array {
    return concat(this.chunks[fd]);
  }

  /** How many bytes arrived on `fd` so far. */
  bytes(fd: OutFd): number {
    return this.chunks[fd].reduce(
      (total, chunk) => total + chunk.byteLength,
      0,
    );
  }

  /** What arrived on `fd`, decoded as text. */
  text(fd: OutFd): string {
    return decoder.decode(this.received(fd));
  }

  /** Resolves once at least `nbytes` bytes in all arrived on `fd`. */
  async waitForBytes(fd: OutFd, nbytes: number): Promise<void> {
    while (this.bytes(fd) < nbytes) {
      const name = `pipeDataReceived(${fd})` as const;
      await this.waitFor(name, this.count(name) + 1);
    }
  }
}

/** A child started for a test; disposing closes it and waits for the end. */
interface Child<P extends RecordingSubprocessProtocol> extends AsyncDisposable {
  transport: SubprocessTransport;
  protocol: P;
  /** The stdin pipe transport. */
  stdin: WriteTransport;
  /** The stdout pipe transport. */
  stdout: ReadTransport;
}

function child<P extends RecordingSubprocessProtocol>(
  transport: SubprocessTransport,
  protocol: P,
): Child<P> {
  return {
    transport,
    protocol,
    get stdin() {
      const stdin = transport.getPipeTransport(0);
      assert.ok(stdin, "stdin is piped");
      return stdin;
    },
    get stdout() {
      const stdout = transport.getPipeTransport(1);
      assert.ok(stdout, "stdout is piped");
      return stdout;
    },
    async [Symbol.asyncDispose]() {
      transport.close();
      await protocol.waitFor("connectionLost");
    },
  };
}

/** Starts `program` with `args` for `protocol`. */
async function exec<P extends RecordingSubprocessProtocol>(
  protocol: P,
  program: string,
  args: string[] = [],
  options: SubprocessExecOptions = {},
): Promise<Child<P>> {
  const [transport, made] = await subprocessExec(
    () => protocol,
    program,
    args,
    options,
  );
  assert.equal(made, protocol);
  return child(transport, protocol);
}

/** Starts the shell command line `command` for `protocol`. */
async function shell<P extends RecordingSubprocessProtocol>(
  protocol: P,
  command: string,
  options: SubprocessExecOptions = {},
): Promise<Child<P>> {
  const [transport, made] = await subprocessShell(
    () => protocol,
    command,
    options,
  );
  assert.equal(made, protocol);
  return child(transport, protocol);
}

/** Asserts that pauseWriting and resumeWriting strictly alternate. */
function assertFlowAlternates(calls: CallbackName[]): void {
  const flow = calls.filter((call) =>
    call === "pauseWriting" || call === "resumeWriting"
  );
  for (const [i, call] of flow.entries()) {
    assert.equal(
      call,
      i % 2 === 0 ? "pauseWriting" : "resumeWriting",
      `flow control call ${i} of: ${flow.join(" ")}`,
    );
  }
}

/**
 * Checks contract point 12 on a finished run: connectionMade first;
 * each pipe in `fds` lost once, after all its data; processExited once;
 * connectionLost last, once, after the exit and every pipe.
 */
function assertOrder(
  protocol: RecordingSubprocessProtocol,
  fds: readonly Fd[] = [0, 1, 2],
): void {
  const { calls } = protocol;
  const all = calls.join(" ");
  assert.equal(calls[0], "connectionMade", all);
  assert.equal(protocol.count("connectionMade"), 1, all);
  assert.equal(calls.at(-1), "connectionLost", all);
  assert.equal(protocol.count("connectionLost"), 1, all);
  assert.equal(protocol.count("processExited"), 1, all);
  for (const fd of [0, 1, 2] as const) {
    const lost = calls.indexOf(`pipeConnectionLost(${fd})`);
    if (!fds.includes(fd)) {
      assert.equal(lost, -1, `fd ${fd} is not piped: ${all}`);
      continue;
    }
    assert.equal(protocol.count(`pipeConnectionLost(${fd})`), 1, all);
    if (fd !== 0) {
      assert.ok(
        calls.lastIndexOf(`pipeDataReceived(${fd})`) < lost,
        `data on fd ${fd} after it was lost: ${all}`,
      );
    }
  }
  assert.notEqual(protocol.returncodeAtExit, null, "returncode at exit");
  assert.equal(
    protocol.returncodeAtLost,
    protocol.transport?.getReturncode(),
    "returncode at connectionLost",
  );
  assertFlowAlternates(calls);
}

/** `count` lines `line 0\n`, `line 1\n`... as a shell loop prints them. */
function lines(count: number): string {
  let out = "";
  for (let i = 0; i < count; i++) out += `line ${i}\n`;
  return out;
}

/** A shell loop that prints {@linkcode lines}, one write each. */
function printLines(count: number): string {
  return `i=0; while [ $i -lt ${count} ]; do echo "line $i"; i=$((i+1)); done`;
}

// 1. Order of callbacks.

Deno.test("subprocessExec() resolves after connectionMade, the first callback", async () => {
  const protocol = new RecordingSubprocessProtocol();
  await using cat = await exec(protocol, "cat");

  assert.deepEqual(protocol.calls, ["connectionMade"]);
  assert.equal(protocol.transport, cat.transport);
  assert.ok(cat.transport instanceof ChildProcessTransport);
  assert.equal(cat.transport.getProtocol(), protocol);
  assert.equal(cat.transport.getReturncode(), null);
  cat.stdin.writeEof();
  await protocol.waitFor("connectionLost");
  assertOrder(protocol);
  assert.equal(protocol.lostWith, undefined);
});

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
      stdin.write(encoder.encode("still running\n"));
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

// 2. stdin.

Deno.test("ChildProcessTransport stdin pipe writes to the child", async (t) => {
  await t.step("write() then writeEof(): cat echoes it exactly", async () => {
    const protocol = new RecordingSubprocessProtocol();
    const { stdin } = await exec(protocol, "cat");
    assert.equal(stdin.canWriteEof(), true);
    assert.equal(stdin.write(encoder.encode("hello ")), true);
    assert.equal(stdin.write(new Uint8Array(0)), true);
    assert.equal(stdin.write(encoder.encode("world\n")), true);
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
        ["one\n", "two\n", "three\n"].map((line) => encoder.encode(line)),
      ),
      true,
    );
    stdin.writelines([encoder.encode("four\n")]);
    stdin.writelines([]);
    assert.throws(
      () =>
        stdin.writelines([
          encoder.encode("five\n"),
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
      stdin.write(encoder.encode("ok"));
      stdin.writeEof();
      await protocol.waitFor("connectionLost");

      assert.equal(protocol.text(1), "ok");
    },
  );

  await t.step("write() after writeEof() is a TypeError", async () => {
    const protocol = new RecordingSubprocessProtocol();
    const { stdin } = await exec(protocol, "cat");
    stdin.write(encoder.encode("before"));
    stdin.writeEof();
    assert.throws(() => stdin.write(encoder.encode("after")), TypeError);
    stdin.writeEof();
    await protocol.waitFor("connectionLost");
    // Still a mistake once stdin is closed and the child gone.
    assert.throws(() => stdin.write(encoder.encode("later")), TypeError);

    assert.equal(protocol.text(1), "before");
  });

  await t.step(
    "write() after the pipe's close() is dropped silently",
    async () => {
      const protocol = new RecordingSubprocessProtocol();
      const { stdin } = await exec(protocol, "cat");
      stdin.write(encoder.encode("before"));
      stdin.close();
      assert.equal(stdin.isClosing(), true);
      assert.doesNotThrow(() => stdin.write(encoder.encode("after")));
      await protocol.waitFor("connectionLost");

      assert.equal(protocol.text(1), "before");
      assert.equal(stdin.getWriteBufferSize(), 0);
      assert.doesNotThrow(() => stdin.write(encoder.encode("later")));
    },
  );

  await t.step(
    "write() after the transport's close() is dropped silently",
    async () => {
      const protocol = new RecordingSubprocessProtocol();
      const { transport, stdin } = await exec(protocol, "cat");
      transport.close();
      assert.doesNotThrow(() => stdin.write(encoder.encode("after")));
      await protocol.waitFor("connectionLost");

      assert.doesNotThrow(() => stdin.write(encoder.encode("later")));
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

// 3. stdin when the child exits.

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
      assert.doesNotThrow(() => stdin.write(encoder.encode("late")));
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

// 4. Return codes and signals.

Deno.test("ChildProcessTransport.getReturncode() gives the exit code, or -N after signal N", async (t) => {
  await t.step("exit 7 gives 7", async () => {
    const protocol = new RecordingSubprocessProtocol();
    const { transport } = await shell(protocol, "exit 7");
    await protocol.waitFor("connectionLost");

    assertOrder(protocol);
    assert.equal(protocol.returncodeAtExit, 7);
    assert.equal(transport.getReturncode(), 7);
  });

  const signals: [string, (transport: SubprocessTransport) => void, number][] =
    [
      ["terminate()", (transport) => transport.terminate(), -15],
      ["kill()", (transport) => transport.kill(), -9],
      [
        'sendSignal("SIGUSR1")',
        (transport) => transport.sendSignal("SIGUSR1"),
        -10,
      ],
    ];
  for (const [what, send, code] of signals) {
    await t.step(`${what} on sleep gives ${code}`, async () => {
      const protocol = new RecordingSubprocessProtocol();
      const { transport } = await exec(protocol, "sleep", ["5"]);
      assert.equal(transport.getReturncode(), null);
      send(transport);
      await protocol.waitFor("connectionLost");

      assertOrder(protocol);
      assert.equal(protocol.returncodeAtExit, code);
      assert.equal(transport.getReturncode(), code);
      assert.equal(protocol.lostWith, undefined);
    });
  }

  await t.step("signals after the exit do nothing", async () => {
    const protocol = new RecordingSubprocessProtocol();
    const { transport } = await shell(protocol, "exit 0");
    await protocol.waitFor("connectionLost");
    const calls = [...protocol.calls];

    assert.doesNotThrow(() => transport.terminate());
    assert.doesNotThrow(() => transport.kill());
    assert.doesNotThrow(() => transport.sendSignal("SIGUSR1"));
    assert.doesNotThrow(() => transport.sendSignal("SIGFOO" as Deno.Signal));
    await quietPeriod();
    assert.equal(transport.getReturncode(), 0);
    assert.deepEqual(protocol.calls, calls);
  });

  await t.step("signals right after processExited do nothing", async () => {
    class SignalsOnExit extends RecordingSubprocessProtocol {
      thrown: unknown[] = [];
      override processExited(): void {
        super.processExited();
        for (
          const send of [
            () => this.transport!.kill(),
            () => this.transport!.terminate(),
          ]
        ) {
          try {
            send();
          } catch (error) {
            this.thrown.push(error);
          }
        }
      }
    }
    const protocol = new SignalsOnExit();
    await shell(protocol, "exit 0");
    await protocol.waitFor("connectionLost");

    assertOrder(protocol);
    assert.deepEqual(protocol.thrown, []);
  });

  await t.step(
    "an unknown signal name is a TypeError while it runs",
    async () => {
      const protocol = new RecordingSubprocessProtocol();
      await using sleep = await exec(protocol, "sleep", ["5"]);
      assert.throws(
        () => sleep.transport.sendSignal("SIGFOO" as Deno.Signal),
        TypeError,
      );
      assert.equal(sleep.transport.getReturncode(), null);
      assert.equal(protocol.count("processExited"), 0);
    },
  );

  await t.step("aborting options.signal stops the child", async () => {
    const controller = new AbortController();
    const protocol = new RecordingSubprocessProtocol();
    const { transport } = await exec(protocol, "sleep", ["5"], {
      signal: controller.signal,
    });
    controller.abort();
    await protocol.waitFor("connectionLost");

    assertOrder(protocol);
    assert.ok(
      (transport.getReturncode() ?? 0) < 0,
      `returncode ${transport.getReturncode()}`,
    );
  });
});

// 5. close().

Deno.test("ChildProcessTransport.close() kills a running child and closes every pipe", async (t) => {
  await t.step(
    "a sleeping child gets SIGKILL; connectionLost follows",
    async () => {
      const protocol = new RecordingSubprocessProtocol();
      const { transport } = await exec(protocol, "sleep", ["5"]);
      assert.equal(transport.isClosing(), false);
      transport.close();
      assert.equal(transport.isClosing(), true);
      for (const fd of [0, 1, 2] as const) {
        assert.equal(
          transport.getPipeTransport(fd)!.isClosing(),
          true,
          `fd ${fd}`,
        );
      }
      transport.close();
      await protocol.waitFor("connectionLost");

      assertOrder(protocol);
      assert.equal(transport.getReturncode(), -9);
      assert.equal(protocol.lostWith, undefined);
      for (const fd of [0, 1, 2] as const) {
        assert.equal(protocol.pipeErrors.get(fd), undefined, `fd ${fd}`);
      }
      transport.close();
      assert.equal(transport.isClosing(), true);
      await quietPeriod();
      assert.equal(protocol.count("connectionLost"), 1);
    },
  );

  await t.step("a child that already exited is not signalled", async () => {
    const protocol = new RecordingSubprocessProtocol();
    const { transport } = await shell(protocol, "exit 5");
    await protocol.waitFor("connectionLost");
    const calls = [...protocol.calls];
    transport.close();
    transport.close();
    await quietPeriod();

    assert.equal(transport.getReturncode(), 5);
    assert.deepEqual(protocol.calls, calls);
  });

  await t.step(
    "close() after the exit, while a grandchild holds stdout, closes it",
    async () => {
      class PausedAtStart extends RecordingSubprocessProtocol {
        override connectionMade(transport: SubprocessTransport): void {
          super.connectionMade(transport);
          transport.getPipeTransport(1)?.pauseReading();
        }
      }
      const protocol = new PausedAtStart();
      // The grandchild holds stdout and stderr and blocks writing to the
      // paused stdout; once close() closes the pipe, its write fails and
      // it ends.
      const { transport } = await shell(
        protocol,
        `head -c ${MIB} /dev/zero & exit 0`,
      );
      await protocol.waitFor("processExited");
      await protocol.waitFor("pipeConnectionLost(0)");
      await quietPeriod();
      assert.equal(protocol.count("connectionLost"), 0);
      assert.equal(protocol.count("pipeDataReceived(1)"), 0);
      transport.close();
      await protocol.waitFor("connectionLost");

      assertOrder(protocol);
      assert.equal(protocol.count("pipeDataReceived(1)"), 0);
      assert.equal(transport.getReturncode(), 0);
    },
  );
});

// 6. Pausing stdout.

Deno.test("ChildProcessTransport stdout pipe pauses and resumes reading", async (t) => {
  await t.step(
    "paused in connectionMade: nothing arrives until resumeReading()",
    async () => {
      class PausedAtStart extends RecordingSubprocessProtocol {
        override connectionMade(transport: SubprocessTransport): void {
          super.connectionMade(transport);
          transport.getPipeTransport(1)?.pauseReading();
        }
      }
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

  await t.step(
    "paused and resumed inside pipeDataReceived on every chunk",
    async () => {
      class Toggles extends RecordingSubprocessProtocol {
        override pipeDataReceived(fd: OutFd, data: Uint8Array): void {
          super.pipeDataReceived(fd, data);
          const pipe = this.transport?.getPipeTransport(fd);
          pipe?.pauseReading();
          queueMicrotask(() => pipe?.resumeReading());
        }
      }
      const protocol = new Toggles();
      const { stdin } = await exec(protocol, "cat");
      const data = pattern(MIB, 13);
      stdin.write(data);
      stdin.writeEof();
      await protocol.waitFor("connectionLost");

      assertOrder(protocol);
      assertBytes(protocol.received(1), data, "stdout");
    },
  );
});

// 7. Pipe transports and extra info.

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

Deno.test("ChildProcessTransport.getPid() and getExtraInfo() describe the child", async () => {
  const protocol = new RecordingSubprocessProtocol();
  await using sleep = await exec(protocol, "sleep", ["5"]);
  const { transport } = sleep;
  const pid = transport.getPid();

  assert.ok(Number.isInteger(pid) && pid > 0, `pid ${pid}`);
  assert.notEqual(pid, Deno.pid);
  assert.equal(transport.getExtraInfo("pid"), pid);
  const subprocess = transport.getExtraInfo("subprocess");
  assert.ok(subprocess instanceof Deno.ChildProcess);
  assert.equal(subprocess.pid, pid);
  assert.equal(transport.getExtraInfo("peername"), undefined);
  assert.equal(transport.getExtraInfo("nothing", 42), 42);
});

// 8. Errors.

Deno.test("subprocessExec() checks its arguments", async (t) => {
  const factory = () => new RecordingSubprocessProtocol();

  await t.step("a program that does not exist is NotFound", async () => {
    await assert.rejects(
      () => subprocessExec(factory, "/nonexistent/program/for/this/test"),
      Deno.errors.NotFound,
    );
    await assert.rejects(
      () => subprocessExec(factory, "no-such-program-for-this-test"),
      Deno.errors.NotFound,
    );
  });

  await t.step("a factory that is not a function is a TypeError", async () => {
    await assert.rejects(
      () =>
        subprocessExec(
          "factory" as unknown as () => RecordingSubprocessProtocol,
          "cat",
        ),
      TypeError,
    );
  });

  await t.step("a factory that throws: rejects with its error", async () => {
    const error = new Error("factory failed");
    await assert.rejects(
      () =>
        subprocessExec(() => {
          throw error;
        }, "cat"),
      (thrown) => thrown === error,
    );
  });

  await t.step(
    "a factory that makes no protocol is a TypeError (the child is killed)",
    async () => {
      await assert.rejects(
        () =>
          subprocessExec(
            () => null as unknown as RecordingSubprocessProtocol,
            "cat",
          ),
        TypeError,
      );
    },
  );

  await t.step(
    "a program that is not a string or URL is a TypeError",
    async () => {
      await assert.rejects(
        () => subprocessExec(factory, 42 as unknown as string),
        TypeError,
      );
    },
  );

  const badArgs: [string, unknown][] = [
    ["a string", "-n"],
    ["an array with a number", ["-n", 1]],
    ["an array with undefined", [undefined]],
    ["null", null],
  ];
  for (const [what, args] of badArgs) {
    await t.step(`args as ${what} is a TypeError`, async () => {
      await assert.rejects(
        () => subprocessExec(factory, "cat", args as string[]),
        TypeError,
      );
    });
  }

  const badStdio: [keyof SubprocessExecOptions, unknown][] = [
    ["stdin", "pipe"],
    ["stdout", 1],
    ["stderr", null],
    ["stdout", "PIPED"],
  ];
  for (const [name, value] of badStdio) {
    await t.step(
      `${name}: ${JSON.stringify(value)} is a TypeError`,
      async () => {
        await assert.rejects(
          () =>
            subprocessExec(factory, "cat", [], {
              [name]: value,
            } as SubprocessExecOptions),
          TypeError,
        );
      },
    );
  }

  await t.step(
    "subprocessShell() with a command that is not a string is a TypeError",
    async () => {
      await assert.rejects(
        () => subprocessShell(factory, ["echo", "hi"] as unknown as string),
        TypeError,
      );
    },
  );
});

Deno.test("ChildProcessTransport closes with the error a protocol callback throws", async (t) => {
  await t.step(
    "connectionMade: subprocessExec() rejects, the child is killed, connectionLost(error)",
    async () => {
      const { errors, onError } = errorCollector();
      const error = new Error("connectionMade failed");
      class FailingMade extends RecordingSubprocessProtocol {
        override connectionMade(transport: SubprocessTransport): void {
          super.connectionMade(transport);
          throw error;
        }
      }
      const protocol = new FailingMade();
      await assert.rejects(
        () => subprocessExec(() => protocol, "sleep", ["5"], { onError }),
        (thrown) => thrown === error,
      );
      await protocol.waitFor("connectionLost");

      assert.deepEqual(protocol.calls, ["connectionMade", "connectionLost"]);
      assert.equal(protocol.lostWith, error);
      assert.equal(protocol.transport!.getReturncode(), -9);
      assert.equal(protocol.transport!.isClosing(), true);
      assert.equal(errors.length, 1);
      assert.equal(errors[0]!.error, error);
      assert.match(errors[0]!.context.message, /connectionMade/);
      assert.equal(errors[0]!.context.transport, protocol.transport);
      assert.equal(errors[0]!.context.protocol, protocol);
    },
  );

  await t.step(
    "pipeDataReceived: onError, the child is killed, connectionLost(error) last",
    async () => {
      const { errors, onError } = errorCollector();
      const error = new Error("pipeDataReceived failed");
      class FailingData extends RecordingSubprocessProtocol {
        override pipeDataReceived(fd: OutFd, data: Uint8Array): void {
          super.pipeDataReceived(fd, data);
          throw error;
        }
      }
      const protocol = new FailingData();
      const { transport } = await shell(
        protocol,
        "echo hi; exec sleep 5",
        { onError },
      );
      await protocol.waitFor("connectionLost");
      await quietPeriod();

      assert.deepEqual(protocol.calls, [
        "connectionMade",
        "pipeDataReceived(1)",
        "connectionLost",
      ]);
      assert.equal(protocol.text(1), "hi\n");
      assert.equal(protocol.lostWith, error);
      assert.equal(transport.getReturncode(), -9);
      assert.equal(transport.isClosing(), true);
      assert.equal(errors.length, 1);
      assert.equal(errors[0]!.error, error);
      assert.match(errors[0]!.context.message, /pipeDataReceived/);
      assert.equal(errors[0]!.context.transport, transport);
      assert.equal(errors[0]!.context.protocol, protocol);
    },
  );

  await t.step(
    "pipeDataReceived with more output waiting: no callback after the failure",
    async () => {
      const { errors, onError } = errorCollector();
      const error = new Error("pipeDataReceived failed");
      class FailingData extends RecordingSubprocessProtocol {
        override pipeDataReceived(fd: OutFd, data: Uint8Array): void {
          super.pipeDataReceived(fd, data);
          throw error;
        }
      }
      const protocol = new FailingData();
      const { transport, stdin } = await exec(protocol, "cat", [], {
        onError,
      });
      stdin.write(pattern(MIB, 17));
      await protocol.waitFor("connectionLost");
      await quietPeriod();

      assert.deepEqual(protocol.calls.slice(-2), [
        "pipeDataReceived(1)",
        "connectionLost",
      ]);
      assert.equal(protocol.count("pipeDataReceived(1)"), 1);
      assert.equal(protocol.count("processExited"), 0);
      assert.equal(protocol.lostWith, error);
      assert.equal(transport.getReturncode(), -9);
      assert.equal(errors.length, 1);
    },
  );

  await t.step(
    "pipeConnectionLost: onError, the child is killed, connectionLost(error)",
    async () => {
      const { errors, onError } = errorCollector();
      const error = new Error("pipeConnectionLost failed");
      class FailingPipeLost extends RecordingSubprocessProtocol {
        override pipeConnectionLost(fd: Fd, exc: Error | undefined): void {
          super.pipeConnectionLost(fd, exc);
          throw error;
        }
      }
      const protocol = new FailingPipeLost();
      const { transport } = await shell(
        protocol,
        "exec >&-; exec sleep 5",
        { onError },
      );
      await protocol.waitFor("connectionLost");
      await quietPeriod();

      assert.deepEqual(protocol.calls, [
        "connectionMade",
        "pipeConnectionLost(1)",
        "connectionLost",
      ]);
      assert.equal(protocol.lostWith, error);
      assert.equal(transport.getReturncode(), -9);
      assert.equal(errors.length, 1);
      assert.match(errors[0]!.context.message, /pipeConnectionLost/);
    },
  );

  await t.step("processExited: onError, connectionLost(error)", async () => {
    const { errors, onError } = errorCollector();
    const error = new Error("processExited failed");
    class FailingExit extends RecordingSubprocessProtocol {
      override processExited(): void {
        super.processExited();
        throw error;
      }
    }
    const protocol = new FailingExit();
    const { transport } = await shell(protocol, "exit 2", { onError });
    await protocol.waitFor("connectionLost");
    await quietPeriod();

    assert.equal(protocol.calls.at(-1), "connectionLost");
    assert.equal(protocol.count("connectionLost"), 1);
    assert.equal(protocol.lostWith, error);
    assert.equal(transport.getReturncode(), 2);
    assert.equal(errors.length, 1);
    assert.match(errors[0]!.context.message, /processExited/);
  });

  await t.step(
    "pauseWriting: reported, and the transport goes on",
    async () => {
      const { errors, onError } = errorCollector();
      const error = new Error("pauseWriting failed");
      class FailingPause extends RecordingSubprocessProtocol {
        override pauseWriting(): void {
          super.pauseWriting();
          throw error;
        }
      }
      const protocol = new FailingPause();
      const { stdin } = await exec(protocol, "cat", [], { onError });
      stdin.setWriteBufferLimits({ high: 0 });
      assert.doesNotThrow(() => stdin.write(encoder.encode("still")));
      await protocol.waitFor("resumeWriting");
      stdin.writeEof();
      await protocol.waitFor("connectionLost");

      assertOrder(protocol);
      assert.equal(protocol.text(1), "still");
      assert.equal(protocol.lostWith, undefined);
      assert.equal(errors.length, 1);
      assert.equal(errors[0]!.error, error);
      assert.match(errors[0]!.context.message, /pauseWriting/);
    },
  );
});

// 9. subprocessShell, cwd and env.

Deno.test("subprocessShell() runs a command line with /bin/sh", async (t) => {
  await t.step("a pipeline", async () => {
    const protocol = new RecordingSubprocessProtocol();
    await shell(protocol, "printf 'a\\nb\\nc\\n' | head -n 2", {
      stdin: "null",
    });
    await protocol.waitFor("connectionLost");

    assertOrder(protocol, [1, 2]);
    assert.equal(protocol.text(1), "a\nb\n");
  });

  await t.step("a redirect to stderr arrives on fd 2", async () => {
    const protocol = new RecordingSubprocessProtocol();
    await shell(protocol, "echo out; echo err >&2");
    await protocol.waitFor("connectionLost");

    assertOrder(protocol);
    assert.equal(protocol.text(1), "out\n");
    assert.equal(protocol.text(2), "err\n");
  });

  await t.step("stdin reaches a command in the line", async () => {
    const protocol = new RecordingSubprocessProtocol();
    const { stdin } = await shell(protocol, "head -n 1; echo end");
    stdin.write(encoder.encode("first\nsecond\n"));
    stdin.writeEof();
    await protocol.waitFor("connectionLost");

    assert.equal(protocol.text(1), "first\nend\n");
  });

  await t.step("an unknown command exits with 127", async () => {
    const protocol = new RecordingSubprocessProtocol();
    const { transport } = await shell(
      protocol,
      "no-such-command-for-this-test",
    );
    await protocol.waitFor("connectionLost");

    assertOrder(protocol);
    assert.equal(transport.getReturncode(), 127);
    assert.ok(protocol.bytes(2) > 0, "the shell says so on stderr");
  });
});

Deno.test("subprocessExec() passes cwd, env and clearEnv to the child", async (t) => {
  await t.step("cwd as a path and as a URL", async () => {
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeTextFile(`${dir}/here.txt`, "in cwd\n");
      const real = await Deno.realPath(dir);
      for (const cwd of [dir, new URL(`file://${real}/`)]) {
        const protocol = new RecordingSubprocessProtocol();
        await shell(protocol, "pwd; cat here.txt", { cwd, stdin: "null" });
        await protocol.waitFor("connectionLost");

        assert.equal(protocol.text(1), `${real}\nin cwd\n`, String(cwd));
        assert.equal(protocol.bytes(2), 0);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  await t.step("env adds to this process's variables", async () => {
    const parentName = "AIO_SUBPROCESS_TEST_PARENT";
    Deno.env.set(parentName, "from parent");
    try {
      const protocol = new RecordingSubprocessProtocol();
      await shell(
        protocol,
        `printf '%s|%s' "$AIO_SUBPROCESS_TEST_CHILD" "$${parentName}"`,
        { env: { AIO_SUBPROCESS_TEST_CHILD: "from options" }, stdin: "null" },
      );
      await protocol.waitFor("connectionLost");
      assert.equal(protocol.text(1), "from options|from parent");

      const cleared = new RecordingSubprocessProtocol();
      await shell(
        cleared,
        `printf '%s|%s' "$AIO_SUBPROCESS_TEST_CHILD" "\${${parentName}-unset}"`,
        {
          env: { AIO_SUBPROCESS_TEST_CHILD: "only this" },
          clearEnv: true,
          stdin: "null",
        },
      );
      await cleared.waitFor("connectionLost");
      assert.equal(cleared.text(1), "only this|unset");
    } finally {
      Deno.env.delete(parentName);
    }
  });
});

// 10. setProtocol().

Deno.test("ChildProcessTransport.setProtocol() switches the protocol for the next callbacks", async (t) => {
  await t.step("on the subprocess transport", async () => {
    const first = new RecordingSubprocessProtocol();
    const { transport, stdin } = await exec(first, "cat");
    stdin.write(encoder.encode("one"));
    await first.waitForBytes(1, 3);
    const next = new RecordingSubprocessProtocol();
    transport.setProtocol(next);
    assert.equal(transport.getProtocol(), next);
    for (const fd of [0, 1, 2] as const) {
      assert.equal(transport.getPipeTransport(fd)!.getProtocol(), next);
    }
    stdin.write(encoder.encode("two"));
    stdin.writeEof();
    await next.waitFor("connectionLost");
    await quietPeriod();

    assert.deepEqual(first.calls, ["connectionMade", "pipeDataReceived(1)"]);
    assert.equal(first.text(1), "one");
    assert.equal(next.text(1), "two");
    assert.equal(next.count("connectionMade"), 0);
    assert.equal(next.count("processExited"), 1);
    assert.equal(next.calls.at(-1), "connectionLost");
    assert.equal(next.count("connectionLost"), 1);
    for (const fd of [0, 1, 2] as const) {
      assert.equal(next.count(`pipeConnectionLost(${fd})`), 1);
    }
  });

  await t.step("through a pipe transport", async () => {
    const first = new RecordingSubprocessProtocol();
    const { transport, stdin } = await exec(first, "cat");
    const stdout = transport.getPipeTransport(1)!;
    assert.equal(stdout.getProtocol(), first);
    assert.equal(stdin.getProtocol(), first);
    const next = new RecordingSubprocessProtocol();
    stdout.setProtocol(next);
    assert.equal(transport.getProtocol(), next);
    assert.equal(stdin.getProtocol(), next);
    stdin.write(encoder.encode("to next"));
    stdin.writeEof();
    await next.waitFor("connectionLost");

    assert.deepEqual(first.calls, ["connectionMade"]);
    assert.equal(next.text(1), "to next");
    assert.equal(next.calls.at(-1), "connectionLost");
  });
});
