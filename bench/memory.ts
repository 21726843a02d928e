/**
 * Server memory per idle connection, for each way of driving connections.
 *
 * For each variant this script starts a server in a child process of its
 * own, so that resident memory is not shared between variants, and a client
 * in a second child process, so that the file descriptors of both ends are
 * not counted against one limit. Each connection echoes one message first
 * (`--greet`, 1 byte by default), as a keep-alive connection that has
 * served a request would. The server measures `Deno.memoryUsage()` once
 * before the client connects (after a GC, for a clean baseline), then 2 s
 * after all connections are established and idle, as a user's server
 * would see it: **without** forcing a GC; and then once more after a
 * forced GC, as a second figure. The script prints the differences divided
 * by the number of connections, and for each of our variants whether it
 * meets the target: at most 8 KiB of RSS per idle connection without a
 * forced GC. The raw loops, `node:net` and `BufferedProtocol` with a 64 KiB
 * buffer (which holds that buffer by design) are there for reference.
 *
 * ```sh
 * deno task bench:memory                      # 2,000 connections
 * deno task bench:memory --connections 10000  # mind `ulimit -n`
 * deno task bench:memory --greet 65536        # one 64 KiB echo each first
 * ```
 *
 * `--greet 0` skips the echo: read buffers nobody wrote into are not
 * resident, and only the `external` column (memory allocated for
 * `ArrayBuffer`s) shows them. `--variants` takes a comma-separated list of
 * the keys below.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  HOSTNAME,
  KiB,
  serve,
  type ServeOptions,
  type Variant,
} from "./_echo.ts";
import { lines, printTable } from "./_text.ts";

/** A server setup whose memory is measured. */
interface MemoryVariant {
  name: string;
  variant: Variant;
  bufferSize?: number;
  /** A raw loop or `node:net`: shown for reference, with no target. */
  reference?: boolean;
}

/** The target: server RSS growth per idle connection, without a forced GC. */
const TARGET_KIB = 8;

const MEMORY_VARIANTS: Record<string, MemoryVariant> = {
  protocol: { name: "StreamTransport + Protocol", variant: "protocol" },
  transient: {
    name: "StreamTransport + Protocol, transientData",
    variant: "transient",
  },
  buffered: {
    name: "StreamTransport + BufferedProtocol, 4 KiB buffer",
    variant: "buffered",
    bufferSize: 4 * KiB,
  },
  buffered64: {
    name: "StreamTransport + BufferedProtocol, 64 KiB buffer",
    variant: "buffered",
    bufferSize: 64 * KiB,
    reference: true,
  },
  raw: {
    name: "raw Deno.Conn, pending read, 64 KiB buffer",
    variant: "raw",
    bufferSize: 64 * KiB,
    reference: true,
  },
  raw4: {
    name: "raw Deno.Conn, pending read, 4 KiB buffer",
    variant: "raw",
    bufferSize: 4 * KiB,
    reference: true,
  },
  raw1: {
    name: "raw Deno.Conn, pending read, 1 KiB buffer",
    variant: "raw",
    bufferSize: 1 * KiB,
    reference: true,
  },
  node: { name: "node:net", variant: "node", reference: true },
};

/** What a server child reports, in bytes. */
interface Usage {
  rss: number;
  heapUsed: number;
  external: number;
}

/** Flags every child process runs with. */
const CHILD_FLAGS = [
  "run",
  "--v8-flags=--expose-gc",
  "--allow-net",
  "--allow-read",
  "--allow-env",
  "--allow-sys",
];
/** How long the connections stay idle before the first measure. */
const SETTLE_MS = 2000;
/** The client opens this many connections at once. */
const CONNECT_BATCH = 200;

const args = parseArgs({
  args: Deno.args,
  options: {
    connections: { type: "string", default: "2000" },
    greet: { type: "string", default: "1" },
    variants: { type: "string", default: Object.keys(MEMORY_VARIANTS).join() },
    child: { type: "string" },
    variant: { type: "string" },
    port: { type: "string" },
  },
});
const connections = Number(args.values.connections);
const greet = Number(args.values.greet);
if (!Number.isInteger(connections) || connections <= 0) {
  throw new RangeError(
    `Cannot run: --connections (${args.values.connections}) must be a positive integer`,
  );
}
if (!Number.isInteger(greet) || greet < 0) {
  throw new RangeError(
    `Cannot run: --greet (${args.values.greet}) must be an integer >= 0`,
  );
}

if (args.values.child === "server") {
  await runServer(args.values.variant ?? "");
} else if (args.values.child === "client") {
  await runClient(Number(args.values.port));
} else {
  await runParent(args.values.variants.split(","));
}

/** Measures every variant in turn and prints the table. */
async function runParent(keys: string[]): Promise<void> {
  for (const key of keys) {
    if (!(key in MEMORY_VARIANTS)) {
      throw new TypeError(
        `Cannot run: unknown variant "${key}"; known: ${
          Object.keys(MEMORY_VARIANTS).join(", ")
        }`,
      );
    }
  }
  console.log(
    `Command: \`bench/memory.ts --connections ${connections} --greet ${greet} ` +
      `--variants ${keys.join(",")}\` (every setting, defaults included)`,
  );
  console.log(
    `Date: ${new Date().toISOString()}; Deno ${Deno.version.deno}, ` +
      `${Deno.build.os} ${Deno.build.arch}\n`,
  );
  console.log(
    `Server memory for ${connections} idle connections over loopback` +
      (greet > 0 ? `, each after one ${greet}-byte echo` : "") +
      `. Target: ≤ ${TARGET_KIB} KiB of RSS per idle connection without a ` +
      "forced GC (RSS/conn); raw loops, node:net and the 64 KiB buffer are " +
      "for reference.\n",
  );
  const rows: string[][] = [[
    "server",
    "RSS before",
    "RSS after",
    "RSS/conn",
    "heap/conn",
    "external/conn",
    "RSS/conn after GC",
    "heap/conn after GC",
    "target",
  ]];
  for (const key of keys) {
    const { name, reference } = MEMORY_VARIANTS[key]!;
    const [before, after, collected] = await measure(key);
    const perKiB = (usage: Usage, field: keyof Usage) =>
      (usage[field] - before[field]) / connections / KiB;
    const per = (usage: Usage, field: keyof Usage) =>
      `${perKiB(usage, field).toFixed(1)} KiB`;
    const rss = perKiB(after, "rss");
    rows.push([
      name,
      mib(before.rss),
      mib(after.rss),
      per(after, "rss"),
      per(after, "heapUsed"),
      per(after, "external"),
      per(collected, "rss"),
      per(collected, "heapUsed"),
      reference
        ? "reference"
        : `≤ ${TARGET_KIB} KiB: ${rss <= TARGET_KIB ? "met" : "missed"}`,
    ]);
  }
  printTable(rows);
}

/**
 * Runs one server child and one client child; returns the server's usage
 * before, after (no forced GC) and after a GC.
 */
async function measure(key: string): Promise<[Usage, Usage, Usage]> {
  const server = spawnChild(["--child", "server", "--variant", key]);
  const serverLines = lines(server.stdout);
  const started = JSON.parse(await nextLine(serverLines, "server")) as {
    port: number;
    usage: Usage;
  };
  const client = spawnChild(["--child", "client", "--port", `${started.port}`]);
  const clientLines = lines(client.stdout);
  try {
    const [after] = await Promise.all([
      nextLine(serverLines, "server"),
      nextLine(clientLines, "client"),
    ]);
    await stop(client);
    await stop(server);
    const measured = JSON.parse(after) as { usage: Usage; collected: Usage };
    return [started.usage, measured.usage, measured.collected];
  } catch (error) {
    for (const child of [client, server]) {
      try {
        child.kill();
      } catch {
        // Already exited.
      }
      await child.status;
    }
    throw error;
  }
}

/** Closes a child's stdin, which tells it to exit, and waits for it. */
async function stop(child: Deno.ChildProcess): Promise<void> {
  await child.stdin.close();
  await child.status;
}

function spawnChild(extra: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: [
      ...CHILD_FLAGS,
      import.meta.filename!,
      "--connections",
      `${connections}`,
      "--greet",
      `${greet}`,
      ...extra,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
}

/** Serves one variant; reports usage before and after the connections. */
async function runServer(key: string): Promise<void> {
  const { variant, bufferSize } = MEMORY_VARIANTS[key]!;
  let count = 0;
  let allConnected = () => {};
  const connected = new Promise<void>((resolve) => allConnected = resolve);
  const options: ServeOptions = {
    onConnection() {
      if (++count === connections + 1) allConnected();
    },
  };
  if (bufferSize !== undefined) options.bufferSize = bufferSize;
  const server = await serve(variant, "echo", options);
  // One connection first, so that the code it runs is loaded and compiled
  // before the baseline.
  const warm = await Deno.connect({ hostname: HOSTNAME, port: server.port });
  await warm.write(new Uint8Array(1));
  await warm.read(new Uint8Array(1));
  warm.close();
  report({ port: server.port, usage: await usage(true) });
  await connected;
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
  const idle = await usage(false);
  report({ usage: idle, collected: await usage(true) });
  await untilStdinCloses();
  server.close();
  Deno.exit(0);
}

/** Opens the connections and keeps them open until stdin closes. */
async function runClient(port: number): Promise<void> {
  const conns: Deno.Conn[] = [];
  const message = new Uint8Array(greet).fill(0x61);
  const reply = new Uint8Array(greet);
  for (let opened = 0; opened < connections;) {
    const batch = Math.min(CONNECT_BATCH, connections - opened);
    const next = await Promise.all(
      Array.from({ length: batch }, async () => {
        const conn = await Deno.connect({ hostname: HOSTNAME, port });
        if (greet > 0) {
          await conn.write(message);
          await readFull(conn, reply);
        }
        return conn;
      }),
    );
    conns.push(...next);
    opened += batch;
  }
  report({ connected: conns.length });
  await untilStdinCloses();
  for (const conn of conns) conn.close();
  Deno.exit(0);
}

/** The process's memory now, after a forced GC if `collect`. */
async function usage(collect: boolean): Promise<Usage> {
  const gc = (globalThis as { gc?: () => void }).gc;
  for (let i = 0; collect && i < 2; i++) {
    gc?.();
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const { rss, heapUsed, external } = Deno.memoryUsage();
  return { rss, heapUsed, external };
}

async function readFull(conn: Deno.Conn, buffer: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < buffer.byteLength) {
    const nbytes = await conn.read(buffer.subarray(offset));
    if (nbytes === null) throw new Error("Cannot greet: connection closed");
    offset += nbytes;
  }
}

function report(value: unknown): void {
  console.log(JSON.stringify(value));
}

async function untilStdinCloses(): Promise<void> {
  for await (const _ of Deno.stdin.readable) {
    // Nothing is sent; the parent closes stdin when it is done.
  }
}

async function nextLine(
  source: AsyncGenerator<string>,
  who: string,
): Promise<string> {
  const { value, done } = await source.next();
  if (done) {
    throw new Error(
      `Cannot measure: the ${who} process exited early (too many open files? see \`ulimit -n\`)`,
    );
  }
  return value;
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / KiB).toFixed(1)} MiB`;
}
