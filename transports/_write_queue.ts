import { describeValue } from "../_checks.ts";
import { allocate, drop, hold, type Loan } from "./_read_memory.ts";

/** Chunks smaller than this are copied together into one write. */
const COALESCE_CHUNK_MAX = 16 * 1024;
/** The most bytes one coalesced write carries. */
const COALESCE_MAX = 256 * 1024;

/**
 * The write buffer of a byte-stream transport, shared by every kind: the
 * chunks `write()` accepted, in order, taken by the transport's pump one
 * write at a time, with small neighbours joined into one (up to 256 KiB)
 * and large chunks as they are, without a copy.
 *
 * A chunk that is a view of a lent read block (see `transientData`) holds
 * the block's loan until the write that carried it is done.
 */
export class WriteQueue {
  /** Bytes accepted and not yet written, the write in flight included. */
  size = 0;
  #chunks: Uint8Array[] = [];
  #head = 0;
  /** Chunks ever pushed, and ever taken. */
  #pushed = 0;
  #taken = 0;
  /** Loans of lent blocks that pushed chunks are views of, oldest first. */
  #loans: { seq: number; loan: Loan }[] | undefined;

  /** `true` when every chunk was taken. */
  get empty(): boolean {
    return this.#head === this.#chunks.length;
  }

  /** Adds `data` at the end. */
  push(data: Uint8Array): void {
    this.#chunks.push(data);
    this.#pushed++;
    const loan = hold(data);
    if (loan !== undefined) {
      (this.#loans ??= []).push({ seq: this.#pushed, loan });
    }
    this.size += data.byteLength;
  }

  /**
   * Takes the next chunk to write, small neighbours joined into one. Call
   * {@linkcode WriteQueue.wrote} as its bytes are written and
   * {@linkcode WriteQueue.done} once all are.
   */
  take(): Uint8Array {
    const chunks = this.#chunks;
    const head = this.#head;
    const first = chunks[head]!;
    let end = head + 1;
    let total = first.byteLength;
    if (total < COALESCE_CHUNK_MAX) {
      while (end < chunks.length) {
        const size = chunks[end]!.byteLength;
        if (size >= COALESCE_CHUNK_MAX || total + size > COALESCE_MAX) break;
        total += size;
        end++;
      }
    }
    const chunk = end - head === 1
      ? first
      : joinPooled(chunks.slice(head, end), total);
    this.#taken += end - head;
    if (end === chunks.length) {
      chunks.length = 0;
      this.#head = 0;
    } else if (end > 1024 && end * 2 > chunks.length) {
      chunks.splice(0, end);
      this.#head = 0;
    } else {
      chunks.fill(undefined as unknown as Uint8Array, head, end);
      this.#head = end;
    }
    return chunk;
  }

  /** Counts `nbytes` of the chunk taken last as written. */
  wrote(nbytes: number): void {
    this.size -= nbytes;
  }

  /** The chunk taken last is written: ends the loans of what it carried. */
  done(): void {
    if (this.#loans !== undefined) this.#dropLoans(this.#taken);
  }

  /**
   * Drops every chunk not yet written. Their loans end with
   * {@linkcode WriteQueue.release}, once no write is in flight.
   */
  clear(): void {
    this.#chunks = [];
    this.#head = 0;
    this.#taken = this.#pushed;
    this.size = 0;
  }

  /** Ends every loan; call once no write is in flight. */
  release(): void {
    this.#dropLoans(Infinity);
  }

  /** Ends the loans of chunks up to number `seq`. */
  #dropLoans(seq: number): void {
    const loans = this.#loans;
    if (loans === undefined) return;
    let i = 0;
    while (i < loans.length && loans[i]!.seq <= seq) drop(loans[i++]!.loan);
    if (i === loans.length) this.#loans = undefined;
    else if (i > 0) loans.splice(0, i);
  }
}

/** Returns the chunks joined into `total` bytes from the chunk pool (`@std/bytes`' `concat` allocates its own array). */
function joinPooled(chunks: Uint8Array[], total: number): Uint8Array {
  const joined = allocate(total);
  let offset = 0;
  for (const chunk of chunks) {
    joined.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return joined;
}

/**
 * Joins what `writeLines()` was given into one chunk, so that it goes out
 * in one write; one chunk is returned as it is.
 *
 * @param cannot The start of the message, e.g. `"Cannot write lines to stdin"`.
 * @throws {TypeError} If `chunks` is not iterable, or a chunk is not a
 * `Uint8Array`; nothing is joined.
 */
export function joinLines(
  chunks: Iterable<Uint8Array>,
  cannot: string,
): Uint8Array {
  if (
    typeof (chunks as Partial<Iterable<Uint8Array>> | null)
      ?.[Symbol.iterator] !== "function"
  ) {
    throw new TypeError(
      `${cannot}: chunks must be iterable, not ${describeValue(chunks)}`,
    );
  }
  const list = Array.from(chunks);
  let total = 0;
  for (const chunk of list) {
    if (!(chunk instanceof Uint8Array)) {
      throw new TypeError(
        `${cannot}: each chunk must be a Uint8Array, not ${
          describeValue(chunk)
        }`,
      );
    }
    total += chunk.byteLength;
  }
  return list.length === 1 ? list[0]! : joinPooled(list, total);
}
