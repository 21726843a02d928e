/**
 * An echo server on every core: one worker per core, each with its own
 * server on the same port (`reusePort`, Linux), so the kernel spreads the
 * connections across them.
 *
 * ```sh
 * deno run --unstable-net --allow-net --allow-read examples/multicore_echo_server.ts --port 8888
 * deno run --unstable-net --allow-net --allow-read examples/multicore_echo_server.ts --port 0   # a free port
 * deno run --unstable-net --allow-net --allow-read examples/multicore_echo_server.ts --port 8888 --workers 2
 * ```
 *
 * Ctrl-C (or SIGTERM) tells every worker to stop listening and close its
 * connections, which get 10 s to flush; a second Ctrl-C aborts them at once.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createServer, type Protocol, type Transport } from "@aio/protocols";
import { GRACE_PERIOD_MS, stopOnSignals } from "./_signals.ts";

/**
 * Writes back each chunk as it arrives, and stops reading while the peer
 * does not read the echo, so a slow peer holds at most the write buffer.
 */
function echo(): Protocol {
  let transport: Transport;
  return {
    connectionMade(t) {
      transport = t;
    },
    dataReceived(data) {
      transport.write(data);
    },
    pauseWriting() {
      transport.pauseReading();
    },
    resumeWriting() {
      transport.resumeReading();
    },
  };
}

/** Options a worker is started with. */
interface WorkerOptions {
  hostname: string;
  port: number;
}

/** What the main thread sends each worker: where to listen, where to answer. */
interface WorkerStart {
  options: WorkerOptions;
  /**
   * Gets `{ listening: Deno.NetAddr }` once the server listens, and
   * `{ closed: true }` once it has shut down; takes the main thread's
   * {@linkcode WorkerCommand}s.
   */
  port: MessagePort;
}

/** What the main thread tells a serving worker. */
type WorkerCommand = { shutdown: number } | { abort: true };

/**
 * Runs one server in this worker until told to shut down (with a grace
 * period) or to abort its connections.
 */
async function serveInWorker({ options, port }: WorkerStart): Promise<void> {
  const server = await createServer(echo, { ...options, reusePort: true });
  port.onmessage = async (event: MessageEvent<WorkerCommand>) => {
    const command = event.data;
    if ("abort" in command) {
      server.abortClients();
      return;
    }
    await server.shutdown({ gracePeriod: command.shutdown });
    port.postMessage({ closed: true });
    port.close();
  };
  port.postMessage({ listening: server.addrs[0] });
}

/** Workers serving on one port, and how to stop them. */
export interface EchoWorkers {
  /** The address they all listen on. */
  addr: Deno.NetAddr;
  /**
   * Shuts every worker's server down: each stops listening and closes its
   * connections, aborting those still open after `gracePeriod` ms. Resolves
   * once all are done and the workers are terminated.
   */
  shutdown(gracePeriod: number): Promise<void>;
  /** Aborts every connection still open, during a shutdown. */
  abort(): void;
}

/**
 * Starts `count` workers serving on one port, and resolves once all
 * listen. With port 0, the first worker picks a free port and the others
 * join it.
 */
export async function startWorkers(
  count: number,
  options: WorkerOptions,
): Promise<EchoWorkers> {
  const workers: {
    worker: Worker;
    port: MessagePort;
    closed: Promise<void>;
  }[] = [];
  const terminate = () => {
    for (const { worker, port } of workers) {
      port.close();
      worker.terminate();
    }
  };
  const tell = (command: WorkerCommand) => {
    for (const { port } of workers) port.postMessage(command);
  };
  const start = (workerOptions: WorkerOptions) => {
    const worker = new Worker(import.meta.url, {
      type: "module",
      name: `echo-worker-${workers.length}`,
    });
    const { port1, port2 } = new MessageChannel();
    const listening = Promise.withResolvers<Deno.NetAddr>();
    const closed = Promise.withResolvers<void>();
    port1.onmessage = (event) => {
      if ("listening" in event.data) listening.resolve(event.data.listening);
      else closed.resolve();
    };
    worker.onerror = (event) => {
      event.preventDefault();
      const error = new Error(`echo worker failed: ${event.message}`);
      listening.reject(error);
      closed.reject(error);
    };
    closed.promise.catch(() => {}); // Rejected only alongside listening.
    workers.push({ worker, port: port1, closed: closed.promise });
    const message: WorkerStart = { options: workerOptions, port: port2 };
    worker.postMessage(message, [port2]);
    return listening.promise;
  };
  try {
    const addr = await start(options);
    const rest = [];
    for (let i = 1; i < count; i++) {
      rest.push(start({ ...options, port: addr.port }));
    }
    await Promise.all(rest);
    return {
      addr,
      async shutdown(gracePeriod) {
        tell({ shutdown: gracePeriod });
        try {
          await Promise.all(workers.map(({ closed }) => closed));
        } finally {
          terminate();
        }
      },
      abort: () => tell({ abort: true }),
    };
  } catch (error) {
    terminate();
    throw error;
  }
}

if (self.name?.startsWith("echo-worker-")) {
  addEventListener("message", (event) => {
    if (event instanceof MessageEvent) serveInWorker(event.data);
  }, { once: true });
} else if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      hostname: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "8888" },
      workers: {
        type: "string",
        default: String(navigator.hardwareConcurrency),
      },
    },
  });
  const count = Number(values.workers);
  const port = Number(values.port);
  if (!Number.isInteger(count) || count < 1) {
    console.error(
      `--workers must be a positive integer, not ${values.workers}`,
    );
    Deno.exit(2);
  }
  const workers = await startWorkers(count, {
    hostname: values.hostname,
    port,
  });
  const { hostname, port: bound } = workers.addr;
  const stopped = stopOnSignals({
    shutdown: () => workers.shutdown(GRACE_PERIOD_MS),
    abort: () => workers.abort(),
  });
  console.log(
    `echo server: ${count} workers on ${hostname}:${bound}; Ctrl-C stops`,
  );
  await stopped;
  console.log("echo server closed");
}
