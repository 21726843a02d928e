import assert from "node:assert/strict";
import {
  type BaseProtocolBase,
  BufferedProtocolBase,
  DatagramProtocolBase,
  ProtocolBase,
  SubprocessProtocolBase,
} from "../../protocols/mod.ts";
import type { BaseTransport, Transport } from "../../transports/transport.ts";
import { subprocessShell } from "../../transports/subprocess_exec.ts";
import { stubSubprocessTransport, within } from "../_test_utils.ts";
import { MemoryDatagramTransport, MemoryTransport } from "../../testing/mod.ts";

const ADDR: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port: 9 };

Deno.test("ProtocolBase callbacks are no-ops that return nothing", () => {
  const protocol = new ProtocolBase();
  const transport = new MemoryTransport({ dataReceived() {} });
  assert.equal(protocol.connectionMade(transport), undefined);
  assert.equal(protocol.dataReceived(new Uint8Array([1, 2, 3])), undefined);
  assert.equal(protocol.pauseWriting(), undefined);
  assert.equal(protocol.resumeWriting(), undefined);
  assert.equal(protocol.connectionLost(undefined), undefined);
  assert.equal(protocol.connectionLost(new Error("boom")), undefined);
});

Deno.test("ProtocolBase.eofReceived() returns false, so the transport closes", () => {
  assert.equal(new ProtocolBase().eofReceived(), false);
});

Deno.test("BufferedProtocolBase callbacks are no-ops and eofReceived() returns false", () => {
  const protocol = new BufferedProtocolBase();
  const transport = new MemoryTransport({ dataReceived() {} });
  assert.equal(protocol.connectionMade(transport), undefined);
  assert.equal(protocol.bufferUpdated(10), undefined);
  assert.equal(protocol.pauseWriting(), undefined);
  assert.equal(protocol.resumeWriting(), undefined);
  assert.equal(protocol.eofReceived(), false);
  assert.equal(protocol.connectionLost(undefined), undefined);
});

Deno.test("BufferedProtocolBase.getBuffer() returns its whole buffer whatever the hint", () => {
  const protocol = new BufferedProtocolBase();
  assert.equal(protocol.buffer.byteLength, 64 * 1024);
  assert.equal(protocol.getBuffer(-1), protocol.buffer);
  assert.equal(protocol.getBuffer(1), protocol.buffer);
  assert.equal(protocol.getBuffer(1 << 20), protocol.buffer);
  const small = new BufferedProtocolBase(7);
  assert.equal(small.buffer.byteLength, 7);
  assert.equal(small.getBuffer(-1).byteLength, 7);
});

Deno.test("BufferedProtocolBase() throws RangeError unless size is a positive integer", async (t) => {
  for (const size of [0, -1, 1.5, NaN, Infinity, -Infinity]) {
    await t.step(String(size), () => {
      assert.throws(() => new BufferedProtocolBase(size), RangeError);
    });
  }
  await t.step("1 is fine", () => {
    assert.equal(new BufferedProtocolBase(1).buffer.byteLength, 1);
  });
});

Deno.test("DatagramProtocolBase callbacks are no-ops that return nothing", () => {
  const protocol = new DatagramProtocolBase();
  assert.equal(
    protocol.connectionMade(
      new MemoryDatagramTransport({ datagramReceived() {} }),
    ),
    undefined,
  );
  assert.equal(protocol.datagramReceived(new Uint8Array(1), ADDR), undefined);
  assert.equal(protocol.errorReceived(new Error("boom")), undefined);
  assert.equal(protocol.pauseWriting(), undefined);
  assert.equal(protocol.resumeWriting(), undefined);
  assert.equal(protocol.connectionLost(undefined), undefined);
});

Deno.test("SubprocessProtocolBase callbacks are no-ops that return nothing", () => {
  const protocol = new SubprocessProtocolBase();
  assert.equal(protocol.connectionMade(stubSubprocessTransport()), undefined);
  assert.equal(protocol.pipeDataReceived(1, new Uint8Array(1)), undefined);
  assert.equal(protocol.pipeDataReceived(2, new Uint8Array(1)), undefined);
  assert.equal(protocol.pipeConnectionLost(0, undefined), undefined);
  assert.equal(protocol.pipeConnectionLost(1, new Error("boom")), undefined);
  assert.equal(protocol.processExited(), undefined);
  assert.equal(protocol.pauseWriting(), undefined);
  assert.equal(protocol.resumeWriting(), undefined);
  assert.equal(protocol.connectionLost(undefined), undefined);
});

Deno.test("BaseProtocolBase subclasses keep the transport given to connectionMade", async (t) => {
  /** Gives `protocol` a transport of its kind and checks that it keeps it. */
  function assertKeeps<T extends BaseTransport>(
    protocol: BaseProtocolBase<T>,
    transport: T,
  ): void {
    assert.equal(protocol.transport, undefined);
    protocol.connectionMade(transport);
    assert.equal(protocol.transport, transport);
    protocol.connectionLost(undefined);
    assert.equal(protocol.transport, transport);
  }
  // Each kind with the transport it gets.
  const kinds: [string, () => void][] = [
    [
      "ProtocolBase",
      () =>
        assertKeeps(
          new ProtocolBase(),
          new MemoryTransport({ dataReceived() {} }),
        ),
    ],
    [
      "BufferedProtocolBase",
      () =>
        assertKeeps(
          new BufferedProtocolBase(),
          new MemoryTransport({ dataReceived() {} }),
        ),
    ],
    [
      "DatagramProtocolBase",
      () =>
        assertKeeps(
          new DatagramProtocolBase(),
          new MemoryDatagramTransport({ datagramReceived() {} }),
        ),
    ],
    [
      "SubprocessProtocolBase",
      () =>
        assertKeeps(new SubprocessProtocolBase(), stubSubprocessTransport()),
    ],
  ];
  for (const [name, check] of kinds) await t.step(name, check);
});

Deno.test("BaseProtocolBase subclasses keep the transport when a subclass calls super", () => {
  const seen: unknown[] = [];
  class Sub extends ProtocolBase {
    override connectionMade(transport: Transport): void {
      super.connectionMade(transport);
      seen.push(this.transport);
    }
  }
  const transport = new MemoryTransport({ dataReceived() {} });
  new Sub().connectionMade(transport);
  assert.deepEqual(seen, [transport]);
});

Deno.test("BaseProtocolBase.drain() follows pauseWriting, resumeWriting and connectionLost", async (t) => {
  await t.step("resolves at once when writing is not paused", async () => {
    const protocol = new ProtocolBase();
    let done = false;
    const drained = protocol.drain().then(() => done = true);
    await Promise.resolve();
    assert.equal(done, true);
    await drained;
  });

  await t.step("waits while paused and resolves on resumeWriting", async () => {
    const protocol = new ProtocolBase();
    protocol.pauseWriting();
    let done = 0;
    const waiters = Array.from(
      { length: 5 },
      () => protocol.drain().then(() => done++),
    );
    for (let i = 0; i < 3; i++) await Promise.resolve();
    assert.equal(done, 0);
    protocol.resumeWriting();
    await Promise.all(waiters);
    assert.equal(done, 5);
    // Not paused any more: a new drain() resolves at once.
    await protocol.drain();
  });

  await t.step("resolves every waiter on connectionLost", async () => {
    const protocol = new BufferedProtocolBase(16);
    protocol.pauseWriting();
    let done = 0;
    const waiters = Array.from(
      { length: 3 },
      () => protocol.drain().then(() => done++),
    );
    for (let i = 0; i < 3; i++) await Promise.resolve();
    assert.equal(done, 0);
    protocol.connectionLost(new Error("gone"));
    await Promise.all(waiters);
    assert.equal(done, 3);
  });
});

/** Lets pending microtasks run, then tells whether `promise` settled. */
async function hasSettled(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  promise.then(() => settled = true, () => settled = true);
  // Bounded: far more turns than drain() takes to settle.
  for (let i = 0; i < 20 && !settled; i++) await undefined;
  return settled;
}

Deno.test("SubprocessProtocolBase.drain() settles once stdin is lost, while writing is paused", async (t) => {
  await t.step(
    "rejects every waiter, and later calls, with stdin's error",
    async () => {
      const protocol = new SubprocessProtocolBase();
      protocol.connectionMade(stubSubprocessTransport());
      protocol.pauseWriting();
      const waiters = [protocol.drain(), protocol.drain()];
      protocol.pipeConnectionLost(1, undefined);
      assert.equal(await hasSettled(waiters[0]!), false, "stdout is not stdin");
      const broken = new Deno.errors.BrokenPipe("stdin is gone");
      protocol.pipeConnectionLost(0, broken);
      for (const waiter of waiters) {
        await assert.rejects(waiter, (error) => error === broken);
      }
      await assert.rejects(protocol.drain(), (error) => error === broken);
    },
  );

  await t.step("resolves them when stdin closed cleanly", async () => {
    const protocol = new SubprocessProtocolBase();
    protocol.connectionMade(stubSubprocessTransport());
    protocol.pauseWriting();
    const waiter = protocol.drain();
    assert.equal(await hasSettled(waiter), false);
    protocol.pipeConnectionLost(0, undefined);
    await waiter;
    await protocol.drain();
  });

  await t.step(
    "over a child that closes its stdin and goes on running",
    async () => {
      const log: string[] = [];
      const lost = Promise.withResolvers<void>();
      class Writer extends SubprocessProtocolBase {
        override pipeConnectionLost(fd: 0 | 1 | 2, exc: Error | undefined) {
          super.pipeConnectionLost(fd, exc);
          log.push(`pipeConnectionLost(${fd})`);
        }
        override processExited(): void {
          log.push("processExited");
        }
        override connectionLost(exc: Error | undefined): void {
          super.connectionLost(exc);
          lost.resolve();
        }
      }
      const [transport, protocol] = await subprocessShell(
        () => new Writer(),
        "exec 0<&-; exec sleep 10",
        { stdout: "null", stderr: "null" },
      );
      try {
        // More than the pipe holds: writing pauses, the child reads nothing.
        transport.getPipeTransport(0)!.write(new Uint8Array(1024 * 1024));
        const error = await within(
          protocol.drain().then(() => undefined, (error) => error),
          "drain() to settle once stdin is lost",
        );
        assert.ok(error instanceof Deno.errors.BrokenPipe, String(error));
        assert.deepEqual(log, ["pipeConnectionLost(0)"]);
      } finally {
        transport.kill();
        await within(lost.promise, "connectionLost");
      }
    },
  );
});
