import { concat } from "../_bytes.ts";
import assert from "node:assert/strict";
import type { BufferedProtocol } from "../protocols/buffered_protocol.ts";
import type { Protocol } from "../protocols/protocol.ts";
import type {
  BaseTransport,
  ErrorContext,
  SubprocessTransport,
  Transport,
} from "../transports/transport.ts";

/** Names of the callbacks {@linkcode RecordingProtocol} records. */
export type CallbackName =
  | "connectionMade"
  | "dataReceived"
  | "eofReceived"
  | "pauseWriting"
  | "resumeWriting"
  | "connectionLost"
  | "getBuffer"
  | "bufferUpdated";

/** Records the names of callbacks as they come, and waits for them. */
export class Recorder<Name extends string> {
  /** Every callback so far, in order. */
  calls: Name[] = [];
  #waiters: { name: Name; count: number; resolve: () => void }[] = [];

  /** Records a call of `name` and wakes whoever waited for it. */
  record(name: Name): void {
    this.calls.push(name);
    this.#waiters = this.#waiters.filter((waiter) => {
      if (this.count(waiter.name) < waiter.count) return true;
      waiter.resolve();
      return false;
    });
  }

  /** Returns how many times `name` was called. */
  count(name: Name): number {
    return this.calls.filter((call) => call === name).length;
  }

  /** Resolves once `name` has been called `count` times in all. */
  waitFor(name: Name, count = 1): Promise<void> {
    if (this.count(name) >= count) return Promise.resolve();
    return new Promise((resolve) =>
      this.#waiters.push({ name, count, resolve })
    );
  }
}

/** The callbacks every protocol kind has. */
export type BaseCallbackName =
  | "connectionMade"
  | "pauseWriting"
  | "resumeWriting"
  | "connectionLost";

/**
 * Records the callbacks every protocol kind has: keeps the transport and
 * what the connection was lost with. Recording protocols of each kind
 * extend it.
 */
export class BaseRecorder<
  Name extends string,
  T extends BaseTransport = BaseTransport,
> extends Recorder<Name | BaseCallbackName> {
  /** The transport given to `connectionMade`. */
  transport: T | undefined;
  /** What `connectionLost` was called with. */
  lostWith: Error | undefined;

  connectionMade(transport: T): void {
    this.transport = transport;
    this.record("connectionMade");
  }
  pauseWriting(): void {
    this.record("pauseWriting");
  }
  resumeWriting(): void {
    this.record("resumeWriting");
  }
  connectionLost(exc: Error | undefined): void {
    this.lostWith = exc;
    this.record("connectionLost");
  }
}

/**
 * Records callbacks and waits for them; holds the callbacks both recording
 * stream protocols share. `eofReceived` returns `keepOpen`.
 */
class CallRecorder extends BaseRecorder<CallbackName, Transport> {
  chunks: Uint8Array[] = [];
  keepOpen = false;

  eofReceived(): boolean {
    this.record("eofReceived");
    return this.keepOpen;
  }

  /** Every byte received so far, in one array. */
  received(): Uint8Array {
    return concat(this.chunks);
  }
}

/**
 * A `Protocol` that records each callback's name in `calls`, keeps the
 * bytes it receives, and can wait for a callback with `waitFor(name)`.
 * `eofReceived` returns `keepOpen`.
 */
export class RecordingProtocol extends CallRecorder implements Protocol {
  dataReceived(data: Uint8Array): void {
    this.chunks.push(data);
    this.record("dataReceived");
  }

  /** Resolves once at least `nbytes` bytes in all have arrived. */
  async waitForBytes(nbytes: number): Promise<void> {
    while (this.received().byteLength < nbytes) {
      await this.waitFor("dataReceived", this.count("dataReceived") + 1);
    }
  }
}

/**
 * A `BufferedProtocol` that records each callback's name and copies what
 * it receives out of its buffer of `size` bytes.
 */
export class RecordingBufferedProtocol extends CallRecorder
  implements BufferedProtocol {
  buffer: Uint8Array;
  sizeHints: number[] = [];

  constructor(size = 64 * 1024) {
    super();
    this.buffer = new Uint8Array(size);
  }

  getBuffer(sizeHint: number): Uint8Array {
    this.sizeHints.push(sizeHint);
    this.record("getBuffer");
    return this.buffer;
  }
  bufferUpdated(nbytes: number): void {
    this.chunks.push(this.buffer.slice(0, nbytes));
    this.record("bufferUpdated");
  }
}

/** Two connected ends of one socket; `using` closes whichever is open. */
export interface Peers extends Disposable {
  client: Deno.Conn;
  server: Deno.Conn;
}

/** Connects two TCP ends over 127.0.0.1 on a free port. */
export async function connectLoopback(): Promise<Peers> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [client, server] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    listener.accept(),
  ]);
  return peers(client, server);
}

/** Connects two Unix-socket ends through a socket file in a temp dir. */
export async function connectUnixLoopback(): Promise<Peers> {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/peers.sock`;
  const listener = Deno.listen({ transport: "unix", path });
  try {
    const [client, server] = await Promise.all([
      Deno.connect({ transport: "unix", path }),
      listener.accept(),
    ]);
    return peers(client, server);
  } finally {
    listener.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Connects two TLS ends over 127.0.0.1 on a free port, with the test
 * certificate for 127.0.0.1; both handshakes are done when it resolves.
 */
export async function connectTlsLoopback(): Promise<Peers> {
  const testdata = new URL("./testdata/", import.meta.url);
  const read = (name: string) => Deno.readTextFile(new URL(name, testdata));
  const [caCert, cert, key] = await Promise.all([
    read("ca.pem"),
    read("server.pem"),
    read("server_key.pem"),
  ]);
  using listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert,
    key,
  });
  const [client, server] = await Promise.all([
    Deno.connectTls({
      hostname: "127.0.0.1",
      port: listener.addr.port,
      caCerts: [caCert],
    }),
    listener.accept(),
  ]);
  await Promise.all([client.handshake(), server.handshake()]);
  return peers(client, server);
}

/** The loopback pair makers by name, for tests that run over both. */
export const LOOPBACKS = {
  tcp: connectLoopback,
  unix: connectUnixLoopback,
} as const;

function peers(client: Deno.Conn, server: Deno.Conn): Peers {
  return {
    client,
    server,
    [Symbol.dispose]() {
      for (const conn of [client, server]) {
        try {
          conn.close();
        } catch {
          // Closed already, by the test or by a transport.
        }
      }
    },
  };
}

/** What the read helpers read from: a `Deno.Conn`, or a pipe. */
export interface ByteReader {
  /** Reads into `p`; resolves with how many bytes, or `null` at EOF. */
  read(p: Uint8Array): Promise<number | null>;
}

/** Reads from `conn` until EOF and returns every byte. */
export async function readAll(conn: ByteReader): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(64 * 1024);
  while (true) {
    const nbytes = await conn.read(buffer);
    if (nbytes === null) return concat(chunks);
    chunks.push(buffer.slice(0, nbytes));
  }
}

/** Reads from `conn` until `nbytes` bytes arrived (or EOF). */
export async function readExactly(
  conn: ByteReader,
  nbytes: number,
): Promise<Uint8Array> {
  const out = new Uint8Array(nbytes);
  let filled = 0;
  while (filled < nbytes) {
    const n = await conn.read(out.subarray(filled));
    if (n === null) return out.subarray(0, filled);
    filled += n;
  }
  return out;
}

/** Writes all of `data` to `conn`, looping over partial writes. */
export async function writeAll(
  conn: Deno.Conn,
  data: Uint8Array,
): Promise<void> {
  let offset = 0;
  while (offset < data.byteLength) {
    offset += await conn.write(data.subarray(offset));
  }
}

/** `length` bytes of a repeatable pseudo-random pattern from `seed`. */
export function pattern(length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length);
  let state = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    out[i] = state & 0xff;
  }
  return out;
}

/** Joins chunks into one array (tests import it from here). */
export { concat };

/** An `onError` hook that keeps what it was given, for assertions. */
export function errorCollector(): {
  errors: { error: unknown; context: ErrorContext }[];
  onError: (error: unknown, context: ErrorContext) => void;
} {
  const errors: { error: unknown; context: ErrorContext }[] = [];
  return {
    errors,
    onError: (error, context) => errors.push({ error, context }),
  };
}

/** Values that are not a `Uint8Array`, each with a name for a test step. */
export const NOT_BYTES: readonly [string, unknown][] = [
  ["a string", "text"],
  ["an ArrayBuffer", new ArrayBuffer(4)],
  ["a number", 42],
  ["null", null],
  ["undefined", undefined],
  ["a DataView", new DataView(new ArrayBuffer(4))],
  ["a Uint16Array", new Uint16Array(2)],
  ["an array of bytes", [1, 2, 3]],
];

/** How long a test watches for a callback that must not come. */
export const QUIET_MS = 50;

/**
 * Lets `ms` pass, to watch for callbacks that must not come; never used to
 * wait for one that must.
 */
export function quietPeriod(ms = QUIET_MS): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** How long {@linkcode within} waits by default before failing. */
export const DEADLINE_MS = 5_000;

/** Rejects if `promise` does not settle within `ms`, naming `what`. */
export async function within<T>(
  promise: Promise<T>,
  what: string,
  ms = DEADLINE_MS,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`Timed out waiting for ${what}`)),
      ms,
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Asserts equal bytes without dumping megabytes into the message. */
export function assertBytes(
  actual: Uint8Array,
  expected: Uint8Array,
  what = "bytes",
): void {
  for (let i = 0; i < Math.min(actual.byteLength, expected.byteLength); i++) {
    if (actual[i] !== expected[i]) {
      assert.fail(
        `${what}: byte ${i} is ${actual[i]}, expected ${
          expected[i]
        } (lengths ${actual.byteLength} and ${expected.byteLength})`,
      );
    }
  }
  assert.equal(actual.byteLength, expected.byteLength, `${what}: length`);
}

/** The flow-control callbacks among `calls`, in order, as one string. */
export function flowCalls(calls: readonly string[]): string {
  return calls
    .filter((call) => call === "pauseWriting" || call === "resumeWriting")
    .join(" ");
}

/**
 * Reads until EOF. A reset also ends the stream: a transport that closes
 * with unread data resets the connection.
 */
export async function readUntilClosed(conn: Deno.Conn): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(64 * 1024);
  // Bounded: a closed peer sends at most what it buffered.
  for (let i = 0; i < 1_000_000; i++) {
    let nbytes: number | null;
    try {
      nbytes = await conn.read(buffer);
    } catch (error) {
      if (error instanceof Deno.errors.ConnectionReset) break;
      throw error;
    }
    if (nbytes === null) break;
    chunks.push(buffer.slice(0, nbytes));
  }
  return concat(chunks);
}

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

/** Encodes `text` as UTF-8. */
export function bytes(text: string): Uint8Array {
  return textEncoder.encode(text);
}

/** Decodes UTF-8 `data`. */
export function text(data: Uint8Array): string {
  return textDecoder.decode(data);
}

/** A seeded xorshift32 generator of integers in `[0, bound)`. */
export function random(seed: number): (bound: number) => number {
  let state = seed >>> 0 || 1;
  return (bound) => {
    state = (state ^ (state << 13)) >>> 0;
    state = (state ^ (state >>> 17)) >>> 0;
    state = (state ^ (state << 5)) >>> 0;
    return state % bound;
  };
}

/** A `SubprocessTransport` with no child, for protocol unit tests. */
export function stubSubprocessTransport(): SubprocessTransport {
  let closed = false;
  return {
    getExtraInfo: (_name: string, defaultValue?: unknown): never =>
      defaultValue as never,
    isClosing: () => closed,
    close: () => void (closed = true),
    setProtocol: () => {},
    getProtocol: () => ({}),
    getPid: () => 0,
    getReturncode: () => null,
    getPipeTransport: () => undefined,
    sendSignal: () => {},
    terminate: () => {},
    kill: () => {},
  };
}
