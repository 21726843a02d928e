import assert from "node:assert/strict";
import {
  BlockLender,
  commit,
  drop,
  hold,
  lendBlock,
  MAX_READ_SIZE,
  outstandingLoans,
  PROBE_READ_SIZE,
  ReadSizer,
  release,
  releaseBlock,
  reserve,
  reserveBlock,
  TLS_PROBE_READ_SIZE,
} from "../../transports/_read_memory.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

Deno.test("ReadSizer: the default probe is 1 KiB, small enough for an idle connection's pending read", () => {
  assert.equal(PROBE_READ_SIZE, 1024);
  assert.equal(new ReadSizer().size, PROBE_READ_SIZE);
});

Deno.test("ReadSizer: starts with a probe and grows four times per full read", () => {
  const sizer = new ReadSizer(4 * KiB);
  assert.equal(sizer.size, 4 * KiB);
  const sizes = [sizer.size];
  for (let i = 0; i < 5; i++) {
    sizer.update(sizer.size, sizer.size);
    sizes.push(sizer.size);
  }
  assert.deepEqual(sizes, [
    4 * KiB,
    16 * KiB,
    64 * KiB,
    256 * KiB,
    MAX_READ_SIZE,
    MAX_READ_SIZE,
  ]);
});

Deno.test("ReadSizer: probes after a short read and returns to the burst size", () => {
  const sizer = new ReadSizer(4 * KiB);
  for (let i = 0; i < 3; i++) sizer.update(sizer.size, sizer.size);
  assert.equal(sizer.size, 256 * KiB);
  sizer.update(100 * KiB, 256 * KiB);
  assert.equal(sizer.size, 4 * KiB);
  sizer.update(4 * KiB, 4 * KiB);
  assert.equal(sizer.size, 256 * KiB);
});

Deno.test("ReadSizer: a quiet connection halves its burst size down to the probe", () => {
  const sizer = new ReadSizer(4 * KiB);
  for (let i = 0; i < 3; i++) sizer.update(sizer.size, sizer.size);
  const bursts = [];
  for (let i = 0; i < 8; i++) {
    sizer.update(10, sizer.size);
    sizer.update(4 * KiB, 4 * KiB);
    bursts.push(sizer.size);
  }
  assert.deepEqual(bursts.slice(0, 3), [128 * KiB, 64 * KiB, 32 * KiB]);
  assert.equal(bursts.at(-1), 16 * KiB);
});

Deno.test("commit: a small result is a copy and its reservation is reused", () => {
  const view = reserve(PROBE_READ_SIZE);
  view.set([1, 2, 3]);
  const chunk = commit(view, 3);
  assert.deepEqual([...chunk], [1, 2, 3]);
  assert.notEqual(chunk.buffer, view.buffer);
  const next = reserve(PROBE_READ_SIZE);
  next.fill(9);
  assert.deepEqual([...chunk], [1, 2, 3]);
  release(next);
});

Deno.test("commit: a large result is a copy of its size, and the warm reservation is reused", () => {
  const view = reserve(64 * KiB);
  view.fill(7);
  const chunk = commit(view, 32 * KiB);
  assert.notEqual(chunk.buffer, view.buffer);
  assert.equal(chunk.byteLength, 32 * KiB);
  assert.equal(chunk.buffer.byteLength, 32 * KiB);
  const again = reserve(64 * KiB);
  assert.equal(again.buffer, view.buffer, "the same block, warm");
  release(again);
  const later = [];
  for (let i = 0; i < 40; i++) {
    const next = reserve(64 * KiB);
    next.fill(1);
    later.push(commit(next, 64 * KiB));
  }
  assert.ok(chunk.every((byte) => byte === 7));
});

Deno.test("probe slots: released out of order, every slot is reused", () => {
  const views = Array.from({ length: 8 }, () => reserve(PROBE_READ_SIZE));
  const offsets = new Set(views.map((view) => view.byteOffset));
  assert.equal(offsets.size, views.length);
  for (const index of [5, 1, 7, 0, 3, 6, 2, 4]) release(views[index]!);
  const again = Array.from({ length: 8 }, () => reserve(PROBE_READ_SIZE));
  for (const view of again) {
    assert.ok(
      views.some((old) =>
        old.buffer === view.buffer && old.byteOffset === view.byteOffset
      ),
    );
  }
  for (const view of again) release(view);
});

Deno.test("blocks: sized to a power of two and reused once given back", () => {
  const view = reserveBlock(64 * KiB);
  assert.equal(view.byteLength, 64 * KiB);
  assert.equal(view.buffer.byteLength, 64 * KiB);
  releaseBlock(view);
  const again = reserveBlock(64 * KiB);
  assert.equal(again.buffer, view.buffer);
  releaseBlock(again);
  const odd = reserveBlock(40 * KiB);
  assert.equal(odd.buffer.byteLength, 64 * KiB);
  releaseBlock(odd);
});

Deno.test("BlockLender: keeps as many free blocks as were in use at the busiest, and 1 MiB once none are", () => {
  const lender = new BlockLender();
  // Twelve connections each read into a 256 KiB block: 3 MiB in use.
  const views = Array.from({ length: 12 }, () => lender.reserve(256 * KiB));
  const buffers = new Set(views.map((view) => view.buffer));
  const loans = views.map((view) => lender.lend(view));
  // Each read is written, one after another, while the next ones are read:
  // every block comes back to be reused, none from fresh memory.
  for (const [i, loan] of loans.entries()) {
    lender.drop(loan);
    const next = lender.reserve(256 * KiB);
    assert.ok(buffers.has(next.buffer), `read ${i} got a fresh block`);
    views[i] = next;
  }
  // All twelve back but one: the twelve fit the lists (3 MiB).
  for (const view of views.slice(1)) lender.release(view);
  assert.equal(lender.freeBytes, 11 * 256 * KiB);
  // None in use: the lists shrink back to 1 MiB.
  lender.release(views[0]!);
  assert.equal(lender.freeBytes, 1024 * KiB);
});

Deno.test("BlockLender: keeps 16 MiB at most beyond 1 MiB of each size, however busy", () => {
  const lender = new BlockLender();
  const sizes = [64 * KiB, 128 * KiB, 256 * KiB];
  // 32 MiB in use: 16 MiB of 256 KiB blocks, 8 MiB each of the others.
  const views = sizes.flatMap((size) =>
    Array.from(
      { length: 8 * MiB / size * (size === 256 * KiB ? 2 : 1) },
      () => lender.reserve(size),
    )
  );
  for (const view of views.slice(1)) lender.release(view);
  assert.ok(lender.freeBytes <= 16 * MiB + sizes.length * MiB);
  assert.ok(lender.freeBytes >= 16 * MiB);
  lender.release(views[0]!);
  assert.equal(lender.freeBytes, sizes.length * MiB);
});

Deno.test("lendBlock: a result of 4 KiB or less is copied and the block is free at once", () => {
  const view = reserveBlock(64 * KiB);
  view.set([4, 5, 6]);
  const lent = lendBlock(view, 3);
  assert.ok(lent instanceof Uint8Array);
  assert.deepEqual([...lent], [4, 5, 6]);
  assert.equal(outstandingLoans(), 0);
  const again = reserveBlock(64 * KiB);
  assert.equal(again.buffer, view.buffer);
  releaseBlock(again);
});

Deno.test("lendBlock: a held block is not reused until every holder drops it", () => {
  const view = reserveBlock(64 * KiB);
  const loan = lendBlock(view, 32 * KiB);
  assert.ok(!(loan instanceof Uint8Array));
  assert.equal(outstandingLoans(), 1);
  const writeLoan = hold(view.subarray(100, 200));
  assert.equal(writeLoan, loan);
  assert.equal(hold(new Uint8Array(10)), undefined);
  drop(loan);
  const other = reserveBlock(64 * KiB);
  assert.notEqual(other.buffer, view.buffer);
  releaseBlock(other);
  drop(writeLoan!);
  assert.equal(outstandingLoans(), 0);
  const again = reserveBlock(64 * KiB);
  assert.equal(again.buffer, view.buffer);
  releaseBlock(again);
});

Deno.test("ReadSizer: over TLS the probe is one whole record", () => {
  const sizer = new ReadSizer(TLS_PROBE_READ_SIZE);
  assert.equal(sizer.size, 16 * KiB);
  sizer.update(16 * KiB, 16 * KiB);
  assert.equal(sizer.size, 64 * KiB);
  // A read returns one record: short, and the probe takes the next whole.
  sizer.update(16 * KiB, 64 * KiB);
  assert.equal(sizer.size, 16 * KiB);
  sizer.update(100, 16 * KiB);
  assert.equal(sizer.size, 16 * KiB);
});
