import assert from "node:assert/strict";
import type { DatagramProtocol } from "../../protocols/datagram_protocol.ts";
import type { Protocol } from "../../protocols/protocol.ts";
import type { SubprocessProtocol } from "../../protocols/subprocess_protocol.ts";
import { ReadableSource, WritableSink } from "../../transports/_byte_io.ts";
import { DatagramEndpoint } from "../../transports/_datagram_transport.ts";
import { StreamTransport } from "../../transports/_stream_transport.ts";
import { ChildProcessTransport } from "../../transports/_subprocess_transport.ts";
import type {
  BaseTransport,
  ErrorHandler,
  ReadTransport,
  WriteBufferLimits,
} from "../../transports/transport.ts";
import {
  BaseRecorder,
  bytes,
  concat,
  connectLoopback,
  connectTlsLoopback,
  connectUnixLoopback,
  pattern,
  type Peers,
  quietPeriod,
  readAll,
  readExactly,
  readUntilClosed,
  within,
  writeAll,
} from "../_test_utils.ts";
import { ioTurns, receive, socket } from "./_datagram_utils.ts";
import { roundTrips, split, STREAM_ORDER } from "./_stream_utils.ts";

/** The callbacks a {@linkcode KindProtocol} records, by name. */
export type KindCall =
  | "connectionMade"
  | "dataReceived"
  | "eofReceived"
  | "datagramReceived"
  | "errorReceived"
  | "pipeDataReceived(1)"
  | "pipeDataReceived(2)"
  | "pipeConnectionLost(0)"
  | "pipeConnectionLost(1)"
  | "pipeConnectionLost(2)"
  | "processExited"
  | "pauseWriting"
  | "resumeWriting"
  | "connectionLost";

/**
 * A `Protocol`, a `DatagramProtocol` and a `SubprocessProtocol` at once,
 * so that one test drives a transport of any kind. It records each
 * callback, keeps the bytes the kind delivers (a child's stdout), and runs
 * `hook` after recording a callback: what the hook throws, the callback
 * throws.
 */
export class KindProtocol extends BaseRecorder<KindCall>
  implements Protocol, DatagramProtocol, SubprocessProtocol {
  /** The bytes delivered, chunk by chunk (datagram by datagram). */
  chunks: Uint8Array[] = [];
  /** Runs after each callback is recorded, with its name. */
  hook: ((call: KindCall) => void) | undefined;
  #bytes = 0;
  #byteWaiters: { nbytes: number; resolve: () => void }[] = [];

  /** Resolves once `name` has been called `count` times; fails at the deadline. */
  override waitFor(name: KindCall, count = 1): Promise<void> {
    return within(
      super.waitFor(name, count),
      `${name} #${count} (calls: ${this.calls.join(" ")})`,
    );
  }

  override connectionMade(transport: BaseTransport): void {
    super.connectionMade(transport);
    this.hook?.("connectionMade");
  }
  override pauseWriting(): void {
    super.pauseWriting();
    this.hook?.("pauseWriting");
  }
  override resumeWriting(): void {
    super.resumeWriting();
    this.hook?.("resumeWriting");
  }
  dataReceived(data: Uint8Array): void {
    this.#data("dataReceived", data);
  }
  eofReceived(): boolean {
    this.#call("eofReceived");
    return false;
  }
  datagramReceived(data: Uint8Array, _addr: Deno.NetAddr): void {
    this.#data("datagramReceived", data);
  }
  errorReceived(_exc: Error): void {
    this.#call("errorReceived");
  }
  pipeDataReceived(fd: 1 | 2, data: Uint8Array): void {
    if (fd === 1) this.#data("pipeDataReceived(1)", data);
    else this.#call("pipeDataReceived(2)");
  }
  pipeConnectionLost(fd: 0 | 1 | 2, _exc: Error | undefined): void {
    this.#call(`pipeConnectionLost(${fd})`);
  }
  processExited(): void {
    this.#call("processExited");
  }

  /** How many bytes were delivered so far. */
  bytes(): number {
    return this.#bytes;
  }

  /** Every byte delivered so far, in one array. */
  received(): Uint8Array {
    return concat(this.chunks);
  }

  /** Resolves once `nbytes` bytes in all were delivered; fails at the deadline. */
  waitForBytes(nbytes: number): Promise<void> {
    if (this.#bytes >= nbytes) return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#byteWaiters.push({ nbytes, resolve });
    return within(
      promise,
      `${nbytes} bytes (calls: ${this.calls.join(" ")})`,
    );
  }

  #data(name: KindCall, data: Uint8Array): void {
    this.chunks.push(data);
    this.#bytes += data.byteLength;
    this.#byteWaiters = this.#byteWaiters.filter((waiter) => {
      if (this.#bytes < waiter.nbytes) return true;
      waiter.resolve();
      return false;
    });
    this.#call(name);
  }

  #call(name: KindCall): void {
    this.record(name);
    this.hook?.(name);
  }
}

/** What a test writes with, whatever the kind. */
export interface Writer {
  /** Queues `data` (one datagram); what `write()` returned, if anything. */
  write(data: Uint8Array): boolean | void;
  /** Ends the write side (a stream's half-close, a pipe's close). */
  writeEof(): void;
  /** Returns the bytes buffered. */
  getWriteBufferSize(): number;
  /** Sets the flow-control marks. */
  setWriteBufferLimits(limits?: Partial<WriteBufferLimits>): void;
}

/** A transport of some kind, open, with a peer the test drives. */
export interface Opened extends AsyncDisposable {
  /** The transport under test. */
  transport: BaseTransport;
  /** Where reading pauses: the transport, or a child's stdout pipe. */
  reader: ReadTransport;
  /** Where the test writes: the transport, or a child's stdin pipe. */
  writer: Writer;
  /** Closes at once, dropping what is buffered. */
  abort(): void;
  /** Makes the peer send `data`: bytes of a stream, or one datagram. */
  send(data: Uint8Array): Promise<void>;
  /** Makes the peer end what it sends (EOF). */
  sendEof(): Promise<void>;
  /** Resolves with the next `nbytes` bytes the peer got from the writer. */
  receive(nbytes: number): Promise<Uint8Array>;
  /**
   * Resolves with what the peer still gets until the transport's end, once
   * it is there; nothing, after a few turns of I/O, where the peer cannot
   * tell. With `reset`, a peer that sees a reset takes it as the end.
   */
  afterEnd(options?: { reset?: boolean }): Promise<Uint8Array>;
  /**
   * Gives the transport turns of I/O (`count` round trips, where the kind
   * has them): what the peer sent is by then in its hands, delivered or
   * held.
   */
  settle(count?: number): Promise<void>;
  /** Calls every method of the transport, as a user might after its end. */
  poke(next: KindProtocol): void;
}

/** A clean end of a transport. */
export interface End {
  /** What ends it, in step names: `"close()"`, `"the peer's EOF"`. */
  name: string;
  /** Ends it. */
  run(opened: Opened): void | Promise<void>;
  /** The end calls `writeEof()`, after which `write()` throws. */
  halfCloses?: boolean;
}

/** One kind of transport, and how a test drives it. */
export interface Kind {
  /** The kind's name in step names. */
  name: string;
  /** The callback that brings what the peer sends. */
  dataCall: KindCall;
  /** The callback that tells the end of what the peer sends, if any. */
  eofCall: KindCall | undefined;
  /** The callbacks of a whole run, joined by spaces, match it. */
  order: RegExp;
  /** The transport reads, and pauses reading. */
  reads: boolean;
  /** The transport writes, with flow control. */
  writes: boolean;
  /** The transport has `abort()`. */
  aborts: boolean;
  /** `close()` writes what is buffered, for the peer to get. */
  flushes: boolean;
  /** What the transport writes comes back as data (a child running cat). */
  echoes: boolean;
  /** What the peer sends arrives as it was sent, one data callback each. */
  boundaries: boolean;
  /** What the peer sends in bulk: stream chunks, or datagrams. */
  bulk(seed: number): Uint8Array[];
  /** The clean ends the kind has. */
  ends: End[];
  /** Opens a transport for `protocol`; connectionMade comes a turn later. */
  open(protocol: KindProtocol, onError?: ErrorHandler): Promise<Opened>;
}

/** A method a kind does not have; a test that calls it is wrong. */
function missing(kind: string, what: string): () => never {
  return () => {
    throw new Error(`${kind} has no ${what}`);
  };
}

const CLOSE: End = {
  name: "close()",
  run: (opened) => opened.transport.close(),
};
const ABORT: End = { name: "abort()", run: (opened) => opened.abort() };
const PEER_EOF: End = {
  name: "the peer's EOF",
  run: (opened) => opened.sendEof(),
};

/** Calls what every transport that reads has, after its end: no-ops. */
function pokeReader(
  transport: ReadTransport & {
    abort(): void;
    setProtocol(protocol: KindProtocol): void;
  },
  next: KindProtocol,
): void {
  transport.pauseReading();
  transport.resumeReading();
  transport.close();
  transport.abort();
  transport.setProtocol(next);
  transport.close();
}

/**
 * Calls every method of a stream transport after its end: writes are
 * dropped (over the high mark, with no pauseWriting), the rest are no-ops.
 */
function pokeStream(transport: StreamTransport, next: KindProtocol): void {
  assert.doesNotThrow(() => transport.write(new Uint8Array(200 * 1024)));
  transport.writelines([pattern(10), pattern(20)]);
  transport.setWriteBufferLimits({ high: 0 });
  transport.writeEof();
  pokeReader(transport, next);
}

/** A stream transport over one end of a connected pair. */
function streamKind(name: string, connect: () => Promise<Peers>): Kind {
  return {
    name,
    dataCall: "dataReceived",
    eofCall: "eofReceived",
    order: STREAM_ORDER,
    reads: true,
    writes: true,
    aborts: true,
    flushes: true,
    echoes: false,
    boundaries: false,
    bulk: (seed) => split(pattern(256 * 1024, seed), seed),
    ends: [CLOSE, ABORT, PEER_EOF, {
      name: "writeEof() and the peer's EOF",
      halfCloses: true,
      async run(opened) {
        opened.writer.writeEof();
        assert.equal((await opened.afterEnd()).byteLength, 0, "EOF first");
        await opened.sendEof();
      },
    }],
    async open(protocol, onError) {
      const peers = await connect();
      const { server } = peers;
      const transport = new StreamTransport({ conn: peers.client }, protocol, {
        onError,
      });
      return {
        transport,
        reader: transport,
        writer: transport,
        abort: () => transport.abort(),
        send: (data) => writeAll(server, data),
        sendEof: () => server.closeWrite(),
        receive: (nbytes) => readExactly(server, nbytes),
        afterEnd: (options) =>
          options?.reset ? readUntilClosed(server) : readAll(server),
        settle: (count = 3) => roundTrips(transport, server, count),
        poke: (next) => pokeStream(transport, next),
        async [Symbol.asyncDispose]() {
          transport.abort();
          await protocol.waitFor("connectionLost");
          peers[Symbol.dispose]();
        },
      };
    },
  };
}

/** A datagram endpoint on `host`, and a plain socket as its peer. */
function datagramKind(host: string): Kind {
  const name = `udp over ${host}`;
  return {
    name,
    dataCall: "datagramReceived",
    eofCall: undefined,
    order:
      /^connectionMade( pauseWriting| resumeWriting| datagramReceived| errorReceived)* connectionLost$/,
    reads: true,
    writes: true,
    aborts: true,
    flushes: true,
    echoes: false,
    boundaries: true,
    bulk: (seed) =>
      [1, 100, 1400, 9000, 20_000, 3, 500].map((size, i) =>
        pattern(size, seed + i)
      ),
    ends: [CLOSE, ABORT],
    open(protocol, onError) {
      const conn = Deno.listenDatagram({
        transport: "udp",
        hostname: host,
        port: 0,
      });
      const transport = new DatagramEndpoint(conn, protocol, { onError });
      const bound = transport.getExtraInfo("sockname");
      assert.ok(bound, "the endpoint is bound");
      const peer = socket(host);
      return Promise.resolve({
        transport,
        reader: transport,
        writer: {
          write: (data) => transport.sendto(data, peer.addr),
          writeEof: missing(name, "writeEof()"),
          getWriteBufferSize: () => transport.getWriteBufferSize(),
          setWriteBufferLimits: (limits) =>
            transport.setWriteBufferLimits(limits),
        },
        abort: () => transport.abort(),
        async send(data) {
          await peer.conn.send(data, bound);
        },
        sendEof: missing(name, "EOF"),
        async receive(nbytes) {
          const datagrams: Uint8Array[] = [];
          let total = 0;
          // Bounded: the test sends no empty datagram.
          for (let i = 0; i < nbytes && total < nbytes; i++) {
            const { data } = await receive(peer);
            datagrams.push(data);
            total += data.byteLength;
          }
          return concat(datagrams);
        },
        async afterEnd() {
          // To where the endpoint was bound: nobody listens there now.
          await peer.conn.send(bytes("late"), bound);
          await ioTurns();
          return new Uint8Array(0);
        },
        settle: (count) => ioTurns(count),
        poke(next) {
          // Over a high mark of 0, but dropped: no pauseWriting.
          assert.doesNotThrow(() =>
            transport.sendto(new Uint8Array(1000), peer.addr)
          );
          transport.setWriteBufferLimits({ high: 0 });
          pokeReader(transport, next);
        },
        async [Symbol.asyncDispose]() {
          transport.abort();
          await protocol.waitFor("connectionLost");
          peer[Symbol.dispose]();
        },
      });
    },
  };
}

/** Every callback of a child's whole run, joined by spaces. */
const SUBPROCESS_ORDER =
  /^connectionMade( pauseWriting| resumeWriting| pipeDataReceived\([12]\)| pipeConnectionLost\([02]\)| processExited)*( pipeConnectionLost\(1\))?( pauseWriting| resumeWriting| pipeDataReceived\(2\)| pipeConnectionLost\([02]\)| processExited)* connectionLost$/;

/** Starts `cat` with its streams piped, or its stderr to /dev/null. */
function cat(stderr: "piped" | "null"): Deno.ChildProcess {
  return new Deno.Command("cat", { stdin: "piped", stdout: "piped", stderr })
    .spawn();
}

/**
 * A child (`cat`): the test writes to its stdin pipe, and what cat echoes
 * comes to `pipeDataReceived(1)`, where reading pauses on its stdout pipe.
 */
const SUBPROCESS: Kind = {
  name: "subprocess (cat)",
  dataCall: "pipeDataReceived(1)",
  eofCall: "pipeConnectionLost(1)",
  order: SUBPROCESS_ORDER,
  reads: true,
  writes: true,
  aborts: false,
  flushes: false,
  echoes: true,
  boundaries: false,
  bulk: (seed) => [pattern(1024 * 1024, seed)],
  ends: [CLOSE, {
    name: "the child's exit after EOF on its stdin",
    run: (opened) => opened.sendEof(),
  }],
  open(protocol, onError) {
    const name = SUBPROCESS.name;
    const stdio = { stdin: "piped", stdout: "piped", stderr: "piped" } as const;
    const transport = new ChildProcessTransport(cat("piped"), protocol, stdio, {
      onError,
    });
    const stdin = transport.getPipeTransport(0);
    const stdout = transport.getPipeTransport(1);
    assert.ok(stdin && stdout, "stdin and stdout are piped");
    // What went to cat, so what it echoes in all.
    let written = 0;
    const writer: Writer = {
      write(data) {
        written += data.byteLength;
        return stdin.write(data);
      },
      writeEof: () => stdin.writeEof(),
      getWriteBufferSize: () => stdin.getWriteBufferSize(),
      setWriteBufferLimits: (limits) => stdin.setWriteBufferLimits(limits),
    };
    return Promise.resolve({
      transport,
      reader: stdout,
      writer,
      abort: missing(name, "abort()"),
      send(data) {
        writer.write(data);
        return Promise.resolve();
      },
      sendEof() {
        stdin.writeEof();
        return Promise.resolve();
      },
      async receive(nbytes) {
        await protocol.waitForBytes(written);
        return protocol.received().subarray(written - nbytes, written);
      },
      async afterEnd() {
        await quietPeriod();
        return new Uint8Array(0);
      },
      settle: () => quietPeriod(),
      poke(next) {
        transport.close();
        transport.kill();
        transport.terminate();
        transport.sendSignal("SIGUSR1");
        stdout.pauseReading();
        stdout.resumeReading();
        stdin.setWriteBufferLimits({ high: 0 });
        stdin.close();
        transport.setProtocol(next);
        transport.close();
      },
      async [Symbol.asyncDispose]() {
        transport.close();
        await protocol.waitFor("connectionLost");
      },
    });
  },
};

/**
 * A stream transport that reads a child's stdout: the test writes to the
 * child (`cat`) and closes its stdin for EOF.
 */
const STDOUT_PIPE: Kind = {
  name: "a child's stdout pipe",
  dataCall: "dataReceived",
  eofCall: "eofReceived",
  order: STREAM_ORDER,
  reads: true,
  writes: false,
  aborts: true,
  flushes: false,
  echoes: false,
  boundaries: false,
  bulk: (seed) => [pattern(1024 * 1024, seed)],
  ends: [CLOSE, ABORT, PEER_EOF],
  open(protocol, onError) {
    const name = STDOUT_PIPE.name;
    const child = cat("null");
    const input = child.stdin.getWriter();
    const transport = new StreamTransport(
      { source: new ReadableSource(child.stdout) },
      protocol,
      { onError },
    );
    let inputClosed = false;
    const closeInput = async () => {
      if (inputClosed) return;
      inputClosed = true;
      await input.close();
    };
    return Promise.resolve({
      transport,
      reader: transport,
      get writer(): Writer {
        throw new Error(`${name} does not write`);
      },
      abort: () => transport.abort(),
      send: (data) => input.write(data),
      sendEof: closeInput,
      receive: missing(name, "writes to receive"),
      async afterEnd() {
        await quietPeriod();
        return new Uint8Array(0);
      },
      settle: () => quietPeriod(),
      poke(next) {
        assert.throws(() => transport.write(new Uint8Array(1)), TypeError);
        pokeReader(transport, next);
      },
      async [Symbol.asyncDispose]() {
        transport.abort();
        await protocol.waitFor("connectionLost");
        // cat ends at EOF on its stdin, or when it writes to the closed pipe.
        await closeInput().catch(() => {});
        await child.status;
      },
    });
  },
};

/**
 * A stream transport that writes to a child's stdin: the child (`cat`)
 * echoes it on a stdout the test reads.
 */
const STDIN_PIPE: Kind = {
  name: "a child's stdin pipe",
  dataCall: "dataReceived",
  eofCall: undefined,
  order: STREAM_ORDER,
  reads: false,
  writes: true,
  aborts: true,
  flushes: true,
  echoes: false,
  boundaries: false,
  bulk: (seed) => [pattern(1024 * 1024, seed)],
  ends: [CLOSE, ABORT, {
    name: "writeEof()",
    halfCloses: true,
    run: (opened) => opened.writer.writeEof(),
  }],
  open(protocol, onError) {
    const name = STDIN_PIPE.name;
    const child = cat("null");
    const output = new ReadableSource(child.stdout);
    const transport = new StreamTransport(
      { sink: new WritableSink(child.stdin) },
      protocol,
      { onError },
    );
    return Promise.resolve({
      transport,
      get reader(): ReadTransport {
        throw new Error(`${name} does not read`);
      },
      writer: transport,
      abort: () => transport.abort(),
      send: missing(name, "peer that sends"),
      sendEof: missing(name, "peer that sends"),
      receive: (nbytes) => readExactly(output, nbytes),
      // cat's stdout ends once its stdin, this transport, has ended.
      afterEnd: () => readAll(output),
      settle: () => quietPeriod(),
      poke: (next) => pokeStream(transport, next),
      async [Symbol.asyncDispose]() {
        transport.abort();
        await protocol.waitFor("connectionLost");
        output.close();
        await child.status;
      },
    });
  },
};

/** Every kind of transport, for tests of what they all do. */
export const KINDS: readonly Kind[] = [
  streamKind("tcp", connectLoopback),
  streamKind("unix", connectUnixLoopback),
  streamKind("tls", connectTlsLoopback),
  datagramKind("127.0.0.1"),
  datagramKind("::1"),
  SUBPROCESS,
  STDOUT_PIPE,
  STDIN_PIPE,
];

/** Checks the order of every callback of a whole run of `kind`. */
export function assertOrder(kind: Kind, protocol: KindProtocol): void {
  assert.match(protocol.calls.join(" "), kind.order);
}
