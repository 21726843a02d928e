/** What a creator of a stream transport learns about it; not public. */
export interface StreamHooks {
  /** After `connectionMade` returned, or threw (`error`). */
  made?(error: Error | undefined): void;
  /** After `connectionLost` returned. */
  lost?(): void;
}

/** Hooks by transport, set right after construction. */
export const streamHooks: WeakMap<object, StreamHooks> = new WeakMap();
