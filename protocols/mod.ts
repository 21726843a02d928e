/**
 * Protocols: the callbacks a transport drives, with no I/O of their own.
 * Interfaces keep asyncio's names in camelCase; the `*Base` classes implement
 * every callback as a no-op so a subclass overrides only what it needs.
 *
 * ```ts
 * import { ProtocolBase } from "@aio/protocols/protocols";
 *
 * class Printer extends ProtocolBase {
 *   override dataReceived(data: Uint8Array): void {
 *     console.log(new TextDecoder().decode(data));
 *   }
 * }
 * new Printer().dataReceived(new TextEncoder().encode("hello"));
 * ```
 *
 * @module
 */
export * from "./base_protocol.ts";
export * from "./protocol.ts";
export * from "./buffered_protocol.ts";
export * from "./datagram_protocol.ts";
export * from "./subprocess_protocol.ts";
export * from "./framing.ts";
