/**
 * A key-value server that speaks RESP, Redis's protocol, so `redis-cli`
 * and Redis client libraries work with it:
 *
 * ```sh
 * deno run --allow-net examples/kv_server.ts --port 6380
 * redis-cli -p 6380 set greeting "hello world"
 * redis-cli -p 6380 get greeting
 * printf 'SET n 41\r\nINCR n\r\nQUIT\r\n' | nc 127.0.0.1 6380   # inline commands
 * ```
 *
 * Commands: `PING [message]`, `ECHO message`, `SET key value`, `GET key`,
 * `DEL key...`, `EXISTS key...`, `INCR key`, `QUIT`, and `COMMAND`, which
 * answers an empty array (enough for `redis-cli`). A request is an array of
 * bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`), as clients send, or an
 * inline command: one line of words, which may be quoted (`"a b"`, with
 * `\n` or `\x41` escapes; `'a b'`). Replies are RESP: `+OK`, `-ERR ...`,
 * `:1`, `$5\r\nhello`, `$-1` for no value.
 *
 * Its memory is bounded whatever clients send:
 *
 * - Requests: an inline line or a count line is at most 64 KiB, an array
 *   at most 1,024 strings, a string at most `--max-bulk` bytes (512 KiB),
 *   and one request at most 1 MiB in all (or twice `--max-bulk`, if that
 *   is more). A client over a limit gets
 *   `-ERR Protocol error: ...` and is disconnected, as Redis does.
 * - Replies: while a client does not read them (its write buffer is over
 *   the high-water mark), its next commands wait and the server reads
 *   nothing more from it, so pipelined GETs of a large value cost one
 *   reply and the write buffer, not gigabytes. A value goes out as it is
 *   stored, with no copy.
 * - Data: keys and values take at most `--max-memory` bytes (64 MiB); a
 *   write beyond gets `-OOM`, as Redis's `maxmemory` without eviction.
 * - `--timeout SECONDS` closes idle clients (default 0: never).
 *
 * Ctrl-C (or SIGTERM) stops listening and closes the connections once
 * their replies are written, giving them 10 s; a second Ctrl-C aborts them.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createServer, ProtocolBase } from "@aio/protocols";
import { shutdownOnSignals } from "./_signals.ts";

/** The limits a client's requests must keep to. */
interface Limits {
  /** The longest inline command, or count line (`*3`, `$5`). */
  maxLine: number;
  /** The most strings in one request. */
  maxArgs: number;
  /** The longest string in a request. */
  maxBulk: number;
  /** The most bytes of strings in one request. */
  maxRequest: number;
}

/** Redis's protocol limits, scaled down to an example's memory. */
const DEFAULT_LIMITS: Limits = {
  maxLine: 64 * 1024,
  maxArgs: 1024,
  maxBulk: 512 * 1024,
  maxRequest: 1024 * 1024,
};

/** A request that breaks the protocol: the client is disconnected. */
class ProtocolError extends Error {
  constructor(message: string) {
    super(`Protocol error: ${message}`);
    this.name = "ProtocolError";
  }
}

/** One request parsed: its strings, and the bytes it took. */
interface Request {
  args: Uint8Array[];
  length: number;
}

const CR = 0x0d;
const LF = 0x0a;
const DOUBLE = 0x22;
const SINGLE = 0x27;
const BACKSLASH = 0x5c;
const encoder = new TextEncoder();

/**
 * Parses the request at the start of `input`: an array of bulk strings,
 * or an inline command. The strings are views of `input`.
 *
 * @returns The request, or `undefined` until more bytes arrive.
 * @throws {ProtocolError} For a request that breaks the protocol or the
 * limits.
 */
function parseRequest(
  input: Uint8Array,
  limits: Limits = DEFAULT_LIMITS,
): Request | undefined {
  if (input.byteLength === 0) return undefined;
  return input[0] === 0x2a // "*"
    ? parseArray(input, limits)
    : parseInline(input, limits);
}

function parseArray(input: Uint8Array, limits: Limits): Request | undefined {
  const header = countLine(input, 0, limits, "mbulk");
  if (header === undefined) return undefined;
  const count = header.value;
  if (count === undefined || count > limits.maxArgs) {
    throw new ProtocolError("invalid multibulk length");
  }
  const args: Uint8Array[] = [];
  let at = header.next;
  let total = 0;
  for (let i = 0; i < count; i++) {
    if (at >= input.byteLength) return undefined;
    if (input[at] !== 0x24) { // "$"
      throw new ProtocolError(
        `expected '$', got '${String.fromCharCode(input[at]!)}'`,
      );
    }
    const line = countLine(input, at, limits, "bulk");
    if (line === undefined) return undefined;
    const length = line.value;
    if (length === undefined || length < 0 || length > limits.maxBulk) {
      throw new ProtocolError("invalid bulk length");
    }
    total += length;
    if (total > limits.maxRequest) {
      throw new ProtocolError("request too large");
    }
    at = line.next;
    if (at + length + 2 > input.byteLength) return undefined;
    args.push(input.subarray(at, at + length));
    at += length + 2; // The string, then CRLF.
  }
  return { args, length: at };
}

/**
 * Reads a line such as `*3` or `$5` at `at`: its number (`undefined` if it
 * is not one) and where the next line starts.
 */
function countLine(
  input: Uint8Array,
  at: number,
  limits: Limits,
  kind: string,
): { value: number | undefined; next: number } | undefined {
  const end = input.indexOf(CR, at);
  if (end < 0 || end + 1 >= input.byteLength) {
    if (input.byteLength - at > limits.maxLine) {
      throw new ProtocolError(`too big ${kind} count string`);
    }
    return undefined;
  }
  // Up to 15 digits: more would be over every limit anyway.
  const text = end - at <= 17
    ? String.fromCharCode(...input.subarray(at + 1, end))
    : "";
  const value = /^-?\d{1,15}$/.test(text) ? Number(text) : undefined;
  return { value, next: end + 2 };
}

function parseInline(input: Uint8Array, limits: Limits): Request | undefined {
  const end = input.indexOf(LF);
  if (end > limits.maxLine || (end < 0 && input.byteLength > limits.maxLine)) {
    throw new ProtocolError("too big inline request");
  }
  if (end < 0) return undefined;
  const line = input.subarray(0, input[end - 1] === CR ? end - 1 : end);
  const args = splitArgs(line);
  if (args === undefined) {
    throw new ProtocolError("unbalanced quotes in request");
  }
  if (args.length > limits.maxArgs) {
    throw new ProtocolError("invalid multibulk length");
  }
  return { args, length: end + 1 };
}

const ESCAPES: Record<string, number> = {
  n: LF,
  r: CR,
  t: 0x09,
  b: 0x08,
  a: 0x07,
};

/**
 * Splits an inline command into words as Redis does: `"..."` with
 * backslash escapes, `'...'` with `\'` only; a closing quote must end its
 * word.
 *
 * @returns The words, or `undefined` for unbalanced quotes.
 */
function splitArgs(line: Uint8Array): Uint8Array[] | undefined {
  const words: Uint8Array[] = [];
  const isSpace = (c: number | undefined) =>
    c === 0x20 || c === 0x09 || c === LF || c === CR;
  let i = 0;
  while (i < line.byteLength) {
    if (isSpace(line[i])) {
      i++;
      continue;
    }
    const word: number[] = [];
    let quote: number | undefined;
    for (; i < line.byteLength || quote !== undefined; i++) {
      const c = line[i];
      if (c === undefined) return undefined; // The line ended in quotes.
      if (quote === undefined) {
        if (isSpace(c)) break;
        if (c === DOUBLE || c === SINGLE) quote = c;
        else word.push(c);
      } else if (c === quote) {
        if (i + 1 < line.byteLength && !isSpace(line[i + 1])) return undefined;
        quote = undefined;
      } else if (
        c === BACKSLASH && quote === DOUBLE && i + 1 < line.byteLength
      ) {
        const next = line[++i]!;
        const hex = String.fromCharCode(...line.subarray(i + 1, i + 3));
        if (next === 0x78 && /^[0-9a-fA-F]{2}$/.test(hex)) { // \xHH
          word.push(parseInt(hex, 16));
          i += 2;
        } else {
          word.push(ESCAPES[String.fromCharCode(next)] ?? next);
        }
      } else if (
        c === BACKSLASH && quote === SINGLE && line[i + 1] === SINGLE
      ) {
        word.push(SINGLE);
        i++;
      } else {
        word.push(c);
      }
    }
    words.push(Uint8Array.from(word));
  }
  return words;
}

const CRLF = encoder.encode("\r\n");
const NIL = encoder.encode("$-1\r\n");

/** RESP replies, encoded. */
const reply = {
  simple: (text: string): Uint8Array => encoder.encode(`+${text}\r\n`),
  error: (text: string): Uint8Array =>
    encoder.encode(`-${text.replace(/[\r\n]/g, " ")}\r\n`),
  integer: (value: number | bigint): Uint8Array =>
    encoder.encode(`:${value}\r\n`),
  bulk: (value: Uint8Array | undefined): Uint8Array[] =>
    value === undefined
      ? [NIL]
      : [encoder.encode(`$${value.byteLength}\r\n`), value, CRLF],
};

const OK = reply.simple("OK");
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** The data every client shares, within a memory budget. */
class Store {
  #map = new Map<string, Uint8Array>();
  #used = 0;
  #maxMemory: number;

  constructor(maxMemory: number) {
    this.#maxMemory = maxMemory;
  }

  get(key: Uint8Array): Uint8Array | undefined {
    return this.#map.get(asKey(key));
  }

  /** Sets `key`; `false` if that would take more than the budget. */
  set(key: Uint8Array, value: Uint8Array): boolean {
    const name = asKey(key);
    const old = this.#map.get(name);
    const used = this.#used - size(name, old) + size(name, value);
    if (used > this.#maxMemory) return false;
    this.#map.set(name, value.slice()); // The request's memory is reused.
    this.#used = used;
    return true;
  }

  delete(key: Uint8Array): boolean {
    const name = asKey(key);
    this.#used -= size(name, this.#map.get(name));
    return this.#map.delete(name);
  }
}

/** A key as a string with one char per byte, so any bytes can be a key. */
function asKey(key: Uint8Array): string {
  let name = "";
  for (let i = 0; i < key.byteLength; i += 8192) {
    name += String.fromCharCode(...key.subarray(i, i + 8192));
  }
  return name;
}

function size(name: string, value: Uint8Array | undefined): number {
  return value === undefined ? 0 : name.length + value.byteLength;
}

/** A command: how many strings it takes (negative: at least), and what it does. */
interface Command {
  arity: number;
  run(args: Uint8Array[], store: Store): Uint8Array | Uint8Array[];
}

const decoder = new TextDecoder();

const COMMANDS: Record<string, Command> = {
  PING: {
    arity: -1,
    run: (args) =>
      args.length > 2
        ? wrongArity("ping")
        : args[1] === undefined
        ? reply.simple("PONG")
        : reply.bulk(args[1]),
  },
  ECHO: { arity: 2, run: (args) => reply.bulk(args[1]) },
  SET: {
    arity: -3,
    run(args, store) {
      if (args.length > 3) return reply.error("ERR syntax error");
      return store.set(args[1]!, args[2]!) ? OK : outOfMemory();
    },
  },
  GET: { arity: 2, run: (args, store) => reply.bulk(store.get(args[1]!)) },
  DEL: {
    arity: -2,
    run: (args, store) =>
      reply.integer(args.slice(1).filter((key) => store.delete(key)).length),
  },
  EXISTS: {
    arity: -2,
    run: (args, store) =>
      reply.integer(
        args.slice(1).filter((key) => store.get(key) !== undefined).length,
      ),
  },
  INCR: {
    arity: 2,
    run(args, store) {
      const old = store.get(args[1]!);
      const text = old === undefined ? "0" : decoder.decode(old);
      const number = /^(0|-?[1-9]\d{0,18})$/.test(text)
        ? BigInt(text)
        : undefined;
      if (number === undefined || number < INT64_MIN || number > INT64_MAX) {
        return reply.error("ERR value is not an integer or out of range");
      }
      const value = number + 1n;
      if (value > INT64_MAX) {
        return reply.error("ERR increment or decrement would overflow");
      }
      if (!store.set(args[1]!, encoder.encode(`${value}`))) {
        return outOfMemory();
      }
      return reply.integer(value);
    },
  },
  // redis-cli asks for the command table (COMMAND DOCS) when it starts.
  COMMAND: { arity: -1, run: () => encoder.encode("*0\r\n") },
};

function wrongArity(name: string): Uint8Array {
  return reply.error(`ERR wrong number of arguments for '${name}' command`);
}

/** Redis's answer to an unknown command: its name and first arguments. */
function unknownCommand(args: Uint8Array[]): Uint8Array {
  const quoted = (arg: Uint8Array, max: number) =>
    `'${decoder.decode(arg.subarray(0, Math.max(0, max)))}'`;
  let given = "";
  for (const arg of args.slice(1)) {
    if (given.length >= 128) break;
    given += `${quoted(arg, 128 - given.length)} `;
  }
  return reply.error(
    `ERR unknown command ${
      quoted(args[0]!, 128)
    }, with args beginning with: ${given}`,
  );
}

function outOfMemory(): Uint8Array {
  return reply.error(
    "OOM command not allowed when used memory > 'maxmemory'.",
  );
}

/**
 * One client: parses its requests and answers each in order. While its
 * replies are not read, it runs no more commands and reads nothing more.
 */
class KeyValue extends ProtocolBase {
  // The bytes of a request are parsed, copied where kept, and done with.
  override readonly transientData = true;
  #store: Store;
  #limits: Limits;
  /** Received and not yet run: at most one request and one read. */
  #pending = new Uint8Array(0);
  #writingPaused = false;
  #eof = false;

  constructor(store: Store, limits: Limits = DEFAULT_LIMITS) {
    super();
    this.#store = store;
    this.#limits = limits;
  }

  override dataReceived(data: Uint8Array): void {
    const pending = this.#pending;
    this.#run(pending.byteLength === 0 ? data : join(pending, data));
  }

  override eofReceived(): boolean {
    this.#eof = true;
    this.#run(this.#pending);
    return true; // #run closes once every request is answered.
  }

  override pauseWriting(): void {
    super.pauseWriting();
    this.#writingPaused = true;
    this.transport?.pauseReading();
  }

  override resumeWriting(): void {
    super.resumeWriting();
    this.#writingPaused = false;
    this.#run(this.#pending);
    if (!this.#writingPaused) this.transport?.resumeReading();
  }

  /** Runs the requests in `input` until it runs out or replies back up. */
  #run(input: Uint8Array): void {
    const transport = this.transport;
    if (transport === undefined) return;
    let at = 0;
    while (!this.#writingPaused && !transport.isClosing()) {
      let request: Request | undefined;
      try {
        request = parseRequest(input.subarray(at), this.#limits);
      } catch (error) {
        if (!(error instanceof ProtocolError)) throw error;
        transport.write(reply.error(`ERR ${error.message}`));
        transport.close();
        return;
      }
      if (request === undefined) break;
      at += request.length;
      if (request.args.length > 0) this.#answer(request.args);
    }
    // Keep what is left: the transport reuses the memory of `input`.
    this.#pending = input.slice(at);
    if (this.#eof && !this.#writingPaused) transport.close();
  }

  #answer(args: Uint8Array[]): void {
    const transport = this.transport!;
    // Redis compares names in ASCII: "pıng" is not PING.
    const name = asKey(args[0]!).replace(/[a-z]+/g, (s) => s.toUpperCase());
    if (name === "QUIT") {
      transport.write(OK);
      transport.close();
      return;
    }
    const command = COMMANDS[name];
    if (command === undefined) {
      transport.write(unknownCommand(args));
      return;
    }
    const { arity } = command;
    if (arity > 0 ? args.length !== arity : args.length < -arity) {
      transport.write(wrongArity(name.toLowerCase()));
      return;
    }
    const answer = command.run(args, this.#store);
    // Chunks one by one: a stored value goes out with no copy (it is never
    // changed: SET stores a new array).
    for (const chunk of [answer].flat()) transport.write(chunk);
  }
}

function join(a: Uint8Array, b: Uint8Array): Uint8Array {
  const joined = new Uint8Array(a.byteLength + b.byteLength);
  joined.set(a);
  joined.set(b, a.byteLength);
  return joined;
}

/** Reads a flag that must be a whole number >= 0; exits if it is not. */
function count(name: string, text: string): number {
  const value = Number(text);
  if (Number.isInteger(value) && value >= 0) return value;
  console.error(`--${name} must be a whole number >= 0, not ${text}`);
  Deno.exit(2);
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      hostname: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "6380" },
      "max-bulk": { type: "string", default: `${DEFAULT_LIMITS.maxBulk}` },
      "max-memory": { type: "string", default: `${64 * 1024 * 1024}` },
      timeout: { type: "string", default: "0" },
    },
  });
  const maxBulk = count("max-bulk", values["max-bulk"]);
  const limits: Limits = {
    ...DEFAULT_LIMITS,
    maxBulk,
    maxRequest: Math.max(DEFAULT_LIMITS.maxRequest, 2 * maxBulk),
  };
  const store = new Store(count("max-memory", values["max-memory"]));
  const timeout = count("timeout", values.timeout) * 1000;
  const server = await createServer(() => new KeyValue(store, limits), {
    hostname: values.hostname,
    port: Number(values.port),
    keepAlive: true,
    ...(timeout > 0 ? { idleTimeout: timeout } : {}),
  });
  const addr = server.addrs[0]!;
  const stopped = shutdownOnSignals(server); // Before saying it listens.
  console.log(`key-value server on ${addr.hostname}:${addr.port}`);
  await stopped;
  console.log("key-value server closed");
}
