import type { WriteBufferLimits } from "./transport.ts";

/** The default high-water mark, as asyncio: 64 KiB. */
export const DEFAULT_HIGH_WATER = 64 * 1024;

/** Who hears of a pause and a resume: a transport's protocol caller. */
export interface FlowListener {
  /** The buffer went strictly over high, or back to low or below. */
  flowControl(callback: "pauseWriting" | "resumeWriting"): void;
}

/**
 * Write-side flow control with asyncio's exact rules: pause strictly over
 * `high`, resume at or below `low`, strict pairs. Every transport kind holds
 * one and tells it the buffer size whenever that grows or shrinks.
 */
export class WriteFlowControl {
  #high = DEFAULT_HIGH_WATER;
  #low = DEFAULT_HIGH_WATER / 4;
  #paused = false;
  #listener: FlowListener;

  /** @param listener Hears of each pause and resume. */
  constructor(listener: FlowListener) {
    this.#listener = listener;
  }

  /** `true` between a pause and its resume. */
  get paused(): boolean {
    return this.#paused;
  }

  /** The high-water mark. */
  get high(): number {
    return this.#high;
  }

  /** Returns the marks as `{ low, high }`. */
  limits(): WriteBufferLimits {
    return { low: this.#low, high: this.#high };
  }

  /**
   * Sets the marks as asyncio does, then re-checks `size` against them at
   * once: over the new high pauses, at or below the new low resumes.
   */
  setLimits(
    limits: Partial<WriteBufferLimits> | undefined,
    size: number,
  ): void {
    const { high, low } = resolveLimits(limits);
    this.#high = high;
    this.#low = low;
    this.grew(size);
    this.shrank(size);
  }

  /** Pauses the protocol if `size` is strictly over the high mark. */
  grew(size: number): void {
    if (size > this.#high && !this.#paused) {
      this.#paused = true;
      this.#listener.flowControl("pauseWriting");
    }
  }

  /** Resumes a paused protocol if `size` is at or below the low mark. */
  shrank(size: number): void {
    if (this.#paused && size <= this.#low) {
      this.#paused = false;
      this.#listener.flowControl("resumeWriting");
    }
  }
}

/**
 * Fills in the marks as asyncio does: `high` defaults to `4 * low` (64 KiB
 * when neither is given) and `low` to `high / 4`.
 *
 * @throws {RangeError} Unless `high >= low >= 0`.
 * @throws {TypeError} For marks that are not numbers.
 */
export function resolveLimits(
  limits: Partial<WriteBufferLimits> | undefined,
): WriteBufferLimits {
  if (limits !== undefined && (typeof limits !== "object" || limits === null)) {
    throw new TypeError(
      "Cannot set write buffer limits: limits must be an object",
    );
  }
  const givenHigh = checkMark("high", limits?.high);
  const givenLow = checkMark("low", limits?.low);
  const high = givenHigh ??
    (givenLow === undefined ? DEFAULT_HIGH_WATER : 4 * givenLow);
  const low = givenLow ?? Math.floor(high / 4);
  if (!(high >= low && low >= 0)) {
    throw new RangeError(
      `Cannot set write buffer limits: high (${high}) must be >= low (${low}) >= 0`,
    );
  }
  return { high, low };
}

function checkMark(name: string, value: unknown): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "number" || Number.isNaN(value)) {
    throw new TypeError(
      `Cannot set write buffer limits: ${name} must be a number`,
    );
  }
  return value;
}
