/**
 * Byte helpers with the names and signatures of `@std/bytes`, so that
 * switching to it is an import change, and {@linkcode copyOf}, which
 * `@std/bytes` lacks. Private to this package.
 *
 * @module
 */

/**
 * Returns a copy of `view` in new memory of its exact size. The typed-array
 * copy constructor lets V8 allocate without zeroing, where `slice()` zeroes
 * the memory, then copies into it: for a large view, the zeroing is a third
 * of the cost or more.
 */
export function copyOf(view: Uint8Array): Uint8Array {
  return new Uint8Array(view);
}

/** Joins `buffers` into one new array. */
export function concat(buffers: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const buffer of buffers) length += buffer.byteLength;
  const output = new Uint8Array(length);
  let offset = 0;
  for (const buffer of buffers) {
    output.set(buffer, offset);
    offset += buffer.byteLength;
  }
  return output;
}

/**
 * Returns the index of the first occurrence of `needle` in `source` at or
 * after `start`, or -1.
 */
export function indexOfNeedle(
  source: Uint8Array,
  needle: Uint8Array,
  start = 0,
): number {
  if (needle.byteLength === 0) return start <= source.byteLength ? start : -1;
  const first = needle[0]!;
  const last = source.byteLength - needle.byteLength;
  for (let at = source.indexOf(first, start); at >= 0 && at <= last;) {
    if (matchesAt(source, needle, at)) return at;
    at = source.indexOf(first, at + 1);
  }
  return -1;
}

/** Returns `true` if `source` begins with `prefix`. */
export function startsWith(source: Uint8Array, prefix: Uint8Array): boolean {
  return prefix.byteLength <= source.byteLength &&
    matchesAt(source, prefix, 0);
}

/** Returns `true` if `a` and `b` hold the same bytes. */
export function equals(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && matchesAt(a, b, 0);
}

function matchesAt(source: Uint8Array, needle: Uint8Array, at: number) {
  for (let i = 0; i < needle.byteLength; i++) {
    if (source[at + i] !== needle[i]) return false;
  }
  return true;
}
