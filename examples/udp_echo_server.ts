/**
 * A UDP echo server: each datagram goes back to its sender.
 *
 * ```sh
 * deno run --unstable-net --allow-net examples/udp_echo_server.ts --port 9999
 * echo hello | nc -u -w1 127.0.0.1 9999
 * ```
 *
 * Deno's UDP API needs `--unstable-net` (inside this project, deno.json
 * sets it). While the send queue is over its high-water mark, the server
 * reads no more datagrams (the kernel drops what does not fit in the
 * socket's buffer, as UDP does), so a flood cannot grow the queue without
 * bound.
 *
 * Ctrl-C (or SIGTERM) closes the endpoint once the queued replies are
 * sent; a second Ctrl-C drops them.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  createDatagramEndpoint,
  DatagramProtocolBase,
  type DatagramTransport,
} from "@aio/protocols";
import { stopOnSignals } from "./_signals.ts";

/** Sends each datagram back where it came from. */
class Echo extends DatagramProtocolBase {
  readonly closed = Promise.withResolvers<void>();

  override datagramReceived(data: Uint8Array, addr: Deno.NetAddr): void {
    this.transport?.sendto(data, addr);
  }

  override errorReceived(exc: Error): void {
    console.error("datagram error:", exc.message);
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
    this.closed.resolve();
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      hostname: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "9999" },
    },
  });
  const [transport, echo]: [DatagramTransport, Echo] =
    await createDatagramEndpoint(() => new Echo(), {
      localAddr: { hostname: values.hostname, port: Number(values.port) },
    });
  const addr = transport.getExtraInfo("sockname")!;
  const stopped = stopOnSignals({
    shutdown: () => {
      transport.close();
      return echo.closed.promise;
    },
    abort: () => transport.abort(),
  });
  console.log(`UDP echo on ${addr.hostname}:${addr.port}; Ctrl-C stops`);
  await stopped;
  console.log("UDP echo closed");
}
