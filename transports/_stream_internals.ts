import type { StreamTransport } from "./stream_transport.ts";
import type { ErrorHandler, WriteBufferLimits } from "./transport.ts";

/** What a creator of a stream transport learns about it; not public. */
export interface StreamHooks {
  /** Set to start without calling `connectionMade` (after an upgrade). */
  skipConnectionMade?: boolean;
  /** After `connectionMade` returned, or threw (`error`). */
  made?(error: Error | undefined): void;
  /** After `connectionLost` returned. */
  lost?(): void;
}

/** Hooks by transport, set right after construction. */
export const streamHooks: WeakMap<object, StreamHooks> = new WeakMap();

/** A conn taken out of a stream transport, for an upgrade such as TLS. */
export interface DetachedConn {
  /** The conn, with nothing in flight on it. */
  conn: Deno.Conn;
  /** `true` if the protocol had paused reading. */
  readPaused: boolean;
  /** The transport's write buffer limits, to carry over. */
  limits: WriteBufferLimits;
  /** The transport's error hook, to carry over. */
  onError: ErrorHandler;
  /** Ends the protocol's connection with `exc`, once, as the transport would. */
  lose(exc: Error | undefined): void;
}

let detachImpl:
  | ((transport: StreamTransport) => Promise<DetachedConn>)
  | undefined;

/** Lets `StreamTransport` provide {@linkcode detachConn}. */
export function provideDetach(
  impl: (transport: StreamTransport) => Promise<DetachedConn>,
): void {
  detachImpl = impl;
}

/**
 * Stops `transport` at an upgrade point: it flushes its write buffer, then
 * reads and writes nothing more, and hands over its conn without closing it
 * or calling `connectionLost`.
 *
 * @throws {TypeError} If the transport is closing, a read is in flight, or
 * data read while paused would be lost.
 */
export function detachConn(transport: StreamTransport): Promise<DetachedConn> {
  return detachImpl!(transport);
}
