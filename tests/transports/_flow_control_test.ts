import assert from "node:assert/strict";
import {
  DEFAULT_HIGH_WATER,
  WriteFlowControl,
} from "../../transports/_flow_control.ts";
import type { WriteBufferLimits } from "../../transports/transport.ts";

/** A flow control that records "pause" and "resume" in `events`. */
function recording(): { flow: WriteFlowControl; events: string[] } {
  const events: string[] = [];
  const flow = new WriteFlowControl({
    flowControl: (callback) =>
      void events.push(callback === "pauseWriting" ? "pause" : "resume"),
  });
  return { flow, events };
}

Deno.test("WriteFlowControl starts with asyncio's defaults: high 64 KiB, low 16 KiB", () => {
  const { flow, events } = recording();
  assert.equal(DEFAULT_HIGH_WATER, 65536);
  assert.deepEqual(flow.limits(), { low: 16384, high: 65536 });
  assert.equal(flow.high, 65536);
  assert.equal(flow.paused, false);
  assert.deepEqual(events, []);
});

Deno.test("WriteFlowControl.setLimits() derives the missing mark as asyncio does", async (t) => {
  const cases: [Partial<WriteBufferLimits> | undefined, WriteBufferLimits][] = [
    [undefined, { high: 65536, low: 16384 }],
    [{}, { high: 65536, low: 16384 }],
    [{ high: 1000 }, { high: 1000, low: 250 }],
    [{ high: 1001 }, { high: 1001, low: 250 }],
    [{ high: 3 }, { high: 3, low: 0 }],
    [{ high: 0 }, { high: 0, low: 0 }],
    [{ low: 100 }, { high: 400, low: 100 }],
    [{ low: 0 }, { high: 0, low: 0 }],
    [{ high: 10, low: 10 }, { high: 10, low: 10 }],
    [{ high: 0, low: 0 }, { high: 0, low: 0 }],
    [{ high: 100, low: 7 }, { high: 100, low: 7 }],
  ];
  for (const [given, expected] of cases) {
    await t.step(
      `${Deno.inspect(given)} gives ${Deno.inspect(expected)}`,
      () => {
        const { flow, events } = recording();
        flow.setLimits(given, 0);
        assert.deepEqual(flow.limits(), {
          low: expected.low,
          high: expected.high,
        });
        assert.equal(flow.high, expected.high);
        assert.deepEqual(events, []);
      },
    );
  }
});

Deno.test("WriteFlowControl.setLimits() throws RangeError unless high >= low >= 0", async (t) => {
  const bad: Partial<WriteBufferLimits>[] = [
    { high: 1, low: 2 },
    { low: -1 },
    { high: -1 },
    { high: -4, low: -1 },
    { high: 10, low: 11 },
    { high: 100, low: -1 },
  ];
  for (const limits of bad) {
    await t.step(Deno.inspect(limits), () => {
      const { flow, events } = recording();
      flow.setLimits({ high: 500, low: 100 }, 0);
      assert.throws(() => flow.setLimits(limits, 0), RangeError);
      // A rejected call leaves the marks as they were.
      assert.deepEqual(flow.limits(), { low: 100, high: 500 });
      assert.deepEqual(events, []);
    });
  }
});

Deno.test("WriteFlowControl.setLimits() throws TypeError for marks that are not numbers", async (t) => {
  const bad: unknown[] = [
    { high: "100" },
    { low: "10" },
    { high: NaN },
    { low: NaN },
    { high: 10n },
    { high: {} },
    { low: true },
    "high",
    42,
  ];
  for (const limits of bad) {
    await t.step(Deno.inspect(limits), () => {
      const { flow, events } = recording();
      assert.throws(
        () =>
          flow.setLimits(limits as Partial<WriteBufferLimits> | undefined, 0),
        TypeError,
      );
      assert.deepEqual(flow.limits(), { low: 16384, high: 65536 });
      assert.deepEqual(events, []);
    });
  }
});

Deno.test("WriteFlowControl.grew() pauses only strictly over the high mark", async (t) => {
  await t.step("size == high does not pause", () => {
    const { flow, events } = recording();
    flow.grew(65536);
    assert.equal(flow.paused, false);
    assert.deepEqual(events, []);
  });

  await t.step("size == high + 1 pauses", () => {
    const { flow, events } = recording();
    flow.grew(65537);
    assert.equal(flow.paused, true);
    assert.deepEqual(events, ["pause"]);
  });

  await t.step("with high 0, one byte pauses and zero does not", () => {
    const { flow, events } = recording();
    flow.setLimits({ high: 0 }, 0);
    flow.grew(0);
    assert.deepEqual(events, []);
    flow.grew(1);
    assert.deepEqual(events, ["pause"]);
  });

  await t.step("pauses synchronously, inside the call", () => {
    let pausedInside = false;
    const flow = new WriteFlowControl({
      flowControl: (callback) => {
        if (callback === "pauseWriting") pausedInside = true;
      },
    });
    flow.setLimits({ high: 10 }, 0);
    flow.grew(11);
    assert.equal(pausedInside, true);
  });
});

Deno.test("WriteFlowControl.shrank() resumes only at or below the low mark", async (t) => {
  await t.step("size == low + 1 does not resume", () => {
    const { flow, events } = recording();
    flow.setLimits({ high: 100, low: 20 }, 0);
    flow.grew(101);
    flow.shrank(50);
    flow.shrank(21);
    assert.equal(flow.paused, true);
    assert.deepEqual(events, ["pause"]);
  });

  await t.step("size == low resumes", () => {
    const { flow, events } = recording();
    flow.setLimits({ high: 100, low: 20 }, 0);
    flow.grew(101);
    flow.shrank(20);
    assert.equal(flow.paused, false);
    assert.deepEqual(events, ["pause", "resume"]);
  });

  await t.step("size below low resumes", () => {
    const { flow, events } = recording();
    flow.setLimits({ high: 100, low: 20 }, 0);
    flow.grew(101);
    flow.shrank(0);
    assert.deepEqual(events, ["pause", "resume"]);
  });

  await t.step("without a pause, shrinking to 0 does not resume", () => {
    const { flow, events } = recording();
    flow.shrank(0);
    flow.shrank(65536);
    assert.deepEqual(events, []);
  });

  await t.step("between low and high stays paused", () => {
    const { flow, events } = recording();
    flow.setLimits({ high: 100, low: 20 }, 0);
    flow.grew(200);
    flow.shrank(100);
    flow.shrank(60);
    assert.equal(flow.paused, true);
    assert.deepEqual(events, ["pause"]);
  });
});

Deno.test("WriteFlowControl pairs pause and resume and never nests them", async (t) => {
  await t.step("two grew() calls over high pause once", () => {
    const { flow, events } = recording();
    flow.setLimits({ high: 10, low: 2 }, 0);
    flow.grew(11);
    flow.grew(20);
    flow.grew(1000);
    assert.deepEqual(events, ["pause"]);
  });

  await t.step("two shrank() calls at low resume once", () => {
    const { flow, events } = recording();
    flow.setLimits({ high: 10, low: 2 }, 0);
    flow.grew(11);
    flow.shrank(2);
    flow.shrank(0);
    assert.deepEqual(events, ["pause", "resume"]);
  });

  await t.step("cycles alternate pause, resume, pause, resume", () => {
    const { flow, events } = recording();
    flow.setLimits({ high: 10, low: 2 }, 0);
    for (let i = 0; i < 3; i++) {
      flow.grew(11);
      flow.grew(12);
      flow.shrank(5);
      flow.shrank(1);
      flow.shrank(0);
    }
    assert.deepEqual(events, [
      "pause",
      "resume",
      "pause",
      "resume",
      "pause",
      "resume",
    ]);
  });

  await t.step(
    "with both marks 0, each byte pauses until the buffer is empty",
    () => {
      const { flow, events } = recording();
      flow.setLimits({ high: 0, low: 0 }, 0);
      flow.grew(1);
      flow.shrank(1);
      assert.deepEqual(events, ["pause"]);
      flow.shrank(0);
      assert.deepEqual(events, ["pause", "resume"]);
    },
  );
});

Deno.test("WriteFlowControl.setLimits() re-checks the buffer size at once", async (t) => {
  await t.step("lowering high below the current size pauses", () => {
    const { flow, events } = recording();
    flow.grew(1000);
    assert.deepEqual(events, []);
    flow.setLimits({ high: 999 }, 1000);
    assert.equal(flow.paused, true);
    assert.deepEqual(events, ["pause"]);
  });

  await t.step("lowering high to the current size does not pause", () => {
    const { flow, events } = recording();
    flow.setLimits({ high: 1000 }, 1000);
    assert.equal(flow.paused, false);
    assert.deepEqual(events, []);
  });

  await t.step("raising the marks so that size <= low resumes", () => {
    const { flow, events } = recording();
    flow.setLimits({ high: 100, low: 10 }, 0);
    flow.grew(500);
    assert.deepEqual(events, ["pause"]);
    flow.setLimits({ high: 4000, low: 500 }, 500);
    assert.equal(flow.paused, false);
    assert.deepEqual(events, ["pause", "resume"]);
  });

  await t.step("raising high but not low past the size stays paused", () => {
    const { flow, events } = recording();
    flow.setLimits({ high: 100, low: 10 }, 0);
    flow.grew(500);
    flow.setLimits({ high: 4000, low: 499 }, 500);
    assert.equal(flow.paused, true);
    assert.deepEqual(events, ["pause"]);
  });

  await t.step(
    "setting limits while paused and still over high does not pause again",
    () => {
      const { flow, events } = recording();
      flow.setLimits({ high: 100, low: 10 }, 0);
      flow.grew(500);
      flow.setLimits({ high: 50, low: 5 }, 500);
      flow.setLimits({ high: 200 }, 500);
      assert.equal(flow.paused, true);
      assert.deepEqual(events, ["pause"]);
    },
  );

  await t.step("resetting to the defaults with an empty buffer resumes", () => {
    const { flow, events } = recording();
    flow.setLimits({ high: 0 }, 0);
    flow.grew(1);
    flow.setLimits(undefined, 0);
    assert.deepEqual(flow.limits(), { low: 16384, high: 65536 });
    assert.deepEqual(events, ["pause", "resume"]);
  });
});
