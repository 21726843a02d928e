/**
 * How the examples stop: the first SIGINT (Ctrl-C) or SIGTERM stops
 * gracefully, a second one aborts whatever is still open, and a third exits
 * at once. Once the graceful stop is done, the listeners are removed, so
 * the process exits by itself when nothing else is left to run.
 *
 * Call these before printing that a server listens: until a listener is
 * added, SIGINT and SIGTERM end the process at once, so one sent by
 * whoever read that line would find nothing to stop gracefully.
 *
 * @module
 */
import type { Server } from "@aio/protocols";

/** How long connections get to finish on the first signal: 10 s. */
export const GRACE_PERIOD_MS = 10_000;

/** What {@linkcode stopOnSignals} stops. */
export interface Stoppable {
  /** Stops gracefully; resolves once everything has ended. */
  shutdown(): Promise<void>;
  /** Ends at once whatever is still open; `shutdown()` then resolves. */
  abort(): void;
}

/** The signals that stop: Windows has no SIGTERM, but has Ctrl-Break. */
const SIGNALS: Deno.Signal[] = Deno.build.os === "windows"
  ? ["SIGINT", "SIGBREAK"]
  : ["SIGINT", "SIGTERM"];

/**
 * Waits for SIGINT or SIGTERM, then stops `target`: the first signal calls
 * `shutdown()`, the second `abort()`, and a third exits the process.
 *
 * @param target What to stop.
 * @returns Resolves once `shutdown()` has resolved and the signal listeners
 * are removed; the listeners are added before it returns.
 */
export async function stopOnSignals(target: Stoppable): Promise<void> {
  const stopped = Promise.withResolvers<void>();
  let signals = 0;
  const onSignal = (): void => {
    signals++;
    if (signals === 1) {
      console.error("shutting down; a second signal aborts");
      target.shutdown().then(stopped.resolve, stopped.reject);
    } else if (signals === 2) {
      console.error("aborting what is still open");
      target.abort();
    } else {
      Deno.exit(1);
    }
  };
  for (const signal of SIGNALS) Deno.addSignalListener(signal, onSignal);
  try {
    await stopped.promise;
  } finally {
    for (const signal of SIGNALS) Deno.removeSignalListener(signal, onSignal);
  }
}

/**
 * Shuts `server` down on the first SIGINT or SIGTERM: it stops listening,
 * closes its clients (each flushes first) and aborts those still open
 * after `gracePeriod`; a second signal aborts them at once.
 *
 * @param server The server to stop.
 * @param gracePeriod Milliseconds clients get to finish.
 * @returns Resolves once every connection has ended.
 */
export function shutdownOnSignals(
  server: Server,
  gracePeriod: number = GRACE_PERIOD_MS,
): Promise<void> {
  return stopOnSignals({
    shutdown: () => server.shutdown({ gracePeriod }),
    abort: () => server.abortClients(),
  });
}
