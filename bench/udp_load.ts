/**
 * A UDP load generator for an echo server in another process: clients that
 * each keep a window of datagrams on their way and count the echoes.
 *
 * ```sh
 * deno task bench:udp-echo-server --variant endpoint --port 7001 &
 * deno run --allow-net --unstable-net bench/udp_load.ts --port 7001
 * deno run --allow-net --unstable-net bench/udp_load.ts --port 7001 --json
 * ```
 *
 * `--clients` clients (default 32) share `--sockets` sockets (default 4).
 * Each client keeps `--window` datagrams (default 2) of `--size` bytes
 * (default 64, 16 to 1400) sent and not yet echoed: each echo sends the
 * next one. A datagram is a client id, a magic number and a sequence
 * number, then filler; an echo whose length or header is wrong ends the
 * run. A datagram not echoed within `--loss-timeout-ms` (default 200) is
 * counted lost and its client sends another; an echo that comes later is
 * counted late and dropped.
 *
 * Only echoes that arrive after `--warmup` seconds (default 1) and within
 * the next `--duration` seconds (default 5) are counted. The result is
 * datagrams echoed per second, plus the CPU time this process used
 * meanwhile; with `--server-pid PID`, also the CPU time that process used
 * meanwhile (see `bench/load.ts`). `--json` prints it as one JSON line
 * ({@linkcode UdpLoadResult}).
 *
 * It needs `--allow-net` and `--unstable-net` (`Deno.listenDatagram`), and
 * `--allow-all` for `--server-pid`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  type Clock,
  counts,
  describeCpu,
  GRACE_MS,
  integerIn,
  recordWindow,
  seconds,
  type ServerProcess,
  serverProcess,
  startClock,
  type Window,
} from "./_load.ts";

/** The workload of one run. */
export interface UdpLoadOptions {
  /** The server's address. */
  hostname: string;
  /** The server's port. */
  port: number;
  /** How many clients send. */
  clients: number;
  /** How many sockets they share. */
  sockets: number;
  /** The size of one datagram in bytes. */
  size: number;
  /** How many datagrams each client keeps on their way. */
  window: number;
  /** After how long a datagram not echoed is lost, in ms. */
  lossTimeoutMs: number;
  /** How long to count echoes, in seconds. */
  duration: number;
  /** How long to run before counting, in seconds. */
  warmup: number;
  /** The server process, to record its CPU time. */
  server?: ServerProcess;
}

/** What one run measured. */
export interface UdpLoadResult extends Window {
  /** How many clients sent. */
  clients: number;
  /** How many sockets they shared. */
  sockets: number;
  /** The size of one datagram in bytes. */
  size: number;
  /** How many datagrams each client kept on their way. */
  window: number;
  /** How long echoes were counted, in seconds. */
  duration: number;
  /** Datagrams echoed in that time. */
  datagrams: number;
  /** Datagrams echoed per second. */
  datagramsPerSecond: number;
  /** Datagrams sent in the whole run. */
  sent: number;
  /** Datagrams not echoed within the loss timeout, in the whole run. */
  lost: number;
  /** Echoes that came after their datagram was counted lost. */
  late: number;
}

/** Marks our datagrams, after the client id. */
const MAGIC = 0xec40ec40;
/** Client id, magic and sequence number (two 32-bit halves). */
const HEADER_SIZE = 16;
/** The largest datagram we send. */
const MAX_SIZE = 1400;
/** How often lost datagrams are looked for, in ms. */
const EXPIRE_EVERY_MS = 10;

/** A datagram on its way. */
interface Slot {
  seq: number;
  sentAt: number;
}

/** One client: its socket and the datagrams it has on their way. */
interface Client {
  id: number;
  socket: Deno.DatagramConn;
  nextSeq: number;
  /** On their way, at most `window`. */
  slots: Slot[];
}

/**
 * Opens the sockets, runs the clients until the end, and closes them.
 *
 * @param options The server and the workload.
 * @returns What was measured.
 */
export async function runUdpLoad(
  options: UdpLoadOptions,
): Promise<UdpLoadResult> {
  const sockets = Array.from(
    { length: Math.min(options.sockets, options.clients) },
    () =>
      Deno.listenDatagram({
        transport: "udp",
        hostname: options.hostname,
        port: 0,
      }),
  );
  const server: Deno.NetAddr = {
    transport: "udp",
    hostname: options.hostname,
    port: options.port,
  };
  const clients: Client[] = Array.from(
    { length: options.clients },
    (_, id) => ({
      id,
      socket: sockets[id % sockets.length]!,
      nextSeq: 0,
      slots: [],
    }),
  );
  const clock = startClock(options.warmup, options.duration);
  const window = recordWindow(clock, options.server);
  const run = new UdpRun(options, clients, server, clock);
  try {
    for (const client of clients) run.fill(client);
    const expiring = setInterval(() => run.expire(), EXPIRE_EVERY_MS);
    try {
      await Promise.race([
        ...sockets.map((socket) => run.receive(socket)),
        run.finished(GRACE_MS),
      ]);
    } finally {
      clearInterval(expiring);
    }
    if (run.failure !== undefined) throw run.failure;
    run.loseOutstanding();
    return {
      clients: options.clients,
      sockets: sockets.length,
      size: options.size,
      window: options.window,
      duration: options.duration,
      datagrams: run.counted,
      datagramsPerSecond: run.counted / options.duration,
      sent: run.sent,
      lost: run.lost,
      late: run.late,
      ...await window,
    };
  } finally {
    run.closing = true;
    for (const socket of sockets) {
      try {
        socket.close();
      } catch {
        // Already closed.
      }
    }
  }
}

/** The state of one run: the clients' windows and the counts. */
class UdpRun {
  counted = 0;
  sent = 0;
  lost = 0;
  late = 0;
  failure: Error | undefined;
  /** Set once the sockets are being closed: receive errors are expected. */
  closing = false;
  #options: UdpLoadOptions;
  #clients: Client[];
  #server: Deno.NetAddr;
  #clock: Clock;
  #done: (() => void) | undefined;

  constructor(
    options: UdpLoadOptions,
    clients: Client[],
    server: Deno.NetAddr,
    clock: Clock,
  ) {
    this.#options = options;
    this.#clients = clients;
    this.#server = server;
    this.#clock = clock;
  }

  /** Sends from `client` until its window is full, unless past the end. */
  fill(client: Client): void {
    const { size, window } = this.#options;
    while (client.slots.length < window && !this.#pastEnd()) {
      const seq = client.nextSeq++;
      const datagram = new Uint8Array(size).fill(0x61);
      const view = new DataView(datagram.buffer);
      view.setUint32(0, client.id, true);
      view.setUint32(4, MAGIC, true);
      view.setUint32(8, seq % 2 ** 32, true);
      view.setUint32(12, Math.floor(seq / 2 ** 32), true);
      client.slots.push({ seq, sentAt: performance.now() });
      this.sent++;
      client.socket.send(datagram, this.#server).catch((error) =>
        this.#fail(new Error(`Cannot send datagram: ${error}`))
      );
    }
  }

  /** Receives echoes on `socket` until it is closed or the run fails. */
  async receive(socket: Deno.DatagramConn): Promise<void> {
    const buffer = new Uint8Array(MAX_SIZE + 1);
    const view = new DataView(buffer.buffer);
    for (;;) {
      let nbytes: number;
      try {
        nbytes = (await socket.receive(buffer))[0].byteLength;
      } catch (error) {
        if (this.closing) return;
        this.#fail(new Error(`Cannot receive echo: ${error}`));
        return;
      }
      const id = view.getUint32(0, true);
      const client = this.#clients[id];
      if (
        nbytes !== this.#options.size || view.getUint32(4, true) !== MAGIC ||
        client === undefined || client.socket !== socket
      ) {
        this.#fail(new Error("Cannot count echo: a datagram came back wrong"));
        return;
      }
      const seq = view.getUint32(8, true) +
        view.getUint32(12, true) * 2 ** 32;
      const index = client.slots.findIndex((slot) => slot.seq === seq);
      if (index < 0) {
        this.late++;
        continue;
      }
      client.slots.splice(index, 1);
      if (counts(this.#clock, performance.now())) this.counted++;
      this.fill(client);
      this.#settleIfDone();
    }
  }

  /** Counts datagrams out for too long as lost, and sends others. */
  expire(): void {
    const oldest = performance.now() - this.#options.lossTimeoutMs;
    for (const client of this.#clients) {
      const before = client.slots.length;
      client.slots = client.slots.filter((slot) => slot.sentAt >= oldest);
      this.lost += before - client.slots.length;
      this.fill(client);
    }
    this.#settleIfDone();
  }

  /** Counts every datagram still on its way as lost. */
  loseOutstanding(): void {
    for (const client of this.#clients) {
      this.lost += client.slots.length;
      client.slots = [];
    }
  }

  /**
   * Resolves once the end has passed and every datagram has come back or
   * been counted lost, or `graceMs` after the end.
   */
  finished(graceMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(
        () => this.#done?.(),
        this.#clock.end - performance.now() + graceMs,
      );
      this.#done = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  #pastEnd(): boolean {
    return performance.now() > this.#clock.end;
  }

  #settleIfDone(): void {
    if (!this.#pastEnd()) return;
    if (this.#clients.every((client) => client.slots.length === 0)) {
      this.#done?.();
    }
  }

  #fail(error: Error): void {
    this.failure ??= error;
    this.#done?.();
  }
}

/**
 * Parses the command line.
 *
 * @param args The arguments, as in `Deno.args`.
 * @returns The workload, and whether to print JSON.
 */
export function parseUdpLoadArgs(
  args: string[],
): { options: UdpLoadOptions; json: boolean } {
  const { values } = parseArgs({
    args,
    options: {
      hostname: { type: "string", default: "127.0.0.1" },
      port: { type: "string" },
      clients: { type: "string", default: "32" },
      sockets: { type: "string", default: "4" },
      size: { type: "string", default: "64" },
      window: { type: "string", default: "2" },
      "loss-timeout-ms": { type: "string", default: "200" },
      duration: { type: "string", default: "5" },
      warmup: { type: "string", default: "1" },
      "server-pid": { type: "string" },
      "clock-ticks": { type: "string", default: "100" },
      json: { type: "boolean", default: false },
    },
  });
  if (values.port === undefined) {
    throw new TypeError("Cannot run load: --port is required");
  }
  const options: UdpLoadOptions = {
    hostname: values.hostname,
    port: integerIn("port", values.port, 1, 65535),
    clients: integerIn("clients", values.clients, 1),
    sockets: integerIn("sockets", values.sockets, 1),
    size: integerIn("size", values.size, HEADER_SIZE, MAX_SIZE),
    window: integerIn("window", values.window, 1),
    lossTimeoutMs: integerIn("loss-timeout-ms", values["loss-timeout-ms"], 1),
    duration: seconds("duration", values.duration, false),
    warmup: seconds("warmup", values.warmup, true),
  };
  const server = serverProcess(values["server-pid"], values["clock-ticks"]);
  if (server !== undefined) options.server = server;
  return { options, json: values.json };
}

/** Formats a result as one line for people. */
function describe(options: UdpLoadOptions, result: UdpLoadResult): string {
  const rate = Math.round(result.datagramsPerSecond).toLocaleString("en-US");
  return `${options.hostname}:${options.port}, ${result.clients} clients ` +
    `on ${result.sockets} sockets × ${result.size} B, window ` +
    `${result.window}: ${rate} datagrams/s over ${result.duration} s, ` +
    `${result.lost} lost, ${result.late} late ` +
    `(${describeCpu(result, result.duration)})`;
}

if (import.meta.main) {
  const { options, json } = parseUdpLoadArgs(Deno.args);
  const result = await runUdpLoad(options);
  console.log(json ? JSON.stringify(result) : describe(options, result));
}
