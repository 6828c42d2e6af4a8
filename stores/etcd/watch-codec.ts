/**
 * The watch stream of the etcd v3 gateway (`POST /v3/watch`), as pure functions: framing the byte
 * stream into JSON messages and decoding each message into what the watch loop must do with it.
 */
import {
  asList,
  asObject,
  asString,
  decodeGatewayError,
  decodeKv,
  type EtcdKv,
  type GatewayError,
  parseInt64,
  preview,
  protocolError,
  type Where,
} from "./codec.ts";

/** One `mvccpb.Event`; PUT is the proto3 default and so arrives without `type`. */
export interface EtcdEvent {
  readonly type: "put" | "delete";
  readonly kv: EtcdKv;
  /** The key before the change (asked for with `prev_kv`); absent when history no longer has it. */
  readonly prevKv: EtcdKv | undefined;
}

/** One message of the watch stream, by what the driver must do with it. */
export type WatchMessage =
  /** The server accepted the watch (`created`). */
  | { readonly kind: "created" }
  /** Changes in revision order; the server never splits one revision over two messages. */
  | { readonly kind: "events"; readonly events: readonly EtcdEvent[] }
  /** Nothing changed under the prefix up to `revision` (progress notification). */
  | { readonly kind: "progress"; readonly revision: bigint }
  /** The watch ended server-side; `compactRevision` > 0 means its start revision was compacted away. */
  | { readonly kind: "canceled"; readonly compactRevision: bigint; readonly reason: string }
  /** The gateway reported an error in the stream. */
  | { readonly kind: "error"; readonly error: GatewayError };

function decodeEvent(raw: unknown, where: Where): EtcdEvent {
  const event = asObject(raw, "event", where);
  const type = event.type ?? "PUT";
  if (type !== "PUT" && type !== "DELETE")
    throw protocolError(where, `unknown event type ${preview(String(type))}`);
  return {
    type: type === "PUT" ? "put" : "delete",
    kv: decodeKv(event.kv, where),
    prevKv: event.prev_kv === undefined ? undefined : decodeKv(event.prev_kv, where),
  };
}

export function decodeWatchMessage(json: unknown, where: Where): WatchMessage {
  const error = decodeGatewayError(json);
  if (error !== undefined) return { kind: "error", error };
  const result = asObject(asObject(json, "watch message", where).result, "result", where);
  if (result.canceled === true) {
    return {
      kind: "canceled",
      compactRevision: parseInt64(result.compact_revision, "result.compact_revision", where),
      reason: asString(result.cancel_reason, "result.cancel_reason", where),
    };
  }
  const events = asList(result.events, "result.events", where).map((e) => decodeEvent(e, where));
  if (events.length > 0) return { kind: "events", events };
  if (result.created === true) return { kind: "created" };
  const header = asObject(result.header, "result.header", where);
  return { kind: "progress", revision: parseInt64(header.revision, "result.header.revision", where) };
}

const isSpace = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

/**
 * Cuts a text stream into top-level JSON objects, wherever the chunk boundaries fall. The 3.4 gateway
 * writes one `{"result":…}` per line; this counts brackets outside strings instead of looking for
 * newlines, so objects written back to back or across lines are read as well.
 */
export class JsonObjectSplitter {
  readonly #where: Where;
  #buffer = "";
  #depth = 0;
  #inString = false;
  #escaped = false;

  constructor(where: Where) {
    this.#where = where;
  }

  /** Text received but not yet part of a complete object. */
  get pending(): string {
    return this.#buffer;
  }

  /** Adds `chunk` and returns every object it completed, as JSON text. */
  push(chunk: string): string[] {
    const buffer = this.#buffer + chunk;
    const out: string[] = [];
    let start = 0;
    for (let i = this.#buffer.length; i < buffer.length; i++) {
      const c = buffer.charCodeAt(i);
      if (this.#inString) {
        if (this.#escaped) this.#escaped = false;
        else if (c === 0x5c) this.#escaped = true;
        else if (c === 0x22) this.#inString = false;
      } else if (this.#depth === 0 && c !== 0x7b) {
        if (!isSpace(c))
          throw protocolError(this.#where, `text outside a JSON object: ${preview(buffer.slice(i))}`);
        start = i + 1;
      } else if (c === 0x22) {
        this.#inString = true;
      } else if (c === 0x7b || c === 0x5b) {
        this.#depth++;
      } else if (c === 0x7d || c === 0x5d) {
        this.#depth--;
        if (this.#depth === 0) {
          out.push(buffer.slice(start, i + 1));
          start = i + 1;
        }
      }
    }
    this.#buffer = buffer.slice(start);
    return out;
  }
}
