import assert from "node:assert/strict";
import {
  formatAddress,
  listenAll,
  resolveListenHostnames,
  withAddress,
} from "../../transports/_address.ts";

/** Whether this machine can listen on ::1; checked once. */
const HAS_IPV6 = (() => {
  try {
    Deno.listen({ hostname: "::1", port: 0 }).close();
    return true;
  } catch {
    return false;
  }
})();

/** A name that getaddrinfo() rejects without asking a DNS server. */
const UNRESOLVABLE = "a..b";

/** Listens with Deno.listen() and keeps each listener in `opened`. */
function recordingListen(): {
  listen: (hostname: string, port: number) => Deno.TcpListener;
  calls: [string, number][];
  opened: Deno.TcpListener[];
} {
  const calls: [string, number][] = [];
  const opened: Deno.TcpListener[] = [];
  const listen = (hostname: string, port: number): Deno.TcpListener => {
    calls.push([hostname, port]);
    const listener = Deno.listen({ hostname, port });
    opened.push(listener);
    return listener;
  };
  return { listen, calls, opened };
}

/** Closes every listener at the end of the scope. */
function closingAll(listeners: readonly Deno.Listener[]): Disposable {
  return {
    [Symbol.dispose]() {
      for (const listener of listeners) listener.close();
    },
  };
}

/** Asserts that `listener` was closed: closing it again throws. */
function assertClosed(listener: Deno.Listener): void {
  assert.throws(() => listener.close(), Deno.errors.BadResource);
}

/** A port on 127.0.0.1 that nothing listens on (it was just closed). */
function closedPort(): number {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return listener.addr.port;
}

/** What `fn` throws; fails the test if it returns. */
function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  assert.fail("Expected a throw");
}

/** The stack frames of `error`, without the message lines above them. */
function frames(error: Error): string {
  const stack = error.stack ?? "";
  return stack.slice(stack.indexOf("\n    at "));
}

Deno.test("formatAddress() brackets IPv6 addresses only", () => {
  assert.equal(formatAddress("127.0.0.1", 80), "127.0.0.1:80");
  assert.equal(formatAddress("localhost", 0), "localhost:0");
  assert.equal(formatAddress("::1", 80), "[::1]:80");
  assert.equal(formatAddress("::", 8080), "[::]:8080");
  assert.equal(formatAddress("fe80::1%eth0", 80), "[fe80::1%eth0]:80");
  assert.equal(formatAddress("[::1]", 80), "[::1]:80");
});

Deno.test("withAddress() names the address of a refused Deno.connect() and keeps its class, name, code and cause", async () => {
  const port = closedPort();
  const error = await Deno.connect({ hostname: "127.0.0.1", port }).then(
    (conn) => {
      conn.close();
      assert.fail(`127.0.0.1:${port} accepted a connection`);
    },
    (error: unknown) => withAddress(error, `connect to 127.0.0.1:${port}`),
  );

  assert.ok(error instanceof Deno.errors.ConnectionRefused);
  assert.ok(error.cause instanceof Deno.errors.ConnectionRefused);
  const cause = error.cause;
  assert.equal(
    error.message,
    `Cannot connect to 127.0.0.1:${port}: ${cause.message}`,
  );
  assert.match(cause.message, /^Connection refused/);
  assert.equal(error.name, "ConnectionRefused");
  assert.equal(cause.name, "ConnectionRefused");
  assert.equal((error as { code?: string }).code, "ECONNREFUSED");
  assert.ok(error.stack?.startsWith(`ConnectionRefused: ${error.message}\n`));
  assert.equal(frames(error), frames(cause));
  assert.equal(String(error), `ConnectionRefused: ${error.message}`);
});

Deno.test("withAddress() names the address of a Deno.listen() on a port in use", () => {
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = taken.addr.port;
  const error = withAddress(
    thrownBy(() => Deno.listen({ hostname: "127.0.0.1", port })),
    `listen on ${formatAddress("127.0.0.1", port)}`,
  );

  assert.ok(error instanceof Deno.errors.AddrInUse);
  assert.ok(error.cause instanceof Deno.errors.AddrInUse);
  assert.equal(
    error.message,
    `Cannot listen on 127.0.0.1:${port}: ${error.cause.message}`,
  );
  assert.equal(error.name, "AddrInUse");
  assert.equal((error as { code?: string }).code, "EADDRINUSE");
});

Deno.test("withAddress() copies any error with its prototype and own fields", async (t) => {
  await t.step(
    "keeps a plain Error, as a failed lookup in Deno.connect() throws",
    () => {
      const lookup = new Error(
        "failed to lookup address information: Name or service not known",
      );
      const error = withAddress(lookup, "connect to no-such-host.invalid:80");
      assert.ok(error instanceof Error);
      assert.equal(Object.getPrototypeOf(error), Error.prototype);
      assert.equal(error.name, "Error");
      assert.equal(
        error.message,
        "Cannot connect to no-such-host.invalid:80: failed to lookup address information: Name or service not known",
      );
      assert.equal(error.cause, lookup);
      assert.ok(error.stack?.startsWith(`Error: ${error.message}\n`));
    },
  );

  await t.step("keeps the class of a built-in error such as URIError", () => {
    const invalid = new URIError("invalid host 'a..b'");
    const error = withAddress(invalid, "listen on a..b:0");
    assert.ok(error instanceof URIError);
    assert.equal(error.name, "URIError");
    assert.equal(error.message, "Cannot listen on a..b:0: invalid host 'a..b'");
  });

  await t.step("keeps every Deno.errors class", () => {
    for (const [name, ErrorClass] of Object.entries(Deno.errors)) {
      const original = new ErrorClass("why");
      const error = withAddress(original, "do it");
      assert.ok(error instanceof ErrorClass, name);
      assert.equal(error.name, name);
      assert.equal(error.message, "Cannot do it: why");
      assert.equal(error.cause, original);
    }
  });

  await t.step(
    "copies own fields such as code, and leaves the original alone",
    () => {
      const original = Object.assign(new Error("getaddrinfo ENOTFOUND x"), {
        code: "ENOTFOUND",
        hostname: "x",
      });
      const error = withAddress(original, "resolve x") as typeof original;
      assert.equal(error.code, "ENOTFOUND");
      assert.equal(error.hostname, "x");
      assert.equal(original.message, "getaddrinfo ENOTFOUND x");
      assert.equal(original.cause, undefined);
    },
  );

  await t.step("leaves out the colon when the message is empty", () => {
    const error = withAddress(new Deno.errors.BrokenPipe(), "write to x:1");
    assert.ok(error instanceof Deno.errors.BrokenPipe);
    assert.equal(error.message, "Cannot write to x:1");
  });
});

Deno.test("withAddress() returns non-errors and DOMExceptions unchanged", () => {
  const reason = { reason: "not an error" };
  assert.equal(withAddress(reason, "connect to x:1"), reason);
  assert.equal(withAddress("refused", "connect to x:1"), "refused");
  assert.equal(withAddress(undefined, "connect to x:1"), undefined);
  assert.equal(withAddress(null, "connect to x:1"), null);
  assert.equal(withAddress(42, "connect to x:1"), 42);
  const abort = new DOMException("The signal has been aborted", "AbortError");
  assert.equal(withAddress(abort, "connect to x:1"), abort);
});

Deno.test("resolveListenHostnames() returns an IP address alone, without brackets", async () => {
  assert.deepEqual(await resolveListenHostnames("127.0.0.1"), ["127.0.0.1"]);
  assert.deepEqual(await resolveListenHostnames("::1"), ["::1"]);
  assert.deepEqual(await resolveListenHostnames("[::1]"), ["::1"]);
  assert.deepEqual(await resolveListenHostnames("0.0.0.0"), ["0.0.0.0"]);
  assert.deepEqual(await resolveListenHostnames("::"), ["::"]);
  assert.deepEqual(await resolveListenHostnames("[::]"), ["::"]);
});

Deno.test("resolveListenHostnames() returns every address of localhost, IPv4 first, once each", async () => {
  const addresses = await resolveListenHostnames("localhost");

  assert.ok(addresses.includes("127.0.0.1"), addresses.join(", "));
  assert.equal(new Set(addresses).size, addresses.length);
  for (const address of addresses) {
    assert.ok(
      address.startsWith("127.") || address === "::1",
      `${address} is not a loopback address`,
    );
  }
  const firstIpv6 = addresses.findIndex((address) => address.includes(":"));
  if (firstIpv6 !== -1) {
    assert.ok(addresses.slice(firstIpv6).every((a) => a.includes(":")));
  }
});

Deno.test("resolveListenHostnames() rejects a name that does not resolve with the lookup error and the name", async () => {
  const error = await resolveListenHostnames(UNRESOLVABLE).then(
    (addresses) => assert.fail(`${UNRESOLVABLE} resolved to ${addresses}`),
    (error: unknown) => error,
  );

  assert.ok(error instanceof Error);
  assert.ok(error.cause instanceof Error);
  assert.equal(
    Object.getPrototypeOf(error),
    Object.getPrototypeOf(error.cause),
  );
  assert.equal(
    error.message,
    `Cannot resolve ${UNRESOLVABLE}: ${error.cause.message}`,
  );
  assert.equal((error as { code?: string }).code, "ENOTFOUND");
});

Deno.test("resolveListenHostnames() rejects an empty hostname with TypeError", async () => {
  await assert.rejects(resolveListenHostnames(""), {
    name: "TypeError",
    message: "Cannot resolve hostname: hostname is empty",
  });
});

Deno.test({
  name:
    "resolveListenHostnames() rejects with NotCapable without net access to the name",
  permissions: { net: false },
  async fn() {
    const error = await resolveListenHostnames("localhost").then(
      (addresses) => assert.fail(`localhost resolved to ${addresses}`),
      (error: unknown) => error,
    );
    assert.ok(error instanceof Deno.errors.NotCapable);
    assert.match(
      error.message,
      /^Cannot resolve localhost: Requires net access/,
    );
    assert.equal((error.cause as { code?: string }).code, "EPERM");
    assert.deepEqual(await resolveListenHostnames("127.0.0.1"), ["127.0.0.1"]);
  },
});

Deno.test({
  name:
    "listenAll() listens on 127.0.0.1 and ::1 on one free port, and both accept",
  ignore: !HAS_IPV6,
  async fn() {
    const { listen, calls } = recordingListen();
    const listeners = listenAll(["127.0.0.1", "::1"], 0, listen);
    using _listeners = closingAll(listeners);

    assert.equal(listeners.length, 2);
    const port = listeners[0]!.addr.port;
    assert.notEqual(port, 0);
    assert.deepEqual(calls, [["127.0.0.1", 0], ["::1", port]]);
    for (const [index, hostname] of ["127.0.0.1", "::1"].entries()) {
      const listener = listeners[index]!;
      assert.deepEqual({ ...listener.addr }, {
        transport: "tcp",
        hostname,
        port,
      });
      const accepted = listener.accept();
      using client = await Deno.connect({ hostname, port });
      using server = await accepted;
      assert.deepEqual(server.remoteAddr, client.localAddr);
    }
  },
});

Deno.test({
  name:
    "listenAll() starts over on a fresh port when a later address has the port in use",
  ignore: !HAS_IPV6,
  fn() {
    using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const calls: [string, number][] = [];
    const opened: Deno.TcpListener[] = [];
    const listeners = listenAll(["127.0.0.1", "::1"], 0, (hostname, port) => {
      calls.push([hostname, port]);
      // The first try at ::1 meets a port in use, as if another program had it.
      const listener = calls.length === 2
        ? Deno.listen({ hostname: "127.0.0.1", port: taken.addr.port })
        : Deno.listen({ hostname, port });
      opened.push(listener);
      return listener;
    });
    using _listeners = closingAll(listeners);

    const port = listeners[0]!.addr.port;
    assert.equal(calls.length, 4);
    assert.deepEqual(calls.slice(2), [["127.0.0.1", 0], ["::1", port]]);
    assert.equal(opened.length, 3);
    assertClosed(opened[0]!);
    assert.deepEqual(listeners, opened.slice(1));
  },
});

Deno.test("listenAll() gives up after 5 tries when the port is always in use, and closes every listener", () => {
  const { listen, calls, opened } = recordingListen();
  const error = thrownBy(() =>
    listenAll(["127.0.0.1", "127.0.0.1"], 0, listen)
  );

  assert.equal(calls.length, 10);
  assert.equal(opened.length, 5);
  for (const listener of opened) assertClosed(listener);
  const port = opened[4]!.addr.port;
  assert.deepEqual(calls.slice(8), [["127.0.0.1", 0], ["127.0.0.1", port]]);
  assert.ok(error instanceof Deno.errors.AddrInUse);
  assert.ok(error.cause instanceof Deno.errors.AddrInUse);
  assert.equal(
    error.message,
    `Cannot listen on 127.0.0.1:${port}: ${error.cause.message}`,
  );
});

Deno.test("listenAll() throws AddrInUse at once when a given port is in use", () => {
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = taken.addr.port;
  const { listen, calls } = recordingListen();

  const error = thrownBy(() => listenAll(["127.0.0.1"], port, listen));

  assert.deepEqual(calls, [["127.0.0.1", port]]);
  assert.ok(error instanceof Deno.errors.AddrInUse);
  assert.ok(error.cause instanceof Deno.errors.AddrInUse);
  assert.equal(
    error.message,
    `Cannot listen on 127.0.0.1:${port}: ${error.cause.message}`,
  );
});

Deno.test("listenAll() closes what it opened when a later address fails otherwise", () => {
  const { listen, calls, opened } = recordingListen();
  const error = thrownBy(() =>
    listenAll(["127.0.0.1", UNRESOLVABLE], 0, listen)
  );

  assert.equal(opened.length, 1);
  assertClosed(opened[0]!);
  const port = opened[0]!.addr.port;
  assert.deepEqual(calls, [["127.0.0.1", 0], [UNRESOLVABLE, port]]);
  assert.ok(error instanceof Error);
  assert.ok(error.cause instanceof Error);
  assert.equal(
    Object.getPrototypeOf(error),
    Object.getPrototypeOf(error.cause),
  );
  assert.equal(
    error.message,
    `Cannot listen on ${UNRESOLVABLE}:${port}: ${error.cause.message}`,
  );
});

Deno.test("listenAll() rejects an empty list of hostnames with TypeError", () => {
  assert.throws(() => listenAll([], 0, () => assert.fail("listen() called")), {
    name: "TypeError",
    message: "Cannot listen on port 0: no hostnames given",
  });
});
