/**
 * The watch stream of the etcd v3 gateway (`POST /v3/watch`), as pure functions: framing the byte
 * stream into JSON messages and decoding each message into what the watch loop must do with it.
 */
import { JsonStreamReader } from "../json-stream.ts";
import { base64Chars } from "../values.ts";
import {
  asList,
  asObject,
  asString,
  decodeBoundKv,
  decodeGatewayError,
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
  /** The value's length when it was left out (`kv.value` is ""), see `watchReader`. */
  readonly omittedBytes?: number | undefined;
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

function decodeEvent(raw: unknown, where: Where, maxValueBytes: number | undefined): EtcdEvent {
  const event = asObject(raw, "event", where);
  const type = event.type ?? "PUT";
  if (type !== "PUT" && type !== "DELETE")
    throw protocolError(where, `unknown event type ${preview(String(type))}`);
  const { kv, omittedBytes } = decodeBoundKv(event.kv, where, maxValueBytes);
  return {
    type: type === "PUT" ? "put" : "delete",
    kv,
    ...(omittedBytes === undefined ? {} : { omittedBytes }),
    prevKv: event.prev_kv === undefined ? undefined : decodeBoundKv(event.prev_kv, where, maxValueBytes).kv,
  };
}

/**
 * Decodes one message; with `maxValueBytes`, a value longer than that is left out (`omittedBytes`),
 * whether `watchReader` left it unread already or it was decoded here.
 */
export function decodeWatchMessage(
  json: unknown,
  where: Where,
  maxValueBytes?: number | undefined,
): WatchMessage {
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
  const events = asList(result.events, "result.events", where).map((e) =>
    decodeEvent(e, where, maxValueBytes),
  );
  if (events.length > 0) return { kind: "events", events };
  if (result.created === true) return { kind: "created" };
  const header = asObject(result.header, "result.header", where);
  return { kind: "progress", revision: parseInt64(header.revision, "result.header.revision", where) };
}

/**
 * Reads the watch stream's bytes into its messages, wherever the chunk boundaries fall: the 3.4
 * gateway writes one `{"result":…}` per line, and objects written back to back or across lines are
 * read as well. Each message goes to `each` as it completes. With `maxValueBytes`, a kv's base64
 * `value` longer than such a value's can be is counted and skipped as it streams in, never held (a
 * put of 1 MiB costs the reader nothing).
 */
export function watchReader(
  maxValueBytes: number | undefined,
  each: (json: unknown) => void,
): JsonStreamReader {
  const omit =
    maxValueBytes === undefined ? undefined : { properties: ["value"], maxBytes: base64Chars(maxValueBytes) };
  return new JsonStreamReader({ omit, each });
}
