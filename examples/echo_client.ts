/**
 * An echo client: sends each message, prints what comes back, then
 * half-closes and exits once the server closed its side too.
 *
 * ```sh
 * deno run --allow-net examples/echo_client.ts --port 8888 hello world
 * deno run --allow-net --allow-read --allow-write examples/echo_client.ts --unix /tmp/echo.sock hello
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  createConnection,
  createUnixConnection,
  ProtocolBase,
} from "@aio/protocols";

/** Prints what arrives; the server's EOF closes the transport. */
class Client extends ProtocolBase {
  #decoder = new TextDecoder();
  done: Promise<Error | undefined>;
  #resolve!: (exc: Error | undefined) => void;

  constructor() {
    super();
    this.done = new Promise((resolve) => this.#resolve = resolve);
  }

  override dataReceived(data: Uint8Array): void {
    console.log("received:", this.#decoder.decode(data));
  }

  override connectionLost(exc: Error | undefined): void {
    super.connectionLost(exc);
    this.#resolve(exc);
  }
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      hostname: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "8888" },
      unix: { type: "string" },
    },
  });
  const [transport, client] = values.unix === undefined
    ? await createConnection(() => new Client(), {
      hostname: values.hostname,
      port: Number(values.port),
    })
    : await createUnixConnection(() => new Client(), { path: values.unix });
  const messages = positionals.length > 0 ? positionals : ["hello"];
  const encoder = new TextEncoder();
  for (const message of messages) {
    console.log("sending:", message);
    transport.write(encoder.encode(message));
  }
  transport.writeEof();
  const exc = await client.done;
  if (exc !== undefined) {
    console.error("connection lost:", exc.message);
    Deno.exit(1);
  }
}
