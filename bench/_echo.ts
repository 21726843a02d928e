/**
 * Shared setup for the benches: servers and clients over loopback for each
 * way of driving a Deno TCP connection that we compare.
 *
 * Every {@linkcode Variant} is a whole implementation, used on both ends of
 * the connection: the raw `Deno.Conn` loop (with 64 KiB or 256 KiB reads),
 * `StreamTransport` with a `Protocol` or a `BufferedProtocol`, and
 * `node:net`. Each serves one of two {@linkcode ServerKind}s: `"echo"`
 * writes back every byte it reads; a sink (`{ ackEvery }`) reads and writes
 * one byte back each time `ackEvery` bytes have arrived. A
 * {@linkcode BenchClient} writes a chunk some number of times, honouring
 * back-pressure as its API intends, and then waits until the bytes it
 * expects back have arrived.
 *
 * Every TCP connection sets TCP_NODELAY, as `StreamTransport` does by
 * default. Servers other than `node:net` also serve TLS (`tls` in
 * {@linkcode ServeOptions}), and {@linkcode serveStreams} serves the echo
 * with asyncio-style streams.
 *
 * @module
 */

import net from "node:net";
import {
  BufferedProtocolBase,
  createConnection,
  createServer,
  ProtocolBase,
  type Server,
  startServer,
  type StreamReader,
  type StreamWriter,
  type TlsServerOptions,
  type Transport,
} from "../mod.ts";

/** Every bench listens and connects on loopback only. */
export const HOSTNAME = "127.0.0.1";
/** One kibibyte. */
export const KiB = 1024;
/** One mebibyte. */
export const MiB = 1024 * KiB;
/** The one byte a sink writes back. */
const ACK = new Uint8Array([0x2e]);
/** The buffer size of the `"buffered"` variant, as the better raw loop. */
export const BUFFERED_SIZE = 256 * KiB;

/** One way of driving connections, used by both the server and the client. */
export type Variant =
  | "raw"
  | "raw256"
  | "protocol"
  | "transient"
  | "buffered"
  | "node";

/** Every variant, the baseline first. */
export const VARIANTS: readonly Variant[] = [
  "raw",
  "raw256",
  "protocol",
  "transient",
  "buffered",
  "node",
];

/** The bench name of each variant. */
export const VARIANT_NAMES: Readonly<Record<Variant, string>> = {
  raw: "raw Deno.Conn, 64 KiB reads",
  raw256: "raw Deno.Conn, 256 KiB reads",
  protocol: "StreamTransport + Protocol",
  transient: "StreamTransport + Protocol, transientData",
  buffered: "StreamTransport + BufferedProtocol",
  node: "node:net",
};

/** `"echo"` writes back what it reads; a sink acks every `ackEvery` bytes. */
export type ServerKind = "echo" | { ackEvery: number };

/** Options for {@linkcode serve}. */
export interface ServeOptions {
  /** The port to listen on (default 0: a free one). */
  port?: number;
  /** The address to listen on (default {@linkcode HOSTNAME}). */
  hostname?: string;
  /**
   * The read buffer of `"raw"` and `"buffered"` servers (default: 64 KiB for
   * `"raw"`, 256 KiB for `"raw256"` and `"buffered"`).
   */
  bufferSize?: number;
  /** Called for each connection once it is set up and reading. */
  onConnection?: () => void;
  /** Serve TLS with this certificate and key (not for `"node"`). */
  tls?: TlsServerOptions;
  /**
   * A raw echo server reads each time into a fresh buffer, as a protocol
   * that owns every chunk it gets needs: what fresh memory costs.
   */
  freshBuffers?: boolean;
}

/** A server of one variant. */
export interface BenchServer {
  /** The port it listens on. */
  port: number;
  /** Stops listening and closes every connection. */
  close(): void;
}

/** A client of one variant, connected to a server. */
export interface BenchClient {
  /**
   * Writes `chunk` `count` times, then waits until `expect` more bytes have
   * come back.
   */
  send(chunk: Uint8Array, count: number, expect: number): Promise<void>;
  /** Closes the connection. */
  close(): void;
}

/**
 * Starts a server of `variant` on loopback.
 *
 * @param variant How the server drives its connections.
 * @param kind What it does with the bytes it reads.
 * @param options Where to listen, buffer size, and a connection callback.
 * @returns The server, once it listens.
 */
export async function serve(
  variant: Variant,
  kind: ServerKind,
  options: ServeOptions = {},
): Promise<BenchServer> {
  const hostname = options.hostname ?? HOSTNAME;
  const port = options.port ?? 0;
  const onConnection = options.onConnection ?? (() => {});
  const tls = options.tls;
  switch (variant) {
    case "raw":
    case "raw256": {
      const size = options.bufferSize ??
        (variant === "raw" ? 64 * KiB : 256 * KiB);
      const listener = tls === undefined
        ? Deno.listen({ hostname, port })
        : Deno.listenTls({ hostname, port, ...tls });
      return serveRaw(listener, (conn) => {
        onConnection();
        return kind === "echo"
          ? rawEcho(conn, size, options.freshBuffers ?? false)
          : rawSink(conn, size, kind.ackEvery);
      });
    }
    case "protocol":
    case "transient":
    case "buffered": {
      const size = options.bufferSize ?? BUFFERED_SIZE;
      const transient = variant === "transient";
      const factory = variant !== "buffered"
        ? () =>
          kind === "echo"
            ? new EchoProtocol(transient)
            : new SinkProtocol(kind, transient)
        : () =>
          kind === "echo"
            ? new BufferedEchoProtocol(size)
            : new BufferedSinkProtocol(size, kind);
      const server = await createServer(() => {
        const protocol = factory();
        protocol.onConnection = onConnection;
        return protocol;
      }, tls === undefined ? { hostname, port } : { hostname, port, tls });
      return closeable(server);
    }
    case "node":
      if (tls !== undefined) {
        throw new TypeError("Cannot serve: the node variant serves no TLS");
      }
      return await serveNode(hostname, port, kind, onConnection);
  }
}

/** The echo size of {@linkcode serveStreams}: one `reader.read()` at most. */
export const STREAMS_READ_SIZE = 64 * KiB;

/**
 * Starts an echo server with asyncio-style streams: `startServer`, and a
 * handler that reads with `reader.read(65536)`, writes what it got and
 * awaits `drain()`. Its `bufferSize` option is not used.
 *
 * @param options Where to listen, TLS, and a connection callback.
 * @returns The server, once it listens.
 */
export async function serveStreams(
  options: ServeOptions = {},
): Promise<BenchServer> {
  const hostname = options.hostname ?? HOSTNAME;
  const port = options.port ?? 0;
  const onConnection = options.onConnection ?? (() => {});
  const echo = async (reader: StreamReader, writer: StreamWriter) => {
    onConnection();
    for (;;) {
      const data = await reader.read(STREAMS_READ_SIZE);
      if (data.byteLength === 0) break;
      writer.write(data);
      await writer.drain();
    }
    writer.close();
  };
  const tls = options.tls;
  const server = await startServer(
    echo,
    tls === undefined ? { hostname, port } : { hostname, port, tls },
  );
  return closeable(server);
}

/** A {@linkcode BenchServer} over one of our servers. */
function closeable(server: Server<Deno.NetAddr>): BenchServer {
  return {
    port: server.addrs[0]!.port,
    close() {
      server.close();
      server.abortClients();
    },
  };
}

/**
 * Connects a client of `variant` to `port` on loopback.
 *
 * @param variant How the client drives its connection.
 * @param port The server's port.
 * @returns The client, once connected.
 */
export async function connect(
  variant: Variant,
  port: number,
): Promise<BenchClient> {
  switch (variant) {
    case "raw":
    case "raw256": {
      const conn = await Deno.connect({ hostname: HOSTNAME, port });
      conn.setNoDelay(true);
      return new RawClient(conn, variant === "raw" ? 64 * KiB : 256 * KiB);
    }
    case "protocol":
    case "transient":
    case "buffered": {
      const [transport, protocol] = await createConnection(
        () =>
          variant === "buffered"
            ? new CountingBufferedProtocol(BUFFERED_SIZE)
            : new CountingProtocol(variant === "transient"),
        { hostname: HOSTNAME, port },
      );
      return new TransportClient(transport, protocol);
    }
    case "node":
      return await NodeClient.connect(port);
  }
}

/**
 * Starts a server of `variant` and connects a client of the same variant.
 *
 * @param variant The implementation on both ends.
 * @param kind What the server does with the bytes it reads.
 * @returns The client; the server stays open until the process exits.
 */
export async function connectPair(
  variant: Variant,
  kind: ServerKind,
): Promise<BenchClient> {
  const server = await serve(variant, kind);
  return await connect(variant, server.port);
}

/**
 * Returns `size` bytes of a repeating pattern.
 *
 * @param size The length in bytes.
 * @returns A new array.
 */
export function pattern(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = i % 251;
  return bytes;
}

/**
 * Writes all of `data`, however many `conn.write` calls it takes.
 *
 * @param conn Where to write.
 * @param data What to write.
 */
export async function writeAll(
  conn: Deno.Conn,
  data: Uint8Array,
): Promise<void> {
  let offset = await conn.write(data);
  while (offset < data.byteLength) {
    offset += await conn.write(data.subarray(offset));
  }
}

/** Counts arriving bytes and wakes whoever waits for enough of them. */
class Arrivals {
  #received = 0;
  #target = 0;
  #resolve: (() => void) | undefined;

  add(nbytes: number): void {
    this.#received += nbytes;
    if (this.#resolve !== undefined && this.#received >= this.#target) {
      const resolve = this.#resolve;
      this.#resolve = undefined;
      resolve();
    }
  }

  /** Resolves once `nbytes` more than all earlier expectations arrived. */
  expect(nbytes: number): Promise<void> {
    this.#target += nbytes;
    if (this.#received >= this.#target) return Promise.resolve();
    return new Promise((resolve) => this.#resolve = resolve);
  }
}

// Raw Deno.Conn.

function serveRaw(
  listener: Deno.Listener<Deno.Conn, Deno.NetAddr>,
  handle: (conn: Deno.Conn) => Promise<void>,
): BenchServer {
  const conns = new Set<Deno.Conn>();
  (async () => {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (error instanceof Deno.errors.BadResource) return;
        // Too many open files, say: back off as our Server does.
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      }
      // A TLS connection has no setNoDelay().
      if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
      conns.add(conn);
      handle(conn)
        .catch(() => {})
        .finally(() => {
          conns.delete(conn);
          closeQuietly(conn);
        });
    }
  })();
  return {
    port: listener.addr.port,
    close() {
      closeQuietly(listener);
      for (const conn of conns) closeQuietly(conn);
    },
  };
}

async function rawEcho(
  conn: Deno.Conn,
  size: number,
  fresh: boolean,
): Promise<void> {
  let buffer = new Uint8Array(size);
  for (;;) {
    if (fresh) buffer = new Uint8Array(size);
    const nbytes = await conn.read(buffer);
    if (nbytes === null) return;
    await writeAll(conn, buffer.subarray(0, nbytes));
  }
}

async function rawSink(
  conn: Deno.Conn,
  size: number,
  ackEvery: number,
): Promise<void> {
  const buffer = new Uint8Array(size);
  let count = 0;
  for (;;) {
    const nbytes = await conn.read(buffer);
    if (nbytes === null) return;
    count += nbytes;
    while (count >= ackEvery) {
      count -= ackEvery;
      await writeAll(conn, ACK);
    }
  }
}

class RawClient implements BenchClient {
  #conn: Deno.Conn;
  #arrivals = new Arrivals();

  constructor(conn: Deno.Conn, size: number) {
    this.#conn = conn;
    this.#readLoop(new Uint8Array(size)).catch(() => {});
  }

  async #readLoop(buffer: Uint8Array): Promise<void> {
    for (;;) {
      const nbytes = await this.#conn.read(buffer);
      if (nbytes === null) return;
      this.#arrivals.add(nbytes);
    }
  }

  async send(chunk: Uint8Array, count: number, expect: number): Promise<void> {
    const done = this.#arrivals.expect(expect);
    for (let i = 0; i < count; i++) await writeAll(this.#conn, chunk);
    await done;
  }

  close(): void {
    closeQuietly(this.#conn);
  }
}

// StreamTransport.

/** Echoes each chunk; stops reading while the peer does not keep up. */
class EchoProtocol extends ProtocolBase {
  onConnection = (): void => {};
  override readonly transientData: boolean;
  #transport!: Transport;

  constructor(transient: boolean) {
    super();
    this.transientData = transient;
  }

  override connectionMade(transport: Transport): void {
    super.connectionMade(transport);
    this.#transport = transport;
    this.onConnection();
  }
  override dataReceived(data: Uint8Array): void {
    this.#transport.write(data);
  }
  override pauseWriting(): void {
    super.pauseWriting();
    this.#transport.pauseReading();
  }
  override resumeWriting(): void {
    super.resumeWriting();
    this.#transport.resumeReading();
  }
}

/**
 * Echoes straight from its one buffer. `write()` does not copy, so reading
 * waits until each echo is written: with both marks at 0, `pauseWriting`
 * comes with every write and `resumeWriting` once it is flushed.
 */
class BufferedEchoProtocol extends BufferedProtocolBase {
  onConnection = (): void => {};
  #transport!: Transport;

  override connectionMade(transport: Transport): void {
    super.connectionMade(transport);
    this.#transport = transport;
    transport.setWriteBufferLimits({ high: 0 });
    this.onConnection();
  }
  override bufferUpdated(nbytes: number): void {
    this.#transport.write(this.buffer.subarray(0, nbytes));
  }
  override pauseWriting(): void {
    super.pauseWriting();
    this.#transport.pauseReading();
  }
  override resumeWriting(): void {
    super.resumeWriting();
    this.#transport.resumeReading();
  }
}

class SinkProtocol extends ProtocolBase {
  onConnection = (): void => {};
  override readonly transientData: boolean;
  #transport!: Transport;
  #ackEvery: number;
  #count = 0;

  constructor({ ackEvery }: { ackEvery: number }, transient: boolean) {
    super();
    this.#ackEvery = ackEvery;
    this.transientData = transient;
  }
  override connectionMade(transport: Transport): void {
    super.connectionMade(transport);
    this.#transport = transport;
    this.onConnection();
  }
  override dataReceived(data: Uint8Array): void {
    this.#count += data.byteLength;
    while (this.#count >= this.#ackEvery) {
      this.#count -= this.#ackEvery;
      this.#transport.write(ACK);
    }
  }
}

class BufferedSinkProtocol extends BufferedProtocolBase {
  onConnection = (): void => {};
  #transport!: Transport;
  #ackEvery: number;
  #count = 0;

  constructor(size: number, { ackEvery }: { ackEvery: number }) {
    super(size);
    this.#ackEvery = ackEvery;
  }
  override connectionMade(transport: Transport): void {
    super.connectionMade(transport);
    this.#transport = transport;
    this.onConnection();
  }
  override bufferUpdated(nbytes: number): void {
    this.#count += nbytes;
    while (this.#count >= this.#ackEvery) {
      this.#count -= this.#ackEvery;
      this.#transport.write(ACK);
    }
  }
}

class CountingProtocol extends ProtocolBase {
  arrivals = new Arrivals();
  override readonly transientData: boolean;

  constructor(transient: boolean) {
    super();
    this.transientData = transient;
  }

  override dataReceived(data: Uint8Array): void {
    this.arrivals.add(data.byteLength);
  }
}

class CountingBufferedProtocol extends BufferedProtocolBase {
  arrivals = new Arrivals();

  override bufferUpdated(nbytes: number): void {
    this.arrivals.add(nbytes);
  }
}

class TransportClient implements BenchClient {
  #transport: Transport;
  #protocol: CountingProtocol | CountingBufferedProtocol;

  constructor(
    transport: Transport,
    protocol: CountingProtocol | CountingBufferedProtocol,
  ) {
    this.#transport = transport;
    this.#protocol = protocol;
  }

  async send(chunk: Uint8Array, count: number, expect: number): Promise<void> {
    const protocol = this.#protocol;
    const done = protocol.arrivals.expect(expect);
    for (let i = 0; i < count; i++) {
      if (!this.#transport.write(chunk)) await protocol.drain();
    }
    await done;
  }

  close(): void {
    this.#transport.abort();
  }
}

// node:net.

async function serveNode(
  hostname: string,
  port: number,
  kind: ServerKind,
  onConnection: () => void,
): Promise<BenchServer> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.setNoDelay(true);
    socket.on("error", () => {});
    socket.on("close", () => sockets.delete(socket));
    if (kind === "echo") {
      socket.on("data", (data: Uint8Array) => {
        if (!socket.write(data)) {
          socket.pause();
          socket.once("drain", () => socket.resume());
        }
      });
    } else {
      let count = 0;
      socket.on("data", (data: Uint8Array) => {
        count += data.byteLength;
        while (count >= kind.ackEvery) {
          count -= kind.ackEvery;
          socket.write(ACK);
        }
      });
    }
    onConnection();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, hostname, () => resolve());
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    close() {
      server.close();
      for (const socket of sockets) socket.destroy();
    },
  };
}

class NodeClient implements BenchClient {
  #socket: net.Socket;
  #arrivals = new Arrivals();

  static async connect(port: number): Promise<NodeClient> {
    const socket = net.connect({ host: HOSTNAME, port, noDelay: true });
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.once("connect", () => {
        socket.off("error", reject);
        resolve();
      });
    });
    return new NodeClient(socket);
  }

  constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.on("error", () => {});
    socket.on(
      "data",
      (data: Uint8Array) => this.#arrivals.add(data.byteLength),
    );
  }

  async send(chunk: Uint8Array, count: number, expect: number): Promise<void> {
    const socket = this.#socket;
    const done = this.#arrivals.expect(expect);
    for (let i = 0; i < count; i++) {
      if (!socket.write(chunk)) {
        await new Promise((resolve) => socket.once("drain", resolve));
      }
    }
    await done;
  }

  close(): void {
    this.#socket.destroy();
  }
}

function closeQuietly(resource: { close(): void }): void {
  try {
    resource.close();
  } catch {
    // Already closed.
  }
}

/** One workload, run for every variant in one bench group. */
export interface Workload {
  /** The bench group's name. */
  group: string;
  /** What the server does with what it reads. */
  kind: ServerKind;
  /** The chunk the client writes. */
  chunk: Uint8Array;
  /** How many times per iteration the client writes it. */
  count: number;
  /** How many bytes the client waits for before the iteration ends. */
  expect: number;
  /** Iterations, and warm-up iterations. */
  n: number;
  warmup: number;
}

/** Registers `workload` for every variant, the raw 64 KiB loop as baseline. */
export async function benchWorkload(workload: Workload): Promise<void> {
  for (const variant of VARIANTS) {
    const client = await connectPair(variant, workload.kind);
    Deno.bench({
      group: workload.group,
      name: VARIANT_NAMES[variant],
      baseline: variant === "raw",
      n: workload.n,
      warmup: workload.warmup,
      async fn() {
        await client.send(workload.chunk, workload.count, workload.expect);
      },
    });
  }
}
