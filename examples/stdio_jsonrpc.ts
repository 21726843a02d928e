/**
 * A JSON-RPC 2.0 server over stdin and stdout, framed by `Content-Length`
 * headers as language servers talk (the LSP base protocol):
 *
 * ```text
 * Content-Length: 40\r\n
 * \r\n
 * {"jsonrpc":"2.0","id":1,"method":"ping"}
 * ```
 *
 * Run it and talk to it from another program's pipes:
 *
 * ```sh
 * deno run examples/stdio_jsonrpc.ts
 * ```
 *
 * Methods: `ping` (answers `"pong"`), `add` (`params: [a, b]`), `echo`
 * (answers its params), `shutdown` (answers `null`), and the notification
 * `exit` (ends the process). A request whose JSON it cannot parse gets a
 * JSON-RPC error, and the server goes on; a frame with no valid
 * `Content-Length` (or a header over 4 KiB) gets an error, and the server
 * ends, since it cannot tell where the next frame starts. It reads stdin with `connectReadPipe` and
 * writes stdout with `connectWritePipe`; while stdout's buffer is over its
 * high-water mark it stops reading stdin, so a client that does not read
 * its answers cannot make the server grow.
 *
 * @module
 */
import {
  BaseProtocolBase,
  connectReadPipe,
  connectWritePipe,
  ProtocolBase,
  type ReadTransport,
  type WriteTransport,
} from "@aio/protocols";
import { stopOnSignals } from "./_signals.ts";

/** The largest message accepted: 1 MiB. */
const MAX_MESSAGE = 1024 * 1024;
const HEADER_END = new TextEncoder().encode("\r\n\r\n");
const encoder = new TextEncoder();
const decoder = new TextDecoder();

type Id = string | number | null;
type Params = unknown[] | Record<string, unknown> | undefined;

/** What a JSON-RPC error carries. */
class RpcError extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
  }
}

/** The methods this server answers. */
const METHODS: Record<string, (params: Params) => unknown> = {
  ping: () => "pong",
  echo: (params) => params ?? null,
  add(params) {
    const [a, b] = Array.isArray(params) ? params : [];
    if (typeof a !== "number" || typeof b !== "number") {
      throw new RpcError(-32602, "add takes two numbers");
    }
    return a + b;
  },
  shutdown: () => null,
};

/**
 * Writes messages to stdout, framed, and holds stdin while stdout is full.
 * Once stdout is closed (after stdin's end, or `exit`), the process ends.
 */
class Output extends BaseProtocolBase<WriteTransport> {
  input: ReadTransport | undefined;

  send(message: unknown): void {
    const body = encoder.encode(JSON.stringify(message));
    const header = encoder.encode(`Content-Length: ${body.byteLength}\r\n\r\n`);
    this.transport?.writelines([header, body]);
  }

  /** Resolves once stdout is closed, with what it was lost with. */
  readonly closed = Promise.withResolvers<Error | undefined>();

  override connectionLost(exc: Error | undefined): void {
    super.connectionLost(exc);
    this.closed.resolve(exc);
  }

  override pauseWriting(): void {
    super.pauseWriting();
    this.input?.pauseReading();
  }

  override resumeWriting(): void {
    super.resumeWriting();
    this.input?.resumeReading();
  }
}

/** Cuts stdin into messages and answers each one. */
class Input extends ProtocolBase {
  #buffer = new Uint8Array(0);
  #output: Output;

  constructor(output: Output) {
    super();
    this.#output = output;
  }

  override dataReceived(data: Uint8Array): void {
    const joined = new Uint8Array(this.#buffer.byteLength + data.byteLength);
    joined.set(this.#buffer);
    joined.set(data, this.#buffer.byteLength);
    let rest = joined;
    for (;;) {
      const headerEnd = indexOf(rest, HEADER_END);
      if (headerEnd < 0) {
        if (rest.byteLength > 4096) return this.#fatal("header too long");
        break;
      }
      const length = contentLength(decoder.decode(rest.subarray(0, headerEnd)));
      if (length === undefined || length > MAX_MESSAGE) {
        return this.#fatal("bad Content-Length");
      }
      const start = headerEnd + HEADER_END.byteLength;
      if (rest.byteLength < start + length) break;
      this.#handle(rest.subarray(start, start + length));
      rest = rest.subarray(start + length);
    }
    this.#buffer = rest.slice();
  }

  override connectionLost(): void {
    // stdin ended: flush stdout, then the process exits.
    this.#output.transport?.close();
  }

  #handle(body: Uint8Array): void {
    let request: { id?: Id; method?: unknown; params?: Params };
    try {
      request = JSON.parse(decoder.decode(body));
    } catch {
      this.#output.send(failure(null, new RpcError(-32700, "Parse error")));
      return;
    }
    const id = request?.id ?? null;
    if (typeof request?.method !== "string") {
      this.#output.send(failure(id, new RpcError(-32600, "Invalid Request")));
      return;
    }
    if (request.method === "exit") {
      this.#output.transport?.close();
      return;
    }
    const method = METHODS[request.method];
    if (request.id === undefined) return; // A notification gets no answer.
    if (method === undefined) {
      this.#output.send(failure(id, new RpcError(-32601, "Method not found")));
      return;
    }
    try {
      this.#output.send({ jsonrpc: "2.0", id, result: method(request.params) });
    } catch (error) {
      this.#output.send(
        failure(
          id,
          error instanceof RpcError
            ? error
            : new RpcError(-32603, String(error)),
        ),
      );
    }
  }

  #fatal(reason: string): void {
    this.#output.send(failure(null, new RpcError(-32700, reason)));
    this.#output.transport?.close();
  }
}

function failure(id: Id, error: RpcError) {
  return {
    jsonrpc: "2.0",
    id,
    error: { code: error.code, message: error.message },
  };
}

function contentLength(header: string): number | undefined {
  for (const line of header.split("\r\n")) {
    const [name, value] = line.split(":", 2);
    if (name?.trim().toLowerCase() === "content-length") {
      const length = Number(value?.trim());
      return Number.isInteger(length) && length >= 0 ? length : undefined;
    }
  }
  return undefined;
}

function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  for (
    let at = haystack.indexOf(needle[0]!);
    at >= 0;
    at = haystack.indexOf(needle[0]!, at + 1)
  ) {
    if (at + needle.byteLength > haystack.byteLength) return -1;
    if (needle.every((byte, i) => haystack[at + i] === byte)) return at;
  }
  return -1;
}

if (import.meta.main) {
  const [, output] = await connectWritePipe(() => new Output(), Deno.stdout);
  const [input] = await connectReadPipe(() => new Input(output), Deno.stdin);
  output.input = input;
  // SIGINT or SIGTERM: read no more, answer what was read, then exit.
  stopOnSignals({
    shutdown: async () => {
      input.close(); // Closes stdout once flushed.
      await output.closed.promise;
    },
    abort: () => output.transport?.abort(),
  });
  const exc = await output.closed.promise;
  // A read of stdin may still be pending: end the process here.
  Deno.exit(exc === undefined ? 0 : 1);
}
