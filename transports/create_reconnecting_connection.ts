import { checkNumber, checkObject, checkSignal } from "../_checks.ts";
import { report, reportToStderr } from "../_report.ts";
import { formatAddress } from "./_address.ts";
import { checkFactory } from "./_conn.ts";
import { checkConnectOptions, connectTcp } from "./_connect.ts";
import type { CreateConnectionOptions } from "./create_connection.ts";
import type { ErrorHandler, StreamProtocol, Transport } from "./transport.ts";

/** How {@linkcode createReconnectingConnection} waits between tries. */
export interface ReconnectOptions {
  /** Milliseconds before the first retry, and at least after a drop (default 1 000). */
  initialDelay?: number;
  /** The longest wait, in milliseconds (default 60 000). */
  maxDelay?: number;
  /** How much each failed try multiplies the wait (default 2; Twisted's is e). */
  factor?: number;
  /**
   * How much the wait varies at random, as a fraction of it (default 0.1):
   * clients that lost one server do not all come back at once.
   */
  jitter?: number;
  /** Stops reconnecting when aborted, and closes the live connection. */
  signal?: AbortSignal;
}

/** A client that keeps itself connected. */
export interface ReconnectingConnection<P extends StreamProtocol> {
  /**
   * The live connection's transport and protocol, if connected now:
   * `undefined` while connecting, and once the connection is closing
   * (from inside its protocol's `connectionLost` too).
   */
  readonly current: [Transport, P] | undefined;
  /** How many connections were made so far. */
  readonly connections: number;
  /**
   * Resolves with the live connection, or the next one. Called once the
   * live one is closing (from its protocol's `connectionLost`, say), it
   * waits for the next, so that what is sent then goes to a connection
   * that is open.
   */
  connected(): Promise<[Transport, P]>;
  /** Stops reconnecting and closes the live connection, as the signal does. */
  close(): void;
  /** Resolves once stopped and the last connection has ended. */
  readonly closed: Promise<void>;
}

/**
 * Connects over TCP (or TLS) and connects again whenever the connection is
 * lost or refused, with exponential backoff, as Twisted's
 * `ReconnectingClientFactory`: each connection gets a fresh protocol from
 * `factory`. After a drop it waits at least `initialDelay`; after each
 * failed try the wait grows by `factor`, up to `maxDelay`, with some
 * jitter; a successful connection starts the count again. Aborting
 * `signal`, or `close()`, stops it and closes the live connection.
 *
 * Each failed try is reported to `options.onError` (default: stderr) with
 * the wait before the next: a connect refused or timed out, a failed TLS
 * handshake, a protocol factory that throws. A `connectionMade` that
 * throws is reported once, as for any connection. To hear nothing, pass an
 * `onError` that ignores them.
 *
 * @param factory Makes a protocol for each connection.
 * @param options Where to connect, as for {@linkcode createConnection};
 * checked at once, as `createConnection` checks them. Its `signal` stops
 * reconnecting, as `reconnect.signal` does.
 * @param reconnect The backoff and the signal that stops it.
 * @returns A handle on the connection that is live at any time.
 * @throws {TypeError} If `factory` is not a function, or an option of
 * either argument has the wrong type, or `handshakeTimeout` comes without
 * `tls`: nothing is tried then.
 * @throws {RangeError} For a port, a timeout, delays, factor or jitter out
 * of range.
 *
 * @example Stay connected to a service until told to stop
 * ```ts ignore
 * import { createReconnectingConnection, ProtocolBase } from "@aio/protocols";
 *
 * const stop = new AbortController();
 * const client = createReconnectingConnection(() => new ProtocolBase(), {
 *   hostname: "127.0.0.1",
 *   port: 6379,
 * }, { initialDelay: 500, maxDelay: 30_000, signal: stop.signal });
 * const [transport] = await client.connected();
 * transport.write(new TextEncoder().encode("PING\r\n"));
 * stop.abort();
 * await client.closed;
 * ```
 */
export function createReconnectingConnection<P extends StreamProtocol>(
  factory: () => P,
  options: CreateConnectionOptions,
  reconnect?: ReconnectOptions,
): ReconnectingConnection<P> {
  const what = "create reconnecting connection";
  checkFactory(factory, what);
  const { hostname, port } = checkConnectOptions(options, what);
  reconnect ??= {};
  checkObject(reconnect, "reconnect", what);
  const initialDelay = checkNumber(
    reconnect.initialDelay ?? 1000,
    "initialDelay",
    what,
    0,
  );
  const maxDelay = checkNumber(
    reconnect.maxDelay ?? 60_000,
    "maxDelay",
    what,
    initialDelay,
  );
  const factor = checkNumber(reconnect.factor ?? 2, "factor", what, 1);
  const jitter = checkNumber(reconnect.jitter ?? 0.1, "jitter", what, 0, 1);
  const stops = [options.signal, checkSignal(reconnect.signal, what)]
    .filter((signal) => signal !== undefined);
  const signal = stops.length > 1 ? AbortSignal.any(stops) : stops[0];
  return new Reconnector(factory, options, formatAddress(hostname, port), {
    initialDelay,
    maxDelay,
    factor,
    jitter,
    signal,
  });
}

class Reconnector<P extends StreamProtocol>
  implements ReconnectingConnection<P> {
  connections = 0;
  readonly closed: Promise<void>;
  #factory: () => P;
  #options: CreateConnectionOptions;
  /** Where it connects, for the reports: `"127.0.0.1:6379"`. */
  #address: string;
  #onError: ErrorHandler;
  #backoff: Required<Omit<ReconnectOptions, "signal">>;
  #signal: AbortSignal | undefined;
  #stopped = false;
  /** Stops a connect in flight. */
  #connecting = new AbortController();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #wakeTimer: (() => void) | undefined;
  #waiters: ((connection: [Transport, P]) => void)[] = [];
  #failWaiters: ((error: unknown) => void)[] = [];
  /** The last connection made, until it is lost. */
  #current: [Transport, P] | undefined;

  constructor(
    factory: () => P,
    options: CreateConnectionOptions,
    address: string,
    backoff: Required<Omit<ReconnectOptions, "signal">> & {
      signal: AbortSignal | undefined;
    },
  ) {
    this.#factory = factory;
    this.#options = options;
    this.#address = address;
    this.#onError = options.onError ?? reportToStderr;
    this.#backoff = backoff;
    this.#signal = backoff.signal;
    this.#signal?.addEventListener("abort", this.#onAbort, { once: true });
    this.closed = this.#run();
    if (this.#signal?.aborted) this.close();
  }

  /**
   * The last connection made, unless it is closing: its writes would be
   * dropped, and it is lost (its `connectionLost` may be running now)
   * before the next connection is made.
   */
  get current(): [Transport, P] | undefined {
    const current = this.#current;
    return current?.[0].isClosing() === false ? current : undefined;
  }

  connected(): Promise<[Transport, P]> {
    const current = this.current;
    if (current !== undefined) return Promise.resolve(current);
    if (this.#stopped) {
      return Promise.reject(
        new TypeError("Cannot wait for a connection: reconnecting stopped"),
      );
    }
    return new Promise((resolve, reject) => {
      this.#waiters.push(resolve);
      this.#failWaiters.push(reject);
    });
  }

  close(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    this.#connecting.abort(
      new DOMException("Reconnecting stopped", "AbortError"),
    );
    clearTimeout(this.#timer);
    this.#wakeTimer?.();
    this.#current?.[0].close();
    const waiters = this.#failWaiters;
    this.#waiters = [];
    this.#failWaiters = [];
    for (const reject of waiters) {
      reject(
        new TypeError("Cannot wait for a connection: reconnecting stopped"),
      );
    }
  }

  #onAbort = (): void => this.close();

  async #run(): Promise<void> {
    let failures = 0;
    while (!this.#stopped) {
      const lost = Promise.withResolvers<void>();
      let connection: [Transport, P];
      /** `connectionMade` threw: the transport has reported it. */
      let reported = false;
      try {
        connection = await connectTcp(
          this.#factory,
          { ...this.#options, signal: this.#connecting.signal },
          {
            made: (_, error) => {
              reported = error !== undefined;
            },
            lost: () => lost.resolve(),
            replaced: (old, upgraded) => this.#replaced(old, upgraded),
          },
        );
      } catch (error) {
        if (this.#stopped) break;
        const delay = this.#delay(failures++);
        if (!reported) {
          report(this.#onError, error, {
            message:
              `Error: connecting to ${this.#address} failed; trying again in ${
                Math.round(delay)
              } ms`,
          });
        }
        await this.#sleep(delay);
        continue;
      }
      failures = 0;
      this.connections++;
      this.#current = connection;
      // A connection closing already is no answer: the waiters wait on.
      if (!connection[0].isClosing()) {
        const waiters = this.#waiters;
        this.#waiters = [];
        this.#failWaiters = [];
        for (const resolve of waiters) resolve(connection);
      }
      if (this.#stopped) connection[0].close();
      await lost.promise;
      this.#current = undefined;
      if (this.#stopped) break;
      // After a drop, wait at least the initial delay, as Twisted does.
      await this.#sleep(this.#delay(0));
    }
  }

  /** `startTls()` upgraded the live connection: the new transport is it. */
  #replaced(old: Transport, upgraded: Transport): void {
    const current = this.#current;
    if (current?.[0] !== old) return;
    const connection: [Transport, P] = [upgraded, current[1]];
    this.#current = connection;
    const waiters = this.#waiters;
    this.#waiters = [];
    this.#failWaiters = [];
    for (const resolve of waiters) resolve(connection);
  }

  /** The wait after `failures` failed tries in a row. */
  #delay(failures: number): number {
    const { initialDelay, maxDelay, factor, jitter } = this.#backoff;
    const delay = Math.min(maxDelay, initialDelay * factor ** failures);
    const varied = delay * (1 + jitter * (2 * Math.random() - 1));
    return Math.max(initialDelay, Math.min(maxDelay, varied));
  }

  #sleep(ms: number): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.#wakeTimer = resolve;
      this.#timer = setTimeout(resolve, ms);
    }).then(() => {
      this.#timer = undefined;
      this.#wakeTimer = undefined;
    });
  }
}
