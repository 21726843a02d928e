/**
 * The soak test's server, run in a worker so that its heap, a V8 isolate
 * of its own, is measured apart from the clients': an echo server whose
 * protocol factory counts the connections made and lost.
 *
 * It posts `{ port }` once it listens. Asked `{ idle: n }`, it answers
 * with its {@linkcode SoakServerStats} once `n` connections were made and
 * none is open; asked `{ close: true }`, it closes the server, waits for
 * it, answers likewise and ends.
 *
 * @module
 */

import { createServer, ProtocolBase, type Transport } from "../../mod.ts";

/** What the test asks. */
export type SoakServerRequest = { idle: number } | { close: true };

/** What the server answers. */
export interface SoakServerStats {
  /** Connections whose protocol got `connectionMade`. */
  made: number;
  /** Connections whose protocol got `connectionLost`. */
  lost: number;
  /** What connections were lost with, when not `undefined`. */
  errors: string[];
  /** What went to the server's `onError`. */
  reported: string[];
  /** The worker's `Deno.memoryUsage().heapUsed`, with no GC forced. */
  heapUsed: number;
}

/** Made minus lost: the connections open now. */
class ConnectionCounter {
  made = 0;
  lost = 0;
  errors: string[] = [];
  #idle: { made: number; resolve(): void } | undefined;

  connectionLost(exc: Error | undefined): void {
    this.lost++;
    if (exc !== undefined) this.errors.push(String(exc));
    this.#checkIdle();
  }
  /** Resolves once `made` connections were made and none is open. */
  untilIdle(made: number): Promise<void> {
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#idle = { made, resolve };
    this.#checkIdle();
    return promise;
  }
  #checkIdle(): void {
    const idle = this.#idle;
    if (idle === undefined) return;
    if (this.made >= idle.made && this.made === this.lost) {
      this.#idle = undefined;
      idle.resolve();
    }
  }
}

/** Echoes, closes after the peer's EOF, and counts itself. */
class CountedEcho extends ProtocolBase {
  constructor(readonly counter: ConnectionCounter) {
    super();
  }
  override connectionMade(transport: Transport): void {
    super.connectionMade(transport);
    this.counter.made++;
  }
  override dataReceived(data: Uint8Array): void {
    this.transport!.write(data);
  }
  override connectionLost(exc: Error | undefined): void {
    super.connectionLost(exc);
    this.counter.connectionLost(exc);
  }
}

const worker = globalThis as unknown as {
  postMessage(message: { port: number } | SoakServerStats): void;
  onmessage: ((event: MessageEvent<SoakServerRequest>) => void) | null;
  close(): void;
};

const counter = new ConnectionCounter();
const reported: string[] = [];
const server = await createServer(() => new CountedEcho(counter), {
  hostname: "127.0.0.1",
  port: 0,
  onError: (error) => reported.push(String(error)),
});

function stats(): SoakServerStats {
  return {
    made: counter.made,
    lost: counter.lost,
    errors: counter.errors,
    reported,
    heapUsed: Deno.memoryUsage().heapUsed,
  };
}

worker.onmessage = async ({ data }) => {
  if ("idle" in data) {
    await counter.untilIdle(data.idle);
    worker.postMessage(stats());
    return;
  }
  server.close();
  await server.waitClosed();
  worker.postMessage(stats());
  worker.close();
};
worker.postMessage({ port: server.addrs[0]!.port });
