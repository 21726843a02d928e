import assert from "node:assert/strict";
import type { DatagramProtocol } from "../../protocols/datagram_protocol.ts";
import {
  createDatagramEndpoint,
  type CreateDatagramEndpointOptions,
} from "../../transports/create_datagram_endpoint.ts";
import {
  DatagramEndpoint,
  pairAddresses,
} from "../../transports/_datagram_transport.ts";
import { bytes, text } from "../_test_utils.ts";
import {
  HOSTS,
  on,
  open,
  receive,
  RecordingDatagramProtocol,
  socket,
} from "./_datagram_utils.ts";

Deno.test("createDatagramEndpoint() resolves after connectionMade, the first callback", async (t) => {
  for (const host of HOSTS) {
    await t.step(`over ${host}`, async () => {
      const protocol = new RecordingDatagramProtocol();
      await using endpoint = await open(protocol, on(host));

      assert.deepEqual(protocol.calls, ["connectionMade"]);
      assert.equal(protocol.transport, endpoint.transport);
      assert.ok(endpoint.transport instanceof DatagramEndpoint);
      assert.equal(endpoint.transport.getProtocol(), protocol);
    });
  }
});

// Options.

Deno.test("createDatagramEndpoint() checks its options", async (t) => {
  const factory = () => new RecordingDatagramProtocol();

  await t.step("without localAddr and remoteAddr is a TypeError", async () => {
    await assert.rejects(() => createDatagramEndpoint(factory, {}), TypeError);
  });

  await t.step(
    "broadcast: false is NotSupported; true is Deno's own",
    async () => {
      await assert.rejects(
        () =>
          createDatagramEndpoint(
            factory,
            on("127.0.0.1", { broadcast: false }),
          ),
        Deno.errors.NotSupported,
      );
      const [transport, protocol] = await createDatagramEndpoint(
        factory,
        on("127.0.0.1", { broadcast: true }),
      );
      transport.abort();
      await protocol.waitFor("connectionLost");
    },
  );

  await t.step("a factory that is not a function is a TypeError", async () => {
    await assert.rejects(
      () =>
        createDatagramEndpoint(
          "factory" as unknown as () => RecordingDatagramProtocol,
          on("127.0.0.1"),
        ),
      TypeError,
    );
  });

  await t.step("a factory that throws: rejects with its error", async () => {
    const error = new Error("factory failed");
    await assert.rejects(
      () =>
        createDatagramEndpoint(() => {
          throw error;
        }, on("127.0.0.1")),
      (thrown) => thrown === error,
    );
  });

  await t.step(
    "a factory that makes no datagram protocol is a TypeError",
    async () => {
      await assert.rejects(
        () =>
          createDatagramEndpoint(
            () => ({ dataReceived() {} }) as unknown as DatagramProtocol,
            on("127.0.0.1"),
          ),
        TypeError,
      );
    },
  );

  await t.step(
    "an async factory is a TypeError saying it returned a Promise",
    async () => {
      await assert.rejects(
        () =>
          createDatagramEndpoint(
            (() => Promise.resolve(new RecordingDatagramProtocol())) as never,
            on("127.0.0.1"),
          ),
        (error: unknown) =>
          error instanceof TypeError &&
          /the factory returned a Promise/.test(error.message),
      );
    },
  );
});

/** Bad options: what the error must name, the options, and its class. */
const BAD_OPTIONS: [string, unknown, typeof TypeError][] = [
  ["options", "udp", TypeError],
  ["options", null, TypeError],
  ["localAddr", { localAddr: 5 }, TypeError],
  ["localAddr.hostname", { localAddr: { hostname: 5, port: 0 } }, TypeError],
  ["hostname is empty", { localAddr: { hostname: "", port: 0 } }, TypeError],
  ["localAddr.port", { localAddr: { port: 70_000 } }, RangeError],
  ["localAddr.port", { localAddr: { hostname: "127.0.0.1" } }, TypeError],
  ["remoteAddr", { remoteAddr: "127.0.0.1:9" }, TypeError],
  ["remoteAddr.hostname", { remoteAddr: { port: 9 } }, TypeError],
  ["hostname is empty", { remoteAddr: { hostname: "", port: 9 } }, TypeError],
  [
    "remoteAddr.port",
    { remoteAddr: { hostname: "::1", port: 1.5 } },
    TypeError,
  ],
  ["reuseAddress", { reuseAddress: "yes" }, TypeError],
  ["loopback", { loopback: 1 }, TypeError],
  ["broadcast", { broadcast: "no" }, TypeError],
  ["onError", { onError: "log" }, TypeError],
];

Deno.test("createDatagramEndpoint() checks every option before it opens a socket, with an error that names it", async (t) => {
  for (const [name, options, type] of BAD_OPTIONS) {
    await t.step(`${name}: ${Deno.inspect(options)}`, async () => {
      let made = 0;
      const withLocal = typeof options === "object" && options !== null &&
          !("localAddr" in options) && !("remoteAddr" in options)
        ? on("127.0.0.1", options)
        : options;
      await assert.rejects(
        () =>
          createDatagramEndpoint(() => {
            made++;
            return new RecordingDatagramProtocol();
          }, withLocal as CreateDatagramEndpointOptions),
        (error: unknown) => {
          assert.ok(error instanceof type, `${error} is a ${type.name}`);
          assert.ok(
            error.message.startsWith("Cannot create datagram endpoint: ") &&
              error.message.includes(name),
            `"${error.message}" names ${name}`,
          );
          return true;
        },
      );
      assert.equal(made, 0, "no protocol was made");
    });
  }
});

Deno.test("createDatagramEndpoint() pairs localAddr and remoteAddr by address family, as asyncio", async (t) => {
  const mismatches: [string, string][] = [
    ["127.0.0.1", "::1"],
    ["::1", "127.0.0.1"],
    ["0.0.0.0", "::1"],
  ];
  for (const [local, remote] of mismatches) {
    await t.step(
      `localAddr ${local} with remoteAddr ${remote} is a TypeError; no socket is opened`,
      async () => {
        using peer = socket(remote);
        let made = 0;
        await assert.rejects(
          () =>
            createDatagramEndpoint(() => {
              made++;
              return new RecordingDatagramProtocol();
            }, {
              localAddr: { hostname: local, port: 0 },
              remoteAddr: { hostname: remote, port: peer.addr.port },
            }),
          (error: unknown) =>
            error instanceof TypeError &&
            error.message.startsWith(
              `Cannot create datagram endpoint: localAddr ${local} is IPv`,
            ) &&
            error.message.endsWith("they have no address family in common"),
        );
        assert.equal(made, 0);
      },
    );
  }

  for (const host of HOSTS) {
    await t.step(
      `localAddr without a hostname binds all interfaces of remoteAddr ${host}'s family`,
      async () => {
        using peer = socket(host);
        await using client = await open(new RecordingDatagramProtocol(), {
          localAddr: { port: 0 },
          remoteAddr: { hostname: host, port: peer.addr.port },
        });
        assert.equal(client.addr.hostname, host === "::1" ? "::" : "0.0.0.0");
        client.transport.sendto(bytes("over " + host));
        assert.equal(text((await receive(peer)).data), "over " + host);
      },
    );
  }

  await t.step(
    "a remote name resolves to an address of localAddr's family",
    async () => {
      using peer = socket("127.0.0.1");
      await using client = await open(new RecordingDatagramProtocol(), {
        localAddr: { hostname: "127.0.0.1", port: 0 },
        remoteAddr: { hostname: "localhost", port: peer.addr.port },
      });
      assert.equal(
        client.transport.getExtraInfo("peername")?.hostname,
        "127.0.0.1",
      );
    },
  );

  await t.step("pairAddresses() prefers the local address's family", () => {
    const both = ["127.0.0.1", "::1"];
    assert.deepEqual(pairAddresses(["127.0.0.1"], both), [
      "127.0.0.1",
      "127.0.0.1",
    ]);
    assert.deepEqual(pairAddresses(["::1"], both), ["::1", "::1"]);
    assert.deepEqual(pairAddresses(["::"], both), ["::", "::1"]);
    // The wildcard :: also reaches IPv4 peers.
    assert.deepEqual(pairAddresses(["::"], ["127.0.0.1"]), [
      "::",
      "127.0.0.1",
    ]);
    // A local name: its first address with a peer of its family.
    assert.deepEqual(pairAddresses(both, ["::1"]), ["::1", "::1"]);
    // No local address given: all interfaces, IPv4 first.
    assert.deepEqual(pairAddresses(["0.0.0.0", "::"], both), [
      "0.0.0.0",
      "127.0.0.1",
    ]);
    assert.equal(pairAddresses(["127.0.0.1"], ["::1"]), undefined);
    assert.equal(pairAddresses(["::1"], ["127.0.0.1"]), undefined);
  });
});

Deno.test("createDatagramEndpoint() with reuseAddress binds a port in use", async (t) => {
  await t.step("without it the port is in use", async () => {
    await using first = await open(
      new RecordingDatagramProtocol(),
      on("127.0.0.1", { reuseAddress: true }),
    );
    const same = { hostname: "127.0.0.1", port: first.addr.port };
    await assert.rejects(
      () =>
        createDatagramEndpoint(() => new RecordingDatagramProtocol(), {
          localAddr: same,
        }),
      Deno.errors.AddrInUse,
    );
    await assert.rejects(
      () =>
        createDatagramEndpoint(() => new RecordingDatagramProtocol(), {
          localAddr: same,
          reuseAddress: false,
        }),
      Deno.errors.AddrInUse,
    );
  });

  await t.step(
    "with it on both, the last one bound receives (Linux)",
    async () => {
      using sender = socket("127.0.0.1");
      await using first = await open(
        new RecordingDatagramProtocol(),
        on("127.0.0.1", { reuseAddress: true }),
      );
      const second = await open(new RecordingDatagramProtocol(), {
        localAddr: { hostname: "127.0.0.1", port: first.addr.port },
        reuseAddress: true,
      });
      try {
        assert.equal(second.addr.port, first.addr.port);
        await sender.conn.send(bytes("to the port"), first.addr);
        await second.protocol.waitFor("datagramReceived");
        assert.deepEqual(second.protocol.texts(), ["to the port"]);
      } finally {
        await second[Symbol.asyncDispose]();
      }
      // Once the second is closed, the first gets what comes to the port.
      await sender.conn.send(bytes("again"), first.addr);
      await first.protocol.waitFor("datagramReceived");
      assert.deepEqual(first.protocol.texts(), ["again"]);
    },
  );
});

// Without --unstable-net.

Deno.test("createDatagramEndpoint() without --unstable-net throws NotSupported saying so", async () => {
  const mod = new URL("../../mod.ts", import.meta.url).href;
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(
      script,
      `import { createDatagramEndpoint } from ${JSON.stringify(mod)};
try {
  await createDatagramEndpoint(() => ({ datagramReceived() {} }), {
    localAddr: { hostname: "127.0.0.1", port: 0 },
  });
  console.log(JSON.stringify({ name: "none", message: "" }));
} catch (error) {
  console.log(JSON.stringify({ name: error.name, message: error.message }));
}
`,
    );
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-config", "--allow-net", script],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(code, 0, text(stderr));
    const { name, message } = JSON.parse(text(stdout));

    assert.equal(name, "NotSupported");
    assert.match(message, /--unstable-net/);
  } finally {
    await Deno.remove(script);
  }
});
