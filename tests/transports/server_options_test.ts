import assert from "node:assert/strict";
import {
  createServer,
  createUnixServer,
  Server,
  type ServerOptions,
} from "../../transports/server.ts";
import { RecordingProtocol } from "../_test_utils.ts";

const HOST = "127.0.0.1";
const factory = () => new RecordingProtocol();

/** Bad server options, each with the error class it must get. */
const BAD_OPTIONS: [string, ServerOptions, typeof TypeError][] = [
  ["idleTimeout -1", { idleTimeout: -1 }, RangeError],
  ["idleTimeout NaN", { idleTimeout: NaN }, RangeError],
  ["idleTimeout 2 ** 31", { idleTimeout: 2 ** 31 }, RangeError],
  ["signal {}", { signal: {} as AbortSignal }, TypeError],
  ["signal 'x'", { signal: "x" as unknown as AbortSignal }, TypeError],
  ["onError 5", { onError: 5 as never }, TypeError],
  ["noDelay 'x'", { noDelay: "x" as never }, TypeError],
  ["keepAlive 'x'", { keepAlive: "x" as never }, TypeError],
  ["startServing 'no'", { startServing: "no" as never }, TypeError],
];

/** A port that was free a moment ago (taken with port 0, then released). */
function freePort(): number {
  using probe = Deno.listen({ hostname: HOST, port: 0 });
  return probe.addr.port;
}

/** Asserts that `error` is a `type` whose message names `option`. */
function naming(type: typeof TypeError, option: string) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof type, `${error} is a ${type.name}`);
    assert.match(error.message, new RegExp(`\\b${option}\\b`));
    return true;
  };
}

Deno.test("createServer() checks every option before it listens, so a bad one leaves the port free", async (t) => {
  for (const [name, options, type] of BAD_OPTIONS) {
    await t.step(`${name} is a ${type.name}`, async () => {
      const port = freePort();
      await assert.rejects(
        createServer(factory, { hostname: HOST, port, ...options }),
        naming(type, name.split(" ")[0]!),
      );
      using again = Deno.listen({ hostname: HOST, port });
      assert.equal(again.addr.port, port);
    });
  }

  await t.step("hostname 127 is a TypeError naming hostname", async () => {
    await assert.rejects(
      createServer(factory, { hostname: 127 as never, port: 0 }),
      {
        name: "TypeError",
        message: "Cannot create server: hostname must be a string, not number",
      },
    );
  });

  await t.step("reusePort 'yes' is a TypeError", async () => {
    await assert.rejects(
      createServer(factory, {
        hostname: HOST,
        port: 0,
        reusePort: "yes" as never,
      }),
      naming(TypeError, "reusePort"),
    );
  });

  await t.step("tls.alpnProtocols 'h2' is a TypeError", async () => {
    await assert.rejects(
      createServer(factory, {
        hostname: HOST,
        port: 0,
        tls: { cert: "", key: "", alpnProtocols: "h2" as never },
      }),
      naming(TypeError, "tls.alpnProtocols"),
    );
  });
});

Deno.test("createUnixServer() checks every option before it listens, so a bad one leaves no socket file", async (t) => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/server.sock`;
  try {
    for (const [name, options, type] of BAD_OPTIONS) {
      await t.step(`${name} is a ${type.name}`, async () => {
        await assert.rejects(
          createUnixServer(factory, { path, ...options }),
          naming(type, name.split(" ")[0]!),
        );
        await assert.rejects(Deno.lstat(path), Deno.errors.NotFound);
      });
    }

    await t.step(
      "handshakeTimeout is a TypeError, as createServer() without tls",
      async () => {
        await assert.rejects(
          createUnixServer(factory, { path, handshakeTimeout: 5 }),
          naming(TypeError, "handshakeTimeout"),
        );
        await assert.rejects(
          createServer(factory, {
            hostname: HOST,
            port: 0,
            handshakeTimeout: 5,
          }),
          naming(TypeError, "handshakeTimeout"),
        );
        await assert.rejects(Deno.lstat(path), Deno.errors.NotFound);
      },
    );

    await t.step(
      "the path is free for a server with good options",
      async () => {
        const server = await createUnixServer(factory, { path });
        server.close();
        await server.waitClosed();
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("new Server() checks its options before it takes the listener", () => {
  using listener = Deno.listen({ hostname: HOST, port: 0 });
  for (const [name, options, type] of BAD_OPTIONS) {
    assert.throws(
      () => new Server(listener, factory, options),
      naming(type, name.split(" ")[0]!),
    );
  }
  // The listener is still the caller's, and still listening.
  const server = new Server(listener, factory, { startServing: false });
  server.close();
});

Deno.test("Server.shutdown() gives a TypeError for a grace period that is not a number, a RangeError for one below 0", async () => {
  const server = await createServer(factory, { hostname: HOST, port: 0 });
  await assert.rejects(
    server.shutdown({ gracePeriod: "5" as never }),
    naming(TypeError, "gracePeriod"),
  );
  await assert.rejects(
    server.shutdown({ gracePeriod: -1 }),
    naming(RangeError, "gracePeriod"),
  );
  await assert.rejects(
    server.shutdown({ gracePeriod: NaN }),
    naming(RangeError, "gracePeriod"),
  );
  assert.equal(server.isServing(), true);
  await server.shutdown({ gracePeriod: 0 });
});

Deno.test("A failed accept() is reported with the address it listens on, and the server goes on", async () => {
  const addr: Deno.NetAddr = { transport: "tcp", hostname: HOST, port: 4321 };
  const closed = Promise.withResolvers<never>();
  closed.promise.catch(() => {});
  let accepts = 0;
  // A listener whose first accept() fails as with EMFILE, then waits.
  const listener = {
    addr,
    accept() {
      return ++accepts === 1
        ? Promise.reject(new Error("Too many open files (os error 24)"))
        : closed.promise;
    },
    close() {
      closed.reject(new Deno.errors.BadResource("closed"));
    },
  };
  const reported = Promise.withResolvers<{ error: unknown; message: string }>();
  const server = new Server(listener as never, factory, {
    onError: (error, context) =>
      reported.resolve({ error, message: context.message }),
  });
  const { error, message } = await reported.promise;
  assert.match(String(error), /Too many open files/);
  assert.match(message, new RegExp(`accept\\(\\) on ${HOST}:4321 failed`));
  assert.equal(server.isServing(), true);
  server.close();
  await server.waitClosed();
});
