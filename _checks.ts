/**
 * Checks of what users pass in, shared by the whole package: each throws
 * a `TypeError` or `RangeError` that names the argument and says what it
 * must be. `what` is what could not be done: `"connect"`, `"write to
 * transport"` (messages read "Cannot connect: ...").
 *
 * @module
 */

import type { ErrorHandler } from "./transports/transport.ts";

/** The largest delay `setTimeout` keeps as it is (2^31 - 1 ms). */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/**
 * Checks that the argument `name` is a `Uint8Array`.
 *
 * @throws {TypeError} Unless `value` is a `Uint8Array`.
 */
export function checkBytes(
  value: unknown,
  name: string,
  what: string,
): asserts value is Uint8Array {
  if (value instanceof Uint8Array) return;
  throw new TypeError(
    `Cannot ${what}: ${name} must be a Uint8Array, not ${describeValue(value)}`,
  );
}

/**
 * Checks that an options argument is an object.
 *
 * @throws {TypeError} Unless `value` is a non-null object.
 */
export function checkObject(
  value: unknown,
  name: string,
  what: string,
): asserts value is object {
  if (typeof value === "object" && value !== null) return;
  throw new TypeError(
    `Cannot ${what}: ${name} must be an object, not ${describeValue(value)}`,
  );
}

/**
 * Checks a `signal` option.
 *
 * @throws {TypeError} Unless `signal` is `undefined` or an `AbortSignal`.
 */
export function checkSignal(
  signal: unknown,
  what: string,
): AbortSignal | undefined {
  if (signal === undefined || signal instanceof AbortSignal) return signal;
  throw new TypeError(
    `Cannot ${what}: signal must be an AbortSignal, not ${
      describeValue(signal)
    }`,
  );
}

/**
 * Checks an `onError` option.
 *
 * @throws {TypeError} Unless `onError` is `undefined` or a function.
 */
export function checkOnError(
  onError: unknown,
  what: string,
): ErrorHandler | undefined {
  if (onError === undefined || typeof onError === "function") {
    return onError as ErrorHandler | undefined;
  }
  throw new TypeError(
    `Cannot ${what}: onError must be a function, not ${describeValue(onError)}`,
  );
}

/**
 * Checks an on/off option such as `noDelay` or `keepAlive`.
 *
 * @throws {TypeError} Unless `value` is `undefined` or a boolean.
 */
export function checkBoolean(value: unknown, name: string, what: string): void {
  if (value === undefined || typeof value === "boolean") return;
  throw new TypeError(
    `Cannot ${what}: ${name} must be a boolean, not ${describeValue(value)}`,
  );
}

/**
 * Checks a number option that has bounds: a delay, a factor.
 *
 * @throws {TypeError} Unless `value` is a number.
 * @throws {RangeError} Unless `min <= value <= max` (so never `NaN`).
 */
export function checkNumber(
  value: unknown,
  name: string,
  what: string,
  min: number,
  max: number = MAX_TIMEOUT_MS,
): number {
  if (typeof value !== "number") {
    throw new TypeError(
      `Cannot ${what}: ${name} must be a number, not ${describeValue(value)}`,
    );
  }
  if (!(value >= min && value <= max)) {
    throw new RangeError(
      `Cannot ${what}: ${name} (${value}) must be a number from ${min} to ${max}`,
    );
  }
  return value;
}

/**
 * Checks a whole-number option or count: a size, a number of rounds.
 *
 * @throws {TypeError} Unless `value` is a number.
 * @throws {RangeError} Unless it is an integer from `min` to `max`.
 */
export function checkInteger(
  value: unknown,
  name: string,
  what: string,
  min: number,
  max: number = Number.MAX_SAFE_INTEGER,
): number {
  if (typeof value !== "number") {
    throw new TypeError(
      `Cannot ${what}: ${name} must be a number, not ${describeValue(value)}`,
    );
  }
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(
      `Cannot ${what}: ${name} (${value}) must be a whole number from ${min} to ${max}`,
    );
  }
  return value;
}

/**
 * Checks that what a protocol factory made is an object, and names the
 * usual mistake: an `async` factory, which returns a Promise of the
 * protocol. Every transport checks its protocol with it first.
 *
 * @throws {TypeError} If `protocol` is a Promise, or not a non-null object.
 */
export function checkProtocolObject(
  protocol: unknown,
): asserts protocol is object {
  if (protocol instanceof Promise) {
    throw new TypeError(
      "Cannot use protocol: the factory returned a Promise (an async factory?); it must return the protocol itself",
    );
  }
  if (typeof protocol !== "object" || protocol === null) {
    throw new TypeError(
      `Cannot use protocol: expected an object, not ${describeValue(protocol)}`,
    );
  }
}

/** Names a value's type for an error message: `null`, `string`, `Array`... */
export function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (typeof value !== "object") return typeof value;
  return (value as { constructor?: { name?: string } }).constructor?.name ??
    "object";
}
