/**
 * A standalone UDP echo server, for a load generator in another process.
 *
 * ```sh
 * deno task bench:udp-echo-server --variant endpoint --port 7001
 * deno task bench:udp-echo-server --variant raw --port 7002    # baseline
 * ```
 *
 * `--variant` is `endpoint` (`createDatagramEndpoint` with a
 * `DatagramProtocol` that sends each datagram back: `sendto` copies it),
 * or `raw` (a `Deno.DatagramConn` loop that receives into one buffer and
 * sends from it). `--port` defaults to 0 (a free port, printed on start).
 * SIGINT or SIGTERM stops the server.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { createDatagramEndpoint, DatagramProtocolBase } from "../mod.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    hostname: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "0" },
    variant: { type: "string", default: "endpoint" },
  },
});
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  throw new RangeError(
    `Cannot start UDP echo server: --port (${values.port}) must be between 0 and 65535`,
  );
}

/** Sends each datagram back to its sender. */
class Echo extends DatagramProtocolBase {
  override datagramReceived(data: Uint8Array, addr: Deno.NetAddr): void {
    this.transport?.sendto(data, addr);
  }
}

let stop: () => void;
let bound: Deno.NetAddr;
if (values.variant === "endpoint") {
  const [transport] = await createDatagramEndpoint(() => new Echo(), {
    localAddr: { hostname: values.hostname, port },
  });
  bound = transport.getExtraInfo("sockname")!;
  stop = () => transport.close();
} else if (values.variant === "raw") {
  const conn = Deno.listenDatagram({
    transport: "udp",
    hostname: values.hostname,
    port,
  });
  bound = conn.addr as Deno.NetAddr;
  const buffer = new Uint8Array(65_536);
  (async () => {
    try {
      for (;;) {
        const [data, addr] = await conn.receive(buffer);
        await conn.send(data, addr);
      }
    } catch {
      // Closed.
    }
  })();
  stop = () => conn.close();
} else {
  throw new TypeError(
    `Cannot start UDP echo server: --variant must be endpoint or raw, not "${values.variant}"`,
  );
}
console.log(
  `UDP echo server (${values.variant}) on ${bound.hostname}:${bound.port}`,
);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => {
    stop();
    Deno.exit(0);
  });
}
