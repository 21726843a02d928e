import type { BaseProtocol } from "../protocols/base_protocol.ts";
import type { BaseTransport, ErrorContext, ErrorHandler } from "./transport.ts";

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
    reportToStderr(handlerError, { message: "onError() call failed" });
    if (handler !== reportToStderr) reportToStderr(error, context);
  }
}

/**
 * Reports that `protocol.<callback>()` threw: `fatal` when the transport
 * closes for it, as for data callbacks; not for flow-control callbacks,
 * after which the transport goes on.
 */
export function reportCallbackError(
  handler: ErrorHandler,
  error: unknown,
  callback: string,
  fatal: boolean,
  context: Pick<ErrorContext, "transport" | "protocol">,
): void {
  report(handler, error, {
    message: `${
      fatal ? "Fatal error" : "Error"
    }: protocol.${callback}() call failed`,
    ...context,
  });
}

/**
 * Calls a protocol callback whose failure does not end the transport:
 * `pauseWriting`, `resumeWriting`, or `connectionLost` with `exc`. What it
 * throws is reported to `handler`.
 */
export function callReporting(
  handler: ErrorHandler,
  transport: BaseTransport,
  protocol: BaseProtocol,
  callback: "pauseWriting" | "resumeWriting" | "connectionLost",
  exc?: Error,
): void {
  try {
    if (callback === "connectionLost") protocol.connectionLost?.(exc);
    else protocol[callback]?.();
  } catch (error) {
    reportCallbackError(handler, error, callback, false, {
      transport,
      protocol,
    });
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

/** Turns whatever a callback threw into an `Error` for `connectionLost`. */
export function toError(thrown: unknown): Error {
  return thrown instanceof Error ? thrown : new Error(String(thrown));
}

function describeTransport(transport: ErrorContext["transport"]): string {
  const peer = transport?.getExtraInfo("peername");
  if (peer === undefined || peer === null) return "transport";
  const addr = peer as Deno.Addr;
  if (addr.transport === "tcp" || addr.transport === "udp") {
    return `peer ${addr.hostname}:${addr.port}`;
  }
  if ("path" in addr) return `peer ${addr.path || "(unnamed socket)"}`;
  return "transport";
}

/** Names a value's type for an error message: `null`, `string`, `Array`... */
export function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (typeof value !== "object") return typeof value;
  return value.constructor?.name ?? "object";
}
