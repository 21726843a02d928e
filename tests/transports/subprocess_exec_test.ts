import assert from "node:assert/strict";
import {
  subprocessExec,
  type SubprocessExecOptions,
  subprocessShell,
} from "../../transports/subprocess_exec.ts";
import { ChildProcessTransport } from "../../transports/_subprocess_transport.ts";
import { bytes } from "../_test_utils.ts";
import {
  assertOrder,
  exec,
  RecordingSubprocessProtocol,
  shell,
} from "./_subprocess_utils.ts";

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

// Errors.

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
    "an async factory is a TypeError saying it returned a Promise (the child is killed)",
    async () => {
      const protocol = new RecordingSubprocessProtocol();
      await assert.rejects(
        () =>
          subprocessExec(
            (() => Promise.resolve(protocol)) as unknown as () =>
              RecordingSubprocessProtocol,
            "cat",
          ),
        (error: unknown) =>
          error instanceof TypeError &&
          /the factory returned a Promise/.test(error.message),
      );
      assert.deepEqual(protocol.calls, []);
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

  for (const signal of [{}, null, new AbortController()]) {
    await t.step(
      `a signal that is not an AbortSignal (${
        signal?.constructor.name ?? signal
      }) is a TypeError naming it`,
      async () => {
        await assert.rejects(
          () =>
            subprocessExec(factory, "cat", [], {
              signal: signal as AbortSignal,
            }),
          (error: unknown) =>
            error instanceof TypeError &&
            /^Cannot start subprocess: signal must be an AbortSignal/.test(
              error.message,
            ),
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

/** Bad options: what the error must name, and the options. */
const BAD_OPTIONS: [string, unknown][] = [
  ["options", "piped"],
  ["options", null],
  ["cwd", { cwd: 5 }],
  ["env", { env: "A=1" }],
  ["env", { env: ["A=1"] }],
  ["env.A", { env: { A: 1 } }],
  ["clearEnv", { clearEnv: "yes" }],
  ["onError", { onError: "log" }],
];

Deno.test("subprocessExec() checks every option before it starts the child, with an error that names it", async (t) => {
  for (const [name, options] of BAD_OPTIONS) {
    await t.step(`${name}: ${Deno.inspect(options)}`, async () => {
      let made = 0;
      await assert.rejects(
        () =>
          subprocessExec(
            () => {
              made++;
              return new RecordingSubprocessProtocol();
            },
            "true",
            [],
            options as SubprocessExecOptions,
          ),
        (error: unknown) => {
          assert.ok(error instanceof TypeError, `${error} is a TypeError`);
          assert.ok(
            error.message.startsWith("Cannot start subprocess: ") &&
              error.message.includes(name),
            `"${error.message}" names ${name}`,
          );
          return true;
        },
      );
      assert.equal(made, 0, "no child was started");
    });
  }

  await t.step(
    "env values that are not strings: the message says so",
    async () => {
      await assert.rejects(
        () =>
          subprocessExec(() => new RecordingSubprocessProtocol(), "true", [], {
            env: { LANG: "C", DEBUG: true } as never,
          }),
        {
          name: "TypeError",
          message:
            "Cannot start subprocess: env values must be strings; env.DEBUG is boolean",
        },
      );
    },
  );
});

// subprocessShell, cwd and env.

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
    stdin.write(bytes("first\nsecond\n"));
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
