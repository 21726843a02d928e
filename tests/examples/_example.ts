import { within } from "../_test_utils.ts";

const ROOT = new URL("../../", import.meta.url);

/** How long an example may take to start and print its address. */
const START_MS = 30_000;

/** The lines of a child's output stream, as they come. */
export class Lines {
  /** Every line so far. */
  readonly lines: string[] = [];
  /** Settles once the stream has ended. */
  readonly done: Promise<void>;
  #what: string;
  #waiters: { pattern: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];

  constructor(stream: ReadableStream<Uint8Array>, what: string) {
    this.#what = what;
    this.done = this.#read(stream);
  }

  /**
   * Resolves with the match of the first line (so far or later) that
   * matches `pattern`; fails after `ms`.
   */
  waitFor(pattern: RegExp, ms: number = START_MS): Promise<RegExpMatchArray> {
    for (const line of this.lines) {
      const match = line.match(pattern);
      if (match !== null) return Promise.resolve(match);
    }
    const found = new Promise<RegExpMatchArray>((resolve) =>
      this.#waiters.push({ pattern, resolve })
    );
    return within(found, `a line matching ${pattern} on ${this.#what}`, ms);
  }

  async #read(stream: ReadableStream<Uint8Array>): Promise<void> {
    let rest = "";
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      const lines = (rest + text).split("\n");
      rest = lines.pop()!;
      for (const line of lines) this.#add(line);
    }
    if (rest !== "") this.#add(rest);
  }

  #add(line: string): void {
    this.lines.push(line);
    this.#waiters = this.#waiters.filter(({ pattern, resolve }) => {
      const match = line.match(pattern);
      if (match === null) return true;
      resolve(match);
      return false;
    });
  }
}

/**
 * An example running as a child process, started as a user would start
 * it: its output is read line by line, its memory comes from /proc, and a
 * signal stops it. `await using` kills it if it still runs (and then
 * shows what it printed on stderr) and waits for it, so that no process
 * or pipe outlives the test.
 */
export class Example implements AsyncDisposable {
  /** The child process. */
  readonly child: Deno.ChildProcess;
  /** What it prints on stdout. */
  readonly stdout: Lines;
  /** What it prints on stderr. */
  readonly stderr: Lines;
  /** The exit status, once the child has exited. */
  status: Deno.CommandStatus | undefined;

  private constructor(child: Deno.ChildProcess) {
    this.child = child;
    child.status.then((status) => this.status = status);
    this.stdout = new Lines(child.stdout, "stdout");
    this.stderr = new Lines(child.stderr, "stderr");
  }

  /**
   * Starts `deno run` on an example with the project's config.
   *
   * @param script The example, relative to the project root.
   * @param flags Flags for `deno run` (permissions).
   * @param args The example's arguments.
   */
  static start(script: string, flags: string[], args: string[]): Example {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--config",
        new URL("deno.json", ROOT).pathname,
        ...flags,
        script,
        ...args,
      ],
      cwd: ROOT.pathname,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    return new Example(child);
  }

  /** The child's process id. */
  get pid(): number {
    return this.child.pid;
  }

  /** Resolves with the port of the first `127.0.0.1:<port>` it printed. */
  async port(): Promise<number> {
    const [, port] = await this.stdout.waitFor(/127\.0\.0\.1:(\d+)/);
    return Number(port);
  }

  /** The child's resident memory now, in bytes (VmRSS). */
  rss(): Promise<number> {
    return this.#status("VmRSS");
  }

  /**
   * The child's peak resident memory since it started (VmHWM), in bytes:
   * the peak minus an earlier `rss()` never understates what it grew by
   * since then, however briefly.
   */
  peakRss(): Promise<number> {
    return this.#status("VmHWM");
  }

  /** Sends `signal` to the child. */
  kill(signal: Deno.Signal): void {
    this.child.kill(signal);
  }

  /** Resolves with the exit status, failing if it takes over `ms`. */
  exited(ms?: number): Promise<Deno.CommandStatus> {
    return within(this.child.status, "the example to exit", ms);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.status === undefined) {
      try {
        this.child.kill("SIGKILL");
      } catch {
        // It has just exited.
      }
    }
    const status = await this.child.status;
    await Promise.all([this.stdout.done, this.stderr.done]);
    if (!status.success && this.stderr.lines.length > 0) {
      console.error(
        `The example ended with ${status.signal ?? status.code}; its stderr:\n${
          this.stderr.lines.join("\n")
        }`,
      );
    }
  }

  /**
   * Reads a field of /proc/<pid>/status, in bytes. Deno lets only
   * `--allow-all` read another process's /proc files, so `cat` reads it.
   */
  async #status(field: string): Promise<number> {
    const { stdout } = await new Deno.Command("cat", {
      args: [`/proc/${this.pid}/status`],
      stderr: "inherit",
    }).output();
    const status = new TextDecoder().decode(stdout);
    const match = status.match(new RegExp(`^${field}:\\s*(\\d+) kB`, "m"));
    if (match === null) throw new Error(`No ${field} in /proc/${this.pid}`);
    return Number(match[1]) * 1024;
  }
}

/** Bytes in a mebibyte. */
export const MiB = 1024 * 1024;

/** Formats a byte count in MiB for messages. */
export function mib(bytes: number): string {
  return `${(bytes / MiB).toFixed(1)} MiB`;
}

/** Anything that writes some bytes and says how many: a `Deno.Conn`. */
export interface Sink {
  write(p: Uint8Array): Promise<number>;
}

/**
 * Writes `data` in a task of its own, as a client that sends and does not
 * read, and counts how far it got. Its writes block once the buffers
 * between it and a peer that stopped reading are full.
 */
export class BackgroundWriter {
  /** Bytes written so far. */
  written = 0;
  /** Settles once every byte is written, or a write failed. */
  readonly done: Promise<void>;
  #lastProgress = performance.now();

  constructor(sink: Sink, data: Uint8Array, chunkSize = 256 * 1024) {
    this.done = this.#run(sink, data, chunkSize);
  }

  /**
   * Resolves once every byte is written, or no write went through for
   * `stallMs`; `true` if it stalled.
   */
  async stalled(stallMs: number, ms = 30_000): Promise<boolean> {
    let finished = false;
    this.done.then(() => finished = true, () => finished = true);
    const step = 20;
    for (let waited = 0; waited < ms; waited += step) {
      if (finished) return false;
      if (performance.now() - this.#lastProgress >= stallMs) return true;
      await new Promise((resolve) => setTimeout(resolve, step));
    }
    throw new Error(
      `Timed out waiting for the writer to finish or stall (${this.written} bytes written)`,
    );
  }

  async #run(sink: Sink, data: Uint8Array, chunkSize: number): Promise<void> {
    // Bounded: each round writes at least one byte.
    while (this.written < data.byteLength) {
      const end = Math.min(this.written + chunkSize, data.byteLength);
      this.written += await sink.write(data.subarray(this.written, end));
      this.#lastProgress = performance.now();
    }
  }
}
