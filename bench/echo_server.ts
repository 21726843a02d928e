/**
 * A standalone echo server, for load generators in another process or on
 * another machine to drive (`bench/load.ts`, which `bench/ratios.ts` and
 * `bench/multicore.ts` run against it, or any other).
 *
 * ```sh
 * deno task bench:echo-server --port 7000 --protocol buffered
 * deno task bench:echo-server --port 7001 --protocol plain
 * deno task bench:echo-server --port 7002 --protocol raw     # baseline
 * deno task bench:echo-server --port 7003 --protocol node    # node:net
 * deno task bench:echo-server --port 7004 --protocol plain --tls
 * ```
 *
 * `--protocol` is one of `buffered` (StreamTransport + BufferedProtocol,
 * the default), `plain` (StreamTransport + Protocol), `transient` (the same,
 * with `transientData`), `streams` (`startServer` with a `StreamReader` and
 * `StreamWriter`: `read(65536)`, `write()`, `drain()`), `raw` (a `Deno.Conn`
 * loop with 64 KiB reads), `raw256` (the same with 256 KiB reads),
 * `rawfresh` (`raw256` reading into a fresh buffer each time, as a protocol
 * that owns its chunks needs) or `node` (`node:net`). `--hostname` defaults
 * to 127.0.0.1 and `--port` to 0 (a free port, printed on start).
 * `--buffer-size BYTES` sets the read buffer of `buffered`, `raw`, `raw256`
 * and `rawfresh`. `--tls` serves TLS (not with `node`)
 * with the test certificate for `localhost` from `tests/testdata/`, or with
 * `--cert FILE` and `--key FILE`. SIGINT or SIGTERM stops the server.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  HOSTNAME,
  serve,
  type ServeOptions,
  serveStreams,
  type Variant,
} from "./_echo.ts";

const PROTOCOLS: Record<string, Variant | "streams"> = {
  buffered: "buffered",
  plain: "protocol",
  transient: "transient",
  streams: "streams",
  raw: "raw",
  raw256: "raw256",
  rawfresh: "raw256",
  node: "node",
};

const TESTDATA = new URL("../tests/testdata/", import.meta.url);

const { values } = parseArgs({
  args: Deno.args,
  options: {
    hostname: { type: "string", default: HOSTNAME },
    port: { type: "string", default: "0" },
    protocol: { type: "string", default: "buffered" },
    "buffer-size": { type: "string" },
    tls: { type: "boolean", default: false },
    cert: { type: "string" },
    key: { type: "string" },
  },
});

const variant = PROTOCOLS[values.protocol];
if (variant === undefined) {
  throw new TypeError(
    `Cannot start echo server: --protocol must be one of ${
      Object.keys(PROTOCOLS).join(", ")
    }, not "${values.protocol}"`,
  );
}
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  throw new RangeError(
    `Cannot start echo server: --port (${values.port}) must be between 0 and 65535`,
  );
}
const options: ServeOptions = {
  hostname: values.hostname,
  port,
  freshBuffers: values.protocol === "rawfresh",
};
if (values["buffer-size"] !== undefined) {
  const size = Number(values["buffer-size"]);
  if (!Number.isInteger(size) || size <= 0) {
    throw new RangeError(
      `Cannot start echo server: --buffer-size (${
        values["buffer-size"]
      }) must be a positive integer`,
    );
  }
  options.bufferSize = size;
}
if (values.tls) {
  options.tls = {
    cert: await Deno.readTextFile(
      values.cert ?? new URL("server.pem", TESTDATA),
    ),
    key: await Deno.readTextFile(
      values.key ?? new URL("server_key.pem", TESTDATA),
    ),
  };
} else if (values.cert !== undefined || values.key !== undefined) {
  throw new TypeError("Cannot start echo server: --cert and --key need --tls");
}

const server = variant === "streams"
  ? await serveStreams(options)
  : await serve(variant, "echo", options);
console.log(
  `Echo server (${values.protocol}${
    values.tls ? ", TLS" : ""
  }) listening on ${values.hostname}:${server.port}`,
);

await new Promise<void>((resolve) => {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, resolve);
  }
});
server.close();
Deno.exit(0);
