/**
 * An echo server: every byte a client sends comes back to it.
 *
 * ```sh
 * deno run --allow-net examples/echo_server.ts --port 8888
 * deno run --allow-net examples/echo_server.ts --port 8888 --buffered
 * deno run --allow-net --allow-read --allow-write examples/echo_server.ts --unix /tmp/echo.sock
 * ```
 *
 * Try it with `nc 127.0.0.1 8888` or `examples/echo_client.ts`. Ctrl-C stops it.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  BufferedProtocolBase,
  createServer,
  createUnixServer,
  ProtocolBase,
  type Server,
  type StreamProtocol,
  type Transport,
} from "@aio/protocols";

/** Writes back each chunk as it arrives; half-closes when the client does. */
class Echo extends ProtocolBase {
  override connectionMade(transport: Transport): void {
    super.connectionMade(transport);
    console.log(
      "connection from",
      describe(transport.getExtraInfo("peername")),
    );
  }

  override dataReceived(data: Uint8Array): void {
    this.transport?.write(data);
  }

  override connectionLost(exc: Error | undefined): void {
    super.connectionLost(exc);
    console.log("connection closed", exc?.message ?? "");
  }
}

/** The same, reading straight into its own buffer with no copy. */
class BufferedEcho extends BufferedProtocolBase {
  override bufferUpdated(nbytes: number): void {
    // write() does not copy, and the next read reuses this buffer: copy.
    this.transport?.write(this.buffer.slice(0, nbytes));
  }
}

function describe(addr: Deno.Addr | undefined): string {
  if (addr === undefined) return "(unknown)";
  if (addr.transport === "tcp" || addr.transport === "udp") {
    return `${addr.hostname}:${addr.port}`;
  }
  return "path" in addr ? addr.path || "(unnamed)" : addr.transport;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      hostname: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "8888" },
      unix: { type: "string" },
      buffered: { type: "boolean", default: false },
    },
  });
  const factory = (): StreamProtocol =>
    values.buffered ? new BufferedEcho() : new Echo();
  const server: Server = values.unix === undefined
    ? await createServer(factory, {
      hostname: values.hostname,
      port: Number(values.port),
    })
    : await createUnixServer(factory, { path: values.unix });
  console.log("echo server listening on", describe(server.addrs[0]!));
  Deno.addSignalListener("SIGINT", () => {
    server.close();
    server.closeClients();
  });
  await server.serveForever();
  console.log("echo server closed");
  Deno.exit(0);
}
