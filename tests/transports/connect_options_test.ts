import assert from "node:assert/strict";
import {
  connectAcceptedConn,
  createConnection,
  type CreateConnectionOptions,
  createUnixConnection,
} from "../../transports/create_connection.ts";
import { createServer, createUnixServer } from "../../transports/server.ts";
import { readUntilClosed, RecordingProtocol } from "../_test_utils.ts";

const HOST = "127.0.0.1";
const factory = () => new RecordingProtocol();

/** Asserts that `error` is a `type` whose message names `option`. */
function naming(type: typeof TypeError, option: string) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof type, `${error} is a ${type.name}`);
    assert.ok(
      error.message.includes(option),
      `"${error.message}" names ${option}`,
    );
    return true;
  };
}

/** Bad connect options: the option the error must name, and its class. */
const BAD_OPTIONS: [
  string,
  Partial<CreateConnectionOptions>,
  typeof TypeError,
][] = [
  ["hostname", { hostname: 5 as never }, TypeError],
  ["hostname", { hostname: "" }, TypeError],
  ["signal", { signal: {} as AbortSignal }, TypeError],
  ["happyEyeballsDelay", { happyEyeballsDelay: -1 }, RangeError],
  ["happyEyeballsDelay", { happyEyeballsDelay: NaN }, RangeError],
  ["happyEyeballsDelay", { happyEyeballsDelay: "x" as never }, TypeError],
  ["keepAlive", { keepAlive: "x" as never }, TypeError],
  ["noDelay", { noDelay: 1 as never }, TypeError],
  ["onError", { onError: 5 as never }, TypeError],
  ["idleTimeout", { idleTimeout: -1 }, RangeError],
  ["tls", { tls: 5 as never }, TypeError],
  ["tls.caCerts", { tls: { caCerts: "PEM" as never } }, TypeError],
  ["tls.caCerts[1]", { tls: { caCerts: ["PEM", 5 as never] } }, TypeError],
  ["tls.alpnProtocols", { tls: { alpnProtocols: "h2" as never } }, TypeError],
  ["tls.serverName", { tls: { serverName: 5 as never } }, TypeError],
  ["tls.serverName", { tls: { serverName: "" } }, TypeError],
];

Deno.test("createConnection() checks every option before it connects, with an error that names it", async (t) => {
  using listener = Deno.listen({ hostname: HOST, port: 0 });
  const port = listener.addr.port;
  for (const [option, options, type] of BAD_OPTIONS) {
    await t.step(`${option}: ${Deno.inspect(options)}`, async () => {
      await assert.rejects(
        createConnection(factory, { hostname: HOST, port, ...options }),
        naming(type, option),
      );
    });
  }

  await t.step("options that are not an object", async () => {
    await assert.rejects(
      createConnection(factory, undefined as never),
      naming(TypeError, "options"),
    );
  });

  await t.step("no connection was made", async () => {
    using probe = await Deno.connect({ hostname: HOST, port });
    using first = await listener.accept();
    assert.equal(
      (first.remoteAddr as Deno.NetAddr).port,
      (probe.localAddr as Deno.NetAddr).port,
    );
  });
});

Deno.test("createUnixConnection() checks signal, onError and handshakeTimeout before it connects", async () => {
  const path = "/nonexistent/app.sock";
  await assert.rejects(
    createUnixConnection(factory, { path, signal: {} as AbortSignal }),
    naming(TypeError, "signal"),
  );
  await assert.rejects(
    createUnixConnection(factory, { path, onError: "log" as never }),
    naming(TypeError, "onError"),
  );
  await assert.rejects(
    createUnixConnection(factory, { path, handshakeTimeout: 5 } as never),
    naming(TypeError, "handshakeTimeout"),
  );
  for (const bad of ["", 5, undefined]) {
    await assert.rejects(
      createUnixConnection(factory, { path: bad as string }),
      naming(TypeError, "path"),
    );
  }
  // A server on an empty path would be a socket nobody can connect to.
  await assert.rejects(
    createUnixServer(factory, { path: "" }),
    naming(TypeError, "path"),
  );
});

Deno.test("connectAcceptedConn() names conn when it is not a Deno.Conn, and checks every option", async (t) => {
  for (const conn of [null, undefined, {}, "conn"]) {
    await t.step(`conn ${Deno.inspect(conn)} is a TypeError`, async () => {
      await assert.rejects(
        connectAcceptedConn(factory, conn as never),
        naming(TypeError, "conn must be a Deno.Conn"),
      );
    });
  }

  await t.step("keepAlive 'x' is a TypeError; the conn is closed", async () => {
    using listener = Deno.listen({ hostname: HOST, port: 0 });
    const [client, accepted] = await Promise.all([
      Deno.connect({ hostname: HOST, port: listener.addr.port }),
      listener.accept(),
    ]);
    using _client = client;
    await assert.rejects(
      connectAcceptedConn(factory, accepted, { keepAlive: "x" as never }),
      naming(TypeError, "keepAlive"),
    );
    assert.equal((await readUntilClosed(client)).byteLength, 0);
  });
});

Deno.test("A name that does not resolve fails createConnection() as it fails createServer(): same class, code and message", async () => {
  // RFC 2606: .invalid never resolves.
  const hostname = "no-such-host.invalid";
  const connecting = await createConnection(factory, { hostname, port: 80 })
    .then(() => assert.fail("it connected"), (error: Error) => error);
  const listening = await createServer(factory, { hostname, port: 0 })
    .then(() => assert.fail("it listened"), (error: Error) => error);
  assert.equal(connecting.constructor, listening.constructor);
  assert.equal(
    (connecting as { code?: unknown }).code,
    (listening as { code?: unknown }).code,
  );
  assert.equal(connecting.message, listening.message);
  assert.ok(connecting.message.includes(hostname));
});
