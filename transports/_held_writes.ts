/**
 * Writes that wait for an in-memory peer to take them, for the memory
 * transports' sinks: each resolves with how many bytes were taken.
 */
export class HeldWrites<T> {
  #held: { item: T; resolve: (nbytes: number) => void }[] = [];

  /** Holds `item` until {@linkcode release} or {@linkcode drop}. */
  hold(item: T): Promise<number> {
    return new Promise((resolve) => this.#held.push({ item, resolve }));
  }

  /** Gives every held write, in order, to `take`, which says how much it took. */
  release(take: (item: T) => number): void {
    const held = this.#held;
    this.#held = [];
    for (const { item, resolve } of held) resolve(take(item));
  }

  /** Ends every held write with nothing taken: the peer is gone. */
  drop(): void {
    this.release(() => 0);
  }
}
