import assert from "node:assert/strict";
import { ProtocolBase } from "../../protocols/protocol.ts";
import {
  MAX_READ_SIZE,
  outstandingLoans,
  PROBE_READ_SIZE,
  SMALL_MAX,
} from "../../transports/_read_memory.ts";
import { StreamTransport } from "../../transports/_stream_transport.ts";
import type { Transport } from "../../transports/transport.ts";
import {
  connectLoopback,
  errorCollector,
  pattern,
  readExactly,
  RecordingBufferedProtocol,
  RecordingProtocol,
  writeAll,
} from "../_test_utils.ts";

// Helpers.

const KiB = 1024;
const MiB = 1024 * KiB;
const PING = new Uint8Array([0x2a]);
/** The size of each write a sender makes: odd, so reads do not line up. */
const SEND_CHUNK = 100_003;
/** Round trips to wait for a read in flight to be held. */
const MAX_ROUND_TRIPS = 20;

/** Checks a stream against `expected` as it arrives, keeping no view of it. */
class StreamChecker {
  received = 0;
  mismatch: string | undefined;

  constructor(readonly expected: Uint8Array, readonly what: string) {}

  check(data: Uint8Array): void {
    const expected = this.expected;
    const base = this.received;
    this.received += data.byteLength;
    if (this.mismatch !== undefined) return;
    if (this.received > expected.byteLength) {
      this.mismatch = `${this.what}: ${this.received} bytes, ${
        this.received - expected.byteLength
      } more than sent`;
      return;
    }
    for (let i = 0; i < data.byteLength; i++) {
      if (data[i] !== expected[base + i]) {
        this.mismatch = `${this.what}: byte ${base + i} is ${data[i]}, ` +
          `expected ${expected[base + i]}`;
        return;
      }
    }
  }

  /** Asserts that the bytes so far were right, and numbered `total`. */
  assertPrefix(total: number): void {
    assert.equal(this.mismatch, undefined);
    assert.equal(this.received, total, `${this.what}: length`);
  }

  /** Asserts that every byte arrived, right, and no more. */
  assertComplete(): void {
    this.assertPrefix(this.expected.byteLength);
  }
}

/** Counts events; `reach(n)` resolves once there were `n` in all. */
class Counter {
  count = 0;
  #waiters: { n: number; resolve: () => void }[] = [];

  add(): void {
    this.count++;
    this.#waiters = this.#waiters.filter((waiter) => {
      if (waiter.n > this.count) return true;
      waiter.resolve();
      return false;
    });
  }

  reach(n: number): Promise<void> {
    if (this.count >= n) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ n, resolve }));
  }
}

/**
 * A `Protocol` with `transientData` that checks each chunk against
 * `expected` as it arrives and keeps none. It counts chunks over
 * `SMALL_MAX`, which only a lent block can hold, and chunks that came
 * while reading was paused.
 */
class CheckingProtocol extends ProtocolBase {
  override readonly transientData = true;
  checker: StreamChecker;
  largeChunks = 0;
  whilePaused = 0;
  /** The most loans out during one `dataReceived`. */
  mostLoans = 0;
  /** The blocks that large chunks were views of. */
  blocks = new Set<ArrayBufferLike>();
  lostWith: Error | undefined;
  #lost = Promise.withResolvers<void>();

  constructor(expected: Uint8Array, what: string) {
    super();
    this.checker = new StreamChecker(expected, what);
  }

  /** Resolves after `connectionLost`. */
  get lost(): Promise<void> {
    return this.#lost.promise;
  }

  override dataReceived(data: Uint8Array): void {
    if (!this.transport!.isReading()) this.whilePaused++;
    this.mostLoans = Math.max(this.mostLoans, outstandingLoans());
    if (data.byteLength > SMALL_MAX) {
      this.largeChunks++;
      this.blocks.add(data.buffer);
    }
    this.checker.check(data);
  }

  override connectionLost(exc: Error | undefined): void {
    super.connectionLost(exc);
    this.lostWith = exc;
    this.#lost.resolve();
  }
}

/**
 * A transient `Protocol` that writes each chunk straight back, as two
 * views: a small head (coalesced, so copied) and the rest. It pauses
 * reading while its writing is paused.
 */
class EchoProtocol extends CheckingProtocol {
  override dataReceived(data: Uint8Array): void {
    super.dataReceived(data);
    const transport = this.transport!;
    const cut = Math.min(1000, data.byteLength >> 1);
    transport.write(data.subarray(0, cut));
    transport.write(data.subarray(cut));
  }
  override pauseWriting(): void {
    super.pauseWriting();
    this.transport?.pauseReading();
  }
  override resumeWriting(): void {
    super.resumeWriting();
    this.transport?.resumeReading();
  }
}

/**
 * A transient `Protocol` that sends `expected` in `SEND_CHUNK` writes,
 * waiting whenever writing is paused, half-closes, and checks what comes
 * back.
 */
class EchoClient extends CheckingProtocol {
  sending: Promise<void> = Promise.resolve();

  override connectionMade(transport: Transport): void {
    super.connectionMade(transport);
    this.sending = this.#send();
  }

  async #send(): Promise<void> {
    const transport = this.transport!;
    const data = this.checker.expected;
    for (let offset = 0; offset < data.byteLength; offset += SEND_CHUNK) {
      transport.write(data.subarray(offset, offset + SEND_CHUNK));
      await this.drain();
    }
    transport.writeEof();
  }
}

/**
 * A `Protocol` that only relays write-side flow control to `source`. With
 * `deferPause`, it pauses `source` in a microtask, so that a read of
 * `source` is in flight then and is held.
 */
class FlowRelay extends ProtocolBase {
  source: Transport | undefined;
  #writingPaused = false;
  #lost = Promise.withResolvers<void>();

  constructor(readonly deferPause = false) {
    super();
  }

  get lost(): Promise<void> {
    return this.#lost.promise;
  }
  override dataReceived(_data: Uint8Array): void {}
  override pauseWriting(): void {
    super.pauseWriting();
    this.#writingPaused = true;
    if (this.deferPause) queueMicrotask(() => this.#pauseSource());
    else this.#pauseSource();
  }
  override resumeWriting(): void {
    super.resumeWriting();
    this.#writingPaused = false;
    this.source?.resumeReading();
  }
  override connectionLost(exc: Error | undefined): void {
    super.connectionLost(exc);
    this.#lost.resolve();
  }
  #pauseSource(): void {
    // Writing may have resumed before a deferred pause.
    if (this.#writingPaused) {
      this.source?.pauseReading();
    }
  }
}

/**
 * A transient `Protocol` that writes each chunk to `target`, another
 * transport, and closes it after its own EOF.
 */
class ProxyProtocol extends CheckingProtocol {
  constructor(
    expected: Uint8Array,
    readonly target: Transport,
  ) {
    super(expected, "proxy input");
  }
  override dataReceived(data: Uint8Array): void {
    super.dataReceived(data);
    this.target.write(data);
  }
  override eofReceived(): boolean {
    this.target.close();
    return false;
  }
}

/**
 * A `CheckingProtocol` that pauses reading after each read that filled its
 * buffer (a chunk of the largest read size, or of the probe's size), at
 * most `maxPauses` times: in `dataReceived` ("inside"), or just after it
 * returns ("after"), with the next read, as large as the last burst (so
 * lent), in flight. A filled probe comes after every short read, so pauses
 * do not depend on whether the sender ever gets a whole 256 KiB ahead.
 */
class PausingProtocol extends CheckingProtocol {
  pauses = new Counter();
  #pausing = false;

  constructor(
    expected: Uint8Array,
    readonly mode: "inside" | "after",
    readonly maxPauses: number,
  ) {
    super(expected, `paused ${mode}`);
  }

  override dataReceived(data: Uint8Array): void {
    super.dataReceived(data);
    const full = data.byteLength === MAX_READ_SIZE ||
      data.byteLength === PROBE_READ_SIZE;
    const due = full && !this.#pausing && this.pauses.count < this.maxPauses;
    if (!due) return;
    const transport = this.transport!;
    const pause = () => {
      this.#pausing = false;
      transport.pauseReading();
      this.pauses.add();
    };
    if (this.mode === "inside") {
      pause();
    } else {
      this.#pausing = true;
      queueMicrotask(pause);
    }
  }
}

/**
 * A `CheckingProtocol` that hands its transport to `next`: in
 * `dataReceived` at its first large (so lent) chunk ("inside"), or just
 * after `dataReceived` returns at its first read that filled its buffer
 * (of the largest read size, or a probe once lent chunks came) ("after"):
 * the next read, as large as the last burst (so lent), is then in flight.
 */
class SwitchingProtocol extends CheckingProtocol {
  switched = false;
  /** Chunks it got after it switched: none is right. */
  afterSwitch = 0;
  #switching = false;

  constructor(
    expected: Uint8Array,
    readonly next: RecordingProtocol,
    readonly mode: "inside" | "after",
  ) {
    super(expected, `switching ${mode}`);
  }

  override dataReceived(data: Uint8Array): void {
    if (this.switched) this.afterSwitch++;
    super.dataReceived(data);
    const due = this.mode === "inside"
      ? data.byteLength > SMALL_MAX
      : data.byteLength === MAX_READ_SIZE ||
        (data.byteLength === PROBE_READ_SIZE && this.largeChunks > 0);
    if (!due || this.#switching) return;
    this.#switching = true;
    const transport = this.transport!;
    const handOn = () => {
      this.switched = true;
      this.next.transport = transport;
      transport.setProtocol(this.next);
    };
    if (this.mode === "inside") handOn();
    else queueMicrotask(handOn);
  }
}

/**
 * A `RecordingBufferedProtocol` that pauses reading in each of its first
 * `pauses` updates.
 */
class PausingBufferedProtocol extends RecordingBufferedProtocol {
  constructor(readonly pauses: number, size: number) {
    super(size);
  }
  override bufferUpdated(nbytes: number): void {
    super.bufferUpdated(nbytes);
    if (this.count("bufferUpdated") <= this.pauses) {
      this.transport?.pauseReading();
    }
  }
}

/**
 * A `CheckingProtocol` that passes each chunk to `forward`, then throws
 * `error` in its `after`th large (so lent) chunk.
 */
class ThrowingProtocol extends CheckingProtocol {
  #large = 0;

  constructor(
    expected: Uint8Array,
    readonly error: Error,
    readonly forward: (data: Uint8Array) => void = () => {},
    readonly after = 1,
  ) {
    super(expected, "before the throw");
  }

  override dataReceived(data: Uint8Array): void {
    super.dataReceived(data);
    this.forward(data);
    if (data.byteLength > SMALL_MAX && ++this.#large === this.after) {
      throw this.error;
    }
  }
}

/** Whether a write failed because the other side closed. */
function isPeerGone(error: unknown): boolean {
  return error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.NotConnected;
}

/**
 * Writes `data` to `conn` in `SEND_CHUNK` writes, then half-closes. With
 * `peerMayClose`, stops quietly when the other side has closed.
 */
async function sendRaw(
  conn: Deno.Conn,
  data: Uint8Array,
  { peerMayClose = false }: { peerMayClose?: boolean } = {},
): Promise<void> {
  try {
    for (let offset = 0; offset < data.byteLength; offset += SEND_CHUNK) {
      await writeAll(conn, data.subarray(offset, offset + SEND_CHUNK));
    }
    await conn.closeWrite();
  } catch (error) {
    if (!peerMayClose || !isPeerGone(error)) throw error;
  }
}

/** Reads `conn` until EOF, checking each read with `checker`. */
async function readChecked(
  conn: Deno.Conn,
  checker: StreamChecker,
): Promise<void> {
  const buffer = new Uint8Array(64 * KiB);
  // Each read brings at least one byte.
  for (let i = 0; i <= checker.expected.byteLength; i++) {
    const nbytes = await conn.read(buffer);
    if (nbytes === null) return;
    checker.check(buffer.subarray(0, nbytes));
  }
  assert.fail(`${checker.what}: no EOF after every byte`);
}

/**
 * Gives `transport` turns of I/O, each a byte written to `peer` and read
 * there, until a loan is out (a lent read is held), at most
 * `MAX_ROUND_TRIPS`. Returns whether one is out.
 */
async function waitForLoan(
  transport: Transport,
  peer: Deno.Conn,
): Promise<boolean> {
  for (let i = 0; i < MAX_ROUND_TRIPS && outstandingLoans() === 0; i++) {
    transport.write(PING);
    assert.deepEqual(await readExactly(peer, 1), PING);
  }
  return outstandingLoans() > 0;
}

/**
 * Echoes `data` through a transient server on a fresh loopback pair, and
 * checks every byte that comes back at the transient client.
 */
async function echoPair(
  data: Uint8Array,
  what: string,
): Promise<{ server: EchoProtocol; client: EchoClient }> {
  using peers = await connectLoopback();
  const server = new EchoProtocol(data, `${what} at the server`);
  new StreamTransport({ conn: peers.server }, server);
  const client = new EchoClient(data, `${what} at the client`);
  new StreamTransport({ conn: peers.client }, client);
  await Promise.all([server.lost, client.lost]);
  await client.sending;
  server.checker.assertComplete();
  client.checker.assertComplete();
  assert.equal(server.lostWith, undefined);
  assert.equal(client.lostWith, undefined);
  return { server, client };
}

/** Asserts equal bytes without dumping megabytes into the message. */
function assertBytes(
  actual: Uint8Array,
  expected: Uint8Array,
  what: string,
): void {
  const checker = new StreamChecker(expected, what);
  checker.check(actual);
  checker.assertComplete();
}

// 1. Reading.

Deno.test("StreamTransport delivers 8 MiB to a transientData protocol byte-exact, in reused blocks", async () => {
  assert.equal(outstandingLoans(), 0);
  using peers = await connectLoopback();
  const data = pattern(8 * MiB, 11);
  const protocol = new CheckingProtocol(data, "received");
  new StreamTransport({ conn: peers.client }, protocol);
  await sendRaw(peers.server, data);
  await protocol.lost;

  protocol.checker.assertComplete();
  assert.equal(protocol.lostWith, undefined);
  assert.ok(protocol.largeChunks > 1, "no chunk was lent");
  assert.ok(
    protocol.blocks.size < protocol.largeChunks,
    `no block was reused: ${protocol.largeChunks} chunks in as many blocks`,
  );
  assert.equal(protocol.mostLoans, 1, "loans out for one connection");
  assert.equal(protocol.whilePaused, 0);
  assert.equal(outstandingLoans(), 0);
});

// 2. Writing lent data.

Deno.test("StreamTransport.write() keeps a lent block until written: three transientData echoes at once", async () => {
  assert.equal(outstandingLoans(), 0);
  const pairs = await Promise.all(
    [1, 2, 3].map((i) => echoPair(pattern(8 * MiB, 20 + i), `echo ${i}`)),
  );
  const owners = new Map<ArrayBufferLike, Set<CheckingProtocol>>();
  for (const { server, client } of pairs) {
    assert.ok(server.largeChunks > 0, "the server got no lent chunk");
    assert.ok(
      server.blocks.size < server.largeChunks,
      "no block was reused: written blocks did not go back",
    );
    for (const protocol of [server, client]) {
      for (const block of protocol.blocks) {
        owners.set(block, (owners.get(block) ?? new Set()).add(protocol));
      }
    }
  }
  assert.ok(
    [...owners.values()].some((protocols) => protocols.size > 1),
    "no block was shared between connections",
  );
  assert.equal(outstandingLoans(), 0);
});

Deno.test("StreamTransport.write() keeps a lent block until another transport wrote it: a transientData proxy", async (t) => {
  const variants: [string, number | undefined, boolean][] = [
    ["with the default write buffer limits", undefined, false],
    ["with a 1 MiB high-water mark, so that lent writes queue up", MiB, false],
    [
      "with the default limits, pausing the source with a lent read in flight",
      undefined,
      true,
    ],
  ];
  for (const [name, high, deferPause] of variants) {
    await t.step(name, async () => {
      assert.equal(outstandingLoans(), 0);
      using near = await connectLoopback();
      using far = await connectLoopback();
      const data = pattern(8 * MiB, deferPause ? 33 : high ? 32 : 31);
      const relay = new FlowRelay(deferPause);
      const target = new StreamTransport({ conn: far.client }, relay);
      if (high !== undefined) target.setWriteBufferLimits({ high });
      const proxy = new ProxyProtocol(data, target);
      relay.source = new StreamTransport({ conn: near.client }, proxy);
      const proxied = new StreamChecker(data, "proxied");

      await Promise.all([
        sendRaw(near.server, data),
        readChecked(far.server, proxied),
      ]);
      await Promise.all([proxy.lost, relay.lost]);

      proxied.assertComplete();
      proxy.checker.assertComplete();
      assert.equal(proxy.lostWith, undefined);
      assert.ok(proxy.largeChunks > 0, "the proxy got no lent chunk");
      assert.ok(
        proxy.blocks.size < proxy.largeChunks,
        "no block was reused: written blocks did not go back",
      );
      if (high !== undefined) {
        assert.ok(proxy.mostLoans > 1, "no lent write was queued");
      }
      assert.equal(outstandingLoans(), 0);
    });
  }
});

// 3. Protocols that keep what they get.

Deno.test("StreamTransport never reuses chunks given to a protocol without transientData, beside a busy transient one", async () => {
  assert.equal(outstandingLoans(), 0);
  using peers = await connectLoopback();
  const data = pattern(4 * MiB, 41);
  const owner = new RecordingProtocol();
  new StreamTransport({ conn: peers.client }, owner);

  await Promise.all([
    sendRaw(peers.server, data),
    echoPair(pattern(8 * MiB, 42), "busy echo"),
  ]);
  await owner.waitFor("connectionLost");

  assert.ok(owner.chunks.length > 1);
  assertBytes(owner.received(), data, "kept chunks");
  assert.equal(owner.lostWith, undefined);
  assert.equal(outstandingLoans(), 0);
});

// 4. pauseReading() and close().

Deno.test("StreamTransport.pauseReading() on a transientData protocol delivers every byte once, in order", async (t) => {
  for (const mode of ["inside", "after"] as const) {
    const name = mode === "inside"
      ? "paused in dataReceived"
      : "paused just after dataReceived, the next read held with its loan";
    await t.step(name, async () => {
      assert.equal(outstandingLoans(), 0);
      using peers = await connectLoopback();
      const data = pattern(8 * MiB, mode === "inside" ? 51 : 52);
      const protocol = new PausingProtocol(data, mode, 8);
      const transport = new StreamTransport({ conn: peers.client }, protocol);
      const sending = sendRaw(peers.server, data);

      let held = 0;
      for (let n = 1; n <= protocol.maxPauses; n++) {
        await Promise.race([protocol.pauses.reach(n), protocol.lost]);
        if (protocol.pauses.count < n) break;
        assert.equal(transport.isReading(), false);
        if (mode === "inside") {
          // No read is in flight: the loan ended when dataReceived returned.
          transport.write(PING);
          assert.deepEqual(await readExactly(peers.server, 1), PING);
          assert.equal(outstandingLoans(), 0);
        } else if (await waitForLoan(transport, peers.server)) {
          assert.equal(outstandingLoans(), 1);
          held++;
        }
        transport.resumeReading();
      }
      await sending;
      await protocol.lost;

      protocol.checker.assertComplete();
      assert.equal(protocol.lostWith, undefined);
      assert.ok(protocol.pauses.count > 0, "never paused");
      assert.equal(protocol.whilePaused, 0, "data came while paused");
      if (mode === "after") assert.ok(held > 0, "no lent read was held");
      assert.equal(outstandingLoans(), 0);
    });
  }
});

Deno.test("StreamTransport ends the loan of a lent read held while paused when it closes", async (t) => {
  const ends: [string, (transport: Transport) => void][] = [
    ["close()", (transport) => transport.close()],
    ["abort()", (transport) => transport.abort()],
    ["resumeReading() then close() in the same task", (transport) => {
      transport.resumeReading();
      transport.close();
    }],
  ];
  for (const [name, end] of ends) {
    await t.step(name, async () => {
      assert.equal(outstandingLoans(), 0);
      using peers = await connectLoopback();
      const data = pattern(8 * MiB, 61);
      const protocol = new PausingProtocol(data, "after", 8);
      const transport = new StreamTransport({ conn: peers.client }, protocol);
      const sending = sendRaw(peers.server, data, { peerMayClose: true });

      let ended = false;
      for (let n = 1; n <= protocol.maxPauses; n++) {
        await Promise.race([protocol.pauses.reach(n), protocol.lost]);
        if (protocol.pauses.count < n) break;
        if (await waitForLoan(transport, peers.server)) {
          assert.equal(outstandingLoans(), 1);
          const received = protocol.checker.received;
          end(transport);
          ended = true;
          await protocol.lost;
          assert.equal(protocol.checker.received, received, "held data came");
          break;
        }
        transport.resumeReading();
      }
      assert.ok(ended, "no lent read was held");
      await sending;
      await protocol.lost;

      assert.equal(outstandingLoans(), 0);
      assert.equal(protocol.lostWith, undefined);
      assert.equal(protocol.checker.mismatch, undefined);
      assert.equal(protocol.whilePaused, 0, "data came while paused");
    });
  }
});

// 5. setProtocol().

/**
 * Switches `transport`, paused by a `PausingProtocol` with a lent read
 * held, to `next`, at most `maxPauses` times trying. Returns whether it
 * switched.
 */
async function switchWhileHeld(
  transport: Transport,
  first: PausingProtocol,
  next: RecordingProtocol | RecordingBufferedProtocol,
  peer: Deno.Conn,
): Promise<boolean> {
  for (let n = 1; n <= first.maxPauses; n++) {
    await Promise.race([first.pauses.reach(n), first.lost]);
    if (first.pauses.count < n) return false;
    if (await waitForLoan(transport, peer)) {
      next.transport = transport;
      transport.setProtocol(next);
      return true;
    }
    transport.resumeReading();
  }
  return false;
}

Deno.test("StreamTransport.setProtocol() from a transientData protocol to one that keeps its chunks copies lent data", async (t) => {
  const switches: [string, "inside" | "after" | "held" | "held, buffered"][] = [
    ["from dataReceived, at the first lent chunk", "inside"],
    ["just after dataReceived, with a lent read in flight", "after"],
    ["while paused with a lent read held", "held"],
    [
      "to a BufferedProtocol that pauses in bufferUpdated, while paused with a lent read held",
      "held, buffered",
    ],
  ];
  for (const [name, mode] of switches) {
    await t.step(name, async () => {
      assert.equal(outstandingLoans(), 0);
      using peers = await connectLoopback();
      const data = pattern(6 * MiB, 71);
      const sending = sendRaw(peers.server, data);
      let first: CheckingProtocol;
      let next: RecordingProtocol | RecordingBufferedProtocol;
      let busy: Promise<unknown>;

      if (mode === "inside" || mode === "after") {
        next = new RecordingProtocol();
        first = new SwitchingProtocol(data, next, mode);
        busy = echoPair(pattern(4 * MiB, 72), "busy echo");
        new StreamTransport({ conn: peers.client }, first);
      } else {
        const pausing = new PausingProtocol(data, "after", 8);
        first = pausing;
        const transport = new StreamTransport({ conn: peers.client }, pausing);
        const buffered = mode === "held, buffered"
          ? new PausingBufferedProtocol(8, 64 * KiB)
          : undefined;
        next = buffered ?? new RecordingProtocol();
        assert.ok(
          await switchWhileHeld(transport, pausing, next, peers.server),
          "no lent read was held",
        );
        // Blocks freed from now on are reused by another connection.
        busy = echoPair(pattern(4 * MiB, 72), "busy echo");
        transport.resumeReading();
        for (let n = 1; buffered && n <= buffered.pauses; n++) {
          await Promise.race([
            buffered.waitFor("bufferUpdated", n),
            buffered.waitFor("connectionLost"),
          ]);
          if (buffered.count("connectionLost") > 0) break;
          assert.equal(transport.isReading(), false);
          // Turns of I/O for the busy connection while data is held.
          for (let i = 0; i < 3; i++) {
            transport.write(PING);
            assert.deepEqual(await readExactly(peers.server, 1), PING);
          }
          transport.resumeReading();
        }
      }
      await Promise.all([
        sending,
        busy,
        Promise.race([first.lost, next.waitFor("connectionLost")]),
      ]);

      if (first instanceof SwitchingProtocol) {
        assert.equal(first.switched, true);
        assert.equal(first.afterSwitch, 0, "called after it switched");
      }
      assert.equal(first.checker.mismatch, undefined);
      assert.ok(first.largeChunks > 0, "no lent chunk before the switch");
      assert.ok(next.chunks.length > 0, "nothing after the switch");
      assert.equal(first.lostWith, undefined);
      assertBytes(
        next.received(),
        data.subarray(first.checker.received),
        "kept chunks",
      );
      assert.equal(next.lostWith, undefined);
      assert.equal(outstandingLoans(), 0);
    });
  }
});

// 6. Errors.

Deno.test("StreamTransport closes with the error when a transientData protocol's dataReceived throws, and ends its loans", async (t) => {
  await t.step("with nothing written", async () => {
    assert.equal(outstandingLoans(), 0);
    using peers = await connectLoopback();
    const data = pattern(4 * MiB, 81);
    const error = new Error("boom");
    const protocol = new ThrowingProtocol(data, error);
    const { errors, onError } = errorCollector();
    const transport = new StreamTransport({ conn: peers.client }, protocol, {
      onError,
    });
    await sendRaw(peers.server, data, { peerMayClose: true });
    await protocol.lost;

    assert.equal(protocol.lostWith, error);
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!.error, error);
    assert.equal(errors[0]!.context.transport, transport);
    assert.equal(errors[0]!.context.protocol, protocol);
    assert.equal(protocol.checker.mismatch, undefined);
    assert.equal(outstandingLoans(), 0);
  });

  await t.step("after writing each chunk back, unread", async () => {
    assert.equal(outstandingLoans(), 0);
    using peers = await connectLoopback();
    const data = pattern(4 * MiB, 82);
    const error = new Error("boom");
    const protocol = new ThrowingProtocol(
      data,
      error,
      (chunk) => protocol.transport!.write(chunk),
      3,
    );
    const { errors, onError } = errorCollector();
    new StreamTransport({ conn: peers.client }, protocol, { onError });
    await sendRaw(peers.server, data, { peerMayClose: true });
    await protocol.lost;

    assert.equal(protocol.lostWith, error);
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!.error, error);
    assert.equal(outstandingLoans(), 0);
  });

  await t.step("after writing each chunk to another transport", async () => {
    assert.equal(outstandingLoans(), 0);
    using near = await connectLoopback();
    using far = await connectLoopback();
    const data = pattern(4 * MiB, 83);
    const error = new Error("boom");
    const relay = new FlowRelay();
    const target = new StreamTransport({ conn: far.client }, relay);
    const protocol = new ThrowingProtocol(
      data,
      error,
      (chunk) => target.write(chunk),
      3,
    );
    const { errors, onError } = errorCollector();
    relay.source = new StreamTransport({ conn: near.client }, protocol, {
      onError,
    });
    const forwarded = new StreamChecker(data, "forwarded");
    const reading = readChecked(far.server, forwarded);
    await sendRaw(near.server, data, { peerMayClose: true });
    await protocol.lost;
    target.close();
    await Promise.all([reading, relay.lost]);

    assert.equal(protocol.lostWith, error);
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!.error, error);
    // The chunk that threw was written on before.
    forwarded.assertPrefix(protocol.checker.received);
    assert.equal(protocol.checker.mismatch, undefined);
    assert.equal(outstandingLoans(), 0);
  });
});
