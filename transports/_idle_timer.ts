import { checkNumber } from "../_checks.ts";

/**
 * Fires once a connection has been idle (nothing read or written) for a
 * set time, as Node's `socket.setTimeout()` and Twisted's `TimeoutMixin`.
 * Activity only records the time; the one timer checks it when it fires
 * and waits out the rest, so a busy connection costs no timer churn. After
 * it fired, the next activity arms it again.
 */
export class IdleTimer {
  #ms = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #last = 0;
  #onIdle: () => void;

  /** @param onIdle Called when the connection has been idle long enough. */
  constructor(onIdle: () => void) {
    this.#onIdle = onIdle;
  }

  /** The idle time in milliseconds; 0 when off. */
  get ms(): number {
    return this.#ms;
  }

  /**
   * Sets the idle time in milliseconds, counted from now; 0 turns it off.
   *
   * @throws {TypeError} Unless `ms` is a number.
   * @throws {RangeError} Unless it is from 0 to 2^31 - 1.
   */
  set(ms: number): void {
    checkNumber(ms, "the idle time", "set idle timeout", 0);
    this.clear();
    this.#ms = ms;
    if (ms > 0) {
      this.#last = performance.now();
      this.#arm(ms);
    }
  }

  /** Records activity: the idle time starts again. */
  touch(): void {
    if (this.#ms === 0) return;
    this.#last = performance.now();
    if (this.#timer === undefined) this.#arm(this.#ms);
  }

  /** Stops the timer for good (the transport is done). */
  clear(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#ms = 0;
  }

  #arm(delay: number): void {
    this.#timer = setTimeout(() => this.#fire(), Math.ceil(delay));
  }

  #fire(): void {
    this.#timer = undefined;
    const idle = performance.now() - this.#last;
    if (idle + 1 < this.#ms) {
      this.#arm(this.#ms - idle);
      return;
    }
    this.#onIdle();
  }
}
