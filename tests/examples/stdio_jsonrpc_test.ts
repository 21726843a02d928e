import assert from "node:assert/strict";
import { createSubprocessExec, type Process } from "../../mod.ts";
import { bytes, text, within } from "../_test_utils.ts";

const EXAMPLE = new URL("../../examples/stdio_jsonrpc.ts", import.meta.url);

/** Starts the example as a language server would be started: a child on pipes. */
async function start(): Promise<Process> {
  return await createSubprocessExec(
    Deno.execPath(),
    [
      "run",
      "--config",
      new URL("../../deno.json", import.meta.url).pathname,
      EXAMPLE.pathname,
    ],
    { stdin: "piped", stdout: "piped", stderr: "inherit" },
  );
}

function frame(message: unknown): Uint8Array {
  const body = bytes(JSON.stringify(message));
  return new Uint8Array([
    ...bytes(`Content-Length: ${body.byteLength}\r\n\r\n`),
    ...body,
  ]);
}

async function receive(child: Process): Promise<Record<string, unknown>> {
  const header = text(await child.stdout!.readuntil(bytes("\r\n\r\n")));
  const length = Number(/Content-Length: (\d+)/i.exec(header)![1]);
  return JSON.parse(text(await child.stdout!.readexactly(length)));
}

Deno.test("examples/stdio_jsonrpc.ts answers JSON-RPC requests framed by Content-Length, over its stdin and stdout", async () => {
  const child = await start();
  const stdin = child.stdin!;
  stdin.write(frame({ jsonrpc: "2.0", id: 1, method: "ping" }));
  assert.deepEqual(await within(receive(child), "ping"), {
    jsonrpc: "2.0",
    id: 1,
    result: "pong",
  });
  // Two requests in one write, and one split over two writes.
  stdin.write(
    new Uint8Array([
      ...frame({ jsonrpc: "2.0", id: 2, method: "add", params: [2, 3] }),
      ...frame({ jsonrpc: "2.0", id: 3, method: "nope" }),
    ]),
  );
  const split = frame({
    jsonrpc: "2.0",
    id: "four",
    method: "echo",
    params: { a: [1] },
  });
  stdin.write(split.subarray(0, 10));
  await stdin.drain();
  stdin.write(split.subarray(10));
  stdin.write(frame({ jsonrpc: "2.0", method: "ping" })); // A notification: no answer.
  stdin.write(bytes("Content-Length: 5\r\n\r\n{oops"));
  assert.deepEqual(await within(receive(child), "add"), {
    jsonrpc: "2.0",
    id: 2,
    result: 5,
  });
  assert.deepEqual(await within(receive(child), "an unknown method"), {
    jsonrpc: "2.0",
    id: 3,
    error: { code: -32601, message: "Method not found" },
  });
  assert.deepEqual(await within(receive(child), "echo"), {
    jsonrpc: "2.0",
    id: "four",
    result: { a: [1] },
  });
  const parseError = await within(receive(child), "the parse error");
  assert.equal((parseError.error as { code: number }).code, -32700);
  stdin.write(frame({ jsonrpc: "2.0", method: "exit" }));
  assert.equal(await within(child.wait(), "the exit"), 0);
  stdin.close();
  assert.equal((await child.stdout!.read()).byteLength, 0);
});

Deno.test("examples/stdio_jsonrpc.ts answers every one of many pipelined requests, in order, and exits at stdin's end", async () => {
  const child = await start();
  const count = 2_000;
  const big = "x".repeat(2_000);
  const requests = [];
  for (let id = 0; id < count; id++) {
    requests.push(
      ...frame({ jsonrpc: "2.0", id, method: "echo", params: [big] }),
    );
  }
  // Written at once, read only afterwards: the server must hold its input
  // while its output is full, and lose nothing.
  child.stdin!.write(new Uint8Array(requests));
  child.stdin!.close();
  for (let id = 0; id < count; id++) {
    const answer = await within(receive(child), `answer ${id}`);
    assert.equal(answer.id, id);
  }
  assert.equal(await within(child.wait(), "the exit"), 0);
});

Deno.test("examples/stdio_jsonrpc.ts exits 0 on SIGTERM, once its answers are written", async () => {
  const child = await start();
  child.stdin!.write(frame({ jsonrpc: "2.0", id: 1, method: "ping" }));
  assert.deepEqual(await within(receive(child), "ping"), {
    jsonrpc: "2.0",
    id: 1,
    result: "pong",
  });
  child.terminate();
  assert.equal(await within(child.wait(), "the exit"), 0);
  child.stdin!.close();
  assert.equal((await child.stdout!.read()).byteLength, 0);
});
