import assert from "node:assert/strict";
import type { DatagramProtocol } from "../../protocols/datagram_protocol.ts";
import {
  createDatagramEndpoint,
  type CreateDatagramEndpointOptions,
} from "../../transports/create_datagram_endpoint.ts";
import { DatagramEndpoint } from "../../transports/_datagram_transport.ts";
import type { DatagramTransport } from "../../transports/transport.ts";
import {
  assertBytes,
  BaseRecorder,
  errorCollector,
  flowCalls,
  NOT_BYTES,
  pattern,
  within,
} from "../_test_utils.ts";

// Helpers.

/** The loopback addresses of both families. */
const HOSTS = ["127.0.0.1", "::1"] as const;
/** The largest UDP payload over IPv4. */
const MAX_DATAGRAM = 65_507;
/** The largest UDP payload at all: over IPv6. */
const MAX_UDP_PAYLOAD = 65_527;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Names of the callbacks {@linkcode RecordingDatagramProtocol} records. */
type CallbackName =
  | "connectionMade"
  | "datagramReceived"
  | "errorReceived"
  | "pauseWriting"
  | "resumeWriting"
  | "connectionLost";

/** One datagram as the protocol got it. */
interface Received {
  data: Uint8Array;
  addr: Deno.NetAddr;
}

/**
 * A `DatagramProtocol` that records each callback's name in `calls`, keeps
 * every datagram and error it gets, and can wait for a callback.
 */
class RecordingDatagramProtocol
  extends BaseRecorder<CallbackName, DatagramTransport>
  implements DatagramProtocol {
  datagrams: Received[] = [];
  errors: Error[] = [];

  /** Resolves once `name` has been called `count` times; fails at the deadline. */
  override waitFor(name: CallbackName, count = 1): Promise<void> {
    return within(
      super.waitFor(name, count),
      `${name} #${count} (calls: ${this.calls.join(" ")})`,
    );
  }

  datagramReceived(data: Uint8Array, addr: Deno.NetAddr): void {
    this.datagrams.push({ data, addr });
    this.record("datagramReceived");
  }
  errorReceived(exc: Error): void {
    this.errors.push(exc);
    this.record("errorReceived");
  }
  /** The datagrams received so far, decoded as text. */
  texts(): string[] {
    return this.datagrams.map(({ data }) => decoder.decode(data));
  }
}

/** An endpoint from `createDatagramEndpoint`; disposing aborts it. */
interface Endpoint<P extends RecordingDatagramProtocol>
  extends AsyncDisposable {
  transport: DatagramTransport;
  protocol: P;
  /** The bound address. */
  addr: Deno.NetAddr;
}

/** Opens an endpoint for `protocol`, by default on a loopback address. */
async function open<P extends RecordingDatagramProtocol>(
  protocol: P,
  options: CreateDatagramEndpointOptions,
): Promise<Endpoint<P>> {
  const [transport, made] = await createDatagramEndpoint(
    () => protocol,
    options,
  );
  assert.equal(made, protocol);
  const addr = transport.getExtraInfo("sockname");
  assert.ok(addr, "the endpoint is bound");
  return {
    transport,
    protocol,
    addr,
    async [Symbol.asyncDispose]() {
      transport.abort();
      await protocol.waitFor("connectionLost");
    },
  };
}

/** Options that bind to port 0 on `hostname`. */
function on(
  hostname: string,
  options: Omit<CreateDatagramEndpointOptions, "localAddr"> = {},
): CreateDatagramEndpointOptions {
  return { localAddr: { hostname, port: 0 }, ...options };
}

/** A plain UDP socket; `using` closes it. */
interface Socket extends Disposable {
  conn: Deno.DatagramConn;
  addr: Deno.NetAddr;
}

function socket(hostname: string, port = 0): Socket {
  const conn = Deno.listenDatagram({ transport: "udp", hostname, port });
  return {
    conn,
    addr: conn.addr as Deno.NetAddr,
    [Symbol.dispose]() {
      try {
        conn.close();
      } catch {
        // Closed already.
      }
    },
  };
}

/** Receives one datagram on a plain socket, within the deadline. */
async function receive(socket: Socket): Promise<Received> {
  const [data, addr] = await within(socket.conn.receive(), "a datagram");
  return { data, addr: addr as Deno.NetAddr };
}

/** `addr` as a plain object, for `deepEqual` (Deno's have no prototype). */
function plain(addr: Deno.NetAddr | undefined): Deno.NetAddr | undefined {
  if (addr === undefined) return undefined;
  return {
    transport: addr.transport,
    hostname: addr.hostname,
    port: addr.port,
  };
}

/** Checks that `addr` is where `socket` is bound. */
function assertFrom(addr: Deno.NetAddr, from: { addr: Deno.NetAddr }): void {
  assert.deepEqual(plain(addr), plain(from.addr));
}

/**
 * Gives the event loop a few turns of real I/O: a datagram round trip over
 * a pair of plain sockets. Datagrams already queued to an endpoint are by
 * then in its hands.
 */
async function ioTurns(count = 3): Promise<void> {
  using a = socket("127.0.0.1");
  using b = socket("127.0.0.1");
  for (let i = 0; i < count; i++) {
    await a.conn.send(new Uint8Array([i]), b.addr);
    await receive(b);
  }
}

// 1. Order of callbacks.

Deno.test("createDatagramEndpoint() resolves after connectionMade, the first callback", async (t) => {
  for (const host of HOSTS) {
    await t.step(`over ${host}`, async () => {
      const protocol = new RecordingDatagramProtocol();
      await using endpoint = await open(protocol, on(host));

      assert.deepEqual(protocol.calls, ["connectionMade"]);
      assert.equal(protocol.transport, endpoint.transport);
      assert.ok(endpoint.transport instanceof DatagramEndpoint);
      assert.equal(endpoint.transport.getProtocol(), protocol);
    });
  }
});

Deno.test("DatagramEndpoint calls connectionLost last, once, with undefined after close() or abort()", async (t) => {
  const ends: [string, (transport: DatagramTransport) => void][] = [
    ["close()", (transport) => transport.close()],
    ["abort()", (transport) => transport.abort()],
    ["close() then abort()", (transport) => {
      transport.close();
      transport.abort();
    }],
    ["abort() then close()", (transport) => {
      transport.abort();
      transport.close();
    }],
  ];
  for (const host of HOSTS) {
    for (const [name, end] of ends) {
      await t.step(`after ${name} over ${host}`, async () => {
        using peer = socket(host);
        const protocol = new RecordingDatagramProtocol();
        const { transport } = await open(protocol, on(host));
        transport.sendto(encoder.encode("before"), peer.addr);
        assert.equal(decoder.decode((await receive(peer)).data), "before");
        end(transport);
        end(transport);
        await protocol.waitFor("connectionLost");
        await ioTurns();

        assert.deepEqual(protocol.calls, ["connectionMade", "connectionLost"]);
        assert.equal(protocol.lostWith, undefined);
        assert.equal(transport.isClosing(), true);
      });
    }
  }
});

Deno.test("DatagramEndpoint calls no callback after connectionLost", async (t) => {
  for (const host of HOSTS) {
    await t.step(`over ${host}`, async () => {
      using peer = socket(host);
      const protocol = new RecordingDatagramProtocol();
      const { transport, addr } = await open(protocol, on(host));
      transport.close();
      await protocol.waitFor("connectionLost");
      const calls = [...protocol.calls];

      // Over the high mark, but dropped: no pauseWriting.
      assert.doesNotThrow(() =>
        transport.sendto(new Uint8Array(1000), peer.addr)
      );
      transport.setWriteBufferLimits({ high: 0 });
      transport.close();
      transport.abort();
      const next = new RecordingDatagramProtocol();
      transport.setProtocol(next);
      transport.close();
      // To the port it was bound to: nobody listens there any more.
      await peer.conn.send(encoder.encode("late"), addr);
      await ioTurns();

      assert.equal(transport.getWriteBufferSize(), 0);
      assert.deepEqual(protocol.calls, calls);
      assert.deepEqual(next.calls, []);
    });
  }
});

// 2. datagramReceived.

Deno.test("DatagramEndpoint.datagramReceived() gets each datagram whole, with its sender", async (t) => {
  const sizes = [0, 1, 1400, 9000, MAX_DATAGRAM];
  for (const host of HOSTS) {
    await t.step(
      `datagrams of ${sizes.join(", ")} bytes over ${host}`,
      async () => {
        await using receiver = await open(
          new RecordingDatagramProtocol(),
          on(host),
        );
        await using sender = await open(
          new RecordingDatagramProtocol(),
          on(host),
        );
        for (const [i, size] of sizes.entries()) {
          sender.transport.sendto(pattern(size, i + 1), receiver.addr);
        }
        await receiver.protocol.waitFor("datagramReceived", sizes.length);

        const { datagrams } = receiver.protocol;
        assert.deepEqual(
          datagrams.map(({ data }) => data.byteLength),
          sizes,
        );
        for (const [i, size] of sizes.entries()) {
          assertBytes(datagrams[i]!.data, pattern(size, i + 1), `#${i}`);
          assertFrom(datagrams[i]!.addr, sender);
        }
      },
    );

    await t.step(
      `the sender of each, from several sockets over ${host}`,
      async () => {
        await using receiver = await open(
          new RecordingDatagramProtocol(),
          on(host),
        );
        using a = socket(host);
        using b = socket(host);
        await a.conn.send(encoder.encode("a1"), receiver.addr);
        await b.conn.send(encoder.encode("b1"), receiver.addr);
        await a.conn.send(encoder.encode("a2"), receiver.addr);
        await receiver.protocol.waitFor("datagramReceived", 3);

        assert.deepEqual(receiver.protocol.texts(), ["a1", "b1", "a2"]);
        const [a1, b1, a2] = receiver.protocol.datagrams;
        assertFrom(a1!.addr, a);
        assertFrom(b1!.addr, b);
        assertFrom(a2!.addr, a);
      },
    );
  }

  await t.step(
    "a datagram of 65527 bytes, the IPv6 maximum, over ::1",
    async () => {
      await using receiver = await open(
        new RecordingDatagramProtocol(),
        on("::1"),
      );
      using sender = socket("::1");
      const data = pattern(65_527, 9);
      assert.equal(
        await sender.conn.send(data, receiver.addr),
        data.byteLength,
      );
      await receiver.protocol.waitFor("datagramReceived");

      // UDP over IPv6 carries up to 65527 bytes, 20 more than over IPv4.
      assertBytes(receiver.protocol.datagrams[0]!.data, data, "datagram");
    },
  );

  await t.step(
    "the protocol keeps what it gets: 200 datagrams checked at the end",
    async () => {
      await using receiver = await open(
        new RecordingDatagramProtocol(),
        on("127.0.0.1"),
      );
      using sender = socket("127.0.0.1");
      // Both sides of the 16 KiB line where small datagrams share a pool.
      const sizes = [0, 1, 100, 1400, 4096, 16384, 16385, 30000];
      const count = 200;
      // In rounds of one of each size, so that the socket buffer never fills.
      for (let i = 0; i < count; i++) {
        await sender.conn.send(
          pattern(sizes[i % sizes.length]!, i),
          receiver.addr,
        );
        if (i % sizes.length === sizes.length - 1) {
          await receiver.protocol.waitFor("datagramReceived", i + 1);
        }
      }
      await receiver.protocol.waitFor("datagramReceived", count);

      const { datagrams } = receiver.protocol;
      assert.equal(datagrams.length, count);
      for (const [i, { data, addr }] of datagrams.entries()) {
        assertBytes(
          data,
          pattern(sizes[i % sizes.length]!, i),
          `datagram ${i}`,
        );
        assertFrom(addr, sender);
      }
    },
  );
});

// 3. sendto().

Deno.test("DatagramEndpoint.sendto() sends to addr, or to remoteAddr without one", async (t) => {
  for (const host of HOSTS) {
    await t.step(
      `sendto(data, addr) to another endpoint over ${host}`,
      async () => {
        await using a = await open(new RecordingDatagramProtocol(), on(host));
        await using b = await open(new RecordingDatagramProtocol(), on(host));
        a.transport.sendto(encoder.encode("to b"), b.addr);
        b.transport.sendto(encoder.encode("to a"), a.addr);
        await a.protocol.waitFor("datagramReceived");
        await b.protocol.waitFor("datagramReceived");

        assert.deepEqual(b.protocol.texts(), ["to b"]);
        assertFrom(b.protocol.datagrams[0]!.addr, a);
        assert.deepEqual(a.protocol.texts(), ["to a"]);
        assertFrom(a.protocol.datagrams[0]!.addr, b);
      },
    );

    await t.step(`sendto(data) goes to remoteAddr over ${host}`, async () => {
      using peer = socket(host);
      await using client = await open(new RecordingDatagramProtocol(), {
        remoteAddr: { hostname: host, port: peer.addr.port },
      });
      client.transport.sendto(encoder.encode("default"));
      // Naming remoteAddr itself is allowed.
      client.transport.sendto(encoder.encode("named"), peer.addr);
      const first = await receive(peer);
      const second = await receive(peer);

      assert.equal(decoder.decode(first.data), "default");
      assert.equal(decoder.decode(second.data), "named");
      // Bound to all interfaces; sent over loopback.
      const from = { addr: { ...client.addr, hostname: host } };
      assertFrom(first.addr, from);
      assertFrom(second.addr, from);
    });

    await t.step(
      `sendto() to another address than remoteAddr throws TypeError over ${host}`,
      async () => {
        using peer = socket(host);
        await using other = await open(
          new RecordingDatagramProtocol(),
          on(host),
        );
        await using client = await open(new RecordingDatagramProtocol(), {
          localAddr: { hostname: host, port: 0 },
          remoteAddr: { hostname: host, port: peer.addr.port },
        });
        assert.throws(
          () => client.transport.sendto(encoder.encode("stray"), other.addr),
          TypeError,
        );
        assert.equal(client.transport.getWriteBufferSize(), 0);
        client.transport.sendto(encoder.encode("fine"));
        assert.equal(decoder.decode((await receive(peer)).data), "fine");
        await ioTurns();

        assert.deepEqual(other.protocol.datagrams, []);
      },
    );
  }

  await t.step(
    "sendto() without addr and without remoteAddr throws TypeError",
    async () => {
      await using endpoint = await open(
        new RecordingDatagramProtocol(),
        on("127.0.0.1"),
      );
      assert.throws(
        () => endpoint.transport.sendto(encoder.encode("nowhere")),
        TypeError,
      );
      assert.equal(endpoint.transport.getWriteBufferSize(), 0);
    },
  );
});

Deno.test("DatagramEndpoint.sendto() throws for bad data or a bad address, and queues nothing", async (t) => {
  await using endpoint = await open(
    new RecordingDatagramProtocol(),
    on("127.0.0.1"),
  );
  const { transport } = endpoint;
  const to = endpoint.addr;

  const values = NOT_BYTES;
  for (const [what, value] of values) {
    await t.step(`data as ${what} is a TypeError`, () => {
      assert.throws(
        () => transport.sendto(value as Uint8Array, to),
        TypeError,
      );
      assert.equal(transport.getWriteBufferSize(), 0);
    });
  }

  await t.step(
    `a datagram over ${MAX_UDP_PAYLOAD} bytes is a RangeError`,
    () => {
      assert.throws(
        () => transport.sendto(new Uint8Array(MAX_UDP_PAYLOAD + 1), to),
        RangeError,
      );
      assert.equal(transport.getWriteBufferSize(), 0);
    },
  );

  const addresses: [string, unknown, ErrorConstructor][] = [
    ["without a port", { hostname: "127.0.0.1" }, TypeError],
    ["without a hostname", { port: to.port }, TypeError],
    ["with port 70000", { hostname: "127.0.0.1", port: 70_000 }, RangeError],
    ["with port -1", { hostname: "127.0.0.1", port: -1 }, RangeError],
    ["with port 1.5", { hostname: "127.0.0.1", port: 1.5 }, TypeError],
    ["with port as a string", { hostname: "127.0.0.1", port: "9" }, TypeError],
    ["as a string", `127.0.0.1:${to.port}`, TypeError],
    ["as null", null, TypeError],
  ];
  for (const [what, addr, error] of addresses) {
    await t.step(`an address ${what} is a ${error.name}`, () => {
      assert.throws(
        () => transport.sendto(new Uint8Array(1), addr as Deno.NetAddr),
        error,
      );
      assert.equal(transport.getWriteBufferSize(), 0);
    });
  }

  await t.step("nothing was sent", async () => {
    await ioTurns();
    assert.deepEqual(endpoint.protocol.datagrams, []);
  });
});

// 4. remoteAddr.

Deno.test("DatagramEndpoint with remoteAddr delivers only datagrams from remoteAddr", async (t) => {
  for (const host of HOSTS) {
    await t.step(`a third socket is filtered out over ${host}`, async () => {
      using peer = socket(host);
      using stranger = socket(host);
      await using client = await open(new RecordingDatagramProtocol(), {
        localAddr: { hostname: host, port: 0 },
        remoteAddr: { hostname: host, port: peer.addr.port },
      });
      // The stranger's datagrams are queued first, so the peer's second
      // datagram comes after them.
      await stranger.conn.send(encoder.encode("stranger 1"), client.addr);
      await peer.conn.send(encoder.encode("peer 1"), client.addr);
      await stranger.conn.send(encoder.encode("stranger 2"), client.addr);
      await peer.conn.send(encoder.encode("peer 2"), client.addr);
      await client.protocol.waitFor("datagramReceived", 2);
      await ioTurns();

      assert.deepEqual(client.protocol.texts(), ["peer 1", "peer 2"]);
      for (const { addr } of client.protocol.datagrams) assertFrom(addr, peer);
    });
  }

  await t.step("another host with the same port is filtered out", async () => {
    using peer = socket("127.0.0.1");
    // 127.0.0.2 is loopback too on Linux.
    using stranger = socket("127.0.0.2", peer.addr.port);
    await using client = await open(new RecordingDatagramProtocol(), {
      localAddr: { hostname: "0.0.0.0", port: 0 },
      remoteAddr: { hostname: "127.0.0.1", port: peer.addr.port },
    });
    const to = { ...client.addr, hostname: "127.0.0.1" };
    await stranger.conn.send(encoder.encode("stranger"), to);
    await peer.conn.send(encoder.encode("peer"), to);
    await client.protocol.waitFor("datagramReceived");
    await ioTurns();

    assert.deepEqual(client.protocol.texts(), ["peer"]);
  });

  await t.step("remoteAddr given as an IPv6 address spelled out", async () => {
    using peer = socket("::1");
    await using client = await open(new RecordingDatagramProtocol(), {
      localAddr: { hostname: "::1", port: 0 },
      remoteAddr: { hostname: "0:0:0:0:0:0:0:1", port: peer.addr.port },
    });
    client.transport.sendto(encoder.encode("hello"));
    assert.equal(decoder.decode((await receive(peer)).data), "hello");
    await peer.conn.send(encoder.encode("back"), client.addr);
    await client.protocol.waitFor("datagramReceived");

    assert.deepEqual(client.protocol.texts(), ["back"]);
  });

  await t.step('remoteAddr given as "localhost"', async () => {
    using peer = socket("127.0.0.1");
    await using client = await open(new RecordingDatagramProtocol(), {
      remoteAddr: { hostname: "localhost", port: peer.addr.port },
    });
    client.transport.sendto(encoder.encode("hello"));
    const hello = await receive(peer);
    assert.equal(decoder.decode(hello.data), "hello");
    await peer.conn.send(encoder.encode("back"), hello.addr);
    await client.protocol.waitFor("datagramReceived");

    assert.deepEqual(client.protocol.texts(), ["back"]);
    assertFrom(client.protocol.datagrams[0]!.addr, peer);
    assert.equal(
      client.transport.getExtraInfo("peername")?.hostname,
      "127.0.0.1",
    );
  });
});

// 5. Send errors.

Deno.test("DatagramEndpoint passes send errors to errorReceived and goes on", async (t) => {
  // Each fails at send time on Linux, whatever listens on loopback.
  const failures: [string, string, Deno.NetAddr][] = [
    ["port 0", "127.0.0.1", {
      transport: "udp",
      hostname: "127.0.0.1",
      port: 0,
    }],
    ["port 0", "::1", { transport: "udp", hostname: "::1", port: 0 }],
    ["an IPv6 address from an IPv4 socket", "127.0.0.1", {
      transport: "udp",
      hostname: "::1",
      port: 9,
    }],
    ["an IPv4 address from an IPv6 socket", "::1", {
      transport: "udp",
      hostname: "127.0.0.1",
      port: 9,
    }],
  ];
  for (const [what, host, to] of failures) {
    await t.step(`sending to ${what} over ${host}`, async () => {
      using peer = socket(host);
      const { errors, onError } = errorCollector();
      await using endpoint = await open(
        new RecordingDatagramProtocol(),
        on(host, { onError }),
      );
      const { transport, protocol } = endpoint;
      transport.sendto(encoder.encode("doomed"), to);
      await protocol.waitFor("errorReceived");

      assert.equal(protocol.errors.length, 1);
      assert.ok(protocol.errors[0] instanceof Error);
      assert.equal(transport.isClosing(), false);
      assert.equal(transport.getWriteBufferSize(), 0);

      // Still sends and receives.
      transport.sendto(encoder.encode("after"), peer.addr);
      const after = await receive(peer);
      assert.equal(decoder.decode(after.data), "after");
      await peer.conn.send(encoder.encode("reply"), endpoint.addr);
      await protocol.waitFor("datagramReceived");
      assert.deepEqual(protocol.texts(), ["reply"]);
      assert.deepEqual(
        protocol.calls,
        ["connectionMade", "errorReceived", "datagramReceived"],
      );
      assert.deepEqual(errors, []);
    });
  }

  await t.step("without errorReceived, the error goes to onError", async () => {
    using peer = socket("127.0.0.1");
    const { errors, onError } = errorCollector();
    const recorder = new RecordingDatagramProtocol();
    // A protocol with no errorReceived at all.
    const protocol: DatagramProtocol = {
      connectionMade: (transport) => recorder.connectionMade(transport),
      datagramReceived: (data, addr) => recorder.datagramReceived(data, addr),
      connectionLost: (exc) => recorder.connectionLost(exc),
    };
    const [transport] = await createDatagramEndpoint(() => protocol, {
      localAddr: { hostname: "127.0.0.1", port: 0 },
      onError,
    });
    try {
      transport.sendto(encoder.encode("doomed"), {
        transport: "udp",
        hostname: "127.0.0.1",
        port: 0,
      });
      transport.sendto(encoder.encode("after"), peer.addr);
      const after = await receive(peer);
      assert.equal(decoder.decode(after.data), "after");

      assert.equal(errors.length, 1);
      assert.ok(errors[0]!.error instanceof Error);
      assert.match(errors[0]!.context.message, /errorReceived/);
      assert.equal(errors[0]!.context.transport, transport);
      assert.equal(errors[0]!.context.protocol, protocol);
      assert.equal(transport.isClosing(), false);

      await peer.conn.send(encoder.encode("reply"), after.addr);
      await recorder.waitFor("datagramReceived");
      assert.deepEqual(recorder.texts(), ["reply"]);
    } finally {
      transport.abort();
      await recorder.waitFor("connectionLost");
    }
  });
});

// 6. Protocol callbacks that throw.

/** Throws from datagramReceived. */
class ThrowingProtocol extends RecordingDatagramProtocol {
  readonly error = new Error("datagramReceived failed");
  override datagramReceived(data: Uint8Array, addr: Deno.NetAddr): void {
    super.datagramReceived(data, addr);
    throw this.error;
  }
}

Deno.test("DatagramEndpoint closes with the error a protocol callback throws", async (t) => {
  await t.step(
    "datagramReceived: onError, connectionLost(error), others go on",
    async () => {
      using sender = socket("127.0.0.1");
      const { errors, onError } = errorCollector();
      const thrower = new ThrowingProtocol();
      await using failing = await open(thrower, on("127.0.0.1", { onError }));
      await using other = await open(
        new RecordingDatagramProtocol(),
        on("127.0.0.1", { onError }),
      );
      await sender.conn.send(encoder.encode("one"), failing.addr);
      await sender.conn.send(encoder.encode("two"), failing.addr);
      await sender.conn.send(encoder.encode("fine"), other.addr);
      await thrower.waitFor("connectionLost");

      assert.deepEqual(
        thrower.calls,
        ["connectionMade", "datagramReceived", "connectionLost"],
      );
      assert.equal(thrower.lostWith, thrower.error);
      assert.equal(failing.transport.isClosing(), true);
      assert.equal(errors.length, 1);
      assert.equal(errors[0]!.error, thrower.error);
      assert.match(errors[0]!.context.message, /datagramReceived/);
      assert.equal(errors[0]!.context.transport, failing.transport);
      assert.equal(errors[0]!.context.protocol, thrower);

      // The other endpoint still receives and sends.
      await other.protocol.waitFor("datagramReceived");
      other.transport.sendto(encoder.encode("still here"), sender.addr);
      assert.equal(decoder.decode((await receive(sender)).data), "still here");
      await sender.conn.send(encoder.encode("again"), other.addr);
      await other.protocol.waitFor("datagramReceived", 2);
      assert.deepEqual(other.protocol.texts(), ["fine", "again"]);
      assert.deepEqual(
        other.protocol.calls,
        ["connectionMade", "datagramReceived", "datagramReceived"],
      );
      assert.equal(errors.length, 1);
      assert.deepEqual(
        thrower.calls,
        ["connectionMade", "datagramReceived", "connectionLost"],
      );
    },
  );

  await t.step("errorReceived: onError, connectionLost(error)", async () => {
    const { errors, onError } = errorCollector();
    const error = new Error("errorReceived failed");
    class FailingErrorReceived extends RecordingDatagramProtocol {
      override errorReceived(exc: Error): void {
        super.errorReceived(exc);
        throw error;
      }
    }
    const protocol = new FailingErrorReceived();
    await using endpoint = await open(protocol, on("127.0.0.1", { onError }));
    endpoint.transport.sendto(new Uint8Array(1), {
      transport: "udp",
      hostname: "127.0.0.1",
      port: 0,
    });
    await protocol.waitFor("connectionLost");

    assert.deepEqual(
      protocol.calls,
      ["connectionMade", "errorReceived", "connectionLost"],
    );
    assert.equal(protocol.lostWith, error);
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!.error, error);
    assert.match(errors[0]!.context.message, /errorReceived/);
  });

  await t.step(
    "connectionMade: createDatagramEndpoint() rejects and closes the socket",
    async () => {
      const { errors, onError } = errorCollector();
      const error = new Error("connectionMade failed");
      let bound: Deno.NetAddr | undefined;
      class FailingMade extends RecordingDatagramProtocol {
        override connectionMade(transport: DatagramTransport): void {
          super.connectionMade(transport);
          bound = transport.getExtraInfo("sockname");
          throw error;
        }
      }
      const protocol = new FailingMade();
      await assert.rejects(
        () =>
          createDatagramEndpoint(() => protocol, on("127.0.0.1", { onError })),
        (thrown) => thrown === error,
      );
      await protocol.waitFor("connectionLost");

      assert.deepEqual(protocol.calls, ["connectionMade", "connectionLost"]);
      assert.equal(protocol.lostWith, error);
      assert.equal(errors.length, 1);
      assert.equal(errors[0]!.error, error);
      assert.match(errors[0]!.context.message, /connectionMade/);
      // The port is free again: the socket was closed.
      assert.ok(bound !== undefined && bound.port !== 0);
      using again = socket("127.0.0.1", bound.port);
      assert.equal(again.addr.port, bound.port);
    },
  );
});

// 7. Flow control.

Deno.test("DatagramEndpoint.sendto() pauses the protocol above the high-water mark", async (t) => {
  await t.step(
    "pauses inside sendto(), once; resumes once the queue drained",
    async () => {
      using peer = socket("127.0.0.1");
      await using endpoint = await open(
        new RecordingDatagramProtocol(),
        on("127.0.0.1"),
      );
      const { transport, protocol } = endpoint;
      assert.deepEqual(transport.getWriteBufferLimits(), {
        high: 64 * 1024,
        low: 16 * 1024,
      });
      transport.setWriteBufferLimits({ high: 0 });
      assert.deepEqual(transport.getWriteBufferLimits(), { high: 0, low: 0 });

      for (let round = 1; round <= 3; round++) {
        transport.sendto(pattern(10, round), peer.addr);
        assert.equal(protocol.count("pauseWriting"), round, "inside sendto()");
        transport.sendto(pattern(20, round), peer.addr);
        assert.equal(protocol.count("pauseWriting"), round, "only once");
        assert.equal(
          transport.getWriteBufferSize(),
          30 + 2 * 8,
          "bytes + 8 each",
        );
        await protocol.waitFor("resumeWriting", round);

        assert.equal(transport.getWriteBufferSize(), 0);
        assertBytes((await receive(peer)).data, pattern(10, round), "first");
        assertBytes((await receive(peer)).data, pattern(20, round), "second");
      }
      assert.equal(
        flowCalls(protocol.calls),
        "pauseWriting resumeWriting ".repeat(3).trim(),
      );
    },
  );

  await t.step("setting limits re-checks the queue at once", async () => {
    using peer = socket("127.0.0.1");
    await using endpoint = await open(
      new RecordingDatagramProtocol(),
      on("127.0.0.1"),
    );
    const { transport, protocol } = endpoint;
    transport.sendto(new Uint8Array(100), peer.addr);
    transport.sendto(new Uint8Array(50), peer.addr);
    assert.equal(transport.getWriteBufferSize(), 150 + 2 * 8);
    assert.equal(protocol.count("pauseWriting"), 0);
    transport.setWriteBufferLimits({ high: 120, low: 10 });
    assert.equal(protocol.count("pauseWriting"), 1);
    await protocol.waitFor("resumeWriting");
    await receive(peer);
    await receive(peer);

    assert.equal(flowCalls(protocol.calls), "pauseWriting resumeWriting");
    assert.equal(transport.getWriteBufferSize(), 0);
  });

  await t.step(
    "close() while paused: resumeWriting, then connectionLost",
    async () => {
      using peer = socket("127.0.0.1");
      const protocol = new RecordingDatagramProtocol();
      const { transport } = await open(protocol, on("127.0.0.1"));
      transport.setWriteBufferLimits({ high: 0 });
      transport.sendto(pattern(10), peer.addr);
      transport.close();
      await protocol.waitFor("connectionLost");
      assertBytes((await receive(peer)).data, pattern(10), "datagram");

      assert.deepEqual(protocol.calls, [
        "connectionMade",
        "pauseWriting",
        "resumeWriting",
        "connectionLost",
      ]);
    },
  );

  await t.step("limits are checked", async () => {
    await using endpoint = await open(
      new RecordingDatagramProtocol(),
      on("127.0.0.1"),
    );
    const { transport } = endpoint;
    assert.throws(
      () => transport.setWriteBufferLimits({ high: 1, low: 2 }),
      RangeError,
    );
    assert.throws(
      () => transport.setWriteBufferLimits({ low: -1 }),
      RangeError,
    );
    transport.setWriteBufferLimits({ low: 100 });
    assert.deepEqual(transport.getWriteBufferLimits(), { high: 400, low: 100 });
    transport.setWriteBufferLimits({ high: 400 });
    assert.deepEqual(transport.getWriteBufferLimits(), { high: 400, low: 100 });
  });
});

// 8. close() and abort().

/** A 4-byte datagram that carries `index`. */
function numbered(index: number): Uint8Array {
  const data = new Uint8Array(4);
  new DataView(data.buffer).setUint32(0, index);
  return data;
}

function numberOf(data: Uint8Array): number {
  return new DataView(data.buffer, data.byteOffset, data.byteLength)
    .getUint32(0);
}

Deno.test("DatagramEndpoint.close() sends every queued datagram, then closes", async (t) => {
  await t.step("200 queued datagrams all arrive, in order", async () => {
    using marker = socket("127.0.0.1");
    await using receiver = await open(
      new RecordingDatagramProtocol(),
      on("127.0.0.1"),
    );
    const protocol = new RecordingDatagramProtocol();
    const { transport, addr } = await open(protocol, on("127.0.0.1"));
    const count = 200;
    for (let i = 0; i < count; i++) {
      transport.sendto(numbered(i), receiver.addr);
    }
    assert.equal(transport.getWriteBufferSize(), (4 + 8) * count);
    transport.close();
    assert.equal(transport.isClosing(), true);
    // Dropped without a throw.
    transport.sendto(encoder.encode("after close"), receiver.addr);
    await protocol.waitFor("connectionLost");
    assert.equal(protocol.lostWith, undefined);
    assert.equal(transport.getWriteBufferSize(), 0);

    // Everything the endpoint sent was queued to the receiver before the
    // marker.
    await marker.conn.send(encoder.encode("end"), receiver.addr);
    await receiver.protocol.waitFor("datagramReceived", count + 1);
    const { datagrams } = receiver.protocol;
    assert.equal(datagrams.length, count + 1);
    for (let i = 0; i < count; i++) {
      assert.equal(numberOf(datagrams[i]!.data), i);
      assertFrom(datagrams[i]!.addr, { addr });
    }
    assert.equal(decoder.decode(datagrams[count]!.data), "end");
    assertFrom(datagrams[count]!.addr, marker);
  });

  await t.step("abort() drops the queue", async () => {
    using marker = socket("127.0.0.1");
    await using receiver = await open(
      new RecordingDatagramProtocol(),
      on("127.0.0.1"),
    );
    const protocol = new RecordingDatagramProtocol();
    const { transport } = await open(protocol, on("127.0.0.1"));
    for (let i = 0; i < 50; i++) transport.sendto(numbered(i), receiver.addr);
    transport.abort();
    assert.equal(transport.isClosing(), true);
    assert.equal(transport.getWriteBufferSize(), 0);
    transport.sendto(encoder.encode("after abort"), receiver.addr);
    await protocol.waitFor("connectionLost");
    assert.equal(protocol.lostWith, undefined);

    await marker.conn.send(encoder.encode("end"), receiver.addr);
    await receiver.protocol.waitFor("datagramReceived");
    assert.deepEqual(receiver.protocol.texts(), ["end"]);
  });

  await t.step("close() stops receiving", async () => {
    using sender = socket("127.0.0.1");
    const protocol = new RecordingDatagramProtocol();
    const { transport, addr } = await open(protocol, on("127.0.0.1"));
    transport.close();
    await sender.conn.send(encoder.encode("too late"), addr);
    await protocol.waitFor("connectionLost");
    await ioTurns();

    assert.deepEqual(protocol.calls, ["connectionMade", "connectionLost"]);
  });
});

// 9. getExtraInfo().

Deno.test("DatagramEndpoint.getExtraInfo() gives sockname, peername and conn", async (t) => {
  for (const host of HOSTS) {
    await t.step(`over ${host}`, async () => {
      using peer = socket(host);
      await using bound = await open(new RecordingDatagramProtocol(), on(host));
      await using connected = await open(new RecordingDatagramProtocol(), {
        remoteAddr: { hostname: host, port: peer.addr.port },
      });

      const sockname = bound.transport.getExtraInfo("sockname");
      assert.ok(sockname, "sockname");
      assert.equal(sockname.transport, "udp");
      assert.equal(sockname.hostname, host);
      assert.notEqual(sockname.port, 0);
      assert.equal(bound.transport.getExtraInfo("peername"), undefined);
      assert.deepEqual(
        plain(connected.transport.getExtraInfo("peername")),
        plain(peer.addr),
      );
      assert.notEqual(
        connected.transport.getExtraInfo("sockname")?.port,
        0,
      );

      const conn = bound.transport.getExtraInfo("conn");
      assert.ok(conn, "conn");
      assert.equal(typeof conn.receive, "function");
      assert.deepEqual(plain(conn.addr as Deno.NetAddr), plain(sockname));

      assert.equal(bound.transport.getExtraInfo("socket"), undefined);
      assert.equal(bound.transport.getExtraInfo("socket", "none"), "none");
    });
  }
});

// 10. Options.

Deno.test("createDatagramEndpoint() checks its options", async (t) => {
  const factory = () => new RecordingDatagramProtocol();

  await t.step("without localAddr and remoteAddr is a TypeError", async () => {
    await assert.rejects(() => createDatagramEndpoint(factory, {}), TypeError);
  });

  await t.step(
    "broadcast: false is NotSupported; true is Deno's own",
    async () => {
      await assert.rejects(
        () =>
          createDatagramEndpoint(
            factory,
            on("127.0.0.1", { broadcast: false }),
          ),
        Deno.errors.NotSupported,
      );
      const [transport, protocol] = await createDatagramEndpoint(
        factory,
        on("127.0.0.1", { broadcast: true }),
      );
      transport.abort();
      await protocol.waitFor("connectionLost");
    },
  );

  await t.step("a factory that is not a function is a TypeError", async () => {
    await assert.rejects(
      () =>
        createDatagramEndpoint(
          "factory" as unknown as () => RecordingDatagramProtocol,
          on("127.0.0.1"),
        ),
      TypeError,
    );
  });

  await t.step("a factory that throws: rejects with its error", async () => {
    const error = new Error("factory failed");
    await assert.rejects(
      () =>
        createDatagramEndpoint(() => {
          throw error;
        }, on("127.0.0.1")),
      (thrown) => thrown === error,
    );
  });

  await t.step(
    "a factory that makes no datagram protocol is a TypeError",
    async () => {
      await assert.rejects(
        () =>
          createDatagramEndpoint(
            () => ({ dataReceived() {} }) as unknown as DatagramProtocol,
            on("127.0.0.1"),
          ),
        TypeError,
      );
    },
  );

  const addresses: [string, CreateDatagramEndpointOptions, ErrorConstructor][] =
    [
      ["localAddr with port 70000", {
        localAddr: { hostname: "127.0.0.1", port: 70_000 },
      }, RangeError],
      ["localAddr without a port", {
        localAddr: { hostname: "127.0.0.1" } as Deno.NetAddr,
      }, TypeError],
      ["remoteAddr without a hostname", {
        remoteAddr: { port: 9 } as Deno.NetAddr,
      }, TypeError],
      ["remoteAddr as a string", {
        remoteAddr: "127.0.0.1:9" as unknown as Deno.NetAddr,
      }, TypeError],
    ];
  for (const [what, options, error] of addresses) {
    await t.step(`${what} is a ${error.name}`, async () => {
      await assert.rejects(
        () => createDatagramEndpoint(factory, options),
        error,
      );
    });
  }
});

Deno.test("createDatagramEndpoint() with reuseAddress binds a port in use", async (t) => {
  await t.step("without it the port is in use", async () => {
    await using first = await open(
      new RecordingDatagramProtocol(),
      on("127.0.0.1", { reuseAddress: true }),
    );
    const same = { hostname: "127.0.0.1", port: first.addr.port };
    await assert.rejects(
      () =>
        createDatagramEndpoint(() => new RecordingDatagramProtocol(), {
          localAddr: same,
        }),
      Deno.errors.AddrInUse,
    );
    await assert.rejects(
      () =>
        createDatagramEndpoint(() => new RecordingDatagramProtocol(), {
          localAddr: same,
          reuseAddress: false,
        }),
      Deno.errors.AddrInUse,
    );
  });

  await t.step(
    "with it on both, the last one bound receives (Linux)",
    async () => {
      using sender = socket("127.0.0.1");
      await using first = await open(
        new RecordingDatagramProtocol(),
        on("127.0.0.1", { reuseAddress: true }),
      );
      const second = await open(new RecordingDatagramProtocol(), {
        localAddr: { hostname: "127.0.0.1", port: first.addr.port },
        reuseAddress: true,
      });
      try {
        assert.equal(second.addr.port, first.addr.port);
        await sender.conn.send(encoder.encode("to the port"), first.addr);
        await second.protocol.waitFor("datagramReceived");
        assert.deepEqual(second.protocol.texts(), ["to the port"]);
      } finally {
        await second[Symbol.asyncDispose]();
      }
      // Once the second is closed, the first gets what comes to the port.
      await sender.conn.send(encoder.encode("again"), first.addr);
      await first.protocol.waitFor("datagramReceived");
      assert.deepEqual(first.protocol.texts(), ["again"]);
    },
  );
});

// 11. Without --unstable-net.

Deno.test("createDatagramEndpoint() without --unstable-net throws NotSupported saying so", async () => {
  const mod = new URL("../../mod.ts", import.meta.url).href;
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(
      script,
      `import { createDatagramEndpoint } from ${JSON.stringify(mod)};
try {
  await createDatagramEndpoint(() => ({ datagramReceived() {} }), {
    localAddr: { hostname: "127.0.0.1", port: 0 },
  });
  console.log(JSON.stringify({ name: "none", message: "" }));
} catch (error) {
  console.log(JSON.stringify({ name: error.name, message: error.message }));
}
`,
    );
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-config", "--allow-net", script],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(code, 0, decoder.decode(stderr));
    const { name, message } = JSON.parse(decoder.decode(stdout));

    assert.equal(name, "NotSupported");
    assert.match(message, /--unstable-net/);
  } finally {
    await Deno.remove(script);
  }
});

// 12. setProtocol().

Deno.test("DatagramEndpoint.setProtocol() switches the protocol for the next datagrams", async (t) => {
  await t.step(
    "the next datagrams and connectionLost go to the new one",
    async () => {
      using sender = socket("127.0.0.1");
      const first = new RecordingDatagramProtocol();
      const { transport, addr } = await open(first, on("127.0.0.1"));
      const second = new RecordingDatagramProtocol();
      try {
        await sender.conn.send(encoder.encode("one"), addr);
        await first.waitFor("datagramReceived");
        transport.setProtocol(second);
        assert.equal(transport.getProtocol(), second);
        await sender.conn.send(encoder.encode("two"), addr);
        await sender.conn.send(encoder.encode("three"), addr);
        await second.waitFor("datagramReceived", 2);
      } finally {
        transport.close();
        await second.waitFor("connectionLost");
      }

      assert.deepEqual(first.texts(), ["one"]);
      assert.deepEqual(first.calls, ["connectionMade", "datagramReceived"]);
      assert.deepEqual(second.texts(), ["two", "three"]);
      assert.deepEqual(second.calls, [
        "datagramReceived",
        "datagramReceived",
        "connectionLost",
      ]);
    },
  );

  await t.step(
    "a protocol without datagramReceived is a TypeError",
    async () => {
      await using endpoint = await open(
        new RecordingDatagramProtocol(),
        on("127.0.0.1"),
      );
      for (
        const value of [{ dataReceived() {} }, {}, null, undefined, "protocol"]
      ) {
        assert.throws(
          () => endpoint.transport.setProtocol(value as DatagramProtocol),
          TypeError,
        );
      }
      assert.equal(endpoint.transport.getProtocol(), endpoint.protocol);
    },
  );
});

Deno.test("DatagramEndpoint.pauseReading() holds datagrams until resumeReading()", async (t) => {
  await t.step(
    "paused from outside: nothing arrives, then all in order",
    async () => {
      using peer = socket("127.0.0.1");
      await using endpoint = await open(
        new RecordingDatagramProtocol(),
        on("127.0.0.1"),
      );
      const { transport, protocol } = endpoint;
      assert.equal(transport.isReading(), true);
      transport.pauseReading();
      transport.pauseReading();
      assert.equal(transport.isReading(), false);
      for (const text of ["one", "two", "three"]) {
        await peer.conn.send(encoder.encode(text), endpoint.addr);
      }
      await ioTurns();
      assert.equal(protocol.count("datagramReceived"), 0);

      transport.resumeReading();
      transport.resumeReading();
      assert.equal(transport.isReading(), true);
      await protocol.waitFor("datagramReceived", 3);
      assert.deepEqual(protocol.texts(), ["one", "two", "three"]);
    },
  );

  await t.step("paused from datagramReceived: one at a time", async () => {
    using peer = socket("127.0.0.1");
    class Pausing extends RecordingDatagramProtocol {
      override datagramReceived(data: Uint8Array, addr: Deno.NetAddr): void {
        super.datagramReceived(data, addr);
        this.transport?.pauseReading();
      }
    }
    await using endpoint = await open(new Pausing(), on("127.0.0.1"));
    const { transport, protocol } = endpoint;
    const count = 5;
    for (let i = 0; i < count; i++) {
      await peer.conn.send(encoder.encode(`d${i}`), endpoint.addr);
    }
    for (let n = 1; n <= count; n++) {
      await protocol.waitFor("datagramReceived", n);
      await ioTurns(1);
      assert.equal(protocol.count("datagramReceived"), n, "one per resume");
      assert.equal(transport.isReading(), false);
      transport.resumeReading();
    }
    assert.deepEqual(
      protocol.texts(),
      Array.from({ length: count }, (_, i) => `d${i}`),
    );
  });

  await t.step("resumed and paused again in one task: still held", async () => {
    using peer = socket("127.0.0.1");
    await using endpoint = await open(
      new RecordingDatagramProtocol(),
      on("127.0.0.1"),
    );
    const { transport, protocol } = endpoint;
    transport.pauseReading();
    await peer.conn.send(encoder.encode("held"), endpoint.addr);
    await ioTurns();
    transport.resumeReading();
    transport.pauseReading();
    await ioTurns();
    assert.equal(protocol.count("datagramReceived"), 0);
    transport.resumeReading();
    await protocol.waitFor("datagramReceived");
    assert.deepEqual(protocol.texts(), ["held"]);
  });

  await t.step("close() while paused drops what is held", async () => {
    using peer = socket("127.0.0.1");
    const protocol = new RecordingDatagramProtocol();
    const { transport, addr } = await open(protocol, on("127.0.0.1"));
    transport.pauseReading();
    await peer.conn.send(encoder.encode("dropped"), addr);
    await ioTurns();
    transport.close();
    assert.equal(transport.isReading(), false);
    transport.resumeReading();
    await protocol.waitFor("connectionLost");
    assert.deepEqual(protocol.calls, ["connectionMade", "connectionLost"]);
  });
});
