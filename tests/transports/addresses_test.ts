import assert from "node:assert/strict";
import {
  createConnection,
  createDatagramEndpoint,
  createServer,
  createUnixConnection,
  ProtocolBase,
} from "../../mod.ts";
import { within } from "../_test_utils.ts";

const factory = () => new ProtocolBase();

Deno.test("createConnection() rejects with the address it could not reach, keeping Deno's error class and cause", async () => {
  // A port nothing listens on: bind one, then close it.
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = probe.addr;
  probe.close();
  const error = await createConnection(factory, {
    hostname: "127.0.0.1",
    port,
  }).then(() => assert.fail("the connect should fail"), (e) => e);
  assert.ok(error instanceof Deno.errors.ConnectionRefused);
  assert.match(
    error.message,
    new RegExp(`^Cannot connect to 127.0.0.1:${port}: `),
  );
  assert.ok(error.cause instanceof Deno.errors.ConnectionRefused);
});

Deno.test("createUnixConnection() rejects with the socket path it could not reach", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/nobody.sock`;
    const error = await createUnixConnection(factory, { path }).then(
      () => assert.fail("the connect should fail"),
      (e) => e,
    );
    assert.ok(error instanceof Deno.errors.NotFound);
    assert.ok(error.message.startsWith(`Cannot connect to ${path}: `));
    assert.ok(error.cause instanceof Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("createServer() rejects with the address in use, keeping AddrInUse", async () => {
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = taken.addr;
  const error = await createServer(factory, { hostname: "127.0.0.1", port })
    .then(() => assert.fail("the listen should fail"), (e) => e);
  assert.ok(error instanceof Deno.errors.AddrInUse);
  assert.equal(error.name, "AddrInUse");
  assert.match(
    error.message,
    new RegExp(`^Cannot listen on 127.0.0.1:${port}: `),
  );
  assert.ok(error.cause instanceof Deno.errors.AddrInUse);
});

Deno.test("createDatagramEndpoint() rejects with the address in use, keeping AddrInUse", async () => {
  const [first] = await createDatagramEndpoint(
    () => ({ datagramReceived() {} }),
    {
      localAddr: { hostname: "127.0.0.1", port: 0 },
    },
  );
  try {
    const { port } = first.getExtraInfo("sockname")!;
    const error = await createDatagramEndpoint(
      () => ({ datagramReceived() {} }),
      { localAddr: { hostname: "127.0.0.1", port } },
    ).then(() => assert.fail("the bind should fail"), (e) => e);
    assert.ok(error instanceof Deno.errors.AddrInUse);
    assert.match(
      error.message,
      new RegExp(`^Cannot listen on 127.0.0.1:${port}: `),
    );
  } finally {
    first.close();
  }
});

Deno.test("createConnection() to a name that does not resolve says which name", async () => {
  // `a..b` is refused by the resolver itself: no DNS query leaves the machine.
  const error = await createConnection(factory, { hostname: "a..b", port: 80 })
    .then(() => assert.fail("the connect should fail"), (e) => e);
  assert.ok(error instanceof Error);
  assert.match(error.message, /^Cannot connect to a\.\.b:80: /);
  assert.ok(error.cause instanceof Error);
});

Deno.test("createServer() with hostname localhost listens on every loopback address, on one port", async () => {
  await using server = await createServer(factory, {
    hostname: "localhost",
    port: 0,
  });
  const addrs = server.addrs;
  assert.ok(addrs.some((addr) => addr.hostname === "127.0.0.1"));
  assert.equal(new Set(addrs.map((addr) => addr.port)).size, 1);
  const port = addrs[0]!.port;
  for (const addr of addrs) {
    const [transport] = await within(
      createConnection(factory, { hostname: addr.hostname, port }),
      `a connection to ${addr.hostname}`,
    );
    transport.close();
  }
  let ipv6 = true;
  try {
    Deno.listen({ hostname: "::1", port: 0 }).close();
  } catch {
    ipv6 = false;
  }
  assert.equal(addrs.some((addr) => addr.hostname === "::1"), ipv6);
  server.closeClients();
});

Deno.test("createConnection(), createServer() and connectAcceptedConn() reject handshakeTimeout without tls", async () => {
  await assert.rejects(
    createServer(factory, { port: 0, handshakeTimeout: 1000 }),
    TypeError,
  );
  await assert.rejects(
    createConnection(factory, { port: 1, handshakeTimeout: 1000 }),
    TypeError,
  );
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const client = await Deno.connect({ port: listener.addr.port });
  const accepted = await listener.accept();
  const { connectAcceptedConn } = await import("../../mod.ts");
  await assert.rejects(
    connectAcceptedConn(factory, accepted, { handshakeTimeout: 1000 }),
    TypeError,
  );
  client.close();
});

Deno.test("createServer() with reusePort but without --unstable-net throws NotSupported naming the flag", async () => {
  const script = `
    import { createServer, ProtocolBase } from ${
    JSON.stringify(new URL("../../mod.ts", import.meta.url).href)
  };
    try {
      await createServer(() => new ProtocolBase(), { hostname: "127.0.0.1", port: 0, reusePort: true });
      console.log("no error");
    } catch (error) {
      console.log(error.name, error.message);
    }
  `;
  const { code, stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-config", script],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const out = new TextDecoder().decode(stdout);
  assert.equal(code, 0);
  assert.match(out, /^NotSupported .*--unstable-net/);
});
