import assert from "node:assert/strict";
import { subprocessExec } from "../../transports/subprocess_exec.ts";
import type { SubprocessTransport } from "../../transports/transport.ts";
import { bytes, errorCollector, pattern, quietPeriod } from "../_test_utils.ts";
import {
  assertOrder,
  exec,
  type Fd,
  MIB,
  type OutFd,
  PausedAtStart,
  RecordingSubprocessProtocol,
  shell,
} from "./_subprocess_utils.ts";

// Return codes and signals.

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

// close().

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

// A throwing pauseWriting or resumeWriting, as in every transport that
// writes: lifecycle_test.ts.
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
      // Killed (SIGKILL), or ended by SIGPIPE first when its stdout closed.
      assert.ok(
        [-9, -13].includes(transport.getReturncode()!),
        `returncode ${transport.getReturncode()}`,
      );
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
      // Killed (SIGKILL), or ended by SIGPIPE first when its stdout closed.
      assert.ok(
        [-9, -13].includes(transport.getReturncode()!),
        `returncode ${transport.getReturncode()}`,
      );
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
});

// setProtocol().

Deno.test("ChildProcessTransport.setProtocol() switches the protocol for the next callbacks", async (t) => {
  await t.step("on the subprocess transport", async () => {
    const first = new RecordingSubprocessProtocol();
    const { transport, stdin } = await exec(first, "cat");
    stdin.write(bytes("one"));
    await first.waitForBytes(1, 3);
    const next = new RecordingSubprocessProtocol();
    transport.setProtocol(next);
    assert.equal(transport.getProtocol(), next);
    for (const fd of [0, 1, 2] as const) {
      assert.equal(transport.getPipeTransport(fd)!.getProtocol(), next);
    }
    stdin.write(bytes("two"));
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
    stdin.write(bytes("to next"));
    stdin.writeEof();
    await next.waitFor("connectionLost");

    assert.deepEqual(first.calls, ["connectionMade"]);
    assert.equal(next.text(1), "to next");
    assert.equal(next.calls.at(-1), "connectionLost");
  });
});
