/**
 * etcd v3's gRPC wire format for the one call the driver makes over gRPC, `etcdserverpb.KV/Range` of a
 * prefix (the list), as pure functions. Protobuf is written by hand for the few fields used, numbered
 * as in etcd 3.4's `rpc.proto` and `kv.proto`:
 * - RangeRequest: key 1, range_end 2 (bytes), sort_order 5, sort_target 6 (enums);
 * - RangeResponse: header 1 (ResponseHeader: revision 3), kvs 2 (repeated KeyValue), more 3, count 4;
 * - mvccpb.KeyValue: key 1, create_revision 2, mod_revision 3, version 4, value 5, lease 6.
 * Unknown fields are skipped, as protobuf requires. A gRPC message travels as one flag byte (1 =
 * compressed, which the driver never asks for) and a 4-byte big-endian length. The answer decodes to
 * the same `RangeAnswer` the JSON gateway's `decodeRange` gives. The driver decodes the answer as it
 * streams in (`grpc-range-stream.ts`, which uses the kv and header decoders here for small messages);
 * `decodeRangeMessage` is the whole-body decoder it is tested against. No I/O here (`grpc.ts` talks).
 */
import type { KeyValue } from "../store.ts";
import { boundValue } from "../values.ts";
import {
  type EtcdKv,
  prefixRange,
  protocolError,
  type RangeAnswer,
  toKeyValue,
  type Where,
} from "./codec.ts";

export const RANGE_METHOD = "/etcdserverpb.KV/Range";

export const VARINT = 0;
export const FIXED64 = 1;
export const BYTES = 2;
export const FIXED32 = 5;
const SORT_ASCEND = 1;

// ---- requests ----------------------------------------------------------------------------------------

function varint(out: number[], value: number): void {
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
}

function bytesField(out: number[], field: number, bytes: Uint8Array): void {
  varint(out, (field << 3) | BYTES);
  varint(out, bytes.length);
  for (const b of bytes) out.push(b);
}

/** RangeRequest for every key under `prefix`, sorted by key (the gateway list's `prefixRangeRequest`). */
export function prefixRangeMessage(prefix: string): Uint8Array {
  const range = prefixRange(prefix);
  const out: number[] = [];
  bytesField(out, 1, Buffer.from(range.key, "base64"));
  bytesField(out, 2, Buffer.from(range.range_end, "base64"));
  varint(out, (5 << 3) | VARINT);
  varint(out, SORT_ASCEND);
  // sort_target KEY is 0, proto3's default: left out.
  return Uint8Array.from(out);
}

/** One gRPC length-prefixed message, uncompressed. */
export function frameMessage(message: Uint8Array): Uint8Array {
  const framed = new Uint8Array(5 + message.length);
  new DataView(framed.buffer).setUint32(1, message.length);
  framed.set(message, 5);
  return framed;
}

/** The single message of a unary answer's body. */
export function unframeMessage(body: Uint8Array, where: Where): Uint8Array {
  if (body.length < 5) throw protocolError(where, `a gRPC answer of ${body.length} bytes holds no message`);
  if (body[0] !== 0) throw protocolError(where, "a compressed gRPC message, which was not asked for");
  const length = new DataView(body.buffer, body.byteOffset, body.byteLength).getUint32(1);
  if (body.length !== 5 + length) {
    throw protocolError(where, `a gRPC message of ${length} bytes in a body of ${body.length - 5}`);
  }
  return body.subarray(5);
}

// ---- answers -----------------------------------------------------------------------------------------

/** Reads protobuf fields from one message (a view of `bytes` from `pos` to `end`). */
export class Reader {
  readonly #bytes: Uint8Array;
  readonly #text: Buffer;
  readonly #where: Where;
  pos: number;
  readonly end: number;

  constructor(
    bytes: Uint8Array,
    where: Where,
    pos = 0,
    end = bytes.length,
    text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
  ) {
    this.#bytes = bytes;
    this.#text = text;
    this.#where = where;
    this.pos = pos;
    this.end = end;
  }

  /** A varint that fits 53 bits (tags, lengths, small numbers), as a number. */
  small(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      const b = this.#byte();
      value += (b & 0x7f) * scale;
      if (b < 0x80) return value;
      scale *= 0x80;
    }
    throw protocolError(this.#where, "a protobuf length or tag longer than 8 bytes");
  }

  /** A varint as a signed 64-bit integer (int64 fields: revisions, lease IDs). */
  int64(): bigint {
    const start = this.pos;
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 7; i++) {
      const b = this.#byte();
      value += (b & 0x7f) * scale;
      if (b < 0x80) return BigInt(value);
      scale *= 0x80;
    }
    // Beyond 49 bits (etcd lease IDs are random 63-bit numbers): exact in bigint.
    this.pos = start;
    let big = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      const b = this.#byte();
      big |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return BigInt.asIntN(64, big);
    }
    throw protocolError(this.#where, "a protobuf varint longer than 10 bytes");
  }

  /** The bounds of a length-delimited field's bytes; the reader moves past them. */
  span(): { start: number; end: number } {
    const length = this.small();
    const start = this.pos;
    if (start + length > this.end) throw protocolError(this.#where, "a protobuf field runs past its message");
    this.pos = start + length;
    return { start, end: start + length };
  }

  text(): string {
    return this.textOf(this.span());
  }

  /** The UTF-8 text of bytes this reader holds (invalid sequences become U+FFFD). */
  textOf(span: { start: number; end: number }): string {
    return this.#text.toString("utf8", span.start, span.end);
  }

  skip(wire: number): void {
    if (wire === VARINT) this.int64();
    else if (wire === BYTES) this.span();
    else if (wire === FIXED64 || wire === FIXED32) {
      this.pos += wire === FIXED64 ? 8 : 4;
      if (this.pos > this.end) throw protocolError(this.#where, "a protobuf field runs past its message");
    } else throw protocolError(this.#where, `protobuf wire type ${wire}, which etcd does not send`);
  }

  child(span: { start: number; end: number }): Reader {
    return new Reader(this.#bytes, this.#where, span.start, span.end, this.#text);
  }

  #byte(): number {
    if (this.pos >= this.end) throw protocolError(this.#where, "a protobuf message ends inside a field");
    return this.#bytes[this.pos++] ?? 0;
  }
}

/**
 * One mvccpb.KeyValue. A value longer than `maxValueBytes` bytes is not decoded: `omittedBytes` is its
 * length (the bytes etcd holds: the UTF-8 length of any value written as text).
 */
function decodeKv(
  r: Reader,
  where: Where,
  maxValueBytes = Number.POSITIVE_INFINITY,
): { kv: EtcdKv; omittedBytes: number | undefined } {
  let key = "";
  let value = "";
  let omittedBytes: number | undefined;
  let createRevision = 0n;
  let modRevision = 0n;
  let version = 0n;
  let lease = 0n;
  while (r.pos < r.end) {
    const tag = r.small();
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    if (wire === BYTES && field === 1) key = r.text();
    else if (wire === BYTES && field === 5) {
      const span = r.span();
      const length = span.end - span.start;
      omittedBytes = length > maxValueBytes ? length : undefined;
      value = omittedBytes === undefined ? r.textOf(span) : "";
    } else if (wire === VARINT && field === 2) createRevision = r.int64();
    else if (wire === VARINT && field === 3) modRevision = r.int64();
    else if (wire === VARINT && field === 4) version = r.int64();
    else if (wire === VARINT && field === 6) lease = r.int64();
    else r.skip(wire);
  }
  if (key === "") throw protocolError(where, "a kv has no key");
  return { kv: { key, value, createRevision, modRevision, version, lease }, omittedBytes };
}

/**
 * A list entry: the kv, its value left out when longer than `maxValueBytes` (`omittedBytes` when the
 * value was never decoded; else `boundValue` on the text, as the gateway path applies it).
 */
export function listEntry(
  kv: EtcdKv,
  omittedBytes: number | undefined,
  maxValueBytes: number | undefined,
): KeyValue {
  return boundValue(toKeyValue(kv), maxValueBytes, omittedBytes);
}

/** The list entry of the KeyValue message in `bytes` from `start` to `end` (`listEntry`). */
export function decodeListEntry(
  bytes: Buffer,
  start: number,
  end: number,
  where: Where,
  maxValueBytes: number | undefined,
): KeyValue {
  const { kv, omittedBytes } = decodeKv(new Reader(bytes, where, start, end, bytes), where, maxValueBytes);
  return listEntry(kv, omittedBytes, maxValueBytes);
}

/** `revision` of the ResponseHeader message in `bytes` from `start` to `end`; 0n when absent. */
export function decodeResponseHeader(bytes: Buffer, start: number, end: number, where: Where): bigint {
  return decodeHeaderRevision(new Reader(bytes, where, start, end, bytes));
}

function decodeHeaderRevision(r: Reader): bigint {
  let revision = 0n;
  while (r.pos < r.end) {
    const tag = r.small();
    if (tag === (3 << 3) + VARINT) revision = r.int64();
    else r.skip(tag % 8);
  }
  return revision;
}

/** A RangeResponse message: the revision it reflects and its kvs, in the order etcd sent them. */
export function decodeRangeMessage(message: Uint8Array, where: Where): RangeAnswer {
  const r = new Reader(message, where);
  let revision = 0n;
  const kvs: EtcdKv[] = [];
  while (r.pos < r.end) {
    const tag = r.small();
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    if (wire === BYTES && field === 1) revision = decodeHeaderRevision(r.child(r.span()));
    else if (wire === BYTES && field === 2) kvs.push(decodeKv(r.child(r.span()), where).kv);
    else r.skip(wire);
  }
  if (revision <= 0n) throw protocolError(where, "header.revision is missing");
  return { revision, kvs };
}
