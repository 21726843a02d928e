/**
 * TLS echo throughput: 1 MiB in 64 KiB writes, echoed back, per iteration,
 * over loopback with the test certificate. Raw `Deno.connectTls` /
 * `Deno.listenTls` loops are the baseline; our transports run the same
 * workload on both ends, with a `Protocol` (plain, and with
 * `transientData`) and with a `BufferedProtocol`.
 *
 * ```sh
 * deno bench --allow-net --allow-read bench/tls_bench.ts
 * ```
 *
 * @module
 */
import {
  BufferedProtocolBase,
  createConnection,
  createServer,
  ProtocolBase,
  type Transport,
} from "@aio/protocols";

const testdata = new URL("../tests/testdata/", import.meta.url);
const CA = await Deno.readTextFile(new URL("ca.pem", testdata));
const CERT = await Deno.readTextFile(new URL("server.pem", testdata));
const KEY = await Deno.readTextFile(new URL("server_key.pem", testdata));

const HOST = "127.0.0.1";
const CHUNK = 64 * 1024;
const TOTAL = 1024 * 1024;
const GROUP = "TLS echo 1 MiB in 64 KiB writes";
const chunk = new Uint8Array(CHUNK).fill(0x61);

// Raw Deno: an echo loop per accepted TlsConn, and a client that writes and
// reads at the same time.
const rawListener = Deno.listenTls({
  hostname: HOST,
  port: 0,
  cert: CERT,
  key: KEY,
});
(async () => {
  for await (const conn of rawListener) {
    (async () => {
      const buffer = new Uint8Array(CHUNK);
      try {
        while (true) {
          const n = await conn.read(buffer);
          if (n === null) break;
          let offset = 0;
          while (offset < n) {
            offset += await conn.write(buffer.subarray(offset, n));
          }
        }
      } catch {
        // The bench process is ending.
      }
      conn.close();
    })();
  }
})();
const rawConn = await Deno.connectTls({
  hostname: HOST,
  port: rawListener.addr.port,
  caCerts: [CA],
});
const rawBuffer = new Uint8Array(CHUNK);

async function rawRoundTrip(): Promise<void> {
  const writing = (async () => {
    for (let sent = 0; sent < TOTAL; sent += CHUNK) {
      let offset = 0;
      while (offset < CHUNK) {
        offset += await rawConn.write(chunk.subarray(offset));
      }
    }
  })();
  let received = 0;
  while (received < TOTAL) {
    const n = await rawConn.read(rawBuffer);
    if (n === null) throw new Error("echo server closed");
    received += n;
  }
  await writing;
}

/** Echoes with a `Protocol`. */
class Echo extends ProtocolBase {
  override dataReceived(data: Uint8Array): void {
    this.transport?.write(data);
  }
}

/** Echoes with a `Protocol` that declares `transientData`. */
class TransientEcho extends Echo {
  override readonly transientData = true;
}

/** Counts with a `Protocol` that declares `transientData`. */
class TransientCounter extends ProtocolBase {
  override readonly transientData = true;
  readonly counter = new Counter();
  override dataReceived(data: Uint8Array): void {
    this.counter.count(data.byteLength);
  }
}

/** Echoes with a `BufferedProtocol`; copies, since the buffer is reused. */
class BufferedEcho extends BufferedProtocolBase {
  override bufferUpdated(nbytes: number): void {
    this.transport?.write(this.buffer.slice(0, nbytes));
  }
}

/** Counts the bytes echoed back and resolves once `TOTAL` arrived. */
class Counter extends ProtocolBase {
  #received = 0;
  #done: (() => void) | undefined;
  override dataReceived(data: Uint8Array): void {
    this.count(data.byteLength);
  }
  count(nbytes: number): void {
    this.#received += nbytes;
    if (this.#received >= TOTAL) {
      this.#received -= TOTAL;
      this.#done?.();
    }
  }
  next(): Promise<void> {
    return new Promise((resolve) => this.#done = resolve);
  }
}

/** The same, reading straight into its own 64 KiB buffer. */
class BufferedCounter extends BufferedProtocolBase {
  readonly counter = new Counter();
  constructor() {
    super(CHUNK);
  }
  override bufferUpdated(nbytes: number): void {
    this.counter.count(nbytes);
  }
}

const server = await createServer(() => new Echo(), {
  hostname: HOST,
  port: 0,
  tls: { cert: CERT, key: KEY },
});
const transientServer = await createServer(() => new TransientEcho(), {
  hostname: HOST,
  port: 0,
  tls: { cert: CERT, key: KEY },
});
const bufferedServer = await createServer(() => new BufferedEcho(), {
  hostname: HOST,
  port: 0,
  tls: { cert: CERT, key: KEY },
});
const tls = { caCerts: [CA] };
const [transport, counter] = await createConnection(() => new Counter(), {
  hostname: HOST,
  port: server.addrs[0]!.port,
  tls,
});
const [transientTransport, transientCounter] = await createConnection(
  () => new TransientCounter(),
  {
    hostname: HOST,
    port: transientServer.addrs[0]!.port,
    tls,
  },
);
const [bufferedTransport, bufferedCounter] = await createConnection(
  () => new BufferedCounter(),
  {
    hostname: HOST,
    port: bufferedServer.addrs[0]!.port,
    tls,
  },
);

function send(transport: Transport): void {
  for (let sent = 0; sent < TOTAL; sent += CHUNK) transport.write(chunk);
}

Deno.bench({
  group: GROUP,
  name: "Deno.connectTls/listenTls read/write",
  baseline: true,
  async fn() {
    await rawRoundTrip();
  },
});

Deno.bench({
  group: GROUP,
  name: "StreamTransport + Protocol (both ends)",
  async fn() {
    const done = counter.next();
    send(transport);
    await done;
  },
});

Deno.bench({
  group: GROUP,
  name: "StreamTransport + Protocol, transientData (both ends)",
  async fn() {
    const done = transientCounter.counter.next();
    send(transientTransport);
    await done;
  },
});

Deno.bench({
  group: GROUP,
  name: "StreamTransport + BufferedProtocol (both ends)",
  async fn() {
    const done = bufferedCounter.counter.next();
    send(bufferedTransport);
    await done;
  },
});
