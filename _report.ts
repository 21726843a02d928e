import type { ErrorContext, ErrorHandler } from "./transports/transport.ts";

/** asyncio's `LOG_THRESHOLD_FOR_CONNLOST_WRITES`. */
const LOST_WRITES_WARNING = 5;

/** Reports an error no caller can catch on stderr, with its context. */
export const reportToStderr: ErrorHandler = (
  error: unknown,
  context: ErrorContext,
): void => {
  const where = context.transport === undefined
    ? ""
    : ` (${describeTransport(context.transport)})`;
  console.error(`${context.message}${where}:`, error);
};

/**
 * Calls `handler`; an error it throws in turn goes to stderr, never into
 * the event loop.
 */
export function report(
  handler: ErrorHandler,
  error: unknown,
  context: ErrorContext,
): void {
  try {
    handler(error, context);
  } catch (handlerError) {
    try {
      reportToStderr(handlerError, { message: "onError() call failed" });
      if (handler !== reportToStderr) reportToStderr(error, context);
    } catch {
      // Nothing is left to report to.
    }
  }
}

/**
 * Warns once, at the fifth write a closed transport dropped, as asyncio
 * does; `count` is how many it dropped so far.
 */
export function warnDroppedWrites(count: number, call: string): void {
  if (count === LOST_WRITES_WARNING) {
    console.warn(
      `${call} called on a closed transport; what it is given is dropped`,
    );
  }
}

/**
 * Turns whatever was thrown into an `Error`: an `Error` as it is, anything
 * else wrapped, with the value as `cause`. Never throws, even for a value
 * that `String()` cannot convert.
 */
export function toError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  return new Error(describeThrown(thrown), { cause: thrown });
}

/** Describes a thrown value that is not an `Error`. */
function describeThrown(thrown: unknown): string {
  try {
    return String(thrown);
  } catch {
    return `A value that is not an Error was thrown: ${
      Object.prototype.toString.call(thrown)
    }`;
  }
}

function describeTransport(transport: NonNullable<ErrorContext["transport"]>) {
  let peer: unknown;
  try {
    peer = transport.getExtraInfo("peername");
  } catch {
    return "transport";
  }
  if (typeof peer !== "object" || peer === null) return "transport";
  const addr = peer as Deno.Addr;
  if (addr.transport === "tcp" || addr.transport === "udp") {
    return `peer ${addr.hostname}:${addr.port}`;
  }
  if ("path" in addr) return `peer ${addr.path || "(unnamed socket)"}`;
  return "transport";
}
