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
 * still buffered, then closes. The protocol is the plain echo server's
 * (`examples/echo_server.ts`), flow control included: a client that does
 * not read its echo is not read either.
 *
 * Ctrl-C (or SIGTERM) stops listening and closes the connections, which
 * get 10 s to flush; a second Ctrl-C aborts them at once.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createServer } from "@aio/protocols";
import { shutdownOnSignals } from "./_signals.ts";
import { describe, Echo } from "./echo_server.ts";

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
  const stopped = shutdownOnSignals(server); // Before saying it listens.
  console.log("TLS echo server listening on", describe(server.addrs[0]!));
  await stopped;
  console.log("TLS echo server closed");
}
