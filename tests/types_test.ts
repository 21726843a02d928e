/**
 * A user's first programs, written as the docs show them: no casts, and
 * no annotation on a callback's parameters. Half of each test is that
 * `deno check` accepts them under the project's strict settings, with each
 * parameter the type of its protocol kind (never `any`); the other half is
 * that they run, over 127.0.0.1 on a free port, with a child process or
 * over Web streams.
 */
import assert from "node:assert/strict";
import {
  BaseProtocolBase,
  BufferedProtocolBase,
  connectReadPipe,
  connectWritePipe,
  createConnection,
  createDatagramEndpoint,
  createServer,
  createSubprocessExec,
  type CreateSubprocessExecOptions,
  type DatagramTransport,
  LineProtocol,
  type Process,
  ProtocolBase,
  type ReadTransport,
  type StreamReader,
  type StreamWriter,
  subprocessExec,
  SubprocessProtocolBase,
  type SubprocessTransport,
  type Transport,
  type WriteTransport,
} from "@aio/protocols";
import { readExactly } from "./_test_utils.ts";

const LOCAL = { hostname: "127.0.0.1", port: 0 };
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** `true` only if `A` and `B` are the same type; `any` is the same as nothing else. */
type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends
  (<T>() => T extends B ? 1 : 2) ? true : false;

/** Compiles only if `Check` is `true`: a type test that costs nothing at run time. */
function assertType<Check extends true>(): void {}

Deno.test("ProtocolBase subclasses use this.transport as a Transport", async () => {
  /** Echoes the first chunk back, then stops reading. */
  class EchoOnce extends ProtocolBase {
    lost = Promise.withResolvers<Error | undefined>();

    override dataReceived(data: Uint8Array): void {
      this.transport?.write(data);
      this.transport?.pauseReading();
    }
    override connectionLost(exc: Error | undefined): void {
      super.connectionLost(exc);
      this.lost.resolve(exc);
    }
  }
  assertType<Same<EchoOnce["transport"], Transport | undefined>>();

  const echoes: EchoOnce[] = [];
  await using server = await createServer(() => {
    const echo = new EchoOnce();
    echoes.push(echo);
    return echo;
  }, LOCAL);
  using conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addrs[0]!.port,
  });
  await conn.write(encoder.encode("ping"));
  assert.equal(decoder.decode(await readExactly(conn, 4)), "ping");

  const echo = echoes[0];
  assert.ok(echo, "the server made a protocol");
  assert.equal(echo.transport?.isReading(), false);
  echo.transport?.close();
  assert.equal(await echo.lost.promise, undefined);
});

Deno.test("createServer() and createConnection() give an object literal's connectionMade(t) a Transport", async () => {
  const served = Promise.withResolvers<string>();
  let heard = "";
  await using server = await createServer(() => ({
    connectionMade(t) {
      assertType<Same<typeof t, Transport>>();
      const transport: Transport = t;
      const peer: Deno.Addr | undefined = transport.getExtraInfo("peername");
      assert.equal(peer?.transport, "tcp");
      assert.equal(transport.canWriteEof(), true);
      transport.write(encoder.encode("hello"));
    },
    dataReceived(data) {
      heard += decoder.decode(data);
    },
    eofReceived() {
      served.resolve(heard);
    },
  }), LOCAL);
  const { port } = server.addrs[0]!;

  const lost = Promise.withResolvers<Error | undefined>();
  let greeting = "";
  const [transport] = await createConnection(() => ({
    connectionMade(t) {
      assertType<Same<typeof t, Transport>>();
      t.write(encoder.encode("ping"));
      t.writeEof();
    },
    dataReceived(data) {
      greeting += decoder.decode(data);
    },
    connectionLost(exc) {
      lost.resolve(exc);
    },
  }), { hostname: "127.0.0.1", port });

  const peer: Deno.Addr | undefined = transport.getExtraInfo("peername");
  assert.ok(peer?.transport === "tcp", `peername ${peer?.transport}`);
  assert.equal(peer.port, port);
  assert.equal(await served.promise, "ping");
  // The server closes after the client's EOF; the client then sees EOF.
  assert.equal(await lost.promise, undefined);
  assert.equal(greeting, "hello");
});

Deno.test("createDatagramEndpoint() gives an object literal's connectionMade(t) a DatagramTransport", async () => {
  let server: DatagramTransport | undefined;
  const serverLost = Promise.withResolvers<Error | undefined>();
  const [serverTransport] = await createDatagramEndpoint(() => ({
    connectionMade(t) {
      assertType<Same<typeof t, DatagramTransport>>();
      server = t;
    },
    datagramReceived(data, addr) {
      server?.sendto(data, addr);
    },
    connectionLost(exc) {
      serverLost.resolve(exc);
    },
  }), { localAddr: LOCAL });
  const sockname = serverTransport.getExtraInfo("sockname");
  assert.ok(sockname, "the endpoint is bound");

  const answer = Promise.withResolvers<string>();
  const lost = Promise.withResolvers<Error | undefined>();
  const [client] = await createDatagramEndpoint(() => ({
    connectionMade(t) {
      assertType<Same<typeof t, DatagramTransport>>();
      t.sendto(encoder.encode("ping"));
    },
    datagramReceived(data) {
      answer.resolve(decoder.decode(data));
    },
    connectionLost(exc) {
      lost.resolve(exc);
    },
  }), { remoteAddr: { hostname: "127.0.0.1", port: sockname.port } });

  const peer: Deno.NetAddr | undefined = client.getExtraInfo("peername");
  assert.equal(peer?.port, sockname.port);
  assert.equal(await answer.promise, "ping");
  // A hostname and a port are enough to send to, as in asyncio.
  const second = Promise.withResolvers<string>();
  const [other] = await createDatagramEndpoint(() => ({
    datagramReceived(data) {
      second.resolve(decoder.decode(data));
    },
  }), { localAddr: LOCAL });
  other.sendto(encoder.encode("pong"), {
    hostname: "127.0.0.1",
    port: sockname.port,
  });
  assert.equal(await second.promise, "pong");
  other.close();
  client.close();
  assert.equal(await lost.promise, undefined);
  serverTransport.close();
  assert.equal(await serverLost.promise, undefined);
});

Deno.test("subprocessExec() gives a subprocess protocol's connectionMade(t) a SubprocessTransport", async (t) => {
  await t.step("an object literal writes to the child's stdin", async () => {
    const lost = Promise.withResolvers<Error | undefined>();
    let out = "";
    const [transport] = await subprocessExec(() => ({
      connectionMade(t) {
        assertType<Same<typeof t, SubprocessTransport>>();
        const stdin = t.getPipeTransport(0);
        assertType<Same<typeof stdin, WriteTransport | undefined>>();
        const stdout = t.getPipeTransport(1);
        assertType<Same<typeof stdout, ReadTransport | undefined>>();
        t.getPipeTransport(0)?.write(encoder.encode("hi\n"));
        t.getPipeTransport(0)?.writeEof();
      },
      pipeDataReceived(fd, data) {
        if (fd === 1) out += decoder.decode(data);
      },
      connectionLost(exc) {
        lost.resolve(exc);
      },
    }), "cat");

    assert.equal(await lost.promise, undefined);
    assert.equal(out, "hi\n");
    assert.equal(transport.getReturncode(), 0);
    const pid: number | undefined = transport.getExtraInfo("pid");
    assert.equal(pid, transport.getPid());
  });

  await t.step(
    "a SubprocessProtocolBase subclass uses this.transport",
    async () => {
      class Cat extends SubprocessProtocolBase {
        out = "";
        lost = Promise.withResolvers<Error | undefined>();

        override connectionMade(transport: SubprocessTransport): void {
          super.connectionMade(transport);
          this.transport?.getPipeTransport(0)?.write(encoder.encode("hey\n"));
          this.transport?.getPipeTransport(0)?.close();
        }
        override pipeDataReceived(fd: 1 | 2, data: Uint8Array): void {
          if (fd === 1) this.out += decoder.decode(data);
        }
        override connectionLost(exc: Error | undefined): void {
          super.connectionLost(exc);
          this.lost.resolve(exc);
        }
      }
      assertType<Same<Cat["transport"], SubprocessTransport | undefined>>();

      const [, cat] = await subprocessExec(() => new Cat(), "cat");
      assert.equal(await cat.lost.promise, undefined);
      assert.equal(cat.out, "hey\n");
    },
  );
});

Deno.test("connectWritePipe() gives a protocol's connectionMade(t) a WriteTransport", async (t) => {
  /** A sink that keeps what it gets, and says when it is closed. */
  function collector() {
    const chunks: string[] = [];
    const closed = Promise.withResolvers<void>();
    const sink = new WritableStream<Uint8Array>({
      write(chunk) {
        chunks.push(decoder.decode(chunk));
      },
      close() {
        closed.resolve();
      },
    });
    return { chunks, closed: closed.promise, sink };
  }

  await t.step("an object literal writes from connectionMade", async () => {
    const { chunks, closed, sink } = collector();
    await connectWritePipe(() => ({
      connectionMade(t) {
        assertType<Same<typeof t, WriteTransport>>();
        t.write(encoder.encode("hello"));
        t.close();
      },
    }), sink);
    await closed;
    assert.deepEqual(chunks, ["hello"]);
  });

  await t.step(
    "a BaseProtocolBase<WriteTransport> subclass uses this.transport",
    async () => {
      class Greeter extends BaseProtocolBase<WriteTransport> {
        override connectionMade(transport: WriteTransport): void {
          super.connectionMade(transport);
          this.transport?.writelines([
            encoder.encode("hi"),
            encoder.encode("!"),
          ]);
          this.transport?.close();
        }
      }
      assertType<Same<Greeter["transport"], WriteTransport | undefined>>();
      const { chunks, closed, sink } = collector();
      await connectWritePipe(() => new Greeter(), sink);
      await closed;
      assert.equal(chunks.join(""), "hi!");
    },
  );
});

Deno.test("connectReadPipe() gives a protocol's connectionMade(t) a ReadTransport, with no write()", async (t) => {
  /** `true` if a `T` offers `write`. */
  type Writes<T> = "write" extends keyof T ? true : false;
  const source = () => ReadableStream.from([encoder.encode("ping")]);

  await t.step("an object literal with dataReceived", async () => {
    const lost = Promise.withResolvers<Error | undefined>();
    let heard = "";
    await connectReadPipe(() => ({
      connectionMade(t) {
        assertType<Same<typeof t, ReadTransport>>();
        assertType<Same<Writes<typeof t>, false>>();
        assert.equal(t.isReading(), true);
      },
      dataReceived(data) {
        heard += decoder.decode(data);
      },
      connectionLost(exc) {
        lost.resolve(exc);
      },
    }), source());
    assert.equal(await lost.promise, undefined);
    assert.equal(heard, "ping");
  });

  await t.step("an object literal with getBuffer", async () => {
    const lost = Promise.withResolvers<Error | undefined>();
    const buffer = new Uint8Array(16);
    let filled = 0;
    await connectReadPipe(() => ({
      connectionMade(t) {
        assertType<Same<typeof t, ReadTransport>>();
      },
      getBuffer: () => buffer.subarray(filled),
      bufferUpdated(nbytes) {
        filled += nbytes;
      },
      connectionLost(exc) {
        lost.resolve(exc);
      },
    }), source());
    assert.equal(await lost.promise, undefined);
    assert.equal(decoder.decode(buffer.subarray(0, filled)), "ping");
  });

  await t.step(
    "ProtocolBase<ReadTransport> and BufferedProtocolBase<ReadTransport> subclasses",
    async () => {
      class Reader extends ProtocolBase<ReadTransport> {
        heard = "";
        lost = Promise.withResolvers<Error | undefined>();
        override dataReceived(data: Uint8Array): void {
          this.heard += decoder.decode(data);
        }
        override connectionLost(exc: Error | undefined): void {
          super.connectionLost(exc);
          this.lost.resolve(exc);
        }
      }
      assertType<Same<Reader["transport"], ReadTransport | undefined>>();
      const [transport, reader] = await connectReadPipe(
        () => new Reader(),
        source(),
      );
      assertType<Same<typeof transport, ReadTransport>>();
      assert.equal(reader.transport, transport);
      assert.equal(await reader.lost.promise, undefined);
      assert.equal(reader.heard, "ping");

      class Buffered extends BufferedProtocolBase<ReadTransport> {
        filled = 0;
        lost = Promise.withResolvers<Error | undefined>();
        override bufferUpdated(nbytes: number): void {
          this.filled += nbytes;
        }
        override connectionLost(exc: Error | undefined): void {
          super.connectionLost(exc);
          this.lost.resolve(exc);
        }
      }
      assertType<Same<Buffered["transport"], ReadTransport | undefined>>();
      const [, buffered] = await connectReadPipe(
        () => new Buffered(16),
        source(),
      );
      assert.equal(await buffered.lost.promise, undefined);
      assert.equal(buffered.filled, 4);
    },
  );
});

Deno.test("An asyncio port's eofReceived() that returns nothing, and an object literal with fields of its own, type-check as a server's protocol", async () => {
  class ClosesOnEof extends ProtocolBase {
    closed = Promise.withResolvers<void>();
    override eofReceived() {
      this.transport?.close();
    }
    override connectionLost(exc: Error | undefined): void {
      super.connectionLost(exc);
      this.closed.resolve();
    }
  }
  const got = Promise.withResolvers<string>();
  await using server = await createServer(() => ({
    text: "",
    dataReceived(data) {
      this.text += new TextDecoder().decode(data);
    },
    eofReceived() {
      got.resolve(this.text);
    },
  }), LOCAL);
  const [transport, protocol] = await createConnection(
    () => new ClosesOnEof(),
    { port: server.addrs[0]!.port },
  );
  transport.write(encoder.encode("hi"));
  transport.writeEof();
  assert.equal(await got.promise, "hi");
  await protocol.closed.promise;
});

Deno.test('createSubprocessExec() types the streams asked for as "piped" as there: no check or cast before using them', async () => {
  const child = await createSubprocessExec("cat", [], {
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  });
  assertType<Same<typeof child.stdin, StreamWriter>>();
  assertType<Same<typeof child.stdout, StreamReader>>();
  assertType<Same<typeof child.stderr, undefined>>();
  child.stdin.write(encoder.encode("ping\n"));
  assert.equal(decoder.decode(await child.stdout.readline()), "ping\n");
  child.stdin.close();
  assert.equal(await child.wait(), 0);
  // Options whose streams are not known at compile time: maybe there.
  const options: CreateSubprocessExecOptions = { stdout: "piped" };
  const other = await createSubprocessExec("true", [], options);
  assertType<Same<typeof other.stdout, StreamReader | undefined>>();
  const process: Process = other;
  assert.equal(await process.wait(), 0);
});

Deno.test("A LineProtocol over a read pipe is typed with the read pipe's transport", async () => {
  const lines: string[] = [];
  const done = Promise.withResolvers<void>();
  class StdinLines extends LineProtocol<ReadTransport> {
    override lineReceived(line: Uint8Array): void {
      assertType<Same<typeof this.transport, ReadTransport | undefined>>();
      lines.push(decoder.decode(line));
      // Writing is a TypeError at run time, as the type says.
      assert.throws(() => this.sendLine("no"), TypeError);
    }
    override connectionLost(exc: Error | undefined): void {
      super.connectionLost(exc);
      done.resolve();
    }
  }
  await connectReadPipe(
    () => new StdinLines(),
    ReadableStream.from([encoder.encode("one\ntwo\n")]),
  );
  await done.promise;
  assert.deepEqual(lines, ["one", "two"]);
});
