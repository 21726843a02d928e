import { checkInteger } from "../_checks.ts";
import {
  MemoryTransport,
  type MemoryTransportOptions,
} from "../transports/memory_transport.ts";
import type { StreamProtocol } from "../transports/transport.ts";

/**
 * How {@linkcode connectPair} cuts the bytes it moves: `"whole"` (what one
 * side wrote since the last round, in one chunk), a number of bytes per
 * chunk (`1` gives every byte its own `dataReceived`), or random chunk
 * sizes from a seed, the same for the same seed.
 */
export type Chunking = "whole" | number | { random: number };

/** Options for {@linkcode connectPair}. */
export interface ConnectPairOptions {
  /** How delivered bytes are cut (default `"whole"`). */
  chunking?: Chunking;
  /** Options for both transports (limits, extra info, error reporting). */
  transport?: Omit<MemoryTransportOptions, "peerReading">;
  /**
   * The most rounds `flush()` runs before it gives up, a positive integer
   * (default 10 000).
   */
  maxRounds?: number;
}

/** Two protocols connected in memory, and the steps that move their bytes. */
export interface Pair<C extends StreamProtocol, S extends StreamProtocol> {
  /** The client's protocol. */
  client: C;
  /** The server's protocol. */
  server: S;
  /** The client's transport. */
  clientTransport: MemoryTransport;
  /** The server's transport. */
  serverTransport: MemoryTransport;
  /**
   * Lets pending microtasks and zero-delay timers run, moves, in each
   * direction, what was written since the last round, cut as `chunking`
   * says, and lets them run again. Resolves `true` if anything moved.
   */
  pump(): Promise<boolean>;
  /** Pumps until a round moves nothing. */
  flush(): Promise<void>;
}

/**
 * Connects two protocols in memory, as Twisted's `iosim`, so that ordering
 * and partial-read bugs can be reproduced deterministically: nothing moves
 * until `pump()` or `flush()`, every byte is cut as `chunking` says, and a
 * side that pauses reading stops what comes to it (the other side's
 * writes then stay in its buffer, and flow control follows).
 * `writeEof()` reaches the peer as EOF once the bytes before it did, and so
 * does `close()`. What a side writes once its peer has closed makes it
 * lose the connection with `Deno.errors.BrokenPipe`, after the peer's EOF
 * if it reads.
 *
 * Two choices of the model differ from a socket. There is no socket
 * buffer between the sides: a side that reads takes the other's writes at
 * once, so `write()` returns `true` and `pauseWriting` does not fire
 * unless the peer does not read; then the writer pauses at its own high
 * mark, and its `close()` waits until the peer reads again (a socket
 * would first fill the kernel's buffers). And `abort()` reaches the peer
 * as a reset, `connectionLost(ConnectionReset)` with no `eofReceived`,
 * where over TCP the peer usually reads EOF.
 *
 * @param clientFactory Makes the client's protocol.
 * @param serverFactory Makes the server's protocol.
 * @param options Chunking, and options for both transports.
 * @returns The pair, once both protocols are made (server first).
 * @throws {TypeError} For a `chunking` that is not `"whole"`, a number or
 * `{ random: seed }`, or a `maxRounds` that is not a number.
 * @throws {RangeError} For a `chunking` or `maxRounds` number that is not a
 * positive integer.
 *
 * @example Check a protocol against every chunking, one byte at a time
 * ```ts
 * import { LineProtocol, ProtocolBase } from "@aio/protocols";
 * import { connectPair } from "@aio/protocols/testing";
 * import assert from "node:assert/strict";
 *
 * class Lines extends LineProtocol {
 *   lines: string[] = [];
 *   override lineReceived(line: Uint8Array): void {
 *     this.lines.push(new TextDecoder().decode(line));
 *   }
 * }
 *
 * const { client, server, flush } = await connectPair(
 *   () => new ProtocolBase(),
 *   () => new Lines({ delimiter: "\r\n" }),
 *   { chunking: 1 },
 * );
 * client.transport?.write(new TextEncoder().encode("one\r\ntwo\r\n"));
 * await flush();
 * assert.deepEqual(server.lines, ["one", "two"]);
 * ```
 */
export async function connectPair<
  C extends StreamProtocol,
  S extends StreamProtocol,
>(
  clientFactory: () => C,
  serverFactory: () => S,
  options?: ConnectPairOptions,
): Promise<Pair<C, S>> {
  const cut = cutter(options?.chunking ?? "whole");
  const maxRounds = checkInteger(
    options?.maxRounds ?? 10_000,
    "maxRounds",
    "connect pair",
    1,
  );
  const server = serverFactory();
  const client = clientFactory();
  const serverTransport = new MemoryTransport(server, {
    ...options?.transport,
    peerReading: false,
  });
  const clientTransport = new MemoryTransport(client, {
    ...options?.transport,
    peerReading: false,
  });
  const directions = [
    new Direction(clientTransport, serverTransport),
    new Direction(serverTransport, clientTransport),
  ];

  const pump = async (): Promise<boolean> => {
    // Let writes already made reach their sink first.
    await settle();
    // What each side wrote before the round moves in it; what the moved
    // bytes make the other side write waits for the next round.
    const taken = directions.map((direction) => direction.take());
    let moved = false;
    directions.forEach((direction, i) => {
      if (direction.deliver(taken[i]!, cut)) moved = true;
    });
    await settle();
    return moved;
  };
  const flush = async (): Promise<void> => {
    for (let round = 0; round < maxRounds; round++) {
      if (!await pump()) return;
    }
    throw new Error(
      `Cannot flush: the pair still moved bytes after ${maxRounds} rounds`,
    );
  };
  await settle();
  return { client, server, clientTransport, serverTransport, pump, flush };
}

/** One way bytes go: what `from` writes reaches `to`. */
class Direction {
  #from: MemoryTransport;
  #to: MemoryTransport;
  #ended = false;
  /** `from` wrote after `to` had closed. */
  #unsent = false;

  constructor(from: MemoryTransport, to: MemoryTransport) {
    this.#from = from;
    this.#to = to;
  }

  /** Takes what waits to move, if the receiving side reads. */
  take(): Uint8Array | undefined {
    if (this.#ended) return undefined;
    // What comes once the peer is gone has nowhere to go.
    if (this.#to.closed) return this.#from.written({ clear: true });
    // Writes reach the peer only while it reads.
    const reading = this.#to.isReading();
    this.#from.setPeerReading(reading);
    return reading ? this.#from.written({ clear: true }) : undefined;
  }

  /** Delivers what was taken, then EOF or the end; `true` if anything moved. */
  deliver(
    data: Uint8Array | undefined,
    cut: (length: number) => number[],
  ): boolean {
    if (data === undefined || this.#ended) return false;
    if (this.#to.closed) return this.#breakPipe(data);
    const from = this.#from;
    const to = this.#to;
    let offset = 0;
    for (const size of cut(data.byteLength)) {
      to.receive(data.subarray(offset, offset + size));
      offset += size;
    }
    const moved = data.byteLength > 0;
    const aborted = from.log.includes("abort");
    if (!aborted && !from.eofWritten && !from.closed) return moved;
    // What the sender wrote before its end goes first: it moves in the
    // next round, and the end after it.
    if (from.written().byteLength > 0) return true;
    this.#ended = true;
    if (aborted) {
      to.lose(new Deno.errors.ConnectionReset("The peer aborted"));
    } else {
      to.receiveEof();
    }
    return true;
  }

  /**
   * `to` has closed: what `from` wrote since fails, as over a socket.
   * `from` gets the peer's EOF first if it reads (in this round or the
   * next), then loses the connection with `BrokenPipe`.
   */
  #breakPipe(data: Uint8Array): boolean {
    const from = this.#from;
    if (data.byteLength > 0 || from.getWriteBufferSize() > 0) {
      this.#unsent = true;
    }
    if (!this.#unsent) return false;
    if (from.isReading()) return true;
    this.#ended = true;
    from.lose(new Deno.errors.BrokenPipe("The peer closed the connection"));
    return true;
  }
}

/** Returns the chunk sizes for `length` bytes. */
function cutter(chunking: Chunking): (length: number) => number[] {
  if (chunking === "whole") return (length) => length > 0 ? [length] : [];
  if (typeof chunking === "number") {
    const size = checkInteger(chunking, "chunking", "connect pair", 1);
    return (length) => {
      const sizes: number[] = [];
      for (let left = length; left > 0; left -= size) {
        sizes.push(Math.min(size, left));
      }
      return sizes;
    };
  }
  if (typeof chunking?.random !== "number") {
    throw new TypeError(
      `Cannot connect pair: chunking must be "whole", a number, or { random: seed }`,
    );
  }
  let state = chunking.random >>> 0 || 1;
  const next = (bound: number): number => {
    state = (state ^ (state << 13)) >>> 0;
    state = (state ^ (state >>> 17)) >>> 0;
    state = (state ^ (state << 5)) >>> 0;
    return state % bound;
  };
  return (length) => {
    const sizes: number[] = [];
    for (let left = length; left > 0;) {
      const size = 1 + next(left);
      sizes.push(size);
      left -= size;
    }
    return sizes;
  };
}

/** Lets every pending microtask and zero-delay timer run. */
function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
