/**
 * Read memory for stream transports that deliver to a `Protocol`.
 *
 * Reads are carved out of 1 MiB arenas shared by every transport, so a
 * pending read pins only the bytes it asked for, not a buffer of its own,
 * and pages an idle read never fills are never touched. Small reads (up to
 * 16 KiB) and large ones use separate arenas, so a quiet connection's
 * pending read never keeps delivered data alive. A large result is handed
 * to the protocol as a view with no copy; a small one (a small read's, or a
 * large read's of at most 4 KiB) is copied into a 64 KiB pool, as Node's
 * Buffer pool does, so that its room is reused and a chunk the protocol
 * keeps pins at most 64 KiB. The unused tail of a reservation goes back
 * when nothing was reserved after it.
 */

/** The read a connection makes once a read came back short: the socket was drained. */
export const PROBE_READ_SIZE = 4 * 1024;
/** The first read of a connection. */
export const INITIAL_READ_SIZE = PROBE_READ_SIZE;
/** The largest read, as asyncio's `max_size` and uvloop's. */
export const MAX_READ_SIZE = 256 * 1024;
/** Reservations up to this size come from the small arena. */
const SMALL_MAX = 16 * 1024;
/** Large reads that return at most this many bytes are copied out. */
const COPY_MAX = 4 * 1024;

/** A bump allocator over one `Uint8Array`, replaced when full. */
class Arena {
  #size: number;
  #slab: Uint8Array;
  #used = 0;

  constructor(size: number) {
    this.#size = size;
    this.#slab = new Uint8Array(size);
  }

  take(size: number): Uint8Array {
    if (this.#used + size > this.#slab.byteLength) {
      this.#slab = new Uint8Array(this.#size);
      this.#used = 0;
    }
    const view = this.#slab.subarray(this.#used, this.#used + size);
    this.#used += size;
    return view;
  }

  /** Gives back all of `view` but its first `keep` bytes, if it is the tail. */
  release(view: Uint8Array, keep: number): void {
    if (
      view.buffer === this.#slab.buffer &&
      view.byteOffset + view.byteLength === this.#used
    ) {
      this.#used = view.byteOffset + keep;
    }
  }
}

/** Pending reads up to `SMALL_MAX`; every byte is given back on commit. */
const small = new Arena(1024 * 1024);
/** Pending reads over `SMALL_MAX`; large results stay here as views. */
const large = new Arena(1024 * 1024);
/** Copies of small results, so that a kept chunk pins at most 64 KiB. */
const pool = new Arena(64 * 1024);

/** Returns `size` free bytes for one read. */
export function reserve(size: number): Uint8Array {
  return size <= SMALL_MAX ? small.take(size) : large.take(size);
}

/**
 * Ends the read that `view` was reserved for: returns the `nbytes` it read
 * as a chunk the protocol owns, and frees what the chunk does not use.
 */
export function commit(view: Uint8Array, nbytes: number): Uint8Array {
  const fromSmall = view.byteLength <= SMALL_MAX;
  if (fromSmall || nbytes <= COPY_MAX) {
    const chunk = pool.take(nbytes);
    chunk.set(view.subarray(0, nbytes));
    (fromSmall ? small : large).release(view, 0);
    return chunk;
  }
  large.release(view, nbytes);
  return view.subarray(0, nbytes);
}

/** Gives back all of a reservation that read nothing. */
export function release(view: Uint8Array): void {
  (view.byteLength <= SMALL_MAX ? small : large).release(view, 0);
}

/**
 * Adapts the read size to the traffic. A read that filled its `capacity`
 * means more is waiting: the next read is four times larger, or as large
 * as the last burst. A short read means the socket is drained: the next
 * read is a small probe, so a connection that goes quiet holds little, and
 * the burst size is kept for when traffic comes back (halved if the read
 * used under an eighth of it).
 */
export class ReadSizer {
  /** The size of the next read. */
  size: number = INITIAL_READ_SIZE;
  #burst = INITIAL_READ_SIZE;

  /** Learns from a read of `nbytes` into `capacity` bytes. */
  update(nbytes: number, capacity: number): void {
    if (nbytes >= capacity) {
      this.#burst = Math.min(
        Math.max(capacity * 4, this.#burst),
        MAX_READ_SIZE,
      );
      this.size = this.#burst;
      return;
    }
    if (nbytes < this.#burst / 8) {
      this.#burst = Math.max(this.#burst / 2, PROBE_READ_SIZE);
    }
    this.size = PROBE_READ_SIZE;
  }
}
