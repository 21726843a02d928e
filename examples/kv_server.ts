/**
 * A tiny line-based key-value server on `LineProtocol`: one command per
 * line, one answer per line, as Redis's inline commands.
 *
 * ```sh
 * deno run --allow-net examples/kv_server.ts --port 6380
 * printf 'SET greeting hello\r\nGET greeting\r\nQUIT\r\n' | nc 127.0.0.1 6380
 * ```
 *
 * Commands: `SET key value`, `GET key`, `DEL key`, `QUIT`. Lines end with
 * `\r\n` and may be up to 4 KiB; a longer one gets an error answer and is
 * skipped, so no client can make the server hold more than that.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createServer, LineProtocol } from "@aio/protocols";

const store = new Map<string, string>();
const decoder = new TextDecoder();

/** One client: parses each line as a command and answers it. */
class KeyValue extends LineProtocol {
  constructor() {
    super({ delimiter: "\r\n", maxLineLength: 4096 });
  }

  override lineReceived(line: Uint8Array): void {
    const [command = "", key, ...rest] = decoder.decode(line).split(" ");
    switch (command.toUpperCase()) {
      case "SET":
        if (key === undefined || rest.length === 0) break;
        store.set(key, rest.join(" "));
        this.sendLine("+OK");
        return;
      case "GET":
        if (key === undefined) break;
        this.sendLine(store.has(key) ? `$${store.get(key)}` : "$-1");
        return;
      case "DEL":
        if (key === undefined) break;
        this.sendLine(`:${store.delete(key) ? 1 : 0}`);
        return;
      case "QUIT":
        this.sendLine("+BYE");
        this.transport?.close();
        return;
    }
    this.sendLine(`-ERR cannot parse: ${command}`);
  }

  override lineLengthExceeded(length: number): void {
    this.sendLine(`-ERR line of ${length} bytes is too long`);
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      hostname: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "6380" },
    },
  });
  const server = await createServer(() => new KeyValue(), {
    hostname: values.hostname,
    port: Number(values.port),
  });
  const addr = server.addrs[0]!;
  console.log(
    `key-value server on ${addr.hostname}:${addr.port}; Ctrl-C stops`,
  );
  await server.serveForever();
}
