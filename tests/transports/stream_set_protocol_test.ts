import assert from "node:assert/strict";
import { StreamTransport } from "../../transports/_stream_transport.ts";
import type { StreamProtocol } from "../../transports/transport.ts";
import {
  assertBytes,
  concat,
  pattern,
  RecordingBufferedProtocol,
  RecordingProtocol,
  writeAll,
} from "../_test_utils.ts";
import {
  byteCount,
  handOn,
  overLoopbacks,
  type Recording,
  roundTrips,
  send,
  waitForBytes,
} from "./_stream_utils.ts";

/** A `Protocol` that hands the transport to `next` in its `after`th chunk. */
class SwitchingProtocol extends RecordingProtocol {
  /** How many calls it had when it switched. */
  callsAtSwitch: number | undefined;
  constructor(public next: StreamProtocol, public after = 1) {
    super();
  }
  override dataReceived(data: Uint8Array): void {
    super.dataReceived(data);
    if (this.count("dataReceived") === this.after) {
      handOn(this.transport!, this.next);
      assert.equal(this.transport!.getProtocol(), this.next);
      this.callsAtSwitch = this.calls.length;
    }
  }
}

/** A `BufferedProtocol` that hands the transport on in its `after`th update. */
class SwitchingBufferedProtocol extends RecordingBufferedProtocol {
  /** How many calls it had when it switched. */
  callsAtSwitch: number | undefined;
  constructor(public next: StreamProtocol, size?: number, public after = 1) {
    super(size);
  }
  override bufferUpdated(nbytes: number): void {
    super.bufferUpdated(nbytes);
    if (this.count("bufferUpdated") === this.after) {
      handOn(this.transport!, this.next);
      assert.equal(this.transport!.getProtocol(), this.next);
      this.callsAtSwitch = this.calls.length;
    }
  }
}

// 10. setProtocol().

/** Checks a chain of protocols that took over one another. */
function assertHandOver(
  transport: StreamTransport,
  chain: Recording[],
  data: Uint8Array,
): void {
  const last = chain.at(-1)!;
  assert.equal(transport.getProtocol(), last);
  assertBytes(concat(chain.map((p) => p.received())), data);
  for (const protocol of chain.slice(1)) {
    assert.ok(byteCount(protocol) > 0, "a later protocol got data");
    assert.equal(protocol.count("connectionMade"), 0);
  }
  for (const protocol of chain.slice(0, -1)) {
    assert.equal(protocol.count("eofReceived"), 0);
    assert.equal(protocol.count("connectionLost"), 0);
    if (
      protocol instanceof SwitchingProtocol ||
      protocol instanceof SwitchingBufferedProtocol
    ) {
      assert.equal(
        protocol.calls.length,
        protocol.callsAtSwitch,
        `called after it switched: ${protocol.calls.slice(-3).join(" ")}`,
      );
    }
  }
  assert.equal(last.count("eofReceived"), 1);
  assert.equal(last.count("connectionLost"), 1);
  assert.equal(last.lostWith, undefined);
}

Deno.test("StreamTransport.setProtocol() switches protocols mid-stream without losing a byte", async (t) => {
  const inside: [string, () => Recording[]][] = [
    ["Protocol → Protocol from dataReceived", () => {
      const next = new RecordingProtocol();
      return [new SwitchingProtocol(next), next];
    }],
    ["Protocol → BufferedProtocol from dataReceived", () => {
      const next = new RecordingBufferedProtocol(1000);
      return [new SwitchingProtocol(next, 2), next];
    }],
    ["BufferedProtocol → Protocol from bufferUpdated", () => {
      const next = new RecordingProtocol();
      return [new SwitchingBufferedProtocol(next, 1000, 2), next];
    }],
    ["BufferedProtocol → BufferedProtocol from bufferUpdated", () => {
      const next = new RecordingBufferedProtocol(3000);
      return [new SwitchingBufferedProtocol(next, 1000), next];
    }],
    [
      "Protocol → 7-byte BufferedProtocol → Protocol, each from its callback",
      () => {
        const last = new RecordingProtocol();
        const middle = new SwitchingBufferedProtocol(last, 7, 3);
        return [new SwitchingProtocol(middle), middle, last];
      },
    ],
  ];
  for (const [name, make] of inside) {
    await overLoopbacks(t, name, async (peers) => {
      const chain = make();
      const transport = new StreamTransport({ conn: peers.client }, chain[0]!);
      const data = pattern(256 * 1024, 111);
      await send(peers.server, data, { seed: 112, eof: true });
      await chain.at(-1)!.waitFor("connectionLost");
      assertHandOver(transport, chain, data);
    });
  }

  const outside: [string, () => [Recording, Recording, ...Recording[]]][] = [
    ["Protocol → Protocol", () => [
      new RecordingProtocol(),
      new RecordingProtocol(),
    ]],
    ["Protocol → 7-byte BufferedProtocol", () => [
      new RecordingProtocol(),
      new RecordingBufferedProtocol(7),
    ]],
    ["BufferedProtocol → Protocol", () => [
      new RecordingBufferedProtocol(),
      new RecordingProtocol(),
    ]],
    ["BufferedProtocol → BufferedProtocol", () => [
      new RecordingBufferedProtocol(),
      new RecordingBufferedProtocol(500),
    ]],
    ["Protocol → 7-byte BufferedProtocol that switches to a Protocol", () => {
      const last = new RecordingProtocol();
      return [
        new RecordingProtocol(),
        new SwitchingBufferedProtocol(last, 7, 3),
        last,
      ];
    }],
  ];
  for (const [name, make] of outside) {
    await overLoopbacks(
      t,
      `${name} from outside while a read is in flight`,
      async (peers) => {
        const chain = make();
        const [first, second] = chain;
        const transport = new StreamTransport({ conn: peers.client }, first);
        const data = pattern(24 * 1024, 113);
        await writeAll(peers.server, data.subarray(0, 1000));
        await waitForBytes(first, 1000);
        if (first instanceof RecordingBufferedProtocol) {
          // The next read into the old protocol's buffer is under way.
          assert.equal(
            first.count("getBuffer"),
            first.count("bufferUpdated") + 1,
          );
        }
        const calls = first.calls.length;
        handOn(transport, second);
        assert.equal(transport.getProtocol(), second);

        // One write that the read in flight takes whole, then the rest.
        await writeAll(peers.server, data.subarray(1000, 5000));
        await send(peers.server, data.subarray(5000), { seed: 114, eof: true });
        await chain.at(-1)!.waitFor("connectionLost");
        assert.equal(first.calls.length, calls, "the old protocol was called");
        assertHandOver(transport, chain, data);
      },
    );
  }

  const held: [string, () => [Recording, Recording]][] = [
    ["BufferedProtocol → Protocol", () => [
      new RecordingBufferedProtocol(),
      new RecordingProtocol(),
    ]],
    ["Protocol → 7-byte BufferedProtocol", () => [
      new RecordingProtocol(),
      new RecordingBufferedProtocol(7),
    ]],
  ];
  for (const [name, make] of held) {
    await overLoopbacks(
      t,
      `${name} while reading is paused with a read held`,
      async (peers) => {
        const chain = make();
        const [first, second] = chain;
        const transport = new StreamTransport({ conn: peers.client }, first);
        await first.waitFor("connectionMade");
        transport.pauseReading();
        const data = pattern(16 * 1024, 115);
        await writeAll(peers.server, data.subarray(0, 1000));
        await roundTrips(transport, peers.server);
        assert.equal(byteCount(first), 0);
        handOn(transport, second);
        transport.resumeReading();

        await send(peers.server, data.subarray(1000), { seed: 116, eof: true });
        await second.waitFor("connectionLost");
        assert.deepEqual(
          first.calls.filter((call) => call !== "getBuffer"),
          ["connectionMade"],
        );
        assertHandOver(transport, chain, data);
      },
    );
  }
});
