import assert from "node:assert/strict";
import { createDatagramEndpoint, type DatagramProtocol } from "../../mod.ts";
import { within } from "../_test_utils.ts";

/** A datagram protocol that resolves each datagram received. */
function collector(): DatagramProtocol & {
  received: { data: Uint8Array; addr: Deno.NetAddr }[];
  next(): Promise<void>;
} {
  let wake = Promise.withResolvers<void>();
  const received: { data: Uint8Array; addr: Deno.NetAddr }[] = [];
  return {
    received,
    next: () => wake.promise,
    datagramReceived(data, addr) {
      received.push({ data, addr });
      wake.resolve();
      wake = Promise.withResolvers<void>();
    },
  };
}

Deno.test("createDatagramEndpoint() bound to :: with an IPv4 remoteAddr hears the replies (IPv4-mapped senders are that peer)", async () => {
  const echo = collector();
  const [server] = await createDatagramEndpoint(() => echo, {
    localAddr: { hostname: "127.0.0.1", port: 0 },
  });
  const client = collector();
  const [transport] = await createDatagramEndpoint(() => client, {
    localAddr: { hostname: "::", port: 0 },
    remoteAddr: {
      hostname: "127.0.0.1",
      port: server.getExtraInfo("sockname")!.port,
    },
  });
  try {
    transport.sendto(new Uint8Array([1, 2, 3]));
    await within(echo.next(), "the server's datagram");
    server.sendto(new Uint8Array([4, 5]), echo.received[0]!.addr);
    await within(client.next(), "the reply");
    assert.deepEqual([...client.received[0]!.data], [4, 5]);
  } finally {
    transport.close();
    server.close();
  }
});

Deno.test("DatagramTransport.sendto() copies the data: a reused scratch buffer sends each content once", async () => {
  const echo = collector();
  const [server] = await createDatagramEndpoint(() => echo, {
    localAddr: { hostname: "127.0.0.1", port: 0 },
  });
  const [transport] = await createDatagramEndpoint(() => collector(), {
    remoteAddr: {
      hostname: "127.0.0.1",
      port: server.getExtraInfo("sockname")!.port,
    },
  });
  try {
    const scratch = new Uint8Array(1);
    for (let i = 0; i < 5; i++) {
      scratch[0] = i;
      transport.sendto(scratch);
    }
    for (let i = 0; i < 1000 && echo.received.length < 5; i++) {
      await within(echo.next(), "the datagrams");
    }
    assert.deepEqual(echo.received.map(({ data }) => data[0]), [0, 1, 2, 3, 4]);
  } finally {
    transport.close();
    server.close();
  }
});
