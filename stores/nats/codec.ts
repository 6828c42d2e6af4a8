/**
 * The NATS KV dialect of the `nats` store, as pure functions: how store keys become subjects of the
 * bucket's stream, how a stored message becomes a key, a deletion or an expiry, and what the server
 * version allows. No I/O here.
 *
 * Key encoding. A bucket `b` is the JetStream stream `KV_b` on subjects `$KV.b.>`; a NATS KV key is
 * the rest of the subject, dot-separated tokens of `[-/=\w]`. Store keys are `/`-separated paths
 * (`/coreos.com/network/subnets/10.5.53.0-24&fd00:10:244::-64`), so each path segment becomes one
 * token and `/` becomes `.`:
 * - `A-Z a-z 0-9 - _` stay as they are;
 * - every other character (`.`, `&`, `:`, `=`, `/` cannot occur, space, `*`, `>`, non-ASCII, …) is
 *   written as `=XY` per UTF-8 byte, upper-case hex (`.` → `=2E`, `&` → `=26`, `:` → `=3A`);
 * - an empty segment (the one before a leading `/`, or between `//`) is the token `=` alone.
 * The mapping is one-to-one (decoding accepts only the canonical form), keeps one subject token per
 * path segment so a prefix ending in `/` is the subject filter `<tokens>.>`, and never produces a
 * token that starts with `==`: those subjects are the driver's own (the sweeper lock).
 *
 * Stored messages. A key's value is the message body, byte for byte. Headers the driver writes:
 * `Weft-TTL` (seconds, on keys written with a TTL; the expiry is the server's timestamp of the write
 * plus that), `Nats-TTL` (the same TTL for the server itself, on ≥ 2.11.2), and on deletions
 * `KV-Operation: DEL` plus `Weft-Reason: expired` when a sweeper removed an expired key. The server
 * marks per-message TTL expiry with `Nats-Marker-Reason: MaxAge`.
 */
import { StoreError, StoreErrorCode } from "../errors.ts";
import type { DeleteReason, KeyValue, Revision } from "../store.ts";
import { dropped } from "../values.ts";

/** The bucket every weft agent shares (stream `KV_weft`). */
export const DEFAULT_BUCKET = "weft";

/** Message headers the driver reads or writes. */
export const Header = {
  Operation: "KV-Operation",
  MarkerReason: "Nats-Marker-Reason",
  NatsTtl: "Nats-TTL",
  ExpectedLastSubjectSequence: "Nats-Expected-Last-Subject-Sequence",
  WeftTtl: "Weft-TTL",
  WeftReason: "Weft-Reason",
  SweptBy: "Weft-Swept-By",
} as const;

/** Largest TTL accepted, in seconds (ten years; the server keeps TTLs as Go durations). */
export const MAX_TTL_SECONDS = 315_360_000;
/** Longest subject the driver writes; NATS control lines are limited to 4 KiB by default. */
const MAX_SUBJECT_LENGTH = 2_048;

const SAFE_CHAR = /^[-A-Za-z0-9_]$/;
const CANONICAL_TOKEN = /^(?:[-A-Za-z0-9_]|=[0-9A-F]{2})+$/;
const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });
const lenientUtf8 = new TextDecoder("utf-8");

// ---- keys --------------------------------------------------------------------------------------------

export function streamName(bucket: string): string {
  return `KV_${bucket}`;
}

/** `$KV.<bucket>.`, the start of every subject of the bucket. */
export function subjectPrefix(bucket: string): string {
  return `$KV.${bucket}.`;
}

/** One path segment as one subject token. */
export function encodeSegment(segment: string): string {
  if (segment === "") return "=";
  let token = "";
  for (const char of segment) {
    if (SAFE_CHAR.test(char)) {
      token += char;
      continue;
    }
    for (const byte of utf8.encode(char)) token += `=${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return token;
}

/** The path segment behind a token, or undefined when the token is not one `encodeSegment` makes. */
export function decodeSegment(token: string): string | undefined {
  if (token === "=") return "";
  if (!CANONICAL_TOKEN.test(token)) return undefined;
  const bytes: number[] = [];
  for (let i = 0; i < token.length; i++) {
    const char = token.charCodeAt(i);
    if (char === 0x3d) {
      bytes.push(Number.parseInt(token.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push(char);
    }
  }
  let segment: string;
  try {
    segment = strictUtf8.decode(new Uint8Array(bytes));
  } catch {
    return undefined;
  }
  // Only the canonical spelling decodes (`=41` is not "A"), so every key has exactly one subject; a
  // segment holding "/" (`=2F`) cannot come from a key (keys are split at "/"): it would make a second
  // subject for the key `a/b` (`a=2Fb` next to `a.b`).
  return encodeSegment(segment) === token && segment !== "" && !segment.includes("/") ? segment : undefined;
}

/** The KV key (subject after `$KV.<bucket>.`) of a store key. */
export function encodeKey(key: string): string {
  return key.split("/").map(encodeSegment).join(".");
}

/** The store key behind a KV key, or undefined for subjects that are not store keys. */
export function decodeKey(kvKey: string): string | undefined {
  const segments: string[] = [];
  for (const token of kvKey.split(".")) {
    const segment = decodeSegment(token);
    if (segment === undefined) return undefined;
    segments.push(segment);
  }
  return segments.join("/");
}

/** The full subject of `key` in `bucket`. Rejects keys the store cannot hold. */
export function subjectFor(bucket: string, key: string): string {
  checkKey(key);
  const subject = subjectPrefix(bucket) + encodeKey(key);
  if (subject.length > MAX_SUBJECT_LENGTH) {
    throw new StoreError(
      StoreErrorCode.Invalid,
      `key ${key.slice(0, 80)}… is too long for NATS: its subject would be ${subject.length} characters (at most ${MAX_SUBJECT_LENGTH})`,
      { key },
    );
  }
  return subject;
}

/** The store key of a subject of `bucket`, or undefined (another bucket, or the driver's own subject). */
export function keyOfSubject(bucket: string, subject: string): string | undefined {
  const prefix = subjectPrefix(bucket);
  return subject.startsWith(prefix) ? decodeKey(subject.slice(prefix.length)) : undefined;
}

export function checkKey(key: string): void {
  if (key === "") throw new StoreError(StoreErrorCode.Invalid, "NATS store keys cannot be empty");
  if (!key.isWellFormed()) {
    throw new StoreError(StoreErrorCode.Invalid, `key ${JSON.stringify(key)} is not valid Unicode`, { key });
  }
}

/**
 * The subject filter (after `$KV.<bucket>.`) that covers every key starting with `prefix`: its
 * complete segments as tokens, then `>`. Keys matching the filter must still be checked with
 * `startsWith(prefix)` when the prefix ends inside a segment.
 */
export function prefixFilter(prefix: string): string {
  const complete = prefix.split("/").slice(0, -1);
  return complete.length === 0 ? ">" : `${complete.map(encodeSegment).join(".")}.>`;
}

/** True when `subject` matches the NATS subject filter `filter` (`*` one token, `>` the rest). */
export function subjectMatches(subject: string, filter: string): boolean {
  const s = subject.split(".");
  const f = filter.split(".");
  for (let i = 0; i < f.length; i++) {
    const token = f[i];
    if (token === ">") return s.length > i;
    if (i >= s.length || (token !== "*" && token !== s[i])) return false;
  }
  return s.length === f.length;
}

/** The driver's own subject for the expiry sweeper's lock; never a store key (`==` is not a token). */
export function sweeperLockSubject(bucket: string): string {
  return `${subjectPrefix(bucket)}==.sweeper`;
}

// ---- stored messages ---------------------------------------------------------------------------------

/** One stored message, as read by a get or delivered by a consumer. */
export interface RawRecord {
  readonly subject: string;
  /** Stream sequence: the revision. */
  readonly seq: bigint;
  /** The server's timestamp of the write, ms since the epoch. */
  readonly timeMs: number;
  /** A header's value, "" when absent. */
  header(name: string): string;
  readonly data: Uint8Array;
  /** Set when the payload was dropped for being over a read's value limit: its length (`data` is empty). */
  readonly omittedBytes?: number | undefined;
}

const NO_DATA = new Uint8Array(0);

/**
 * The record as a read with `maxValueBytes` keeps it: a larger payload is dropped as the message
 * arrives, keeping only the headers the codec reads (copied, so nothing refers to the message).
 */
export function boundRecord(record: RawRecord, maxValueBytes: number | undefined): RawRecord {
  if (maxValueBytes === undefined || record.data.length <= maxValueBytes) return record;
  dropped(record.data.length);
  const headers = new Map<string, string>();
  for (const name of Object.values(Header)) {
    const value = record.header(name);
    if (value !== "") headers.set(name, value);
  }
  return {
    subject: record.subject,
    seq: record.seq,
    timeMs: record.timeMs,
    header: (name) => headers.get(name) ?? "",
    data: NO_DATA,
    omittedBytes: record.data.length,
  };
}

/** What a stored message means for its key. */
export type Entry =
  | {
      readonly kind: "put";
      readonly key: string;
      readonly value: string;
      readonly revision: Revision;
      /** The TTL the key was written with; undefined for a key that never expires. */
      readonly ttlSeconds: number | undefined;
      /** When the key expires (server time of the write + TTL), ms since the epoch. */
      readonly expiresAtMs: number | undefined;
      /** The value's length when it was left out for a read's value limit (`value` is ""). */
      readonly omittedBytes?: number | undefined;
    }
  | {
      readonly kind: "delete";
      readonly key: string;
      readonly revision: Revision;
      readonly reason: DeleteReason;
    };

/** The entry a message of `bucket` stands for; undefined for subjects that are not store keys. */
export function toEntry(bucket: string, record: RawRecord): Entry | undefined {
  const key = keyOfSubject(bucket, record.subject);
  if (key === undefined) return undefined;
  const reason = deletion(record);
  if (reason !== undefined) return { kind: "delete", key, revision: record.seq, reason };
  const ttlSeconds = parseTtlSeconds(record.header(Header.WeftTtl));
  return {
    kind: "put",
    key,
    value: lenientUtf8.decode(record.data),
    revision: record.seq,
    ttlSeconds,
    expiresAtMs: ttlSeconds === undefined ? undefined : record.timeMs + ttlSeconds * 1_000,
    ...(record.omittedBytes === undefined ? {} : { omittedBytes: record.omittedBytes }),
  };
}

/** Why the message deletes its key, or undefined for a put. */
function deletion(record: RawRecord): DeleteReason | undefined {
  const marker = record.header(Header.MarkerReason);
  if (marker !== "") return marker === "MaxAge" ? "expired" : "deleted";
  const op = record.header(Header.Operation);
  if (op === "DEL" || op === "PURGE") {
    return record.header(Header.WeftReason) === "expired" ? "expired" : "deleted";
  }
  return undefined;
}

/** A `Weft-TTL` header value: whole seconds ≥ 1, else undefined. */
export function parseTtlSeconds(value: string): number | undefined {
  if (!/^[1-9]\d{0,11}$/.test(value)) return undefined;
  return Number(value);
}

/** True when a put's expiry has passed at `nowMs`. */
export function isExpired(entry: Entry, nowMs: number): boolean {
  return entry.kind === "put" && entry.expiresAtMs !== undefined && entry.expiresAtMs <= nowMs;
}

/** The contract's view of a live put. */
export function toKeyValue(entry: Extract<Entry, { kind: "put" }>, nowMs: number): KeyValue {
  const base = {
    key: entry.key,
    value: entry.value,
    revision: entry.revision,
    ...(entry.omittedBytes === undefined ? {} : { omittedBytes: entry.omittedBytes }),
  };
  if (entry.expiresAtMs === undefined) return { ...base, expires: false };
  const left = Math.ceil((entry.expiresAtMs - nowMs) / 1_000);
  return left > 0 ? { ...base, expires: true, ttlSeconds: left } : { ...base, expires: true };
}

/** The TTL to write, whole seconds (rounded up), or undefined for a key that never expires. */
export function checkTtl(key: string, ttlSeconds: number | undefined): number | undefined {
  if (ttlSeconds === undefined) return undefined;
  if (!Number.isFinite(ttlSeconds) || ttlSeconds <= 0 || ttlSeconds > MAX_TTL_SECONDS) {
    throw new StoreError(
      StoreErrorCode.Invalid,
      `TTL ${ttlSeconds} s for key ${key} is out of range: give 1..${MAX_TTL_SECONDS} seconds, or no TTL for a key that never expires`,
      { key },
    );
  }
  return Math.ceil(ttlSeconds);
}

/** Headers of a put: the TTL for the driver and, when the server expires keys itself, for the server. */
export function putHeaders(ttlSeconds: number | undefined, serverTtl: boolean): [string, string][] {
  if (ttlSeconds === undefined) return [];
  const headers: [string, string][] = [[Header.WeftTtl, String(ttlSeconds)]];
  if (serverTtl) headers.push([Header.NatsTtl, `${ttlSeconds}s`]);
  return headers;
}

/** Headers of a deletion marker; `sweeper` marks an expiry found by that sweeper. */
export function deleteHeaders(sweeper?: string): [string, string][] {
  const headers: [string, string][] = [[Header.Operation, "DEL"]];
  if (sweeper !== undefined) headers.push([Header.WeftReason, "expired"], [Header.SweptBy, sweeper]);
  return headers;
}

// ---- server answers ----------------------------------------------------------------------------------

/** `2.15.2` → [2, 15, 2]; undefined when it is not a version. */
export function parseVersion(version: string): readonly [number, number, number] | undefined {
  const match = /^v?(\d+)\.(\d+)\.(\d+)/.exec(version);
  if (match === null) return undefined;
  return [Number(match[1]), Number(match[2]), Number(match[3])];
}

/**
 * The server expires keys by itself and tells watchers: per-message TTL (2.11.0) plus a delete marker
 * when such a message expires (2.11.2). Older servers accept the headers and silently ignore them.
 */
export function hasServerTtl(version: string): boolean {
  const v = parseVersion(version);
  if (v === undefined) return false;
  const [major, minor, patch] = v;
  return major > 2 || (major === 2 && (minor > 11 || (minor === 11 && patch >= 2)));
}

/** What the reply subject of a consumer-delivered message says about it. */
export interface Delivery {
  readonly streamSeq: bigint;
  readonly timeMs: number;
  /** Messages left for the consumer after this one. */
  readonly pending: number;
}

/**
 * Parses `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>` and the
 * newer form with domain and account hash (`$JS.ACK.<domain>.<hash>.<stream>…`, 11 or 12 tokens).
 */
export function parseAckSubject(reply: string): Delivery | undefined {
  const t = reply.split(".");
  if (t[0] !== "$JS" || t[1] !== "ACK") return undefined;
  const at = t.length === 9 ? 5 : t.length >= 11 ? 7 : -1;
  if (at < 0) return undefined;
  const [seq, , nanos, pending] = [t[at], t[at + 1], t[at + 2], t[at + 3]];
  if (!isDigits(seq) || !isDigits(nanos) || !isDigits(pending)) return undefined;
  return {
    streamSeq: BigInt(seq),
    timeMs: Number(BigInt(nanos) / 1_000_000n),
    pending: Number(pending),
  };
}

function isDigits(s: string | undefined): s is string {
  return s !== undefined && /^\d{1,20}$/.test(s);
}

/** An RFC 3339 timestamp with up to nanoseconds (`2026-01-02T03:04:05.123456789Z`) in ms. */
export function parseTimestamp(text: string): number | undefined {
  const trimmed = text.replace(/(\.\d{3})\d+/, "$1");
  const ms = Date.parse(trimmed);
  return Number.isNaN(ms) ? undefined : ms;
}

/** The sweeper lock's value: which client holds it. */
export function lockValue(holder: string): string {
  return JSON.stringify({ holder });
}

export function lockHolder(data: Uint8Array): string | undefined {
  try {
    const parsed: unknown = JSON.parse(lenientUtf8.decode(data));
    if (typeof parsed === "object" && parsed !== null && "holder" in parsed) {
      return typeof parsed.holder === "string" ? parsed.holder : undefined;
    }
  } catch {
    // a lock someone else wrote by hand: nobody we know holds it
  }
  return undefined;
}
