/**
 * Values over a read's `maxValueBytes` (see `ListOptions` in `store.ts`): the rule every driver
 * applies, so each hands over the same entry for the same value.
 */
import type { KeyValue } from "./store.ts";

/** The UTF-8 length of `text`, counting only when the UTF-16 length cannot settle `limit` alone. */
export function overLimit(text: string, limit: number): boolean {
  // A UTF-16 unit is one to three UTF-8 bytes.
  if (text.length > limit) return true;
  return text.length * 3 > limit && Buffer.byteLength(text) > limit;
}

/**
 * The entry as a read with `maxValueBytes` hands it over: whole, or "" with `omittedBytes`.
 * `omittedBytes` given: the decoder left the value out already, and it was that long. Otherwise the
 * value was decoded whole (a watch's put): when it is left out here, the collector learns that it was
 * let go (`dropped`).
 */
export function boundValue(
  kv: KeyValue,
  maxValueBytes: number | undefined,
  omittedBytes?: number | undefined,
): KeyValue {
  if (omittedBytes !== undefined) return omitValue(kv, omittedBytes);
  if (maxValueBytes === undefined || !overLimit(kv.value, maxValueBytes)) return kv;
  const bytes = Buffer.byteLength(kv.value);
  dropped(bytes);
  return omitValue(kv, bytes);
}

/** `kv` without its value, which was `bytes` long. */
export function omitValue(kv: KeyValue, bytes: number): KeyValue {
  const { ttlSeconds } = kv;
  const base = { key: kv.key, value: "", revision: kv.revision, expires: kv.expires, omittedBytes: bytes };
  return ttlSeconds === undefined ? base : { ...base, ttlSeconds };
}

/** How many bytes a base64 text of `length` characters, `padding` of them '=', decodes to. */
export function base64Bytes(length: number, padding: number): number {
  return Math.floor((length * 3) / 4) - padding;
}

/** How many of the '=' a base64 text can end with it ends with. */
export function base64Padding(text: string): number {
  return text.endsWith("==") ? 2 : text.endsWith("=") ? 1 : 0;
}

/** The limit, in base64 characters, that a value of at most `maxValueBytes` bytes stays within. */
export function base64Chars(maxValueBytes: number): number {
  return Math.ceil(maxValueBytes / 3) * 4;
}

/** Bytes of dropped values after which a collection runs (see `dropped`). */
const COLLECT_AFTER_BYTES = 4 << 20;
let droppedSinceCollect = 0;

/**
 * Notes that a value of `bytes` was read off the wire and let go. A protocol that delivers each value
 * whole (NATS messages, the puts of etcd, etcd v2 and Consul watches) allocates it anyway, and the collector, which cannot tell that much memory
 * is garbage, lets RSS grow by the dropped values until it runs: an agent reading 200 values of
 * 1 MiB from NATS peaked 90 MiB over its 64 MiB. Collecting after every 4 MiB dropped (a full
 * collection of an agent's heap takes milliseconds) brought that to 23 MiB over.
 */
export function dropped(bytes: number): void {
  droppedSinceCollect += bytes;
  if (droppedSinceCollect < COLLECT_AFTER_BYTES) return;
  droppedSinceCollect = 0;
  Bun.gc(true);
}
