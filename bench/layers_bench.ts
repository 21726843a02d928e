/**
 * The cost of the layers above the protocols: the same echo served by a
 * `Protocol` (the baseline), a `LineProtocol`, and asyncio-style streams
 * (`startServer` with a `StreamReader` and `StreamWriter`). The client is
 * the same for all: a `Protocol` with `transientData`.
 *
 * @module
 */

import {
  createServer,
  LineProtocol,
  startServer,
  type StreamReader,
  type StreamWriter,
} from "../mod.ts";
import {
  type BenchClient,
  connect,
  HOSTNAME,
  KiB,
  MiB,
  pattern,
  serve,
} from "./_echo.ts";

/** Echoes each line with `sendLine`. */
class LineEcho extends LineProtocol {
  override lineReceived(line: Uint8Array): void {
    this.sendLine(line);
  }
}

/** A stream server that echoes with `read()`, `write()` and `drain()`. */
async function streamEcho(reader: StreamReader, writer: StreamWriter) {
  for (;;) {
    const data = await reader.read(reader.limit);
    if (data.byteLength === 0) break;
    writer.write(data);
    await writer.drain();
  }
  writer.close();
}

/** A stream server that echoes line by line. */
async function streamLineEcho(reader: StreamReader, writer: StreamWriter) {
  for await (const line of reader) {
    writer.write(line);
    await writer.drain();
  }
  writer.close();
}

type Server = "protocol" | "lines" | "streams" | "stream lines";

async function client(server: Server): Promise<BenchClient> {
  switch (server) {
    case "protocol": {
      const { port } = await serve("transient", "echo");
      return await connect("transient", port);
    }
    case "lines": {
      const listener = await createServer(() => new LineEcho(), {
        hostname: HOSTNAME,
        port: 0,
      });
      return await connect(
        "transient",
        listener.addrs[0]!.port,
      );
    }
    case "streams":
    case "stream lines": {
      const listener = await startServer(
        server === "streams" ? streamEcho : streamLineEcho,
        { hostname: HOSTNAME, port: 0 },
      );
      return await connect(
        "transient",
        listener.addrs[0]!.port,
      );
    }
  }
}

const NAMES: Record<Server, string> = {
  protocol: "Protocol (transientData)",
  lines: "LineProtocol",
  streams: "streams: read/write/drain",
  "stream lines": "streams: for await line / write / drain",
};

/** Registers one group: the same workload against several servers. */
async function group(
  name: string,
  servers: Server[],
  chunk: Uint8Array,
  count: number,
  n: number,
): Promise<void> {
  for (const server of servers) {
    const bench = await client(server);
    Deno.bench({
      group: name,
      name: NAMES[server],
      baseline: server === "protocol",
      n,
      warmup: Math.ceil(n / 10),
      async fn() {
        await bench.send(chunk, count, chunk.byteLength * count);
      },
    });
  }
}

const ECHO_CHUNK = pattern(64 * KiB);
await group(
  "echo 8 MiB in 64 KiB writes, by server",
  ["protocol", "streams"],
  ECHO_CHUNK,
  (8 * MiB) / ECHO_CHUNK.byteLength,
  50,
);

const MESSAGE = new TextEncoder().encode(`${"m".repeat(63)}\n`);
await group(
  "ping-pong of a 64 B line, by server",
  ["protocol", "lines", "streams", "stream lines"],
  MESSAGE,
  1,
  5_000,
);

/** 1,000 lines of 100 bytes in one write. */
const LINES = new Uint8Array(100_000);
for (let i = 0; i < LINES.byteLength; i++) {
  LINES[i] = i % 100 === 99 ? 0x0a : 0x61 + (i % 26);
}
await group(
  "1,000 lines of 100 B in one write, by server",
  ["protocol", "lines", "stream lines"],
  LINES,
  1,
  500,
);
