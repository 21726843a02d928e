/**
 * The memory stream transports read into, shared by every transport.
 *
 * Four pieces, each for one kind of read:
 *
 * - **Probe slots** ({@linkcode ProbeSlots}): the small read an idle
 *   connection keeps pending (4 KiB, 16 KiB over TLS) takes a fixed slot
 *   that goes back in any order, so however the reads of many connections
 *   interleave, pending probes stay packed in few slabs.
 * - **The small arena** ({@linkcode Arena}): other reads up to 16 KiB are
 *   carved out of 1 MiB slabs, so a pending read pins only the bytes it
 *   asked for; every byte goes back when the read ends.
 * - **Blocks** ({@linkcode BlockLender}): large reads land in warm blocks
 *   kept on a free list per size, as a raw loop's one buffer. A protocol
 *   that owns its data gets an exact-size copy of what was read, and the
 *   block goes back at once: copying into memory of the result's size
 *   costs far less than fresh memory for every read (large fresh buffers
 *   are zeroed and page-faulting, and freeing them keeps the GC busy). A
 *   protocol that declares `transientData` gets the block itself, lent: it
 *   goes back once `dataReceived` has returned and every write queue that
 *   took a view of it has written that view.
 * - **The chunk pool** ({@linkcode ChunkPool}): results up to 16 KiB are
 *   copied into a 64 KiB pool, as Node's Buffer pool does, so that their
 *   room is reused and a chunk the protocol keeps pins at most 64 KiB.
 */

import { copyOf } from "../_bytes.ts";

/** The read a connection makes once a read came back short: the socket was drained. */
export const PROBE_READ_SIZE = 1024;
/** The probe over TLS: one whole record (16 KiB of plaintext at most). */
export const TLS_PROBE_READ_SIZE = 16 * 1024;
/** The largest read, as asyncio's `max_size` and uvloop's. */
export const MAX_READ_SIZE = 256 * 1024;
/** Reservations up to this size come from the small arena; results up to it go to the pool. */
export const SMALL_MAX = 16 * 1024;
/** Lent large reads that return at most this many bytes are copied out. */
const COPY_MAX = 4 * 1024;

/** A bump allocator over one slab, replaced by a fresh one when full. */
export class Arena {
  #size: number;
  #slab: Uint8Array;
  #used = 0;

  /** @param size The size of each slab. */
  constructor(size: number) {
    this.#size = size;
    this.#slab = new Uint8Array(size);
  }

  /** Returns `size` fresh bytes. */
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
 * Fixed-size slots for probe reads. Any slot is given back when its read
 * ends; a slab whose slots are all free is dropped once two slabs' worth
 * of slots are free.
 */
export class ProbeSlots {
  /** The size of each slot. */
  readonly size: number;
  #perSlab: number;
  #free: Uint8Array[] = [];
  /** Slots taken, per slab. */
  #taken = new Map<ArrayBufferLike, number>();

  /**
   * @param size The size of each slot.
   * @param slabSize The size of each slab, a multiple of `size`.
   */
  constructor(size: number, slabSize: number) {
    this.size = size;
    this.#perSlab = slabSize / size;
  }

  /** Returns a free slot. */
  take(): Uint8Array {
    let view = this.#free.pop();
    if (view === undefined) {
      const slab = new ArrayBuffer(this.size * this.#perSlab);
      for (let i = this.#perSlab - 1; i >= 0; i--) {
        this.#free.push(new Uint8Array(slab, i * this.size, this.size));
      }
      view = this.#free.pop()!;
    }
    this.#taken.set(view.buffer, (this.#taken.get(view.buffer) ?? 0) + 1);
    return view;
  }

  /** Gives a slot back. */
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

/**
 * Memory for small chunks that their receiver owns: carved out of a 64 KiB
 * pool up to 16 KiB (a small `new Uint8Array` costs far more), fresh
 * arrays above.
 */
export class ChunkPool {
  #pool = new Arena(64 * 1024);

  /** Returns `nbytes` of memory the caller owns and fills. */
  allocate(nbytes: number): Uint8Array {
    return nbytes > SMALL_MAX
      ? new Uint8Array(nbytes)
      : this.#pool.take(nbytes);
  }

  /** Copies the first `nbytes` of `view` into memory the caller owns. */
  copyOut(view: Uint8Array, nbytes: number): Uint8Array {
    if (nbytes > SMALL_MAX) return copyOf(view.subarray(0, nbytes));
    const chunk = this.#pool.take(nbytes);
    chunk.set(view.subarray(0, nbytes));
    return chunk;
  }
}

/** A lent block, and how many holders it has: the reader and write queues. */
export interface Loan {
  /** The block. */
  readonly buffer: ArrayBufferLike;
  /** Its holders. */
  refs: number;
}

/** Free blocks of each size are kept up to this many bytes, however quiet. */
const FREE_MIN = 1024 * 1024;
/** Beyond that, free blocks of all sizes together up to the peak in use, but never more than this. */
const FREE_MAX = 16 * 1024 * 1024;

/**
 * Blocks lent to `transientData` protocols: sized to a power of two, so
 * that few sizes occur, and kept on a free list per size once every holder
 * has dropped them. The lists keep 1 MiB of each size, and beyond that as
 * many bytes as were in use at the busiest since the last quiet moment (16
 * MiB at most, all sizes together): busy connections each hold a block or
 * two, reading and writing, and lists smaller than that working set sent
 * every few reads to fresh, zeroed memory (8 echo connections: 2.4% of
 * reads, 10% of the server's time in `memset`). Once no block is in use,
 * each list shrinks back to 1 MiB.
 */
export class BlockLender {
  /** Free blocks by size. */
  #free = new Map<number, ArrayBuffer[]>();
  /** Bytes of the blocks reserved and not given back. */
  #inUse = 0;
  /** The most bytes in use since none were. */
  #peak = 0;
  /** Bytes on the free lists. */
  #freeBytes = 0;
  /** Loans by block, so that a write of any view into a lent block holds it. */
  #loans = new WeakMap<ArrayBufferLike, Loan>();
  /** Loans not yet ended; while 0, `hold()` skips the lookup. */
  #outstanding = 0;

  /** The number of loans not yet ended. */
  get outstanding(): number {
    return this.#outstanding;
  }

  /** Returns the first `size` bytes of a free block. */
  reserve(size: number): Uint8Array {
    const blockSize = 2 ** Math.ceil(Math.log2(size));
    this.#inUse += blockSize;
    if (this.#inUse > this.#peak) this.#peak = this.#inUse;
    const block = this.#freeList(blockSize).pop();
    if (block === undefined) {
      return new Uint8Array(new ArrayBuffer(blockSize), 0, size);
    }
    this.#freeBytes -= blockSize;
    return new Uint8Array(block, 0, size);
  }

  /** Gives back a block that was reserved and never lent. */
  release(view: Uint8Array): void {
    this.#give(view.buffer);
  }

  /** Lends the block of `view` (from {@linkcode reserve}), with one holder. */
  lend(view: Uint8Array): Loan {
    const loan: Loan = { buffer: view.buffer, refs: 1 };
    this.#loans.set(view.buffer, loan);
    this.#outstanding++;
    return loan;
  }

  /** Adds a holder to the loan of the block `data` is a view of, if lent. */
  hold(data: Uint8Array): Loan | undefined {
    if (this.#outstanding === 0) return undefined;
    const loan = this.#loans.get(data.buffer);
    if (loan !== undefined) loan.refs++;
    return loan;
  }

  /** Returns `true` if `data` is a view of a block lent now. */
  isLent(data: Uint8Array): boolean {
    return this.#outstanding > 0 && this.#loans.has(data.buffer);
  }

  /** Removes a holder; the last one gives the block back. */
  drop(loan: Loan): void {
    if (--loan.refs > 0) return;
    this.#loans.delete(loan.buffer);
    this.#outstanding--;
    this.#give(loan.buffer);
  }

  #freeList(size: number): ArrayBuffer[] {
    let list = this.#free.get(size);
    if (list === undefined) this.#free.set(size, list = []);
    return list;
  }

  /** Keeps `block` for reuse, unless its free list is full. */
  #give(block: ArrayBufferLike): void {
    const size = block.byteLength;
    this.#inUse -= size;
    const list = this.#freeList(size);
    if (
      (list.length + 1) * size <= FREE_MIN ||
      this.#freeBytes + size <= Math.min(this.#peak, FREE_MAX)
    ) {
      list.push(block as ArrayBuffer);
      this.#freeBytes += size;
    }
    if (this.#inUse > 0) return;
    // Quiet: lists grow past 1 MiB of a size only while the peak is over it.
    const grown = this.#peak > FREE_MIN;
    this.#peak = 0;
    if (grown) this.#shrink();
  }

  /** Shrinks each free list back to 1 MiB. */
  #shrink(): void {
    for (const [size, blocks] of this.#free) {
      const keep = Math.min(blocks.length, Math.floor(FREE_MIN / size));
      this.#freeBytes -= (blocks.length - keep) * size;
      blocks.length = keep;
    }
  }

  /** The bytes kept on the free lists, for tests. */
  get freeBytes(): number {
    return this.#freeBytes;
  }
}

const probes = new ProbeSlots(PROBE_READ_SIZE, 256 * 1024);
const tlsProbes = new ProbeSlots(TLS_PROBE_READ_SIZE, 256 * 1024);
/** Other pending reads up to `SMALL_MAX`; every byte is given back on commit. */
const small = new Arena(1024 * 1024);
const pool = new ChunkPool();
const lender = new BlockLender();

/** Takes a probe slot of `size` (4 KiB, or 16 KiB over TLS) to keep. */
export function takeProbe(size: number): Uint8Array {
  return size === TLS_PROBE_READ_SIZE ? tlsProbes.take() : probes.take();
}

/** Gives back a slot from {@linkcode takeProbe}. */
export function giveProbe(view: Uint8Array): void {
  if (view.byteLength === TLS_PROBE_READ_SIZE) tlsProbes.give(view);
  else probes.give(view);
}

/**
 * Returns `size` free bytes for one read: a probe slot, room in the small
 * arena, or a warm block for a large read.
 */
export function reserve(size: number): Uint8Array {
  if (size === PROBE_READ_SIZE) return probes.take();
  if (size === TLS_PROBE_READ_SIZE) return tlsProbes.take();
  return size <= SMALL_MAX ? small.take(size) : lender.reserve(size);
}

/** Gives back all of a reservation that read nothing. */
export function release(view: Uint8Array): void {
  const size = view.byteLength;
  if (size === PROBE_READ_SIZE) probes.give(view);
  else if (size === TLS_PROBE_READ_SIZE) tlsProbes.give(view);
  else if (size <= SMALL_MAX) small.release(view, 0);
  else lender.release(view);
}

/**
 * Ends the read that `view` was reserved for: returns the `nbytes` it read
 * as a chunk the reader owns, copied into memory of its exact size (from
 * the pool up to 16 KiB), and gives the reservation back for the next
 * read. A large read thus lands in warm memory, and the copy of what it
 * got costs less than fresh memory for every read would: a large fresh
 * buffer per read means zeroed, page-faulting memory.
 */
export function commit(view: Uint8Array, nbytes: number): Uint8Array {
  const chunk = pool.copyOut(view, nbytes);
  release(view);
  return chunk;
}

/** Copies the first `nbytes` of `view` into memory the caller owns. */
export function copyOut(view: Uint8Array, nbytes: number): Uint8Array {
  return pool.copyOut(view, nbytes);
}

/** Returns `nbytes` of memory the caller owns and fills. */
export function allocate(nbytes: number): Uint8Array {
  return pool.allocate(nbytes);
}

/** Returns the first `size` bytes of a free block, for one large read. */
export function reserveBlock(size: number): Uint8Array {
  return lender.reserve(size);
}

/** Gives back a block that was reserved and never lent. */
export function releaseBlock(view: Uint8Array): void {
  lender.release(view);
}

/**
 * Ends the read that `view` (from {@linkcode reserveBlock}) was reserved
 * for. A result of at most 4 KiB is copied out as by {@linkcode commit}
 * and the block goes back at once; a larger one is lent: the caller holds
 * the loan until the protocol is done with `view.subarray(0, nbytes)`.
 */
export function lendBlock(
  view: Uint8Array,
  nbytes: number,
): Loan | Uint8Array {
  if (nbytes <= COPY_MAX) {
    const chunk = pool.copyOut(view, nbytes);
    lender.release(view);
    return chunk;
  }
  return lender.lend(view);
}

/**
 * Adds a holder to the loan of the block `data` is a view of, if it is
 * lent: a write queue keeps the view until written.
 */
export function hold(data: Uint8Array): Loan | undefined {
  return lender.hold(data);
}

/** Removes a holder; the last one gives the block back. */
export function drop(loan: Loan): void {
  lender.drop(loan);
}

/** Returns `true` if `data` is a view of a block lent now. */
export function isLent(data: Uint8Array): boolean {
  return lender.isLent(data);
}

/** Returns the number of loans not yet ended, for tests. */
export function outstandingLoans(): number {
  return lender.outstanding;
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
