/**
 * Read memory for stream transports that deliver to a `Protocol`.
 *
 * Reads are carved out of a slab shared by every transport, so a pending
 * read pins only the bytes it asked for, not a buffer of its own. A read
 * that returns many bytes is handed to the protocol as a view of the slab,
 * with no copy; a read that returns few bytes is copied out and its room
 * reused, so that small messages neither allocate slabs nor keep large ones
 * alive. The unused tail of a reservation goes back when nothing was
 * reserved after it.
 */

/** The smallest read a quiet connection shrinks to. */
export const MIN_READ_SIZE = 1024;
/** The first read of a connection. */
export const INITIAL_READ_SIZE = 4 * 1024;
/** The largest read, as asyncio's `max_size` and uvloop's. */
export const MAX_READ_SIZE = 256 * 1024;
/** Reads that return at most this many bytes are copied out. */
const COPY_MAX = 4 * 1024;
const SLAB_SIZE = 1024 * 1024;

let slab = new Uint8Array(SLAB_SIZE);
let used = 0;

/** Returns `size` free bytes of the slab for one read. */
export function reserve(size: number): Uint8Array {
  if (used + size > slab.byteLength) {
    slab = new Uint8Array(SLAB_SIZE);
    used = 0;
  }
  const view = slab.subarray(used, used + size);
  used += size;
  return view;
}

/**
 * Ends the read that `view` was reserved for: returns the `nbytes` it read
 * as a chunk the protocol owns, and frees what the chunk does not use.
 */
export function commit(view: Uint8Array, nbytes: number): Uint8Array {
  if (nbytes <= COPY_MAX) {
    const chunk = view.slice(0, nbytes);
    release(view, 0);
    return chunk;
  }
  release(view, nbytes);
  return view.subarray(0, nbytes);
}

/** Gives back all of `view` but its first `keep` bytes, if it is the tail. */
export function release(view: Uint8Array, keep = 0): void {
  if (
    view.buffer === slab.buffer && view.byteOffset + view.byteLength === used
  ) {
    used = view.byteOffset + keep;
  }
}

/**
 * The next read size: four times larger after a read that filled its
 * `capacity`, half as large after one that used less than an eighth.
 */
export function nextReadSize(
  size: number,
  nbytes: number,
  capacity: number,
): number {
  if (nbytes >= capacity) {
    return Math.min(Math.max(size, capacity) * 4, MAX_READ_SIZE);
  }
  if (nbytes < size / 8) return Math.max(size / 2, MIN_READ_SIZE);
  return size;
}
