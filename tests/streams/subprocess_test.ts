import assert from "node:assert/strict";
import {
  createSubprocessExec,
  createSubprocessShell,
} from "../../streams/create_subprocess_exec.ts";
import {
  assertBytes,
  bytes,
  NOT_BYTES,
  pattern,
  text,
  within,
} from "../_test_utils.ts";

const PIPED = { stdin: "piped", stdout: "piped", stderr: "piped" } as const;

Deno.test("createSubprocessExec(): communicate() feeds stdin and collects both outputs", async () => {
  const child = await createSubprocessExec(
    "/bin/sh",
    ["-c", "cat; echo done >&2; exit 4"],
    PIPED,
  );
  const input = pattern(300_000, 3);
  const [out, err] = await within(child.communicate(input), "communicate");
  assertBytes(out!, input, "stdout");
  assert.equal(text(err!), "done\n");
  assert.equal(child.returncode, 4);
  assert.equal(await child.wait(), 4);
});

Deno.test("createSubprocessExec(): stdout as a stream reader, line by line", async () => {
  const child = await createSubprocessShell(
    "printf 'one\\ntwo\\nthree'",
    { stdout: "piped" },
  );
  assert.equal(child.stdin, undefined);
  assert.equal(child.stderr, undefined);
  const lines: string[] = [];
  for await (const line of child.stdout!) lines.push(text(line));
  assert.deepEqual(lines, ["one\n", "two\n", "three"]);
  assert.equal(await child.wait(), 0);
  assert.ok(child.pid > 0);
});

Deno.test("createSubprocessExec(): stdin writer with drain, then EOF", async () => {
  const child = await createSubprocessExec("cat", [], {
    stdin: "piped",
    stdout: "piped",
  });
  const stdin = child.stdin!;
  const chunk = pattern(64 * 1024, 9);
  const reading = child.stdout!.read();
  for (let i = 0; i < 64; i++) {
    stdin.write(chunk);
    await stdin.drain();
  }
  stdin.writeEof();
  const out = await within(reading, "cat's output");
  assert.equal(out.byteLength, 64 * chunk.byteLength);
  assertBytes(out.subarray(0, chunk.byteLength), chunk, "first chunk");
  await stdin.waitClosed();
  assert.equal(await child.wait(), 0);
});

Deno.test("createSubprocessExec(): a child that does not read its input is not an error for communicate()", async () => {
  const child = await createSubprocessShell("exit 0", {
    stdin: "piped",
    stdout: "piped",
  });
  const [out] = await within(
    child.communicate(new Uint8Array(4 * 1024 * 1024)),
    "communicate",
  );
  assert.equal(out!.byteLength, 0);
  assert.equal(child.returncode, 0);
  await assert.rejects(() => child.stdin!.drain(), Error);
});

Deno.test("createSubprocessExec(): communicate() with input that is not a Uint8Array is a TypeError, and writes or reads nothing", async (t) => {
  const child = await createSubprocessExec("cat", [], {
    stdin: "piped",
    stdout: "piped",
  });
  for (const [name, value] of NOT_BYTES) {
    if (value === undefined) continue; // no input
    await t.step(name, async () => {
      await assert.rejects(
        child.communicate(value as Uint8Array),
        (error: Error) =>
          error instanceof TypeError && /input/.test(error.message),
      );
    });
  }
  const [out] = await within(child.communicate(bytes("hi")), "communicate");
  assert.equal(text(out!), "hi", "stdin was still open, stdout unread");
  assert.equal(child.returncode, 0);
});

Deno.test("createSubprocessExec(): wait() ends on exit even while a grandchild holds stdout", async () => {
  const child = await createSubprocessShell(
    "(exec sleep 0.3) & echo started",
    { stdout: "piped" },
  );
  assert.equal(await within(child.wait(), "the exit"), 0);
  assert.equal(text(await child.stdout!.readline()), "started\n");
  // The grandchild's end closes stdout; then EOF.
  assert.equal((await within(child.stdout!.read(), "EOF")).byteLength, 0);
});

Deno.test("createSubprocessExec(): terminate() and kill() give -N; signals after exit do nothing", async () => {
  const child = await createSubprocessExec("sleep", ["5"], { stdin: "null" });
  assert.equal(child.returncode, null);
  child.terminate();
  assert.equal(await child.wait(), -15);
  child.kill();
  child.sendSignal("SIGINT");
  assert.equal(child.returncode, -15);

  const other = await createSubprocessExec("sleep", ["5"], { stdin: "null" });
  other.kill();
  assert.equal(await other.wait(), -9);
});

Deno.test("createSubprocessExec(): streams default to inherit, as asyncio", async () => {
  const child = await createSubprocessExec("true", [], {
    stdin: "null",
    stdout: "null",
  });
  assert.equal(child.stdin, undefined);
  assert.equal(child.stdout, undefined);
  assert.equal(child.stderr, undefined);
  assert.equal(await child.wait(), 0);
});

Deno.test("createSubprocessExec(): bad arguments", async () => {
  await assert.rejects(
    () => createSubprocessExec("true", [], { limit: 0 }),
    RangeError,
  );
  await assert.rejects(
    () => createSubprocessExec("/nonexistent/program", [], PIPED),
    Deno.errors.NotFound,
  );
  await assert.rejects(
    () => createSubprocessShell(42 as unknown as string, PIPED),
    TypeError,
  );
  const child = await createSubprocessExec("cat", [], {
    stdin: "piped",
    stdout: "piped",
  });
  child.stdin!.write(bytes("x"));
  child.stdin!.close();
  assert.equal(text(await child.stdout!.read()), "x");
  await child.wait();
});
