import assert from "node:assert/strict";
import {
  createConnection,
  createServer,
  createUnixServer,
  ProtocolBase,
  type Transport,
} from "../../mod.ts";
import { readUntilClosed, RecordingProtocol, within } from "../_test_utils.ts";

const LOCAL = { hostname: "127.0.0.1", port: 0 } as const;

Deno.test("Server[Symbol.asyncDispose]() ends a block with a connected idle client, and the block's error is seen", async () => {
  const server = await createServer(() => new ProtocolBase(), LOCAL);
  const client = new RecordingProtocol();
  await createConnection(() => client, { port: server.addrs[0]!.port });
  const error = new Error("thrown in the block");
  const thrown = await within(
    (async () => {
      await using _server = server;
      throw error;
    })().then(() => undefined, (e) => e),
    "disposal",
  );
  assert.equal(thrown, error);
  await within(client.waitFor("connectionLost"), "the client's loss");
  assert.equal(server.isServing(), false);
});

Deno.test("Server.shutdown() closes clients gracefully, then aborts what is still open after the grace period", async (t) => {
  await t.step("an idle client: closed at once, its data flushed", async () => {
    const server = await createServer(() => new ProtocolBase(), LOCAL);
    const conn = await Deno.connect({ port: server.addrs[0]!.port });
    await within(server.shutdown({ gracePeriod: 10_000 }), "shutdown");
    assert.equal((await readUntilClosed(conn)).byteLength, 0);
    conn.close();
  });

  await t.step(
    "a client that never reads: aborted when the grace period ends",
    async () => {
      let serverSide: Transport | undefined;
      const server = await createServer(() => {
        const protocol = new ProtocolBase();
        const made = protocol.connectionMade.bind(protocol);
        protocol.connectionMade = (transport) => {
          made(transport);
          serverSide = transport;
          // More than the kernel's buffers take: the flush cannot finish.
          transport.write(new Uint8Array(16 * 1024 * 1024));
        };
        return protocol;
      }, LOCAL);
      const conn = await Deno.connect({ port: server.addrs[0]!.port });
      for (let i = 0; i < 1000 && serverSide === undefined; i++) {
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
      assert.ok(serverSide !== undefined);
      const started = performance.now();
      await within(server.shutdown({ gracePeriod: 100 }), "shutdown");
      assert.ok(
        performance.now() - started >= 90,
        "waited for the grace period",
      );
      assert.equal(serverSide.isClosing(), true);
      conn.close();
    },
  );

  await t.step("a bad grace period is a RangeError", async () => {
    const server = await createServer(() => new ProtocolBase(), LOCAL);
    await assert.rejects(server.shutdown({ gracePeriod: -1 }), RangeError);
    await server.shutdown({ gracePeriod: 0 });
  });
});

Deno.test("createUnixServer() refuses a path where a server listens, and replaces only a stale socket file", async (t) => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/app.sock`;
    await t.step(
      "a live server's path: AddrInUse, and its socket stays",
      async () => {
        await using live = await createUnixServer(() => new ProtocolBase(), {
          path,
        });
        const inode = (await Deno.lstat(path)).ino;
        await assert.rejects(
          createUnixServer(() => new ProtocolBase(), { path }),
          Deno.errors.AddrInUse,
        );
        assert.equal((await Deno.lstat(path)).ino, inode);
        const conn = await Deno.connect({ transport: "unix", path });
        conn.close();
        assert.equal(live.isServing(), true);
      },
    );

    await t.step(
      "a busy server's path (its backlog full, a connect would block): AddrInUse, and its socket stays",
      async () => {
        const live = Deno.listen({ transport: "unix", path });
        const conns: Deno.Conn[] = [];
        try {
          // Never accepted: the backlog fills, then a connect fails with
          // something other than a refusal.
          for (let i = 0; i < 10_000; i++) {
            try {
              conns.push(await Deno.connect({ transport: "unix", path }));
            } catch {
              break;
            }
          }
          const inode = (await Deno.lstat(path)).ino;
          await assert.rejects(
            createUnixServer(() => new ProtocolBase(), { path }),
            Deno.errors.AddrInUse,
          );
          assert.equal((await Deno.lstat(path)).ino, inode);
        } finally {
          for (const conn of conns) conn.close();
          live.close();
        }
      },
    );

    await t.step(
      "a stale socket file (nothing listening) is replaced",
      async () => {
        // A listener whose file stays behind: a socket nobody listens on.
        const stale = Deno.listen({ transport: "unix", path });
        Deno.linkSync(path, `${path}.keep`);
        stale.close();
        Deno.renameSync(`${path}.keep`, path);
        assert.ok((await Deno.lstat(path)).isSocket);
        await using _server = await createUnixServer(() => new ProtocolBase(), {
          path,
        });
        const conn = await Deno.connect({ transport: "unix", path });
        conn.close();
      },
    );

    await t.step(
      "closing a server whose path another socket took leaves that socket",
      async () => {
        const first = await createUnixServer(() => new ProtocolBase(), {
          path,
        });
        await Deno.remove(path);
        await using second = await createUnixServer(() => new ProtocolBase(), {
          path,
        });
        const inode = (await Deno.lstat(path)).ino;
        await first.shutdown();
        assert.equal((await Deno.lstat(path)).ino, inode);
        const conn = await Deno.connect({ transport: "unix", path });
        conn.close();
        assert.equal(second.isServing(), true);
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
