import assert from "node:assert/strict";
import { openConnection, startServer } from "../../mod.ts";
import { bytes, within } from "../_test_utils.ts";

Deno.test("StreamWriter.drain() rejects in a write/drain loop once the peer has gone, and timers fire meanwhile", async () => {
  await using server = await startServer((_reader, writer) => {
    writer.transport.abort();
  }, { hostname: "127.0.0.1", port: 0 });
  const [, writer] = await openConnection({ port: server.addrs[0]!.port });
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  try {
    const chunk = bytes("x".repeat(1024));
    const error = await within(
      (async () => {
        // Bounded: the loss must show within this many rounds.
        for (let i = 0; i < 100_000; i++) {
          writer.write(chunk);
          await writer.drain();
        }
      })().then(() => assert.fail("drain() never rejected"), (e) => e),
      "drain() to reject",
    );
    assert.ok(error instanceof Error);
    assert.ok(ticks > 0, "a timer fired while the loop ran");
  } finally {
    clearInterval(timer);
  }
  await writer.waitClosed().catch(() => {});
});
