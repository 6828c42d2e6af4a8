/**
 * The etcd v3 grpc-gateway JSON dialect (etcd ≥ 3.4, paths under `/v3/`), as pure functions: keys and
 * values travel as base64 of their UTF-8 bytes, int64 fields as decimal strings, and proto3 leaves out
 * every default (a failed txn has no `succeeded`, a PUT event no `type`, lease 0 no `lease`). No I/O
 * here; every decoder takes `where` (endpoint and path) and throws a Protocol `StoreError` naming it
 * when an answer does not have the expected shape. A prefix's Range under `maxValueBytes` is decoded
 * as it streams in (`rangeReader`, `decodeRangeList`), longer values left out.
 */
import { StoreError, StoreErrorCode, UnavailableError } from "../errors.ts";
import { JsonStreamError, JsonStreamReader, OmittedString } from "../json-stream.ts";
import { previewJson } from "../preview.ts";
import type { KeyValue } from "../store.ts";
import { base64Bytes, base64Chars, base64Padding, boundValue, dropped } from "../values.ts";

/** Endpoint and path an answer came from, e.g. `http://127.0.0.1:2379/v3/kv/range`; only for messages. */
export type Where = string;

/** gRPC status codes the gateway reports in `code` / `grpc_code`. */
export const GrpcCode = {
  InvalidArgument: 3,
  DeadlineExceeded: 4,
  NotFound: 5,
  PermissionDenied: 7,
  FailedPrecondition: 9,
  Unavailable: 14,
  Unauthenticated: 16,
} as const;

export function protocolError(where: Where, problem: string): StoreError {
  return new StoreError(StoreErrorCode.Protocol, `etcd at ${where} answered unexpectedly: ${problem}`);
}

// ---- bytes -------------------------------------------------------------------------------------------

const utf8 = new TextEncoder();
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function bytesToBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

/** Base64 of the UTF-8 bytes of `text`, as the gateway wants keys and values. */
export function encodeText(text: string): string {
  return bytesToBase64(utf8.encode(text));
}

/** The text behind a base64 field; rejects anything that is not canonical base64. */
export function decodeText(base64: string, field: string, where: Where): string {
  checkBase64(base64, field, where);
  return Buffer.from(base64, "base64").toString("utf8");
}

function checkBase64(base64: string, field: string, where: Where): void {
  if (!BASE64.test(base64)) throw protocolError(where, `field ${field} is not base64: ${preview(base64)}`);
}

/**
 * The `key`/`range_end` pair selecting every key that starts with `prefix`: range_end is the prefix
 * with its last byte below 0xff incremented and the rest cut off. An empty (or all-0xff) prefix selects
 * from there to the end of the keyspace, which etcd spells as the single byte 0.
 */
export function prefixRange(prefix: string): { key: string; range_end: string } {
  const bytes = utf8.encode(prefix);
  const key = bytes.length === 0 ? "AA==" : bytesToBase64(bytes);
  for (let i = bytes.length - 1; i >= 0; i--) {
    const byte = bytes[i] ?? 0xff;
    if (byte < 0xff) {
      const end = bytes.slice(0, i + 1);
      end[i] = byte + 1;
      return { key, range_end: bytesToBase64(end) };
    }
  }
  return { key, range_end: "AA==" };
}

/** An int64/uint64 field: a decimal string, a JSON number, or absent (proto3 default 0). */
export function parseInt64(value: unknown, field: string, where: Where): bigint {
  if (value === undefined || value === null) return 0n;
  if (typeof value === "string" && /^-?\d{1,20}$/.test(value)) return BigInt(value);
  if (typeof value === "number" && Number.isSafeInteger(value)) return BigInt(value);
  throw protocolError(where, `field ${field} is ${previewJson(value)}, not an integer`);
}

// ---- requests ----------------------------------------------------------------------------------------

type Json = Record<string, unknown>;

function lease(id: bigint): Json {
  return id === 0n ? {} : { lease: id.toString() };
}

/** Body of `/v3/kv/range` for one key. */
export function rangeRequest(key: string): Json {
  return { key: encodeText(key) };
}

/** Body of `/v3/kv/range` for every key under `prefix`, sorted by key. */
export function prefixRangeRequest(prefix: string): Json {
  return { ...prefixRange(prefix), sort_order: "ASCEND", sort_target: "KEY" };
}

/** Body of `/v3/kv/deleterange` for one key. */
export function deleteRequest(key: string): Json {
  return { key: encodeText(key) };
}

/** `/v3/kv/txn`: put only if the key does not exist; the failure branch reads what is there. */
export function createTxn(key: string, value: string, leaseId: bigint): Json {
  const k = encodeText(key);
  return {
    compare: [{ target: "CREATE", key: k, result: "EQUAL", create_revision: "0" }],
    success: [{ request_put: { key: k, value: encodeText(value), ...lease(leaseId) } }],
    failure: [{ request_range: { key: k } }],
  };
}

/** Compares that hold only while the key exists and was last written at `revision`. */
function atRevision(k: string, revision: bigint): Json[] {
  return [
    { target: "MOD", key: k, result: "EQUAL", mod_revision: revision.toString() },
    { target: "CREATE", key: k, result: "GREATER", create_revision: "0" },
  ];
}

/** `/v3/kv/txn`: compare-and-swap on the mod revision; the success branch returns the previous kv. */
export function updateTxn(key: string, value: string, expectRevision: bigint, leaseId: bigint): Json {
  const k = encodeText(key);
  return {
    compare: atRevision(k, expectRevision),
    success: [{ request_put: { key: k, value: encodeText(value), ...lease(leaseId), prev_kv: true } }],
    failure: [{ request_range: { key: k } }],
  };
}

/** `/v3/kv/txn`: delete only if the key is still at `expectRevision`. */
export function deleteTxn(key: string, expectRevision: bigint): Json {
  const k = encodeText(key);
  return {
    compare: atRevision(k, expectRevision),
    success: [{ request_delete_range: { key: k } }],
    failure: [{ request_range: { key: k } }],
  };
}

/** Body of `/v3/lease/grant`. */
export function leaseGrantRequest(ttlSeconds: number): Json {
  return { TTL: String(ttlSeconds) };
}

/** Body of `/v3/lease/revoke` and `/v3/lease/keepalive`. */
export function leaseRequest(id: bigint): Json {
  return { ID: id.toString() };
}

/** Body of `/v3/lease/timetolive`. */
export function timeToLiveRequest(id: bigint, keys: boolean): Json {
  return keys ? { ID: id.toString(), keys: true } : { ID: id.toString() };
}

/** Body of `/v3/auth/authenticate`. */
export function authenticateRequest(name: string, password: string): Json {
  return { name, password };
}

/** Body of `POST /v3/watch`: every change under `prefix` from `startRevision` on, with the old value. */
export function watchCreateRequest(prefix: string, startRevision: bigint): Json {
  return {
    create_request: {
      ...prefixRange(prefix),
      start_revision: startRevision.toString(),
      prev_kv: true,
      progress_notify: true,
    },
  };
}

// ---- answers -----------------------------------------------------------------------------------------

/** One `mvccpb.KeyValue`, decoded. */
export interface EtcdKv {
  readonly key: string;
  readonly value: string;
  readonly createRevision: bigint;
  readonly modRevision: bigint;
  readonly version: bigint;
  /** The lease the key is attached to; 0n for none. */
  readonly lease: bigint;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** `value` as a JSON object, or a Protocol error naming `field`. */
export function asObject(value: unknown, field: string, where: Where): Record<string, unknown> {
  if (!isObject(value)) throw protocolError(where, `${field} is ${previewJson(value)}, not an object`);
  return value;
}

/** `value` as a JSON list; absent (proto3's empty list) is []. */
export function asList(value: unknown, field: string, where: Where): unknown[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw protocolError(where, `${field} is not a list`);
  return value;
}

/** `value` as a string; absent (proto3's empty string) is "". */
export function asString(value: unknown, field: string, where: Where): string {
  if (value === undefined) return "";
  if (typeof value !== "string") throw protocolError(where, `field ${field} is not a string`);
  return value;
}

export function decodeKv(raw: unknown, where: Where): EtcdKv {
  return decodeBoundKv(raw, where, undefined).kv;
}

/**
 * A kv whose value is left out (`value` "", `omittedBytes` its decoded length) when it decodes to
 * more than `maxValueBytes` bytes, or when `rangeReader` left it out already (an `OmittedString`).
 */
export function decodeBoundKv(
  raw: unknown,
  where: Where,
  maxValueBytes: number | undefined,
): { kv: EtcdKv; omittedBytes: number | undefined } {
  const kv = asObject(raw, "kv", where);
  const key = decodeText(asString(kv.key, "kv.key", where), "kv.key", where);
  if (key === "") throw protocolError(where, "a kv has no key");
  let value = "";
  let omittedBytes: number | undefined;
  if (kv.value instanceof OmittedString) {
    if (!kv.value.base64) {
      throw protocolError(where, `field kv.value is not base64 (${kv.value.bytes} characters, left unread)`);
    }
    omittedBytes = base64Bytes(kv.value.bytes, kv.value.padding);
  } else {
    const text = asString(kv.value, "kv.value", where);
    checkBase64(text, "kv.value", where);
    const bytes = base64Bytes(text.length, base64Padding(text));
    if (maxValueBytes !== undefined && bytes > maxValueBytes) {
      omittedBytes = bytes;
      dropped(text.length);
    } else value = Buffer.from(text, "base64").toString("utf8");
  }
  return {
    kv: {
      key,
      value,
      createRevision: parseInt64(kv.create_revision, "kv.create_revision", where),
      modRevision: parseInt64(kv.mod_revision, "kv.mod_revision", where),
      version: parseInt64(kv.version, "kv.version", where),
      lease: parseInt64(kv.lease, "kv.lease", where),
    },
    omittedBytes,
  };
}

/** The contract's view of a kv: its revision is the last write (`mod_revision`). */
export function toKeyValue(kv: EtcdKv, ttlSeconds?: number): KeyValue {
  return {
    key: kv.key,
    value: kv.value,
    revision: kv.modRevision,
    expires: kv.lease !== 0n,
    ...(ttlSeconds === undefined ? {} : { ttlSeconds }),
  };
}

/** `header.revision`: the store revision the answer reflects. Every unary answer carries one. */
export function decodeHeaderRevision(json: unknown, where: Where): bigint {
  const header = asObject(asObject(json, "answer", where).header, "header", where);
  const revision = parseInt64(header.revision, "header.revision", where);
  if (revision <= 0n) throw protocolError(where, "header.revision is missing");
  return revision;
}

export interface RangeAnswer {
  readonly revision: bigint;
  readonly kvs: readonly EtcdKv[];
}

export function decodeRange(json: unknown, where: Where): RangeAnswer {
  const kvs = asList(asObject(json, "answer", where).kvs, "kvs", where).map((kv) => decodeKv(kv, where));
  return { revision: decodeHeaderRevision(json, where), kvs };
}

/**
 * The incremental reader of a prefix's Range answer under `maxValueBytes`: a kv's `value` whose base64
 * is longer than such a value's can be is left out as the answer streams in. Its result goes to
 * `decodeRangeList`.
 */
export function rangeReader(maxValueBytes: number): JsonStreamReader {
  return new JsonStreamReader({ omit: { properties: ["value"], maxBytes: base64Chars(maxValueBytes) } });
}

/** What a `rangeReader` threw, as the Protocol error `parseJson` gives for a body that is not JSON. */
export function readerFailure(err: unknown, where: Where): unknown {
  return err instanceof JsonStreamError ? protocolError(where, `not JSON: ${err.message}`) : err;
}

/**
 * A prefix's Range answer (from `parseJson` or `rangeReader`) as list entries: values over
 * `maxValueBytes` left out with their decoded length, kept ones checked as `boundValue` does, as the
 * gRPC path (`listEntry` in grpc-codec.ts) hands them over.
 */
export function decodeRangeList(
  json: unknown,
  where: Where,
  maxValueBytes: number | undefined,
): { revision: bigint; entries: KeyValue[] } {
  const entries = asList(asObject(json, "answer", where).kvs, "kvs", where).map((raw) => {
    const { kv, omittedBytes } = decodeBoundKv(raw, where, maxValueBytes);
    return boundValue(toKeyValue(kv), maxValueBytes, omittedBytes);
  });
  return { revision: decodeHeaderRevision(json, where), entries };
}

/** `deleted` of a deleterange answer: how many keys went away. */
export function decodeDeleteRange(json: unknown, where: Where): bigint {
  decodeHeaderRevision(json, where);
  return parseInt64(asObject(json, "answer", where).deleted, "deleted", where);
}

/** One entry of a txn's `responses`. */
export type TxnOpAnswer =
  | { readonly op: "range"; readonly kvs: readonly EtcdKv[] }
  | { readonly op: "put"; readonly prevKv: EtcdKv | undefined }
  | { readonly op: "delete"; readonly deleted: bigint };

export interface TxnAnswer {
  readonly succeeded: boolean;
  readonly revision: bigint;
  readonly responses: readonly TxnOpAnswer[];
}

function decodeTxnOp(raw: unknown, where: Where): TxnOpAnswer {
  const op = asObject(raw, "txn response", where);
  if (op.response_range !== undefined) {
    const range = asObject(op.response_range, "response_range", where);
    return {
      op: "range",
      kvs: asList(range.kvs, "response_range.kvs", where).map((kv) => decodeKv(kv, where)),
    };
  }
  if (op.response_put !== undefined) {
    const put = asObject(op.response_put, "response_put", where);
    return { op: "put", prevKv: put.prev_kv === undefined ? undefined : decodeKv(put.prev_kv, where) };
  }
  if (op.response_delete_range !== undefined) {
    const del = asObject(op.response_delete_range, "response_delete_range", where);
    return { op: "delete", deleted: parseInt64(del.deleted, "response_delete_range.deleted", where) };
  }
  throw protocolError(where, `unknown txn response ${previewJson(op)}`);
}

export function decodeTxn(json: unknown, where: Where): TxnAnswer {
  const answer = asObject(json, "answer", where);
  if (answer.succeeded !== undefined && typeof answer.succeeded !== "boolean") {
    throw protocolError(where, "field succeeded is not a boolean");
  }
  return {
    succeeded: answer.succeeded === true,
    revision: decodeHeaderRevision(json, where),
    responses: asList(answer.responses, "responses", where).map((op) => decodeTxnOp(op, where)),
  };
}

/** The kvs of the txn's first range response (what a failed compare found), if it has one. */
export function txnRangeKvs(answer: TxnAnswer): readonly EtcdKv[] {
  for (const op of answer.responses) if (op.op === "range") return op.kvs;
  return [];
}

export interface LeaseGrant {
  readonly id: bigint;
  readonly ttlSeconds: number;
}

function seconds(value: unknown, field: string, where: Where): number {
  const n = parseInt64(value, field, where);
  if (n > BigInt(Number.MAX_SAFE_INTEGER) || n < -1n)
    throw protocolError(where, `${field} ${n} is out of range`);
  return Number(n);
}

export function decodeLeaseGrant(json: unknown, where: Where): LeaseGrant {
  decodeHeaderRevision(json, where);
  const answer = asObject(json, "answer", where);
  const id = parseInt64(answer.ID, "ID", where);
  const ttlSeconds = seconds(answer.TTL, "TTL", where);
  if (id === 0n || ttlSeconds <= 0)
    throw protocolError(where, `lease grant gave ID ${id} with TTL ${ttlSeconds}`);
  return { id, ttlSeconds };
}

/** `result.TTL` of a keepalive: the restarted TTL, or 0 when the lease no longer exists. */
export function decodeKeepAlive(json: unknown, where: Where): number {
  const result = asObject(asObject(json, "answer", where).result, "result", where);
  return Math.max(0, seconds(result.TTL, "result.TTL", where));
}

export interface TimeToLive {
  /** Seconds left; -1 when the lease does not exist (expired or revoked). */
  readonly ttlSeconds: number;
  /** Keys attached to the lease (only when asked for with `keys: true`). */
  readonly keys: readonly string[];
}

export function decodeTimeToLive(json: unknown, where: Where): TimeToLive {
  decodeHeaderRevision(json, where);
  const answer = asObject(json, "answer", where);
  const keys = asList(answer.keys, "keys", where).map((k) =>
    decodeText(asString(k, "keys[]", where), "keys[]", where),
  );
  return { ttlSeconds: seconds(answer.TTL, "TTL", where), keys };
}

export function decodeAuthenticate(json: unknown, where: Where): string {
  const token = asString(asObject(json, "answer", where).token, "token", where);
  if (token === "") throw protocolError(where, "authenticate returned no token");
  return token;
}

// ---- errors ------------------------------------------------------------------------------------------

/** An error the gateway reported instead of an answer. */
export interface GatewayError {
  readonly code: number;
  readonly message: string;
}

/**
 * The error in a gateway answer, if it is one: unary calls answer `{"error","message","code"}`, streams
 * `{"error":{"grpc_code","http_code","message"}}`.
 */
export function decodeGatewayError(json: unknown): GatewayError | undefined {
  if (!isObject(json) || json.error === undefined || json.error === "") return undefined;
  const error = json.error;
  if (isObject(error)) {
    const code = typeof error.grpc_code === "number" ? error.grpc_code : -1;
    return { code, message: typeof error.message === "string" ? preview(error.message) : previewJson(error) };
  }
  const code = typeof json.code === "number" ? json.code : -1;
  const message =
    typeof json.message === "string" && json.message !== ""
      ? json.message
      : typeof error === "string"
        ? error
        : previewJson(error);
  return { code, message: preview(message) };
}

/** The token expired or was never valid: authenticate again and retry once. */
export function isInvalidToken(error: GatewayError | string): boolean {
  const message = typeof error === "string" ? error : error.message;
  return /invalid auth token|auth token is expired|invalid auth management/i.test(message);
}

const AUTH =
  /authentication failed|permission denied|user name is empty|invalid auth token|auth token is expired/i;
const UNAVAILABLE = /no leader|request timed out|leader changed|too many requests|not capable|timed out/i;

/** Maps a failed gateway call to the StoreError a caller can act on. */
export function gatewayFailure(
  error: GatewayError | undefined,
  status: number,
  endpoint: string,
  path: string,
  body: string,
): StoreError {
  const where = `${endpoint}${path}`;
  if (error === undefined) {
    const hint = status === 404 ? " (is this etcd ≥ 3.4 with its grpc gateway enabled?)" : "";
    return protocolError(where, `HTTP ${status} ${preview(body)}${hint}`);
  }
  if (
    error.code === GrpcCode.Unauthenticated ||
    error.code === GrpcCode.PermissionDenied ||
    AUTH.test(error.message)
  ) {
    return new StoreError(
      StoreErrorCode.Auth,
      `etcd at ${where} refused the request: ${error.message} (check the etcd username, password and the user's role)`,
      { endpoint },
    );
  }
  if (
    error.code === GrpcCode.Unavailable ||
    error.code === GrpcCode.DeadlineExceeded ||
    UNAVAILABLE.test(error.message)
  ) {
    return new UnavailableError(endpoint, `${path}: ${error.message}`);
  }
  return protocolError(where, `${error.message} (gRPC code ${error.code}, HTTP ${status})`);
}

/** At most 200 characters of `s`, for messages. */
export function preview(s: string): string {
  return s.length > 200 ? `${s.slice(0, 200)}…` : s;
}

/** `JSON.parse` that fails with a Protocol StoreError naming the endpoint. */
export function parseJson(body: string, where: Where): unknown {
  try {
    return JSON.parse(body);
  } catch {
    throw protocolError(where, `not JSON: ${preview(body)}`);
  }
}
