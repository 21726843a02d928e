import assert from "node:assert/strict";
import {
  createConnection,
  createDatagramEndpoint,
  createServer,
  type ErrorContext,
  subprocessExec,
} from "../../mod.ts";
import { bytes, within } from "../_test_utils.ts";

/** What a failing callback throws, by case. */
const FAULTS: [string, () => unknown][] = [
  ["throws a value String() cannot convert", () => {
    throw Object.create(null);
  }],
  ["returns a promise that rejects after an await", async () => {
    await new Promise((resolve) => setTimeout(resolve, 1));
    throw new Error("rejected later");
  }],
];

/** Collects onError calls and the one connectionLost. */
function watcher() {
  const errors: { error: unknown; context: ErrorContext }[] = [];
  const lost = Promise.withResolvers<Error | undefined>();
  let losses = 0;
  return {
    errors,
    lost: lost.promise,
    get losses() {
      return losses;
    },
    onError: (error: unknown, context: ErrorContext) =>
      void errors.push({ error, context }),
    connectionLost(exc: Error | undefined) {
      losses++;
      lost.resolve(exc);
    },
  };
}

Deno.test("A stream protocol's failing dataReceived closes only its transport with connectionLost(Error) and reaches onError", async (t) => {
  for (const [name, fault] of FAULTS) {
    await t.step(name, async () => {
      const watch = watcher();
      await using server = await createServer(() => ({
        dataReceived: fault,
        connectionLost: (exc) => watch.connectionLost(exc),
      }), { hostname: "127.0.0.1", port: 0, onError: watch.onError });
      const other = watcher();
      const [bystander] = await createConnection(() => ({
        dataReceived() {},
        connectionLost: (exc) => other.connectionLost(exc),
      }), { port: server.addrs[0]!.port });
      const [client] = await createConnection(() => ({ dataReceived() {} }), {
        port: server.addrs[0]!.port,
      });
      client.write(bytes("boom"));
      const exc = await within(watch.lost, "the failing connection's loss");
      assert.ok(exc instanceof Error);
      assert.equal(watch.errors.length, 1);
      assert.match(watch.errors[0]!.context.message, /dataReceived/);
      assert.equal(bystander.isClosing(), false);
      client.close();
      bystander.close();
      await within(other.lost, "the bystander's loss");
      assert.equal(watch.losses, 1);
    });
  }
});

Deno.test("A datagram protocol's failing datagramReceived closes the endpoint with connectionLost(Error) and reaches onError", async (t) => {
  for (const [name, fault] of FAULTS) {
    await t.step(name, async () => {
      const watch = watcher();
      const [endpoint] = await createDatagramEndpoint(() => ({
        datagramReceived: fault,
        connectionLost: (exc) => watch.connectionLost(exc),
      }), {
        localAddr: { hostname: "127.0.0.1", port: 0 },
        onError: watch.onError,
      });
      const [sender] = await createDatagramEndpoint(() => ({
        datagramReceived() {},
      }), {
        remoteAddr: {
          hostname: "127.0.0.1",
          port: endpoint.getExtraInfo("sockname")!.port,
        },
      });
      sender.sendto(bytes("boom"));
      const exc = await within(watch.lost, "the endpoint's loss");
      assert.ok(exc instanceof Error);
      assert.equal(watch.errors.length, 1);
      assert.equal(endpoint.isClosing(), true);
      sender.close();
    });
  }
});

Deno.test("A subprocess protocol's failing pipeDataReceived kills the child and ends with connectionLost(Error) and onError", async (t) => {
  for (const [name, fault] of FAULTS) {
    await t.step(name, async () => {
      const watch = watcher();
      const [transport] = await subprocessExec(
        () => ({
          pipeDataReceived: fault,
          connectionLost: (exc) => watch.connectionLost(exc),
        }),
        "/bin/sh",
        ["-c", "echo out; sleep 30"],
        {
          stdin: "null",
          onError: watch.onError,
        },
      );
      const exc = await within(watch.lost, "the subprocess's loss");
      assert.ok(exc instanceof Error);
      assert.equal(watch.errors.length, 1);
      assert.notEqual(transport.getReturncode(), null);
    });
  }
});

Deno.test("subprocessExec() with an aborted signal spawns nothing and rejects with the reason", async () => {
  const controller = new AbortController();
  const reason = new Error("aborted before the start");
  controller.abort(reason);
  const dir = await Deno.makeTempDir();
  try {
    const marker = `${dir}/ran`;
    await assert.rejects(
      subprocessExec(() => ({}), "/bin/sh", ["-c", `touch ${marker}`], {
        signal: controller.signal,
      }),
      (error) => error === reason,
    );
    await assert.rejects(Deno.lstat(marker), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("A child's stdin pipe is closing right after writeEof(), as in asyncio", async () => {
  const lost = Promise.withResolvers<void>();
  const [transport] = await subprocessExec(
    () => ({
      connectionLost: () => lost.resolve(),
    }),
    "/bin/cat",
    [],
    { stdout: "null", stderr: "null" },
  );
  const stdin = transport.getPipeTransport(0)!;
  stdin.write(bytes("hello"));
  stdin.writeEof();
  assert.equal(stdin.isClosing(), true);
  await within(lost.promise, "the child's end");
});
