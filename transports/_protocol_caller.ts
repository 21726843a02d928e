import { report, reportToStderr, toError } from "../_report.ts";
import type { BaseProtocol } from "../protocols/base_protocol.ts";
import type { BaseTransport, ErrorHandler } from "./transport.ts";

/** What a protocol callback returns when it threw (or could not be called). */
export const FAILED: unique symbol = Symbol("failed");

/**
 * What the maker of a transport learns of its life: a server that tracks
 * its connections, a connect call that resolves once the protocol is made.
 * Passed in when the transport is built.
 */
export interface TransportEvents<T extends BaseTransport = BaseTransport> {
  /** `connectionMade` returned, or threw `error` (the transport then closes). */
  made?(transport: T, error: Error | undefined): void;
  /** `connectionLost` returned: the transport is done. */
  lost?(transport: T): void;
  /**
   * `startTls` replaced `old` with `upgraded`, which reports to these
   * events from now on; `old` reports nothing more.
   */
  replaced?(old: T, upgraded: T): void;
}

/** Options for {@linkcode ProtocolCaller}. */
export interface ProtocolCallerOptions<T extends BaseTransport> {
  /** Receives what callbacks throw; default: stderr. */
  onError?: ErrorHandler | undefined;
  /** Who made the transport. */
  events?: TransportEvents<T> | undefined;
  /** The transport's side of the caller. */
  owner: CallerOwner;
}

/** What a {@linkcode ProtocolCaller} tells the transport that holds it. */
export interface CallerOwner {
  /** Closes the transport at once with `exc`: a callback failed. */
  fatal(exc: Error): void;
}

/**
 * The one place that calls a transport's protocol, with asyncio's rules,
 * for every transport kind:
 *
 * - `connectionMade` comes first. Flow-control calls before it are held:
 *   a pause still standing is told right after it.
 * - A data callback that throws, or returns a promise that rejects, is
 *   reported to `onError` and fatal for this transport only: it closes at
 *   once with the error ({@linkcode ProtocolCaller.fail}).
 * - `pauseWriting` and `resumeWriting` are reported when they fail, and
 *   the transport goes on.
 * - `connectionLost` comes last and once; after {@linkcode stop} (abort,
 *   a failure, the transport finishing) nothing else is called.
 */
export class ProtocolCaller<
  P extends BaseProtocol,
  T extends BaseTransport = BaseTransport,
> {
  /** The protocol that gets the callbacks. */
  protocol: P;
  /** `connectionMade` has returned. */
  made = false;
  /** Only `connectionLost` is left to call. */
  stopped = false;
  #lost = false;
  /** A pause came before `connectionMade`, and no resume after it. */
  #pausePending = false;
  /** The first error a callback failed with. */
  #failure: Error | undefined;
  #ending = false;
  readonly #transport: T;
  readonly #onError: ErrorHandler;
  readonly #events: TransportEvents<T> | undefined;
  readonly #owner: CallerOwner;

  /**
   * @param transport The transport the callbacks are about.
   * @param protocol The protocol to call.
   * @param options Error reporting, the maker's events, and how to close.
   */
  constructor(transport: T, protocol: P, options: ProtocolCallerOptions<T>) {
    this.#transport = transport;
    this.protocol = protocol;
    this.#onError = options.onError ?? reportToStderr;
    this.#events = options.events;
    this.#owner = options.owner;
  }

  /** Receives errors no caller can catch. */
  get onError(): ErrorHandler {
    return this.#onError;
  }

  /** The maker's events, to carry over to a transport that replaces this one. */
  get events(): TransportEvents<T> | undefined {
    return this.#events;
  }

  /** `connectionLost` has been called. */
  get lost(): boolean {
    return this.#lost;
  }

  /**
   * Calls `connectionMade`, or only marks it made when `skip` (a transport
   * that took over a protocol already made, after `startTls`). Returns
   * `false` if it threw: the transport is closing then.
   */
  connectionMade(skip = false): boolean {
    // Called even after an early abort(), as asyncio does: connectionLost
    // then follows it.
    const result = skip
      ? undefined
      : this.#invoke("connectionMade", this.#transport, undefined);
    const failed = result === FAILED;
    if (!failed) {
      this.made = true;
      if (this.#pausePending) this.flowControl("pauseWriting");
    }
    this.#events?.made?.(this.#transport, failed ? this.#failure : undefined);
    return !failed;
  }

  /**
   * Calls `protocol[name](a, b)` if the protocol has it. Returns what it
   * returned, or {@linkcode FAILED} if it threw or the transport is
   * stopped; a returned promise that rejects fails the transport later.
   */
  call(name: string, a?: unknown, b?: unknown): unknown {
    if (this.stopped) return FAILED;
    return this.#invoke(name, a, b);
  }

  #invoke(name: string, a: unknown, b: unknown): unknown {
    const protocol = this.protocol as unknown as Record<
      string,
      ((a: unknown, b: unknown) => unknown) | undefined
    >;
    try {
      const result = protocol[name]?.(a, b);
      if (isThenable(result)) this.#watch(result, name, true);
      return result;
    } catch (error) {
      this.fail(error, name);
      return FAILED;
    }
  }

  /**
   * Reports that `callback` failed with `error` and closes the transport
   * with it at once; only `connectionLost(error)` comes after.
   */
  fail(error: unknown, callback: string): void {
    const exc = toError(error);
    this.#failure ??= exc;
    this.#report(error, `Fatal error: protocol.${callback}() call failed`);
    this.stopped = true;
    this.#owner.fatal(exc);
  }

  /**
   * Calls `pauseWriting` or `resumeWriting`: reported if it fails, never
   * fatal. Held until `connectionMade`; dropped once stopped.
   */
  flowControl(callback: "pauseWriting" | "resumeWriting"): void {
    if (this.stopped) return;
    if (!this.made) {
      this.#pausePending = callback === "pauseWriting";
      return;
    }
    this.#callReporting(callback, undefined);
  }

  /** Stops every callback but `connectionLost`. */
  stop(): void {
    this.stopped = true;
  }

  /** The transport is ending: its resources are closed or being closed. */
  get ending(): boolean {
    return this.#ending;
  }

  /**
   * Starts the transport's end, once: stops every callback but
   * `connectionLost`. Returns `false` if the end had started already.
   */
  end(): boolean {
    if (this.#ending) return false;
    this.#ending = true;
    this.stopped = true;
    return true;
  }

  /**
   * Calls `connectionLost(exc)` once `inFlight` (what the transport still
   * waits for: its pending read and write) has settled, after `cleanup`.
   */
  loseAfter(
    inFlight: Promise<unknown>,
    exc: Error | undefined,
    cleanup?: () => void,
  ): void {
    inFlight.then(() => {
      cleanup?.();
      this.lose(exc);
    });
  }

  /**
   * Calls `connectionLost(exc)` once, then tells the maker. A failure of
   * it is reported.
   */
  lose(exc: Error | undefined): void {
    if (this.#lost) return;
    this.#lost = true;
    this.stopped = true;
    this.#callReporting("connectionLost", exc);
    this.#events?.lost?.(this.#transport);
  }

  /** Reports an error about this transport that no caller can catch. */
  report(error: unknown, message: string): void {
    this.#report(error, message);
  }

  #callReporting(callback: string, arg: unknown): void {
    const protocol = this.protocol as unknown as Record<
      string,
      ((a: unknown) => unknown) | undefined
    >;
    try {
      const result = protocol[callback]?.(arg);
      if (isThenable(result)) this.#watch(result, callback, false);
    } catch (error) {
      this.#report(error, `Error: protocol.${callback}() call failed`);
    }
  }

  /** A callback returned a promise: its rejection counts as a throw. */
  #watch(result: PromiseLike<unknown>, callback: string, fatal: boolean) {
    const onRejected = (error: unknown): void => {
      if (fatal && !this.#lost) this.fail(error, callback);
      else this.#report(error, `Error: protocol.${callback}() call failed`);
    };
    try {
      result.then(undefined, onRejected);
    } catch (error) {
      onRejected(error);
    }
  }

  #report(error: unknown, message: string): void {
    report(this.#onError, error, {
      message,
      transport: this.#transport,
      protocol: this.protocol,
    });
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === "object" && value !== null &&
    typeof (value as PromiseLike<unknown>).then === "function";
}
