import type { Protocol } from "../protocols/protocol.ts";
import type { Transport } from "./transport.ts";

/** What {@linkcode relay} resolves with once both transports are done. */
export interface RelayResult {
  /** Bytes that went from `a` to `b`. */
  aToB: number;
  /** Bytes that went from `b` to `a`. */
  bToA: number;
  /** The first failure on either side, or `undefined` if both ended cleanly. */
  error: Error | undefined;
}

/**
 * Joins two stream transports both ways, as a proxy does: what one reads,
 * the other writes. Each transport gets a relaying protocol (its old one
 * gets nothing more).
 *
 * - Flow control both ways: while one side's write buffer is over its
 *   high-water mark, the other side stops reading, so a slow reader on
 *   either end holds the relay's memory to the write buffers. This holds
 *   from the start: a side already over its high-water mark when
 *   `relay()` is called keeps the other side from reading until it
 *   drains. A side still paused from earlier writes with its buffer
 *   between the marks takes what the other side reads until a `write()`
 *   takes it over the high-water mark again, as with Node's `pipe()`.
 * - EOF goes through: when one peer half-closes, the other side gets
 *   `writeEof()` (or is closed, if it cannot half-close). Once EOF has
 *   gone through both ways, both are closed after flushing. This includes
 *   an EOF a side got before `relay()` was called, while its old protocol
 *   kept it open (`eofReceived()` returned `true`).
 * - A failure ends both: when either side is lost with an error, the
 *   other is aborted. Deno reports a peer's reset as EOF, so a reset may
 *   only show as a failed write later.
 * - A side that is already closing (or closed) when `relay()` is called
 *   counts as lost at once, cleanly: the other side is closed after
 *   flushing, and the promise resolves once it is lost.
 * - A transport is in one relay at a time: until its relay has lost it,
 *   `relay()` throws for it.
 *
 * Data goes through without a copy: the relaying protocols declare
 * `transientData`, and a write of a lent read keeps its memory until it
 * is written.
 *
 * @param a One transport, usually the one a server accepted.
 * @param b The other, usually one from `createConnection`.
 * @returns Resolves once both transports are lost, with the byte counts and
 * the first error.
 * @throws {TypeError} If `a` or `b` is not a stream transport, if they are
 * the same one, or if either is in a relay that has not lost it.
 *
 * @example A TCP proxy to a backend
 * ```ts ignore
 * import { createConnection, createServer, relay } from "@aio/protocols";
 *
 * await using proxy = await createServer(() => ({
 *   connectionMade(client) {
 *     client.pauseReading(); // until the backend is there
 *     createConnection(() => ({ dataReceived() {} }), { port: 5432 })
 *       .then(([backend]) => relay(client, backend), () => client.abort());
 *   },
 *   dataReceived() {},
 * }), { port: 6432 });
 * ```
 */
export function relay(a: Transport, b: Transport): Promise<RelayResult> {
  checkTransport(a, "a");
  checkTransport(b, "b");
  if (a === b) {
    throw new TypeError("Cannot relay: a and b are the same transport");
  }
  checkFree(a, "a");
  checkFree(b, "b");
  const done = Promise.withResolvers<RelayResult>();
  const state = new RelayState(done.resolve);
  const toB = new RelayHalf(a, b, state, "aToB");
  const toA = new RelayHalf(b, a, state, "bToA");
  const aClosing = a.isClosing();
  const bClosing = b.isClosing();
  a.setProtocol(toB);
  b.setProtocol(toA);
  // A side closing already may never call connectionLost again (it may be
  // gone): it counts as lost now, and the other side goes as it would.
  if (aClosing) toB.connectionLost(undefined);
  if (bClosing) toA.connectionLost(undefined);
  toB.start();
  toA.start();
  return done.promise;
}

/** What both halves of one relay share. */
class RelayState {
  counts = { aToB: 0, bToA: 0 };
  error: Error | undefined;
  eofs = 0;
  #lost = new Set<RelayHalf>();
  #resolve: (result: RelayResult) => void;

  constructor(resolve: (result: RelayResult) => void) {
    this.#resolve = resolve;
  }

  lost(half: RelayHalf, exc: Error | undefined): void {
    this.error ??= exc;
    this.#lost.add(half);
    if (this.#lost.size < 2) return;
    this.#resolve({ ...this.counts, error: this.error });
  }
}

/** The protocol of one side: what it reads goes to the other side. */
class RelayHalf implements Protocol {
  readonly transientData = true;
  #self: Transport;
  #other: Transport;
  #state: RelayState;
  #direction: "aToB" | "bToA";
  #eof = false;
  /** This side was lost (or counted as lost): the relay is done with it. */
  #lost = false;

  constructor(
    self: Transport,
    other: Transport,
    state: RelayState,
    direction: "aToB" | "bToA",
  ) {
    this.#self = self;
    this.#other = other;
    this.#state = state;
    this.#direction = direction;
  }

  /**
   * Reads this side, unless the other side's write buffer is over its
   * high-water mark: its writing is paused then, so its `resumeWriting`
   * will start this side. Passes on an EOF this side got before the relay.
   */
  start(): void {
    const self = this.#self;
    if (self.isClosing()) return;
    if (!self.isReading()) {
      // Paused, or at EOF: its old protocol got the peer's EOF and kept
      // it open. A transport that is not closing delivers data once
      // resumed, unless it is at EOF. (An EOF that came while paused is
      // held, and comes to this protocol after the resume.)
      self.resumeReading();
      if (!self.isReading()) {
        this.eofReceived();
        return;
      }
    }
    if (overHighWater(this.#other)) self.pauseReading();
  }

  dataReceived(data: Uint8Array): void {
    if (this.#other.isClosing()) {
      // The other side is closing (closed here, or lost): what this side
      // sends has nowhere to go, so stop reading it rather than drop it.
      this.#self.pauseReading();
      return;
    }
    this.#state.counts[this.#direction] += data.byteLength;
    // `false`: the other side's buffer is over its high-water mark, so its
    // writing is paused, whether or not `pauseWriting` came now (it does
    // not come again to a side paused since before the relay).
    if (this.#other.write(data) === false) this.#self.pauseReading();
  }

  eofReceived(): boolean {
    this.#eof = true;
    this.#state.eofs++;
    if (this.#state.eofs === 2) {
      // EOF went through both ways: the conversation is over.
      this.#other.close();
      this.#self.close();
      return true;
    }
    if (this.#other.canWriteEof()) this.#other.writeEof();
    else this.#other.close();
    return true;
  }

  /** This side's write buffer is full: stop reading the other side. */
  pauseWriting(): void {
    this.#other.pauseReading();
  }

  /** This side's write buffer drained: read the other side again. */
  resumeWriting(): void {
    if (!this.#eof || !this.#other.isClosing()) this.#other.resumeReading();
  }

  /** `true` until this side is lost: a relay still uses the transport. */
  get running(): boolean {
    return !this.#lost;
  }

  connectionLost(exc: Error | undefined): void {
    this.#lost = true;
    if (exc !== undefined) this.#other.abort();
    else this.#other.close();
    this.#state.lost(this, exc);
  }
}

/** `true` if `transport`'s write buffer is over its high-water mark. */
function overHighWater(transport: Transport): boolean {
  return transport.getWriteBufferSize() >
    transport.getWriteBufferLimits().high;
}

/** Throws if `transport` is in a relay that has not lost it yet. */
function checkFree(transport: Transport, name: string): void {
  const protocol = transport.getProtocol();
  if (protocol instanceof RelayHalf && protocol.running) {
    throw new TypeError(`Cannot relay: ${name} is in a relay already`);
  }
}

function checkTransport(transport: unknown, name: string): void {
  if (
    typeof transport !== "object" || transport === null ||
    !["write", "setProtocol", "getProtocol", "pauseReading"].every((method) =>
      typeof (transport as Record<string, unknown>)[method] === "function"
    )
  ) {
    throw new TypeError(`Cannot relay: ${name} must be a stream transport`);
  }
}
