/**
 * Echo servers and clients of each stream protocol kind whose every
 * callback goes through a {@linkcode Witness}: it checks the lifecycle
 * contract as the callbacks come (connectionMade first, connectionLost
 * once and last, EOF once) and keeps what arrived, for byte-exact checks.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  BufferedProtocolBase,
  createConnection,
  createServer,
  type ErrorHandler,
  ProtocolBase,
  type Server,
  type Transport,
} from "../../mod.ts";
import { concat } from "../_test_utils.ts";

/** The protocol kinds that run over a byte stream. */
export type StreamKind =
  | "Protocol"
  | "Protocol with transientData"
  | "BufferedProtocol";

/** Every {@linkcode StreamKind}, for tests that run over each. */
export const STREAM_KINDS: readonly StreamKind[] = [
  "Protocol",
  "Protocol with transientData",
  "BufferedProtocol",
];

/** The callbacks a witness lists in `calls`. */
type Lifecycle =
  | "connectionMade"
  | "dataReceived"
  | "eofReceived"
  | "connectionLost";

/** Watches one end of a connection through its protocol's callbacks. */
export class Witness {
  /**
   * The lifecycle callbacks in order; a run of data callbacks
   * (`dataReceived` or `bufferUpdated`) is one `dataReceived`.
   */
  readonly calls: Lifecycle[] = [];
  /** Breaches of the contract, as they happened. */
  readonly breaches: string[] = [];
  /** The transport given to `connectionMade`. */
  transport: Transport | undefined;
  /** What `connectionLost` was called with. */
  lostWith: Error | undefined;
  /** How many bytes arrived. */
  size = 0;
  #chunks: Uint8Array[] = [];
  #lost = Promise.withResolvers<void>();
  #sizeWaiters: { size: number; resolve: () => void }[] = [];

  /** Resolves once `connectionLost` was called. */
  get ended(): Promise<void> {
    return this.#lost.promise;
  }

  /** Resolves once `size` bytes in all have arrived. */
  untilSize(size: number): Promise<void> {
    if (this.size >= size) return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#sizeWaiters.push({ size, resolve });
    return promise;
  }

  /** Every byte that arrived, in order. */
  received(): Uint8Array {
    return concat(this.#chunks);
  }

  made(transport: Transport): void {
    if (this.calls.length > 0) this.#breach("connectionMade is not first");
    this.transport = transport;
    this.calls.push("connectionMade");
  }

  /** Keeps `chunk`, which the caller must not change any more. */
  data(chunk: Uint8Array): void {
    this.#check("dataReceived");
    if (this.calls.includes("eofReceived")) {
      this.#breach("dataReceived after eofReceived");
    }
    if (this.calls.at(-1) !== "dataReceived") this.calls.push("dataReceived");
    this.#chunks.push(chunk);
    this.size += chunk.byteLength;
    this.#sizeWaiters = this.#sizeWaiters.filter((waiter) => {
      if (this.size < waiter.size) return true;
      waiter.resolve();
      return false;
    });
  }

  eof(): void {
    this.#check("eofReceived");
    if (this.calls.includes("eofReceived")) this.#breach("second eofReceived");
    this.calls.push("eofReceived");
  }

  flowControl(name: "pauseWriting" | "resumeWriting"): void {
    this.#check(name);
  }

  lost(exc: Error | undefined): void {
    this.#check("connectionLost");
    this.lostWith = exc;
    this.calls.push("connectionLost");
    this.#lost.resolve();
  }

  #check(name: string): void {
    if (this.calls[0] !== "connectionMade") {
      this.#breach(`${name} before connectionMade`);
    }
    if (this.calls.includes("connectionLost")) {
      this.#breach(`${name} after connectionLost`);
    }
  }

  #breach(what: string): void {
    this.breaches.push(what);
  }
}

/**
 * Asserts the lifecycle contract: no breach, `connectionMade` first,
 * exactly one `connectionLost`, and last.
 */
export function assertLifecycle(witness: Witness, what: string): void {
  assert.deepEqual(witness.breaches, [], `${what}: breaches`);
  assert.equal(witness.calls[0], "connectionMade", `${what}: first call`);
  assert.equal(
    witness.calls.filter((call) => call === "connectionLost").length,
    1,
    `${what}: connectionLost calls in ${witness.calls.join(" → ")}`,
  );
  assert.equal(witness.calls.at(-1), "connectionLost", `${what}: last call`);
}

/**
 * A `Protocol` that tells its witness every callback, echoes what it
 * receives if `echo`, and stops reading while writing is paused.
 */
class WitnessedProtocol extends ProtocolBase {
  constructor(readonly witness: Witness, readonly echo: boolean) {
    super();
  }

  override connectionMade(transport: Transport): void {
    super.connectionMade(transport);
    this.witness.made(transport);
  }
  override dataReceived(data: Uint8Array): void {
    // The protocol owns `data`: keeping it uncopied checks that too.
    this.witness.data(this.transientData ? data.slice() : data);
    if (this.echo) this.transport!.write(data);
  }
  override eofReceived(): boolean {
    this.witness.eof();
    return false;
  }
  override pauseWriting(): void {
    super.pauseWriting();
    this.witness.flowControl("pauseWriting");
    if (this.echo) this.transport!.pauseReading();
  }
  override resumeWriting(): void {
    super.resumeWriting();
    this.witness.flowControl("resumeWriting");
    if (this.echo) this.transport!.resumeReading();
  }
  override connectionLost(exc: Error | undefined): void {
    super.connectionLost(exc);
    this.witness.lost(exc);
  }
}

/** The same, with `data` valid only until `dataReceived` returns. */
class TransientWitnessedProtocol extends WitnessedProtocol {
  override readonly transientData = true;
}

/**
 * A `BufferedProtocol` that tells its witness every callback, echoes a
 * copy of what it receives if `echo`, and stops reading while writing is
 * paused. Its buffer has an odd size so that reads do not line up.
 */
class WitnessedBufferedProtocol extends BufferedProtocolBase {
  constructor(readonly witness: Witness, readonly echo: boolean) {
    super(10_007);
  }

  override connectionMade(transport: Transport): void {
    super.connectionMade(transport);
    this.witness.made(transport);
  }
  override bufferUpdated(nbytes: number): void {
    const chunk = this.buffer.slice(0, nbytes);
    this.witness.data(chunk);
    if (this.echo) this.transport!.write(chunk);
  }
  override eofReceived(): boolean {
    this.witness.eof();
    return false;
  }
  override pauseWriting(): void {
    super.pauseWriting();
    this.witness.flowControl("pauseWriting");
    if (this.echo) this.transport!.pauseReading();
  }
  override resumeWriting(): void {
    super.resumeWriting();
    this.witness.flowControl("resumeWriting");
    if (this.echo) this.transport!.resumeReading();
  }
  override connectionLost(exc: Error | undefined): void {
    super.connectionLost(exc);
    this.witness.lost(exc);
  }
}

/** A protocol of `kind` that reports to `witness`. */
export function witnessedProtocol(
  kind: StreamKind,
  witness: Witness,
  echo: boolean,
): ProtocolBase | BufferedProtocolBase {
  switch (kind) {
    case "Protocol":
      return new WitnessedProtocol(witness, echo);
    case "Protocol with transientData":
      return new TransientWitnessedProtocol(witness, echo);
    case "BufferedProtocol":
      return new WitnessedBufferedProtocol(witness, echo);
  }
}

const testdata = new URL("../testdata/", import.meta.url);

/** Server and client TLS options with the test certificates. */
export async function tlsOptions(): Promise<{
  server: { cert: string; key: string };
  client: { caCerts: string[]; serverName: string };
}> {
  const [ca, cert, key] = await Promise.all(
    ["ca.pem", "server.pem", "server_key.pem"].map((name) =>
      Deno.readTextFile(new URL(name, testdata))
    ),
  );
  return {
    server: { cert: cert!, key: key! },
    client: { caCerts: [ca!], serverName: "localhost" },
  };
}

/** An echo server on 127.0.0.1 and the witness of each end it accepted. */
export interface EchoServer {
  server: Server<Deno.NetAddr>;
  port: number;
  /** The server's end of each connection, in the order they were made. */
  ends: Witness[];
  /** Resolves with the server's end numbered `index` once it is made. */
  end(index: number): Promise<Witness>;
}

/** Starts an echo server of `kind` on 127.0.0.1, port 0. */
export async function startEchoServer(
  kind: StreamKind,
  options: {
    tls?: { cert: string; key: string } | undefined;
    onError: ErrorHandler;
  },
): Promise<EchoServer> {
  const ends: Witness[] = [];
  let waiters: { index: number; resolve(witness: Witness): void }[] = [];
  const server = await createServer(() => {
    const witness = new Witness();
    ends.push(witness);
    waiters = waiters.filter((waiter) => {
      if (waiter.index !== ends.length - 1) return true;
      waiter.resolve(witness);
      return false;
    });
    return witnessedProtocol(kind, witness, true);
  }, {
    hostname: "127.0.0.1",
    port: 0,
    onError: options.onError,
    ...(options.tls === undefined ? {} : { tls: options.tls }),
  });
  return {
    server,
    port: server.addrs[0]!.port,
    ends,
    end(index) {
      const witness = ends[index];
      if (witness !== undefined) return Promise.resolve(witness);
      return new Promise((resolve) => waiters.push({ index, resolve }));
    },
  };
}

/** Connects a client of `kind` that does not echo; returns its witness. */
export async function connectWitness(
  kind: StreamKind,
  port: number,
  options: {
    tls?: { caCerts: string[]; serverName: string } | undefined;
    onError: ErrorHandler;
  },
): Promise<Witness> {
  const witness = new Witness();
  await createConnection(() => witnessedProtocol(kind, witness, false), {
    hostname: "127.0.0.1",
    port,
    onError: options.onError,
    ...(options.tls === undefined ? {} : { tls: options.tls }),
  });
  return witness;
}
