import assert from "node:assert/strict";
import { readUntilClosed, within } from "../_test_utils.ts";
import { Example } from "./_example.ts";

const TLS_FILES = [
  "--cert",
  "tests/testdata/server.pem",
  "--key",
  "tests/testdata/server_key.pem",
];

/** Each long-running server example: how to start it on a free port. */
const SERVERS: {
  script: string;
  flags: string[];
  args: string[];
  /** `true` for a TCP server: an idle client is connected when it stops. */
  tcp: boolean;
}[] = [
  {
    script: "examples/echo_server.ts",
    flags: ["--allow-net"],
    args: [],
    tcp: true,
  },
  {
    script: "examples/tls_echo_server.ts",
    flags: ["--allow-net", "--allow-read"],
    args: [],
    tcp: true,
  },
  {
    script: "examples/multicore_echo_server.ts",
    flags: ["--allow-net", "--allow-read"],
    args: ["--workers", "2"],
    tcp: true,
  },
  {
    script: "examples/udp_echo_server.ts",
    flags: ["--allow-net"],
    args: [],
    tcp: false,
  },
  {
    script: "examples/kv_server.ts",
    flags: ["--allow-net"],
    args: [],
    tcp: true,
  },
  {
    script: "examples/tls_proxy.ts",
    flags: ["--allow-net", "--allow-read"],
    args: ["--backend", "127.0.0.1:1", ...TLS_FILES],
    tcp: true,
  },
];

Deno.test("Every long-running example exits 0 on SIGINT and on SIGTERM, closing its clients", async (t) => {
  for (const { script, flags, args, tcp } of SERVERS) {
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      await t.step(`${script}, ${signal}`, async () => {
        await using server = Example.start(script, flags, [
          "--port",
          "0",
          ...args,
        ]);
        const port = await server.port();
        const client = tcp
          ? await Deno.connect({ hostname: "127.0.0.1", port })
          : undefined;
        try {
          server.kill(signal);
          assert.equal((await server.exited()).code, 0);
          await server.stderr.waitFor(/^shutting down/, 1_000);
          if (client !== undefined) {
            await within(readUntilClosed(client), "the client's close");
          }
        } finally {
          client?.close();
        }
      });
    }
  }
});
