/**
 * The pure half of the Consul driver: key and URL mapping, base64 values, `/v1/txn` bodies and
 * answers, error mapping, session TTLs, and the blocking-query rules that turn successive snapshots
 * of a prefix into watch events; KV answers read as they stream in under `maxValueBytes` (`listReader`)
 * leave longer values out. No I/O; `index.ts` does the talking. Consul facts: stores.md §2.3.
 */
import { StoreError, StoreErrorCode, UnavailableError } from "../errors.ts";
import { type JsonStreamError, JsonStreamReader, OmittedString } from "../json-stream.ts";
import { previewJson } from "../preview.ts";
import type { KeyValue, ResyncCause, Revision, WatchEvent } from "../store.ts";
import { base64Bytes, base64Chars, base64Padding, dropped } from "../values.ts";

/** One KV entry as Consul reports it, under its weft key (`/` + the Consul key). */
export interface ConsulEntry {
  readonly key: string;
  readonly value: string;
  readonly createIndex: Revision;
  readonly modifyIndex: Revision;
  /** The session holding the key (it expires with it), if any. */
  readonly session: string | undefined;
  /** Set when the value was over the read's `maxValueBytes`: `value` is "" and this its decoded length. */
  readonly omittedBytes?: number | undefined;
}

/** A prefix as one (blocking) read saw it: every live entry and the prefix's `X-Consul-Index`. */
export interface Snapshot {
  readonly index: Revision;
  readonly entries: ReadonlyMap<string, ConsulEntry>;
}

/** Consul's largest session TTL (`SessionTTLMax`, 24 h); a key's TTL may be twice that. */
export const SESSION_TTL_MAX_MS = 86_400_000;
/** Consul's default smallest session TTL (`session_ttl_min`), until the server says otherwise. */
export const SESSION_TTL_MIN_MS = 10_000;

function invalid(what: string, key?: string): StoreError {
  return new StoreError(StoreErrorCode.Invalid, what, key === undefined ? {} : { key });
}

/** A Protocol error: the endpoint answered something a Consul agent would not. */
export function protocol(endpoint: string, what: string, cause?: unknown): StoreError {
  return new StoreError(StoreErrorCode.Protocol, `consul endpoint ${endpoint} answered ${what}`, {
    endpoint,
    ...(cause === undefined ? {} : { cause }),
  });
}

/**
 * The Consul key for a weft key (`/a/b` → `a/b`). Rejects what Consul's HTTP API would rewrite or
 * refuse (it cleans the path and forbids `..` and edge spaces), so what is written is what is read.
 */
export function consulKey(key: string): string {
  const bad = (why: string) => invalid(`invalid consul key "${key}": ${why}`, key);
  if (!key.startsWith("/") || key === "/") throw bad("a key is an absolute path below / (e.g. /a/b)");
  const inner = key.slice(1);
  for (const segment of inner.split("/")) {
    if (segment === "") throw bad("empty path segment (a trailing or doubled /), which Consul cleans away");
    if (segment === "." || segment === "..") throw bad("Consul resolves . and .. segments away");
  }
  if (inner.startsWith(" ") || inner.endsWith(" ")) throw bad("Consul refuses keys with edge spaces");
  if (!key.isWellFormed()) throw bad("not valid UTF-8 text (lone surrogate)");
  return inner;
}

/** The Consul prefix for a weft prefix: "" and "/" mean every key; otherwise as `consulKey`, open-ended. */
export function consulPrefix(prefix: string): string {
  if (prefix === "" || prefix === "/") return "";
  const bad = (why: string) => invalid(`invalid consul prefix "${prefix}": ${why}`);
  if (!prefix.startsWith("/")) throw bad("keys are paths starting with /");
  const segments = prefix.slice(1).split("/");
  segments.forEach((segment, i) => {
    if (segment === "" && i < segments.length - 1) throw bad("empty path segment (a doubled /)");
    if (segment === "." || segment === "..") throw bad("Consul resolves . and .. segments away");
  });
  if (prefix.startsWith("/ ") || prefix.endsWith(" ")) throw bad("Consul refuses keys with edge spaces");
  if (!prefix.isWellFormed()) throw bad("not valid UTF-8 text (lone surrogate)");
  return prefix.slice(1);
}

/** `/v1/kv/<key>` with every segment percent-encoded (keys contain `&`, `:`, `?`, `%`…). */
export function kvPath(consul: string): string {
  return `/v1/kv/${consul.split("/").map(encodeURIComponent).join("/")}`;
}

/** A query string from the fields that are set, in the given order; "" when none is. */
export function query(fields: Record<string, string | bigint | boolean | undefined>): string {
  const parts: string[] = [];
  for (const [name, value] of Object.entries(fields)) {
    if (value !== undefined) parts.push(`${encodeURIComponent(name)}=${encodeURIComponent(String(value))}`);
  }
  return parts.length === 0 ? "" : `?${parts.join("&")}`;
}

/** Rejects values that are not UTF-8 text (a lone surrogate cannot be stored byte-exact). */
export function checkValue(key: string, value: string): string {
  if (value.isWellFormed()) return value;
  throw invalid(`the value for consul key ${key} is not valid UTF-8 text`, key);
}

/** A TTL in milliseconds: (0, 2 × Consul's 24 h session maximum]; undefined for a key that never expires. */
export function ttlMs(key: string, ttlSeconds: number | undefined): number | undefined {
  if (ttlSeconds === undefined) return undefined;
  const maxSeconds = (2 * SESSION_TTL_MAX_MS) / 1_000;
  if (!Number.isFinite(ttlSeconds) || ttlSeconds <= 0 || ttlSeconds > maxSeconds) {
    throw invalid(
      `TTL ${ttlSeconds} s for key ${key} is out of range: give 1..${maxSeconds} seconds (Consul sessions last at most 24 h, reaped at twice that), or no TTL for a key that never expires`,
      key,
    );
  }
  return Math.ceil(ttlSeconds * 1_000);
}

/**
 * The session TTL for a key TTL: half of it, because Consul invalidates a session twice its TTL after
 * the last renewal; raised to the server's minimum (then the key outlives its TTL on the server, and
 * the writing client ends it on time itself) and capped at the maximum.
 */
export function sessionTtlMs(keyTtlMs: number, minMs: number): number {
  return Math.min(SESSION_TTL_MAX_MS, Math.max(minMs, Math.ceil(keyTtlMs / 2)));
}

/** The body of `PUT /v1/session/create`: deletes its keys when it ends, no node checks, 1 ms lock delay. */
export function sessionRequest(name: string, sessionMs: number): string {
  return JSON.stringify({
    Name: name,
    TTL: `${sessionMs}ms`,
    Behavior: "delete",
    LockDelay: "1ms",
    NodeChecks: [],
  });
}

/** A Go duration (`10s`, `1m30s`, `24h0m0s`, `1.5s`, `250ms`) in milliseconds. */
export function parseGoDuration(text: string): number | undefined {
  const units: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1e3, m: 6e4, h: 3.6e6 };
  if (!/^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(text)) return text === "0" ? 0 : undefined;
  let total = 0;
  for (const [, amount, , unit] of text.matchAll(/(\d+(\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) {
    total += Number(amount) * (units[unit ?? ""] ?? 0);
  }
  return total;
}

/** The session TTL range from Consul's refusal `Invalid Session TTL '…', must be between [10s=24h0m0s]`. */
export function sessionTtlBounds(message: string): { minMs: number; maxMs: number } | undefined {
  const match = /Invalid Session TTL .*between \[([^=\]]+)=([^\]]+)\]/.exec(message);
  const minMs = parseGoDuration(match?.[1] ?? "");
  const maxMs = parseGoDuration(match?.[2] ?? "");
  return minMs === undefined || maxMs === undefined ? undefined : { minMs, maxMs };
}

/** The value of an index header (`X-Consul-Index`), or undefined when absent or not a number. */
export function parseIndex(text: string | null): Revision | undefined {
  if (text === null || !/^\d+$/.test(text.trim())) return undefined;
  return BigInt(text.trim());
}

export function requireIndex(header: string | null, endpoint: string): Revision {
  const index = parseIndex(header);
  if (index !== undefined) return index;
  throw protocol(endpoint, "no X-Consul-Index header (is it a Consul agent's HTTP API?)");
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null;
const isIndex = (v: unknown): v is string => typeof v === "string" && /^\d+$/.test(v);

/** JSON with Consul's uint64 indexes kept exact: they are turned into strings before parsing. */
export function parseJson(body: string, endpoint: string): unknown {
  const exact = body.replace(/"(CreateIndex|ModifyIndex|LockIndex|Flags)"\s*:\s*(\d+)/g, '"$1":"$2"');
  try {
    return JSON.parse(exact);
  } catch (err) {
    throw protocol(endpoint, `a body that is not JSON: ${body.slice(0, 200)}`, err);
  }
}

/** JSON text for a request whose bigint fields are sent as exact JSON numbers. */
export function stringify(value: unknown): string {
  return JSON.stringify(value, (_, v: unknown) => (typeof v === "bigint" ? `\u0000${v}\u0000` : v)).replace(
    /"\\u0000(\d+)\\u0000"/g,
    "$1",
  );
}

/**
 * An index field as JSON.parse left it: a digit string (`parseJson`'s exact form) or a number that
 * is an exact non-negative integer; undefined for anything else.
 */
function indexField(v: unknown): Revision | undefined {
  if (typeof v === "number") return Number.isSafeInteger(v) && v >= 0 ? BigInt(v) : undefined;
  return isIndex(v) ? BigInt(v) : undefined;
}

/** True when an index field as JSON.parse left it (see `indexField`) is exactly `index`. */
function sameIndex(index: Revision, v: unknown): boolean {
  if (typeof v === "number") return Number.isSafeInteger(v) && Number(index) === v;
  return typeof v === "string" && index.toString() === v;
}

/** A number JSON.parse could not keep exact: the body must be parsed again with `parseJson`. */
const isInexact = (v: unknown) => typeof v === "number" && v > Number.MAX_SAFE_INTEGER;
const INEXACT = Symbol("inexact index");

/**
 * The base64 `Value` each decoded entry came from (null and absent as ""; a value the reader left out
 * as its length and padding) and how many bytes it decodes to. With the indexes, the session and
 * whether the read's limit leaves it out, it tells that a later answer holds the very same entry,
 * which is then reused undecoded.
 */
const decodedFrom = new WeakMap<ConsulEntry, { readonly raw: string; readonly bytes: number }>();

function decodeEntry(
  v: unknown,
  endpoint: string,
  previous: Snapshot | undefined,
  maxValueBytes: number | undefined,
): ConsulEntry | typeof INEXACT {
  if (!isObject(v) || typeof v.Key !== "string") {
    throw protocol(endpoint, `a KV entry without Key or indexes: ${previewJson(v)}`);
  }
  const value = v.Value;
  if (
    value !== null &&
    value !== undefined &&
    typeof value !== "string" &&
    !(value instanceof OmittedString)
  ) {
    throw protocol(endpoint, `a non-text Value for ${v.Key}`);
  }
  const key = `/${v.Key}`;
  const raw = typeof value === "string" || value instanceof OmittedString ? value : "";
  // Sized from the base64 length (Consul sends canonical base64), so a value over the limit is never
  // decoded, and is remembered by its size, not its text.
  const padding = typeof raw === "string" ? base64Padding(raw) : raw.padding;
  const estimate = base64Bytes(typeof raw === "string" ? raw.length : raw.bytes, padding);
  const over = typeof raw !== "string" || (maxValueBytes !== undefined && estimate > maxValueBytes);
  const from = over ? `\u0000${estimate}=${padding}` : raw;
  const session = typeof v.Session === "string" && v.Session !== "" ? v.Session : undefined;
  const fits = (bytes: number) =>
    typeof raw === "string" && (maxValueBytes === undefined || bytes <= maxValueBytes);
  const was = previous?.entries.get(key);
  const source = was === undefined ? undefined : decodedFrom.get(was);
  if (
    was !== undefined &&
    sameIndex(was.modifyIndex, v.ModifyIndex) &&
    sameIndex(was.createIndex, v.CreateIndex) &&
    was.session === session &&
    source?.raw === from &&
    fits(source.bytes) === (was.omittedBytes === undefined)
  ) {
    return was;
  }
  const createIndex = indexField(v.CreateIndex);
  const modifyIndex = indexField(v.ModifyIndex);
  if (createIndex === undefined || modifyIndex === undefined) {
    if (isInexact(v.CreateIndex) || isInexact(v.ModifyIndex)) return INEXACT;
    throw protocol(endpoint, `a KV entry without Key or indexes: ${previewJson(v)}`);
  }
  if (over && typeof raw === "string") dropped(raw.length);
  const decoded = !over && raw !== "" ? Buffer.from(raw, "base64") : undefined;
  const text = decoded?.toString("utf8") ?? "";
  // The length of the text handed over: bytes that are no UTF-8 become U+FFFD, three bytes each.
  const size = over ? estimate : Buffer.byteLength(text);
  const kept = fits(size);
  const entry: ConsulEntry = {
    key,
    value: kept ? text : "",
    createIndex,
    modifyIndex,
    session,
    ...(kept ? {} : { omittedBytes: size }),
  };
  decodedFrom.set(entry, { raw: from, bytes: size });
  return entry;
}

/** One KV entry of an answer (`Value` is base64 or null), as `parseJson` parsed it. */
export function toEntry(v: unknown, endpoint: string): ConsulEntry {
  const entry = decodeEntry(v, endpoint, undefined, undefined);
  if (entry === INEXACT) throw protocol(endpoint, `a KV entry without Key or indexes: ${previewJson(v)}`);
  return entry;
}

function decodeList(
  v: unknown,
  /** The answer as quoted in errors. */
  shown: () => string,
  endpoint: string,
  previous: Snapshot | undefined,
  maxValueBytes: number | undefined,
): ConsulEntry[] | typeof INEXACT {
  if (!Array.isArray(v)) throw protocol(endpoint, `a KV answer that is not a list: ${shown()}`);
  const entries: ConsulEntry[] = [];
  for (const item of v) {
    const entry = decodeEntry(item, endpoint, previous, maxValueBytes);
    if (entry === INEXACT) return INEXACT;
    entries.push(entry);
  }
  return entries;
}

/**
 * The entries of a `GET /v1/kv/...` body (a JSON array). A blocking query answers the whole prefix
 * after every change, so the work per answer is kept to what changed:
 * - the body is parsed once with plain JSON.parse; only when an index is beyond 2^53 (where a JSON
 *   number is no longer exact) is it parsed again with `parseJson`'s exact indexes;
 * - an entry of `previous` (an earlier answer for the same prefix) whose key, CreateIndex,
 *   ModifyIndex, session and base64 value are all unchanged is returned as that same object, without
 *   decoding its value again. Anything else (a new write, a key deleted and created again, another
 *   session) is decoded from the body.
 */
export function parseEntries(
  body: string,
  endpoint: string,
  previous?: Snapshot,
  maxValueBytes?: number,
): ConsulEntry[] {
  let fast: unknown;
  try {
    fast = JSON.parse(body);
  } catch (err) {
    throw protocol(endpoint, `a body that is not JSON: ${body.slice(0, 200)}`, err);
  }
  const shown = () => body.slice(0, 200);
  const entries = decodeList(fast, shown, endpoint, previous, maxValueBytes);
  if (entries !== INEXACT) return entries;
  const exact = decodeList(parseJson(body, endpoint), shown, endpoint, previous, maxValueBytes);
  if (exact !== INEXACT) return exact;
  throw protocol(endpoint, `a KV entry whose index is not an exact integer: ${shown()}`);
}

/**
 * The incremental reader of a `GET /v1/kv/…?recurse` answer under `maxValueBytes`: a `Value` whose
 * base64 is longer than such a value's can be is left out as the answer streams in; the indexes stay
 * exact beyond 2^53, as `parseJson` keeps them. Its result goes to `decodeEntries`.
 */
export function listReader(maxValueBytes: number): JsonStreamReader {
  return new JsonStreamReader({
    omit: { properties: ["Value"], maxBytes: base64Chars(maxValueBytes) },
    exactIntegers: ["CreateIndex", "ModifyIndex", "LockIndex", "Flags"],
  });
}

/** The Protocol error for a body a `listReader` refused. */
export function notJson(endpoint: string, err: JsonStreamError): StoreError {
  return protocol(endpoint, `a body that is not JSON: ${err.message}`, err);
}

/**
 * The entries of a KV answer `listReader` read, as `parseEntries` makes them (reusing `previous`'s
 * unchanged entries), each value over `maxValueBytes` left out with its decoded length.
 */
export function decodeEntries(
  json: unknown,
  endpoint: string,
  previous: Snapshot | undefined,
  maxValueBytes: number | undefined,
): ConsulEntry[] {
  const entries = decodeList(json, () => previewJson(json), endpoint, previous, maxValueBytes);
  if (entries !== INEXACT) return entries;
  throw protocol(endpoint, `a KV entry whose index is not an exact integer: ${previewJson(json)}`);
}

export function toKeyValue(entry: ConsulEntry, ttlSeconds?: number): KeyValue {
  return {
    key: entry.key,
    value: entry.value,
    revision: entry.modifyIndex,
    expires: entry.session !== undefined,
    ...(ttlSeconds === undefined ? {} : { ttlSeconds }),
    ...(entry.omittedBytes === undefined ? {} : { omittedBytes: entry.omittedBytes }),
  };
}

/** One operation of a `PUT /v1/txn` body. */
export interface TxnOp {
  readonly KV: {
    readonly Verb: string;
    readonly Key: string;
    readonly Value?: string;
    readonly Index?: bigint;
    readonly Session?: string;
  };
}

const b64 = (value: string) => Buffer.from(value, "utf8").toString("base64");

/** Builders of the txn KV operations this driver uses (`key` is the Consul key). */
export const op = {
  checkNotExists: (key: string): TxnOp => ({ KV: { Verb: "check-not-exists", Key: key } }),
  checkIndex: (key: string, index: bigint): TxnOp => ({
    KV: { Verb: "check-index", Key: key, Index: index },
  }),
  get: (key: string): TxnOp => ({ KV: { Verb: "get", Key: key } }),
  set: (key: string, value: string): TxnOp => ({ KV: { Verb: "set", Key: key, Value: b64(value) } }),
  lock: (key: string, value: string, session: string): TxnOp => ({
    KV: { Verb: "lock", Key: key, Value: b64(value), Session: session },
  }),
  unlock: (key: string, value: string, session: string): TxnOp => ({
    KV: { Verb: "unlock", Key: key, Value: b64(value), Session: session },
  }),
  delete: (key: string): TxnOp => ({ KV: { Verb: "delete", Key: key } }),
  deleteCas: (key: string, index: bigint): TxnOp => ({ KV: { Verb: "delete-cas", Key: key, Index: index } }),
} as const;

/** A txn's outcome: the entries of its results (values blanked for writes), or its errors (rolled back). */
export type TxnOutcome =
  | { readonly ok: true; readonly results: readonly ConsulEntry[] }
  | { readonly ok: false; readonly errors: readonly { readonly opIndex: number; readonly what: string }[] };

/** Parses a txn answer: 200 carries results, 409 the errors of a rolled-back txn; else a typed error. */
export function parseTxn(status: number, body: string, endpoint: string, key: string): TxnOutcome {
  if (status !== 200 && status !== 409) throw failureError(status, body, endpoint, key);
  const v = parseJson(body, endpoint);
  if (!isObject(v)) throw protocol(endpoint, `a txn answer that is not an object: ${body.slice(0, 200)}`);
  if (status === 200) {
    const results = Array.isArray(v.Results) ? v.Results : [];
    return {
      ok: true,
      results: results.flatMap((r: unknown) =>
        isObject(r) && isObject(r.KV) ? [toEntry(r.KV, endpoint)] : [],
      ),
    };
  }
  const errors = (Array.isArray(v.Errors) ? v.Errors : []).map((e: unknown) => ({
    opIndex: isObject(e) && typeof e.OpIndex === "number" ? e.OpIndex : -1,
    what: isObject(e) && typeof e.What === "string" ? e.What : previewJson(e),
  }));
  const denied = errors.find((e) => isDenied(e.what));
  if (denied !== undefined) throw authError(endpoint, key, denied.what);
  return { ok: false, errors };
}

/** True when a txn error says the session is gone (`invalid session "…"`). */
export function isInvalidSession(what: string): boolean {
  return /invalid session/i.test(what);
}

const isDenied = (text: string) => /permission denied|ACL not found|token .*(not found|expired)/i.test(text);

/** An Auth error naming the endpoint and key, and where the token comes from (never the token). */
export function authError(endpoint: string, key: string | undefined, said: string): StoreError {
  return new StoreError(
    StoreErrorCode.Auth,
    `consul at ${endpoint} refused access${key === undefined ? "" : ` to ${key}`}: ${said.slice(0, 200)} (check the ACL token in --consul-token or CONSUL_HTTP_TOKEN and its key and session policies)`,
    { endpoint, ...(key === undefined ? {} : { key }) },
  );
}

/** Maps a failed HTTP answer onto a typed error. Operation-specific meanings (a 404 "absent") come first. */
export function failureError(status: number, body: string, endpoint: string, key?: string): StoreError {
  const said = body.trim().slice(0, 200) || `HTTP ${status}`;
  const about = key === undefined ? "" : ` for ${key}`;
  if (status === 403 || status === 401 || isDenied(said)) return authError(endpoint, key, said);
  if (status === 429 || status >= 500) {
    return new UnavailableError(
      endpoint,
      `HTTP ${status}${about}: ${said}`,
      key === undefined ? {} : { key },
    );
  }
  if (status === 400 || status === 413) {
    return new StoreError(
      StoreErrorCode.Invalid,
      `consul at ${endpoint} refused the request${about}: ${said}`,
      {
        endpoint,
        ...(key === undefined ? {} : { key }),
      },
    );
  }
  return protocol(endpoint, `HTTP ${status}${about}: ${said}`);
}

/** A snapshot from a read's entries and index. */
export function snapshotOf(index: Revision, entries: readonly ConsulEntry[]): Snapshot {
  const map = new Map<string, ConsulEntry>();
  for (const e of entries) map.set(e.key, e);
  return { index, entries: map };
}

const byKey = (x: ConsulEntry, y: ConsulEntry) => (x.key < y.key ? -1 : x.key > y.key ? 1 : 0);

/** The snapshot's entries sorted by key. */
export function sortedEntries(snapshot: Snapshot): ConsulEntry[] {
  return [...snapshot.entries.values()].sort(byKey);
}

function newestWrite(snapshot: Snapshot): Revision {
  let newest = 0n;
  for (const e of snapshot.entries.values()) if (e.modifyIndex > newest) newest = e.modifyIndex;
  return newest;
}

/** True when both snapshots hold the same keys at the same writes (indexes may differ). */
export function sameContents(a: Snapshot, b: Snapshot): boolean {
  if (a.entries.size !== b.entries.size) return false;
  for (const [key, e] of a.entries) if (b.entries.get(key)?.modifyIndex !== e.modifyIndex) return false;
  return true;
}

/** How a new watch begins: the puts after `afterRevision`, or a resync when deletes may be missing. */
export type StartOutcome =
  | { readonly kind: "puts"; readonly puts: readonly ConsulEntry[] }
  | { readonly kind: "resync"; readonly cause: ResyncCause };

/**
 * Consul keeps no history: a key's ModifyIndex tells which puts came after `afterRevision`, but a
 * delete leaves only a tombstone that no API lists. So a watch replays from `afterRevision` only when
 * it can show nothing was deleted since: against `baseline` (a snapshot this client listed at or
 * before `afterRevision`) every key must still be there, and the prefix's index must not point past
 * the newest live key (Consul counts tombstones in it). Otherwise the history is gone: a resync.
 */
export function startOutcome(
  after: Revision,
  baseline: Snapshot | undefined,
  current: Snapshot,
): StartOutcome {
  const compacted = { kind: "resync", cause: "compacted" } as const;
  if (current.index < after) return compacted;
  if (baseline === undefined) return current.index === after ? { kind: "puts", puts: [] } : compacted;
  for (const [key, e] of baseline.entries) {
    if (current.entries.get(key)?.createIndex !== e.createIndex) return compacted;
  }
  // An empty prefix reports the whole KV index, which says nothing about deletes under it.
  if (current.entries.size > 0 && current.index > after && current.index > newestWrite(current))
    return compacted;
  const puts = [...current.entries.values()].filter((e) => e.modifyIndex > after);
  return { kind: "puts", puts: puts.sort((x, y) => (x.modifyIndex < y.modifyIndex ? -1 : 1)) };
}

/** What changed between two snapshots of a prefix. */
export type SnapshotDiff =
  | { readonly kind: "backwards" }
  | {
      readonly kind: "changes";
      readonly puts: readonly ConsulEntry[];
      /** Entries (as last seen) whose key is gone. */
      readonly deleted: readonly ConsulEntry[];
      /** Keys deleted and created again in between: their delete cannot be placed. */
      readonly recreated: readonly string[];
    };

/** Diffs successive snapshots; an index lower than before means Consul's view went backwards. */
export function diffSnapshots(prev: Snapshot, next: Snapshot): SnapshotDiff {
  if (next.index < prev.index) return { kind: "backwards" };
  const puts: ConsulEntry[] = [];
  const recreated: string[] = [];
  for (const [key, e] of next.entries) {
    const was = prev.entries.get(key);
    if (was === e) continue; // reused by parseEntries: unchanged
    if (was === undefined) puts.push(e);
    else if (was.createIndex !== e.createIndex) recreated.push(key);
    else if (was.modifyIndex !== e.modifyIndex) puts.push(e);
  }
  const deleted: ConsulEntry[] = [];
  for (const [key, e] of prev.entries) if (!next.entries.has(key)) deleted.push(e);
  return { kind: "changes", puts, deleted, recreated };
}

/**
 * The index at which `key` was deleted, from a recursive read of `key` itself (`lookup`): Consul
 * answers the newest index among the live keys and tombstones starting with `key`. Undefined when
 * that index may belong to another key or lies outside (`after`, `upTo`].
 */
export function tombstoneIndex(
  key: string,
  lookup: Snapshot,
  window: { readonly after: Revision; readonly upTo: Revision },
  deletedKeys: readonly string[],
): Revision | undefined {
  const index = lookup.index;
  if (index <= window.after || index > window.upTo || lookup.entries.has(key)) return undefined;
  if (newestWrite(lookup) >= index) return undefined;
  if (deletedKeys.some((other) => other !== key && other.startsWith(key))) return undefined;
  return index;
}

/** A delete whose index and cause are known. */
export interface PlacedDelete {
  readonly key: string;
  readonly revision: Revision;
  readonly reason: "deleted" | "expired";
}

/** Puts and deletes as watch events in revision order (ties by key). */
export function orderedEvents(
  puts: readonly ConsulEntry[],
  deletes: readonly PlacedDelete[],
  toKv: (entry: ConsulEntry) => KeyValue,
): WatchEvent[] {
  const events: { revision: Revision; key: string; event: WatchEvent }[] = [
    ...puts.map((e) => ({
      revision: e.modifyIndex,
      key: e.key,
      event: { type: "put", kv: toKv(e) } as const,
    })),
    ...deletes.map((d) => ({ revision: d.revision, key: d.key, event: { type: "delete", ...d } as const })),
  ];
  events.sort((x, y) =>
    x.revision !== y.revision ? (x.revision < y.revision ? -1 : 1) : x.key < y.key ? -1 : 1,
  );
  return events.map((e) => e.event);
}

/** A token bucket pacing a blocking-query loop (Consul's rule: never spin on early answers). */
export class TokenBucket {
  readonly #perMs: number;
  readonly #burst: number;
  #tokens: number;
  #at: number;

  constructor(ratePerSecond: number, burst: number, now: number) {
    this.#perMs = ratePerSecond / 1_000;
    this.#burst = burst;
    this.#tokens = burst;
    this.#at = now;
  }

  /** Takes a token; returns how long to wait (ms) before using it. */
  take(now: number): number {
    this.#tokens = Math.min(this.#burst, this.#tokens + (now - this.#at) * this.#perMs);
    this.#at = now;
    this.#tokens -= 1;
    return this.#tokens >= 0 ? 0 : -this.#tokens / this.#perMs;
  }
}
