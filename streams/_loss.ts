/**
 * When the connection (or pipe) a `StreamWriter` writes to is lost: what
 * `drain()` throws from then on, and what `waitClosed()` waits for.
 */
export class Loss {
  #lost = false;
  #error: Error | undefined;
  #closed: Promise<void>;
  #resolve: (exc: Error | undefined) => void;
  #whenClean: () => Error;

  /**
   * @param whenClean Makes what `drain()` throws after a loss without an
   * error.
   */
  constructor(whenClean: () => Error) {
    this.#whenClean = whenClean;
    const { promise, resolve } = Promise.withResolvers<Error | undefined>();
    this.#resolve = resolve;
    this.#closed = promise.then((exc) => {
      if (exc !== undefined) throw exc;
    });
    // Nobody may ever wait for it: that is not an unhandled error.
    this.#closed.catch(() => {});
  }

  /** Records the loss, with its error if any. */
  lose(exc: Error | undefined): void {
    if (this.#lost) return;
    this.#lost = true;
    this.#error = exc;
    this.#resolve(exc);
  }

  /** Resolves once lost; rejects with the loss's error. */
  closed(): Promise<void> {
    return this.#closed;
  }

  /** Runs `drain`; throws if the loss came before or meanwhile. */
  async drain(drain: () => Promise<void>): Promise<void> {
    this.#throwIfLost();
    await drain();
    this.#throwIfLost();
  }

  #throwIfLost(): void {
    if (this.#lost) throw this.#error ?? this.#whenClean();
  }
}
