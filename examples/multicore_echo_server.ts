/**
 * An echo server on every core: one worker per core, each with its own
 * server on the same port (`reusePort`, Linux), so the kernel spreads the
 * connections across them.
 *
 * ```sh
 * deno run --unstable-net --allow-net --allow-read examples/multicore_echo_server.ts --port 8888
 * deno run --unstable-net --allow-net --allow-read examples/multicore_echo_server.ts --port 8888 --workers 2
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createServer, type Protocol, type Transport } from "@aio/protocols";

/** Writes back each chunk as it arrives. */
function echo(): Protocol {
  let transport: Transport;
  return {
    connectionMade(t) {
      transport = t as Transport;
    },
    dataReceived(data) {
      transport.write(data);
    },
  };
}

/** Options a worker is started with. */
interface WorkerOptions {
  hostname: string;
  port: number;
}

/** Runs one server in this worker until the main thread says stop. */
async function serveInWorker(options: WorkerOptions): Promise<void> {
  const server = await createServer(echo, { ...options, reusePort: true });
  const scope = self as unknown as {
    onmessage: ((event: MessageEvent) => void) | null;
    postMessage(message: unknown): void;
  };
  scope.onmessage = () => {
    server.close();
    server.abortClients();
  };
  scope.postMessage({ listening: server.addrs[0] });
  await server.waitClosed();
  self.close();
}

/** Starts `count` workers serving on one port; resolves once all listen. */
export async function startWorkers(
  count: number,
  options: WorkerOptions,
): Promise<Worker[]> {
  const workers: Worker[] = [];
  const listening: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    const worker = new Worker(import.meta.url, {
      type: "module",
      name: `echo-worker-${i}`,
    });
    listening.push(
      new Promise((resolve) => {
        worker.onmessage = () => resolve();
      }),
    );
    worker.postMessage(options);
    workers.push(worker);
  }
  await Promise.all(listening);
  return workers;
}

if (self.name?.startsWith("echo-worker-")) {
  const scope = self as unknown as {
    onmessage: ((event: MessageEvent<WorkerOptions>) => void) | null;
  };
  scope.onmessage = (event) => {
    scope.onmessage = null;
    serveInWorker(event.data);
  };
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
  if (port === 0) {
    console.error("give a fixed --port: every worker must bind the same one");
    Deno.exit(2);
  }
  const workers = await startWorkers(count, {
    hostname: values.hostname,
    port,
  });
  console.log(
    `echo server: ${count} workers on ${values.hostname}:${port}; Ctrl-C stops`,
  );
  Deno.addSignalListener("SIGINT", () => {
    for (const worker of workers) worker.terminate();
    Deno.exit(0);
  });
}
