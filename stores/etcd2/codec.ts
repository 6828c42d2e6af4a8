/**
 * The pure half of the etcd v2 driver: request paths and form bodies, key validation, node-tree
 * flattening, error-body mapping, watch-action mapping, and the reader that decodes a list answer as
 * it streams in under `maxValueBytes` (`listReader`). No I/O; `index.ts` does the talking.
 * Facts about the v2 keys API are in `/work/shared/reference/stores.md` §2.1.
 */
import {
  ConflictError,
  KeyExistsError,
  KeyNotFoundError,
  StoreError,
  StoreErrorCode,
  UnavailableError,
} from "../errors.ts";
import { type JsonStreamError, JsonStreamReader, OmittedString } from "../json-stream.ts";
import { preview, previewJson } from "../preview.ts";
import type { KeyValue, ResyncCause, Revision, WatchEvent } from "../store.ts";
import { boundValue } from "../values.ts";

/** One node of a v2 answer, as the server sends it. */
export interface EtcdNode {
  readonly key: string;
  /** An `OmittedString` when the answer was read by `listReader` and the value was over its limit. */
  readonly value?: string | OmittedString | undefined;
  readonly dir?: boolean | undefined;
  readonly nodes?: readonly EtcdNode[] | undefined;
  readonly ttl?: number | undefined;
  readonly expiration?: string | undefined;
  readonly modifiedIndex: number;
  readonly createdIndex: number;
}

/** A successful v2 answer (also one watch event). */
export interface EtcdAnswer {
  readonly action: string;
  readonly node: EtcdNode;
  readonly prevNode?: EtcdNode | undefined;
}

/** The body of a failed v2 request. */
export interface EtcdFailure {
  readonly errorCode: number;
  readonly message: string;
  readonly cause?: string | undefined;
  readonly index?: number | undefined;
}

/** The v2 error codes this driver acts on (etcd `error/error.go`). */
export const EtcdCode = {
  KeyNotFound: 100,
  CompareFailed: 101,
  NotFile: 102,
  NotDir: 104,
  NodeExists: 105,
  RootReadOnly: 107,
  Unauthorized: 110,
  RaftInternal: 300,
  LeaderElect: 301,
  WatcherCleared: 400,
  EventIndexCleared: 401,
} as const;

const KEYS_PATH = "/v2/keys";

/** Rejects keys the v2 store would rewrite or hide, so what was written is what is read back. */
export function validateKey(key: string): void {
  const invalid = (why: string) =>
    new StoreError(StoreErrorCode.Invalid, `invalid etcd2 key "${key}": ${why}`, { key });
  if (!key.startsWith("/") || key === "/") throw invalid("a key is an absolute path below / (e.g. /a/b)");
  for (const segment of key.slice(1).split("/")) {
    if (segment === "") throw invalid("empty path segment (a trailing or doubled /)");
    if (segment === "." || segment === "..") throw invalid("the v2 store resolves . and .. segments away");
    if (segment.startsWith("_"))
      throw invalid("segments starting with _ are hidden from v2 listings and watches");
  }
  if (!key.isWellFormed()) throw invalid("not valid UTF-8 text (lone surrogate)");
}

/** `/v2/keys/<key>` with every segment percent-encoded (keys contain `&`, `:`, `%`, `?`…). */
export function keyPath(key: string): string {
  if (key === "/" || key === "") return `${KEYS_PATH}/`;
  return `${KEYS_PATH}${key.split("/").map(encodeURIComponent).join("/")}`;
}

/**
 * The deepest directory holding every key that starts with `prefix`: `/a/b/` → `/a/b`, `/a/b` → `/a`
 * (it also holds `/a/bc`), `/` → `/`.
 */
export function directoryOf(prefix: string): string {
  const cut = prefix.lastIndexOf("/");
  return cut <= 0 ? "/" : prefix.slice(0, cut);
}

/** A query string from the fields that are set, in the given order; "" when none is. */
export function query(fields: Record<string, string | number | bigint | boolean | undefined>): string {
  const parts: string[] = [];
  for (const [name, value] of Object.entries(fields)) {
    if (value !== undefined) parts.push(`${encodeURIComponent(name)}=${encodeURIComponent(String(value))}`);
  }
  return parts.length === 0 ? "" : `?${parts.join("&")}`;
}

/** An `application/x-www-form-urlencoded` body; an empty string value is sent as `name=`. */
export function form(fields: Record<string, string | number | undefined>): string {
  return Object.entries(fields)
    .filter((entry): entry is [string, string | number] => entry[1] !== undefined)
    .map(([name, value]) => `${encodeURIComponent(name)}=${encodeURIComponent(String(value))}`)
    .join("&");
}

/** A TTL as the v2 API takes it: whole seconds ≥ 1 (fractions round up). */
export function ttlField(key: string, ttlSeconds: number | undefined): number | undefined {
  if (ttlSeconds === undefined) return undefined;
  if (!Number.isFinite(ttlSeconds) || ttlSeconds <= 0) {
    throw new StoreError(
      StoreErrorCode.Invalid,
      `invalid TTL ${ttlSeconds} s for key ${key}: etcd2 needs at least 1 second (omit it for a key that never expires)`,
      { key },
    );
  }
  return Math.ceil(ttlSeconds);
}

/** Rejects values that are not UTF-8 text (a lone surrogate cannot be sent byte-exact). */
export function checkValue(key: string, value: string): string {
  if (value.isWellFormed()) return value;
  throw new StoreError(StoreErrorCode.Invalid, `the value for etcd2 key ${key} is not valid UTF-8 text`, {
    key,
  });
}

/** Rejects prefixes that no key can start with. "" means every key. */
export function checkPrefix(prefix: string): void {
  if (prefix !== "" && !prefix.startsWith("/")) {
    throw new StoreError(
      StoreErrorCode.Invalid,
      `invalid etcd2 prefix "${prefix}": keys are paths starting with /`,
    );
  }
}

/** The HTTP Basic header for the credentials, or no header without a username. */
export function basicAuth(
  username: string | undefined,
  password: string | undefined,
): Record<string, string> {
  if (username === undefined) return {};
  return { authorization: `Basic ${Buffer.from(`${username}:${password ?? ""}`).toString("base64")}` };
}

/** The value of an index header (`X-Etcd-Index`), or undefined when absent or not a number. */
export function parseIndex(text: string | null): Revision | undefined {
  if (text === null || !/^\d+$/.test(text.trim())) return undefined;
  return BigInt(text.trim());
}

/** The store index of an answer (`X-Etcd-Index`); its absence means the server is no etcd v2. */
export function requireIndex(header: string | null, endpoint: string): Revision {
  const index = parseIndex(header);
  if (index !== undefined) return index;
  throw protocol(endpoint, "no X-Etcd-Index header (is it an etcd server with --enable-v2?)");
}

function protocol(endpoint: string, what: string, cause?: unknown): StoreError {
  return new StoreError(StoreErrorCode.Protocol, `etcd2 endpoint ${endpoint} answered ${what}`, {
    endpoint,
    ...(cause === undefined ? {} : { cause }),
  });
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null;
const isIndex = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

/** Checks a node and every node below it (with a list, not recursion: a tree may be deep). */
function checkNode(root: unknown, endpoint: string): EtcdNode {
  const pending: unknown[] = [root];
  while (pending.length > 0) {
    const v = pending.pop();
    if (!isObject(v) || typeof v.key !== "string" || !isIndex(v.modifiedIndex)) {
      throw protocol(endpoint, `a node without key or modifiedIndex: ${previewJson(v)}`);
    }
    const key = v.key.slice(0, 200);
    if (v.value !== undefined && typeof v.value !== "string" && !(v.value instanceof OmittedString))
      throw protocol(endpoint, `a non-text value for ${key}`);
    if (v.ttl !== undefined && typeof v.ttl !== "number")
      throw protocol(endpoint, `a non-numeric ttl for ${key}`);
    if (v.nodes !== undefined) {
      if (!Array.isArray(v.nodes)) throw protocol(endpoint, `a non-list "nodes" under ${key}`);
      for (const child of v.nodes) pending.push(child);
    }
  }
  return root as EtcdNode;
}

function parseJson(body: string, endpoint: string): unknown {
  try {
    return JSON.parse(body);
  } catch (err) {
    throw protocol(endpoint, `a body that is not JSON: ${body.slice(0, 200)}`, err);
  }
}

/** Parses a 2xx body: `{action, node, prevNode?}`. */
export function parseAnswer(body: string, endpoint: string): EtcdAnswer {
  return decodeAnswer(parseJson(body, endpoint), endpoint, body.slice(0, 200));
}

/**
 * Checks a parsed 2xx body, from `parseAnswer` or `listReader`; `shown` quotes it in errors (default:
 * a preview of `v`).
 */
export function decodeAnswer(v: unknown, endpoint: string, shown?: string): EtcdAnswer {
  if (!isObject(v) || typeof v.action !== "string") {
    throw protocol(endpoint, `a success body without "action": ${shown ?? previewJson(v)}`);
  }
  const node = checkNode(v.node, endpoint);
  const prevNode = v.prevNode === undefined ? undefined : checkNode(v.prevNode, endpoint);
  return { action: v.action, node, prevNode };
}

/**
 * The incremental reader of a list answer (`GET …?recursive=true`) under `maxValueBytes`: a node's
 * `value` over the limit is left out as the answer streams in (`ListOptions.maxValueBytes`); every
 * other field, the keys above all, is read whole. Its result goes to `decodeAnswer`.
 */
export function listReader(maxValueBytes: number): JsonStreamReader {
  return new JsonStreamReader({ omit: { properties: ["value"], maxBytes: maxValueBytes } });
}

/** The Protocol error for a body a `listReader` refused. */
export function notJson(endpoint: string, err: JsonStreamError): StoreError {
  return protocol(endpoint, `a body that is not JSON: ${err.message}`, err);
}

/** Parses an error body `{errorCode, message, cause?, index?}`; undefined when it is not one. */
export function parseFailure(body: string): EtcdFailure | undefined {
  let v: unknown;
  try {
    v = JSON.parse(body);
  } catch {
    return undefined;
  }
  if (!isObject(v) || typeof v.errorCode !== "number") return undefined;
  return {
    errorCode: v.errorCode,
    message: typeof v.message === "string" ? v.message : "",
    cause: typeof v.cause === "string" ? v.cause : undefined,
    index: typeof v.index === "number" ? v.index : undefined,
  };
}

/** True when the body is a v2 error with this code. */
export function hasCode(body: string, code: number): boolean {
  return parseFailure(body)?.errorCode === code;
}

/** Why renew cannot restart a TTL whose full length nobody remembers. */
export function unknownTtl(key: string, endpoint: string): StoreError {
  return new StoreError(
    StoreErrorCode.Invalid,
    `cannot renew etcd2 key ${key}: its full TTL is unknown to this client (it was written elsewhere and its ` +
      "write event has left the store's history, or was refreshed since); write it once with update and a TTL",
    { key, endpoint },
  );
}

/** The key's actual index from a "Compare failed" cause such as `[1 != 4]` (or `[old != new] [1 != 4]`). */
export function actualIndex(failure: EtcdFailure): Revision | undefined {
  const matches = [...(failure.cause ?? "").matchAll(/\[(\d+) != (\d+)\]/g)];
  const last = matches.at(-1);
  return last?.[2] === undefined ? undefined : BigInt(last[2]);
}

/** What the caller was doing, so a failure can name the key and expected revision. */
export interface Attempt {
  readonly key: string;
  readonly endpoint: string;
  readonly expectRevision?: Revision | undefined;
}

/**
 * Maps a non-2xx answer onto a typed error. Operation-specific outcomes (a 404 meaning "absent")
 * are decided by the caller before this.
 */
export function failureError(status: number, body: string, attempt: Attempt): StoreError {
  const { key, endpoint } = attempt;
  const failure = parseFailure(body);
  const details = { endpoint, cause: failure ?? body.slice(0, 200) };
  if (failure === undefined) {
    if (status >= 500) return new UnavailableError(endpoint, `HTTP ${status} for ${key}`, { key });
    if (status === 401 || status === 403) {
      return new StoreError(
        StoreErrorCode.Auth,
        `etcd2 endpoint ${endpoint} refused the credentials (HTTP ${status}): check --etcd-username/--etcd-password`,
        details,
      );
    }
    return protocol(
      endpoint,
      `HTTP ${status} for ${key} with a body that is not an etcd error: ${body.slice(0, 200)}`,
    );
  }
  const said = preview(
    `errorCode ${failure.errorCode} "${failure.message}"${failure.cause === undefined ? "" : ` (${failure.cause})`}`,
    300,
  );
  switch (failure.errorCode) {
    case EtcdCode.KeyNotFound:
      return attempt.expectRevision === undefined
        ? new KeyNotFoundError(key, details)
        : new ConflictError(key, attempt.expectRevision, undefined, details);
    case EtcdCode.CompareFailed:
      return new ConflictError(key, attempt.expectRevision ?? 0n, actualIndex(failure), details);
    case EtcdCode.NodeExists:
      return new KeyExistsError(key, details);
    case EtcdCode.NotFile:
    case EtcdCode.NotDir:
    case EtcdCode.RootReadOnly:
      return new StoreError(
        StoreErrorCode.Invalid,
        `etcd2 cannot use key ${key}: ${said}; a key cannot be both a value and a directory of keys`,
        { ...details, key },
      );
    case EtcdCode.Unauthorized:
      return new StoreError(
        StoreErrorCode.Auth,
        `etcd2 endpoint ${endpoint} refused access to ${key}: ${said}; check --etcd-username/--etcd-password`,
        { ...details, key },
      );
    case EtcdCode.RaftInternal:
    case EtcdCode.LeaderElect:
      return new UnavailableError(endpoint, `${said} for ${key}`, { key, cause: failure });
    default:
      if (status >= 500)
        return new UnavailableError(endpoint, `HTTP ${status}: ${said} for ${key}`, { key, cause: failure });
      return protocol(endpoint, `HTTP ${status} ${said} for ${key}`, failure);
  }
}

/**
 * The KeyValue a (non-directory) node describes; a value over `maxValueBytes` (or left out already by
 * `listReader`) is handed over as "" with `omittedBytes`.
 */
export function toKeyValue(node: EtcdNode, maxValueBytes?: number): KeyValue {
  const expires = node.ttl !== undefined || node.expiration !== undefined;
  const value = node.value ?? "";
  const kv = {
    key: node.key,
    value: typeof value === "string" ? value : "",
    revision: BigInt(node.modifiedIndex),
    expires,
    ...(node.ttl === undefined ? {} : { ttlSeconds: node.ttl }),
  };
  return boundValue(kv, maxValueBytes, typeof value === "string" ? undefined : value.bytes);
}

/** Every key (not directory) in the tree whose key starts with `prefix`, sorted by key. */
export function flatten(root: EtcdNode, prefix: string, maxValueBytes?: number): KeyValue[] {
  const out: KeyValue[] = [];
  const stack: EtcdNode[] = [root];
  for (let node = stack.pop(); node !== undefined; node = stack.pop()) {
    if (node.dir === true) for (const child of node.nodes ?? []) stack.push(child);
    else if (node.key.startsWith(prefix)) out.push(toKeyValue(node, maxValueBytes));
  }
  return out.sort((x, y) => (x.key < y.key ? -1 : x.key > y.key ? 1 : 0));
}

/** What one watch answer means for a watch on `prefix`. */
export type WatchStep =
  | { readonly kind: "event"; readonly event: WatchEvent }
  /** Not under the prefix, a directory being made, or an action that changes nothing visible. */
  | { readonly kind: "skip" }
  /** A directory holding watched keys vanished in one event: only a re-list tells which keys went. */
  | { readonly kind: "resync" };

const PUT_ACTIONS: ReadonlySet<string> = new Set(["set", "create", "update", "compareAndSwap"]);
const DELETE_ACTIONS: ReadonlySet<string> = new Set(["delete", "compareAndDelete", "expire"]);

/**
 * Maps a watch answer onto a weft event (a put's value bound by `maxValueBytes`). An unknown action
 * is a protocol error.
 */
export function watchStep(
  answer: EtcdAnswer,
  prefix: string,
  endpoint: string,
  maxValueBytes?: number,
): WatchStep {
  const { action, node } = answer;
  const isPut = PUT_ACTIONS.has(action);
  if (!isPut && !DELETE_ACTIONS.has(action)) {
    throw protocol(
      endpoint,
      `a watch event with unknown action ${previewJson(action)} for ${preview(node.key)}`,
    );
  }
  if (node.dir === true) {
    const below = `${node.key}/`;
    const holdsWatched = below.startsWith(prefix) || prefix.startsWith(below);
    return !isPut && holdsWatched ? { kind: "resync" } : { kind: "skip" };
  }
  if (!node.key.startsWith(prefix)) return { kind: "skip" };
  if (isPut) return { kind: "event", event: { type: "put", kv: toKeyValue(node, maxValueBytes) } };
  return {
    kind: "event",
    event: {
      type: "delete",
      key: node.key,
      revision: BigInt(node.modifiedIndex),
      reason: action === "expire" ? "expired" : "deleted",
    },
  };
}

/** What one finished long poll means: an event (or nothing) and where to go on, or a re-list. */
export type PollOutcome =
  | { readonly kind: "next"; readonly event: WatchEvent | undefined; readonly waitIndex: Revision }
  | { readonly kind: "resync"; readonly cause: ResyncCause };

/**
 * Interprets a long-poll answer for a watch on `prefix`. HTTP 400 with errorCode 401 (the index left
 * the 1,000-event history) or 400 (watcher cleared) asks for a re-list; other failures are thrown.
 */
export function pollOutcome(
  status: number,
  body: string,
  prefix: string,
  endpoint: string,
  maxValueBytes?: number,
): PollOutcome {
  if (status === 200) {
    const answer = parseAnswer(body, endpoint);
    const step = watchStep(answer, prefix, endpoint, maxValueBytes);
    if (step.kind === "resync") return { kind: "resync", cause: "gap" };
    const event = step.kind === "event" ? step.event : undefined;
    return { kind: "next", event, waitIndex: BigInt(answer.node.modifiedIndex) + 1n };
  }
  const code = parseFailure(body)?.errorCode;
  if (code === EtcdCode.EventIndexCleared || code === EtcdCode.WatcherCleared) {
    return { kind: "resync", cause: "compacted" };
  }
  throw failureError(status, body, { key: directoryOf(prefix), endpoint });
}
