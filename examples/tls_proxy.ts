/**
 * A TLS-terminating proxy: accepts TLS connections and forwards each, as
 * plain TCP, to a backend, both ways, with `relay()`.
 *
 * ```sh
 * deno run --allow-net examples/kv_server.ts --port 6380 &
 * deno run --allow-net --allow-read examples/tls_proxy.ts --port 6443 \
 *   --backend 127.0.0.1:6380 \
 *   --cert tests/testdata/server.pem --key tests/testdata/server_key.pem
 * redis-cli -p 6443 --tls --cacert tests/testdata/ca.pem ping
 * ```
 *
 * While the backend connection is being made, the client's transport is
 * paused, so nothing it sends is read before there is somewhere to put
 * it; if the backend cannot be reached, the client is dropped. Then
 * `relay()` moves the bytes with flow control both ways: while one side
 * does not read, the proxy stops reading the other, so a slow reader on
 * either end costs the proxy its write buffers, not the whole transfer.
 * EOF goes through both ways (TLS close_notify to the client).
 *
 * Ctrl-C (or SIGTERM) stops listening and closes the connections, which
 * get 10 s to flush; a second Ctrl-C aborts them at once. `--timeout
 * SECONDS` closes a client connection idle that long (default 0: never).
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  createConnection,
  createServer,
  ProtocolBase,
  relay,
  type RelayResult,
  type Server,
  type Transport,
} from "@aio/protocols";
import { GRACE_PERIOD_MS, stopOnSignals } from "./_signals.ts";
import { describe } from "./echo_server.ts";

/** Where the proxy forwards to. */
interface Backend {
  hostname: string;
  port: number;
}

/** A side of a relay to be: reads nothing until `relay()` takes it over. */
class Paused extends ProtocolBase {
  override connectionMade(transport: Transport): void {
    super.connectionMade(transport);
    transport.pauseReading();
  }
}

/** A client's side until the backend is connected: paused. */
class Incoming extends Paused {
  #forwarder: Forwarder;

  constructor(forwarder: Forwarder) {
    super();
    this.#forwarder = forwarder;
  }

  override connectionMade(transport: Transport): void {
    super.connectionMade(transport);
    this.#forwarder.forward(transport);
  }
}

/**
 * Forwards each client to the backend, and knows every relay, so that a
 * shutdown can wait for them and an abort can end them.
 */
class Forwarder {
  #backend: Backend;
  /** Cancels the backend connections still being made. */
  #connecting = new AbortController();
  /** Backend transports in use. */
  #backends = new Set<Transport>();
  /** Each client's forwarding, until both of its sides are closed. */
  #forwarding = new Set<Promise<void>>();

  constructor(backend: Backend) {
    this.#backend = backend;
  }

  /** Connects a new client to the backend, paused meanwhile. */
  forward(client: Transport): void {
    const from = describe(client.getExtraInfo("peername"));
    const done = this.#connect(client).then((result) => {
      if (result !== undefined) {
        const { aToB, bToA, error } = result;
        const end = error === undefined ? "" : ` (${error.message})`;
        console.log(`${from}: ${aToB} bytes in, ${bToA} bytes out${end}`);
      }
    });
    this.#forwarding.add(done);
    done.finally(() => this.#forwarding.delete(done));
  }

  async #connect(client: Transport): Promise<RelayResult | undefined> {
    let backend: Transport;
    try {
      // Paused too, so that a backend that speaks first loses nothing.
      [backend] = await createConnection(() => new Paused(), {
        ...this.#backend,
        keepAlive: true,
        signal: this.#connecting.signal,
      });
    } catch (error) {
      console.error(`cannot reach the backend: ${message(error)}`);
      client.abort();
      return undefined;
    }
    if (client.isClosing()) { // The client left, or the proxy is stopping.
      backend.close();
      return undefined;
    }
    this.#backends.add(backend);
    try {
      return await relay(client, backend);
    } finally {
      this.#backends.delete(backend);
    }
  }

  /**
   * Stops `server` gracefully: it stops listening and closes its clients;
   * the backend side of each relay closes after its client's. Whatever
   * is still open after `gracePeriod` is aborted.
   */
  async shutdown(server: Server, gracePeriod: number): Promise<void> {
    const timer = setTimeout(() => this.abort(server), gracePeriod);
    try {
      await server.shutdown({ gracePeriod });
      await Promise.all(this.#forwarding);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Aborts every connection, on both sides, and every connect. */
  abort(server: Server): void {
    this.#connecting.abort();
    server.abortClients();
    for (const backend of this.#backends) backend.abort();
  }
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Parses `host:port`; exits on anything else. */
function parseBackend(text: string | undefined): Backend {
  const match = text?.match(/^(.+):(\d+)$/);
  if (match === undefined || match === null) {
    console.error("--backend host:port is required");
    Deno.exit(2);
  }
  return { hostname: match[1]!.replace(/^\[(.*)\]$/, "$1"), port: +match[2]! };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      hostname: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "8443" },
      backend: { type: "string" },
      cert: { type: "string" },
      key: { type: "string" },
      timeout: { type: "string", default: "0" },
    },
  });
  const backend = parseBackend(values.backend);
  if (values.cert === undefined || values.key === undefined) {
    console.error("--cert and --key (PEM files) are required");
    Deno.exit(2);
  }
  const timeout = Number(values.timeout) * 1000;
  if (!(timeout >= 0)) {
    console.error(`--timeout must be seconds >= 0, not ${values.timeout}`);
    Deno.exit(2);
  }
  const forwarder = new Forwarder(backend);
  const server = await createServer(() => new Incoming(forwarder), {
    hostname: values.hostname,
    port: Number(values.port),
    tls: {
      cert: await Deno.readTextFile(values.cert),
      key: await Deno.readTextFile(values.key),
    },
    keepAlive: true,
    ...(timeout > 0 ? { idleTimeout: timeout } : {}),
    onError: (error, context) =>
      console.error(`${context.message}: ${message(error)}`),
  });
  const stopped = stopOnSignals({
    shutdown: () => forwarder.shutdown(server, GRACE_PERIOD_MS),
    abort: () => forwarder.abort(server),
  });
  console.log(
    `TLS proxy on ${
      describe(server.addrs[0])
    } to ${backend.hostname}:${backend.port}`,
  );
  await stopped;
  console.log("TLS proxy closed");
}
