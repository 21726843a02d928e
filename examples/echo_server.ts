/**
 * An echo server: every byte a client sends comes back to it.
 *
 * ```sh
 * deno run --allow-net examples/echo_server.ts --port 8888
 * deno run --allow-net examples/echo_server.ts --port 0 --buffered   # a free port
 * deno run --allow-net --allow-read --allow-write examples/echo_server.ts --unix /tmp/echo.sock
 * ```
 *
 * Try it with `nc 127.0.0.1 8888` or `examples/echo_client.ts`. It prints
 * the address it listens on first (the port `--port 0` picked, too).
 *
 * While a client does not read its echo, the server stops reading from it:
 * a client that sends gigabytes and reads nothing costs the server its
 * write buffer (64 KiB) and the socket buffers, not gigabytes.
 *
 * Ctrl-C (or SIGTERM) stops listening and closes the connections, which
 * get 10 s to flush; a second Ctrl-C aborts them at once.
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
import { shutdownOnSignals } from "./_signals.ts";

/**
 * Writes back each chunk as it arrives, and closes after the client's EOF
 * once the echo is flushed. While the client does not read the echo (the
 * write buffer is over its high-water mark), it reads nothing more.
 */
export class Echo extends ProtocolBase {
  // Done with each chunk when dataReceived returns: the transport may read
  // into the same memory again once the echo of it is written.
  override readonly transientData = true;

  override connectionMade(transport: Transport): void {
    super.connectionMade(transport);
    const from = describe(transport.getExtraInfo("peername"));
    const alpn = transport.getExtraInfo("alpnProtocol");
    console.log(`connection from ${from}${alpn ? ` (ALPN: ${alpn})` : ""}`);
  }

  override dataReceived(data: Uint8Array): void {
    this.transport?.write(data);
  }

  override pauseWriting(): void {
    super.pauseWriting();
    this.transport?.pauseReading();
  }

  override resumeWriting(): void {
    super.resumeWriting();
    this.transport?.resumeReading();
  }

  override connectionLost(exc: Error | undefined): void {
    super.connectionLost(exc);
    console.log(exc ? `connection lost: ${exc.message}` : "connection closed");
  }
}

/**
 * The same, reading into one buffer of its own and writing from it with no
 * copy. `write()` keeps what the socket does not take at once as a view of
 * that buffer, so the next read must wait until it is written: with a
 * high-water mark of 0, `pauseWriting` comes as soon as anything is kept
 * and `resumeWriting` once all of it is written.
 */
class BufferedEcho extends BufferedProtocolBase {
  override connectionMade(transport: Transport): void {
    super.connectionMade(transport);
    transport.setWriteBufferLimits({ high: 0 });
  }

  override bufferUpdated(nbytes: number): void {
    this.transport?.write(this.buffer.subarray(0, nbytes));
  }

  override pauseWriting(): void {
    super.pauseWriting();
    this.transport?.pauseReading();
  }

  override resumeWriting(): void {
    super.resumeWriting();
    this.transport?.resumeReading();
  }
}

/**
 * Says where an address is: `host:port`, or a Unix socket's path.
 *
 * @param addr The address, if known.
 * @returns The address as text.
 */
export function describe(addr: Deno.Addr | undefined): string {
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
  const stopped = shutdownOnSignals(server); // Before saying it listens.
  console.log("echo server listening on", describe(server.addrs[0]!));
  await stopped;
  console.log("echo server closed");
}
