/**
 * A UDP echo server: each datagram goes back to its sender.
 *
 * ```sh
 * deno run --unstable-net --allow-net examples/udp_echo_server.ts --port 9999
 * echo hello | nc -u -w1 127.0.0.1 9999
 * ```
 *
 * Deno's UDP API needs `--unstable-net` (inside this project, deno.json
 * sets it).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createDatagramEndpoint, DatagramProtocolBase } from "@aio/protocols";

/** Sends each datagram back where it came from. */
class Echo extends DatagramProtocolBase {
  override datagramReceived(data: Uint8Array, addr: Deno.NetAddr): void {
    this.transport?.sendto(data, addr);
  }
  override errorReceived(exc: Error): void {
    console.error("datagram error:", exc.message);
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
  const [transport] = await createDatagramEndpoint(() => new Echo(), {
    localAddr: { hostname: values.hostname, port: Number(values.port) },
  });
  const addr = transport.getExtraInfo("sockname")!;
  console.log(`UDP echo on ${addr.hostname}:${addr.port}; Ctrl-C stops`);
  Deno.addSignalListener("SIGINT", () => {
    transport.close();
    Deno.exit(0);
  });
}
