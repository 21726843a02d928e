/**
 * Read memory for stream transports that deliver to a `Protocol`.
 *
 * Reads are carved out of 1 MiB slabs shared by every transport, so a
 * pending read pins only the bytes it asked for, not a buffer of its own,
 * and pages an idle read never fills are never touched. The 4 KiB probe
 * reads that idle connections keep pending take fixed slots that are
 * reused in any order, so they stay packed; other small reads (up to
 * 16 KiB) and large ones use separate arenas, so a quiet connection's
 * pending read never keeps delivered data alive. A large result is handed
 * to the protocol as a view with no copy; a small one (a small read's, or a
 * large read's of at most 4 KiB) is copied into a 64 KiB pool, as Node's
 * Buffer pool does, so that its room is reused and a chunk the protocol
 * keeps pins at most 64 KiB. The unused tail of a reservation goes back
 * when nothing was reserved after it.
 *
 * A protocol that declares `transientData` gets large reads in blocks that
 * are lent, not given: a block goes back to a shared free list once
 * `dataReceived` has returned and every write queue that took a view of it
 * has written that view. Busy connections then reuse warm memory, as a raw
 * loop's one buffer, and an idle one still holds no block.
 */

/** The read a connection makes once a read came back short: the socket was drained. */
export const PROBE_READ_SIZE = 4 * 1024;
/** The probe over TLS: one whole record (16 KiB of plaintext at most). */
export const TLS_PROBE_READ_SIZE = 16 * 1024;
/** The largest read, as asyncio's `max_size` and uvloop's. */
export const MAX_READ_SIZE = 256 * 1024;
/** Reservations up to this size come from the small arena. */
export const SMALL_MAX = 16 * 1024;
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

/**
 * Fixed-size slots for probe reads, the reads that idle connections keep
 * pending: any slot is given back when its read ends, so however the reads
 * of many connections interleave, pending probes stay packed in few slabs.
 * A slab whose slots are all free is dropped once two slabs' worth of
 * slots are free.
 */
class Slots {
  #size: number;
  #perSlab: number;
  #free: Uint8Array[] = [];
  /** Slots taken, per slab. */
  #taken = new Map<ArrayBufferLike, number>();

  constructor(size: number, perSlab: number) {
    this.#size = size;
    this.#perSlab = perSlab;
  }

  take(): Uint8Array {
    let view = this.#free.pop();
    if (view === undefined) {
      const slab = new ArrayBuffer(this.#size * this.#perSlab);
      for (let i = this.#perSlab - 1; i >= 0; i--) {
        this.#free.push(new Uint8Array(slab, i * this.#size, this.#size));
      }
      view = this.#free.pop()!;
    }
    this.#taken.set(view.buffer, (this.#taken.get(view.buffer) ?? 0) + 1);
    return view;
  }

  give(view: Uint8Array): void {
    const taken = this.#taken.get(view.buffer)! - 1;
    this.#free.push(view);
    if (taken > 0 || this.#free.length < 2 * this.#perSlab) {
      this.#taken.set(view.buffer, taken);
      return;
    }
    const slab = view.buffer;
    this.#taken.delete(slab);
    this.#free = this.#free.filter((slot) => slot.buffer !== slab);
  }
}

/** Pending probe reads. */
const probes = new Slots(PROBE_READ_SIZE, 256);
/** Other pending reads up to `SMALL_MAX`; every byte is given back on commit. */
const small = new Arena(1024 * 1024);
/** Pending reads over `SMALL_MAX`; large results stay here as views. */
const large = new Arena(1024 * 1024);
/** Copies of small results, so that a kept chunk pins at most 64 KiB. */
const pool = new Arena(64 * 1024);

/** Returns `size` free bytes for one read. */
export function reserve(size: number): Uint8Array {
  if (size === PROBE_READ_SIZE) return probes.take();
  return size <= SMALL_MAX ? small.take(size) : large.take(size);
}

/** Gives back a reservation of at most `SMALL_MAX` bytes. */
function releaseSmall(view: Uint8Array): void {
  if (view.byteLength === PROBE_READ_SIZE) probes.give(view);
  else small.release(view, 0);
}

/**
 * Ends the read that `view` was reserved for: returns the `nbytes` it read
 * as a chunk the protocol owns, and frees what the chunk does not use.
 */
export function commit(view: Uint8Array, nbytes: number): Uint8Array {
  const fromSmall = view.byteLength <= SMALL_MAX;
  if (fromSmall || nbytes <= COPY_MAX) {
    const chunk = copyOut(view, nbytes);
    if (fromSmall) releaseSmall(view);
    else large.release(view, 0);
    return chunk;
  }
  large.release(view, nbytes);
  return view.subarray(0, nbytes);
}

/**
 * Copies the first `nbytes` of `view` into memory the caller owns: a 64
 * KiB pool for up to 16 KiB (a kept chunk pins at most 64 KiB), a fresh
 * array for more.
 */
export function copyOut(view: Uint8Array, nbytes: number): Uint8Array {
  if (nbytes > SMALL_MAX) return view.slice(0, nbytes);
  const chunk = pool.take(nbytes);
  chunk.set(view.subarray(0, nbytes));
  return chunk;
}

/**
 * Returns `nbytes` of memory the caller owns and fills: from the 64 KiB
 * pool up to 16 KiB (a small `new Uint8Array` costs far more), a fresh
 * array for more.
 */
export function allocate(nbytes: number): Uint8Array {
  return nbytes > SMALL_MAX ? new Uint8Array(nbytes) : pool.take(nbytes);
}

/** Gives back all of a reservation that read nothing. */
export function release(view: Uint8Array): void {
  if (view.byteLength <= SMALL_MAX) releaseSmall(view);
  else large.release(view, 0);
}

/** Free bytes kept for reuse in each block size, shared by every transport. */
const FREE_BLOCK_BYTES = 1024 * 1024;
/** Free blocks by size: a power of two, so that few sizes occur. */
const freeBlocks = new Map<number, ArrayBuffer[]>();

/** Returns the free list of blocks of `size` bytes. */
function freeList(size: number): ArrayBuffer[] {
  let list = freeBlocks.get(size);
  if (list === undefined) freeBlocks.set(size, list = []);
  return list;
}

/** Keeps `block` for reuse, unless enough of its size are kept. */
function giveBlock(block: ArrayBufferLike): void {
  const list = freeList(block.byteLength);
  if ((list.length + 1) * block.byteLength <= FREE_BLOCK_BYTES) {
    list.push(block as ArrayBuffer);
  }
}

/** A lent block, and how many holders it has: the reader and write queues. */
export interface Loan {
  readonly buffer: ArrayBufferLike;
  refs: number;
}

/** Loans by block, so that a write of any view into a lent block holds it. */
const loans = new WeakMap<ArrayBufferLike, Loan>();
/** Loans not yet ended; while 0, `hold()` skips the lookup. */
let outstanding = 0;

/** Returns the first `size` bytes of a free block, for one large read. */
export function reserveBlock(size: number): Uint8Array {
  const blockSize = 2 ** Math.ceil(Math.log2(size));
  return new Uint8Array(
    freeList(blockSize).pop() ?? new ArrayBuffer(blockSize),
    0,
    size,
  );
}

/** Gives back a block that was reserved and never lent. */
export function releaseBlock(view: Uint8Array): void {
  giveBlock(view.buffer);
}

/**
 * Ends the read that `view` (from {@linkcode reserveBlock}) was reserved
 * for. A result of at most 4 KiB is copied out as by {@linkcode commit}
 * and the block goes back at once; a larger one is returned as a view, and
 * the block is lent: the caller holds the loan until the protocol is done.
 */
export function lendBlock(
  view: Uint8Array,
  nbytes: number,
): Loan | Uint8Array {
  if (nbytes <= COPY_MAX) {
    const chunk = copyOut(view, nbytes);
    releaseBlock(view);
    return chunk;
  }
  const loan: Loan = { buffer: view.buffer, refs: 1 };
  loans.set(view.buffer, loan);
  outstanding++;
  return loan;
}

/**
 * Adds a holder to the loan of the block `data` is a view of, if it is
 * lent: a write queue keeps the view until written.
 */
export function hold(data: Uint8Array): Loan | undefined {
  if (outstanding === 0) return undefined;
  const loan = loans.get(data.buffer);
  if (loan !== undefined) loan.refs++;
  return loan;
}

/** Removes a holder; the last one gives the block back. */
export function drop(loan: Loan): void {
  if (--loan.refs > 0) return;
  loans.delete(loan.buffer);
  outstanding--;
  giveBlock(loan.buffer);
}

/** Returns the number of loans not yet ended, for tests. */
export function outstandingLoans(): number {
  return outstanding;
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
  size: number;
  #burst: number;
  #probe: number;

  /**
   * @param probe The read after a short one, and the first: 4 KiB, or 16
   * KiB over TLS, whose reads return one record (up to 16 KiB) at a time,
   * so that a smaller probe would split every record into two reads.
   */
  constructor(probe: number = PROBE_READ_SIZE) {
    this.size = this.#burst = this.#probe = probe;
  }

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
      this.#burst = Math.max(this.#burst / 2, this.#probe);
    }
    this.size = this.#probe;
  }
}
