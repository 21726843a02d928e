/**
 * A TLS echo server: every byte a client sends comes back to it, encrypted.
 * Without flags it serves the test certificate for localhost and 127.0.0.1
 * (tests/testdata/, signed by tests/testdata/ca.pem).
 *
 * ```sh
 * deno run --allow-net --allow-read examples/tls_echo_server.ts --port 8443
 * deno run --allow-net --allow-read examples/tls_echo_server.ts --port 8443 \
 *   --cert server.pem --key server_key.pem --alpn echo
 * ```
 *
 * Try it with
 * `openssl s_client -connect 127.0.0.1:8443 -CAfile tests/testdata/ca.pem`.
 * A client may half-close (close_notify): the server sends back what is
 * still buffered, then closes. Ctrl-C stops it.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createServer, ProtocolBase, type Transport } from "@aio/protocols";

/** Writes back each chunk as it arrives; says which ALPN protocol it got. */
class Echo extends ProtocolBase {
  override connectionMade(transport: Transport): void {
    super.connectionMade(transport);
    const peer = transport.getExtraInfo("peername");
    const from = peer?.transport === "tcp"
      ? `${peer.hostname}:${peer.port}`
      : "?";
    const alpn = transport.getExtraInfo("alpnProtocol");
    console.log(
      `TLS connection from ${from}`,
      alpn === null ? "" : `(ALPN: ${alpn})`,
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

function fixture(name: string): string {
  return new URL(`../tests/testdata/${name}`, import.meta.url).pathname;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      hostname: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "8443" },
      cert: { type: "string", default: fixture("server.pem") },
      key: { type: "string", default: fixture("server_key.pem") },
      alpn: { type: "string", multiple: true },
    },
  });
  const server = await createServer(() => new Echo(), {
    hostname: values.hostname,
    port: Number(values.port),
    tls: {
      cert: await Deno.readTextFile(values.cert),
      key: await Deno.readTextFile(values.key),
      ...(values.alpn === undefined ? {} : { alpnProtocols: values.alpn }),
    },
    onError: (error, context) => console.error(context.message, error),
  });
  const addr = server.addrs[0]!;
  console.log(`TLS echo server listening on ${addr.hostname}:${addr.port}`);
  Deno.addSignalListener("SIGINT", () => {
    server.close();
    server.closeClients();
  });
  await server.serveForever();
  console.log("TLS echo server closed");
  Deno.exit(0);
}
