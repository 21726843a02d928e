import type { ErrorHandler } from "../transports/transport.ts";

/**
 * Checks that the argument `name` is a `Uint8Array`.
 *
 * @param cannot The start of the message, e.g. `"Cannot feed data"`.
 * @throws {TypeError} Unless `value` is a `Uint8Array`.
 */
export function checkBytes(
  value: unknown,
  name: string,
  cannot: string,
): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new TypeError(
      `${cannot}: ${name} must be a Uint8Array, not ${describeValue(value)}`,
    );
  }
}

/**
 * Checks an `onError` option: a function, or `undefined` for the default.
 *
 * @param cannot The start of the message, e.g. `"Cannot start server"`.
 * @throws {TypeError} Unless `onError` is a function or `undefined`.
 */
export function checkErrorHandler(
  onError: unknown,
  cannot: string,
): asserts onError is ErrorHandler | undefined {
  if (onError !== undefined && typeof onError !== "function") {
    throw new TypeError(
      `${cannot}: onError must be a function, not ${describeValue(onError)}`,
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
