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
 * @module
 */
import { parseArgs } from "node:util";
import { createServer, type Protocol, type Transport } from "@aio/protocols";

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
  /** Gets `{ listening: Deno.NetAddr }` once the server listens. */
  port: MessagePort;
}

/** Runs one server in this worker, until the worker is terminated. */
async function serveInWorker({ options, port }: WorkerStart): Promise<void> {
  const server = await createServer(echo, { ...options, reusePort: true });
  port.postMessage({ listening: server.addrs[0] });
  port.close();
  await server.waitClosed();
}

/**
 * Starts `count` workers serving on one port, and resolves with them and
 * the address once all listen. With port 0, the first worker picks a free
 * port and the others join it.
 */
export async function startWorkers(
  count: number,
  options: WorkerOptions,
): Promise<{ workers: Worker[]; addr: Deno.NetAddr }> {
  const workers: Worker[] = [];
  const start = (workerOptions: WorkerOptions) => {
    const worker = new Worker(import.meta.url, {
      type: "module",
      name: `echo-worker-${workers.length}`,
    });
    workers.push(worker);
    const { port1, port2 } = new MessageChannel();
    const listening = new Promise<Deno.NetAddr>((resolve, reject) => {
      port1.onmessage = (event) => {
        port1.close();
        resolve(event.data.listening);
      };
      worker.onerror = (event) => {
        event.preventDefault();
        port1.close();
        reject(new Error(`echo worker failed: ${event.message}`));
      };
    });
    const message: WorkerStart = { options: workerOptions, port: port2 };
    worker.postMessage(message, [port2]);
    return listening;
  };
  try {
    const addr = await start(options);
    const rest = [];
    for (let i = 1; i < count; i++) {
      rest.push(start({ ...options, port: addr.port }));
    }
    await Promise.all(rest);
    return { workers, addr };
  } catch (error) {
    for (const worker of workers) worker.terminate();
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
  const { workers, addr } = await startWorkers(count, {
    hostname: values.hostname,
    port,
  });
  console.log(
    `echo server: ${count} workers on ${addr.hostname}:${addr.port}; Ctrl-C stops`,
  );
  const stop = () => {
    for (const worker of workers) worker.terminate();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
}
