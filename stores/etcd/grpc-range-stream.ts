/**
 * The answer to the list's `KV/Range` call (a gRPC frame holding one RangeResponse, see
 * `grpc-codec.ts` for the fields), decoded as its chunks arrive, so a list with `maxValueBytes` never
 * holds the values it leaves out: 200 values of 1 MiB pass through one chunk (≤ 16 KiB, one HTTP/2
 * DATA frame) at a time. What the decoder holds besides the entries it hands over is bounded
 * whatever the answer's size: one chunk while it is pushed, one buffered kv of at most
 * SMALL_MESSAGE_BYTES, a varint's 10 bytes, and the key and kept value of the large kv being read.
 *
 * A kv (or header) of at most SMALL_MESSAGE_BYTES is buffered and decoded by `grpc-codec.ts` (in place
 * when the chunk holds it whole, the usual case for flannel leases); a larger one is walked field by
 * field: its key and revisions are kept, a value longer than `maxValueBytes` is counted and skipped.
 * Every tag, varint and length may be split across chunks. The entries are exactly those of
 * `decodeRangeMessage` + `listEntry`, however the body is cut; broken answers are Protocol errors
 * naming `where`, and a decoder that threw stays broken. No I/O here (`grpc.ts` pushes the chunks).
 */
import type { StoreError } from "../errors.ts";
import type { KeyValue, ListResult } from "../store.ts";
import { protocolError, type Where } from "./codec.ts";
import {
  BYTES,
  decodeListEntry,
  decodeResponseHeader,
  FIXED32,
  FIXED64,
  listEntry,
  Reader,
  VARINT,
} from "./grpc-codec.ts";

/**
 * Kvs up to this size are buffered whole (64 KiB: any flannel lease, and at most four chunks); larger
 * ones are walked. Only the decoder's memory depends on it, never its answer.
 */
export const SMALL_MESSAGE_BYTES = 64 * 1024;

const EMPTY = Buffer.alloc(0);

/** Where the decoder is in the body. */
const Step = {
  /** The 5-byte gRPC message prefix. */
  Frame: 0,
  /** A field's tag. */
  Tag: 1,
  /** A varint field's value. */
  Varint: 2,
  /** A length-delimited field's length. */
  Length: 3,
  /** The bytes of a length-delimited or fixed-size field. */
  Bytes: 4,
  /** The message is complete; a unary answer holds nothing more. */
  Done: 5,
} as const;
type Step = (typeof Step)[keyof typeof Step];

/** What the bytes of the current field become. */
const Use = {
  Skip: 0,
  /** A whole ResponseHeader or KeyValue message of at most SMALL_MESSAGE_BYTES. */
  Header: 1,
  Kv: 2,
  /** The key or the kept value of a walked kv. */
  Key: 3,
  Value: 4,
  /** The value of a walked kv that is longer than maxValueBytes: counted, not kept. */
  Omit: 5,
} as const;
type Use = (typeof Use)[keyof typeof Use];

/** A large ResponseHeader or KeyValue being walked: what its fields said so far. */
interface Walk {
  readonly kind: "header" | "kv";
  /** Message offset just past its last byte. */
  readonly end: number;
  key: string;
  value: string;
  omittedBytes: number | undefined;
  createRevision: bigint;
  modRevision: bigint;
  version: bigint;
  lease: bigint;
  /** header.revision (field 3). */
  revision: bigint;
}

export class RangeStreamDecoder {
  readonly #where: Where;
  readonly #max: number | undefined;
  readonly #small: number;
  readonly #entries: KeyValue[] = [];
  #revision = 0n;
  #step: Step = Step.Frame;
  #broken: unknown;
  /** Body bytes pushed so far (for messages). */
  #bodyBytes = 0;
  readonly #prefix = new Uint8Array(5);
  #prefixHave = 0;
  /** Offset in the message of the next byte, and the message's length (from the prefix). */
  #at = 0;
  #messageEnd = 0;
  readonly #varint = Buffer.alloc(10);
  #varintHave = 0;
  #field = 0;
  #wire = 0;
  #walk: Walk | undefined;
  #use: Use = Use.Skip;
  /** Message offset just past the current Bytes field, and its length. */
  #bytesEnd = 0;
  #bytesLength = 0;
  /** The bytes of a buffered field that spans chunks (copies: no chunk is kept). */
  #parts: Buffer[] = [];
  #partsBytes = 0;

  /**
   * `where` names the endpoint and method for errors; `maxValueBytes` as in `ListOptions`.
   * `smallMessageBytes` is for tests, which walk small answers' kvs with a lower one.
   */
  constructor(where: Where, maxValueBytes: number | undefined, smallMessageBytes = SMALL_MESSAGE_BYTES) {
    this.#where = where;
    this.#max = maxValueBytes;
    this.#small = smallMessageBytes;
  }

  /** Decodes the next chunk of the body. Throws a Protocol StoreError as soon as the answer is broken. */
  push(chunk: Uint8Array): void {
    if (this.#broken !== undefined) throw this.#broken;
    try {
      this.#push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    } catch (err) {
      this.#broken = err;
      throw err;
    }
  }

  /** The list, once the body ended; throws a Protocol StoreError if it ended early. */
  end(): ListResult {
    if (this.#broken !== undefined) throw this.#broken;
    if (this.#step === Step.Frame) {
      throw this.#fail(`a gRPC answer of ${this.#bodyBytes} bytes holds no message`);
    }
    if (this.#step !== Step.Done) {
      throw this.#fail(`a gRPC message of ${this.#messageEnd} bytes in a body of ${this.#at}`);
    }
    if (this.#revision <= 0n) throw this.#fail("header.revision is missing");
    return { entries: this.#entries, revision: this.#revision };
  }

  #fail(problem: string): StoreError {
    const err = protocolError(this.#where, problem);
    this.#broken = err;
    return err;
  }

  #push(buf: Buffer): void {
    this.#bodyBytes += buf.length;
    let i = 0;
    while (i < buf.length) {
      switch (this.#step) {
        case Step.Frame:
          i = this.#readPrefix(buf, i);
          break;
        case Step.Tag:
        case Step.Varint:
        case Step.Length:
          i = this.#readVarint(buf, i);
          break;
        case Step.Bytes:
          i = this.#readBytes(buf, i);
          break;
        default:
          throw protocolError(
            this.#where,
            `bytes after the gRPC message of ${this.#messageEnd} bytes, where a unary answer ends`,
          );
      }
    }
  }

  #readPrefix(buf: Buffer, from: number): number {
    const take = Math.min(5 - this.#prefixHave, buf.length - from);
    this.#prefix.set(buf.subarray(from, from + take), this.#prefixHave);
    this.#prefixHave += take;
    if (this.#prefixHave < 5) return from + take;
    if (this.#prefix[0] !== 0) {
      throw protocolError(this.#where, "a compressed gRPC message, which was not asked for");
    }
    this.#messageEnd = new DataView(this.#prefix.buffer).getUint32(1);
    this.#step = this.#messageEnd === 0 ? Step.Done : Step.Tag;
    return from + take;
  }

  /** Offset just past the message or walked submessage the next field belongs to. */
  #limit(): number {
    return this.#walk?.end ?? this.#messageEnd;
  }

  #readVarint(buf: Buffer, from: number): number {
    let i = from;
    const longest = this.#step === Step.Varint ? 10 : 8;
    while (i < buf.length) {
      const b = buf[i++] ?? 0;
      this.#at++;
      this.#varint[this.#varintHave++] = b;
      if (b < 0x80 || this.#varintHave === longest) {
        // The Reader's own varint rules (and errors: a varint longer than `longest` bytes).
        const r = new Reader(this.#varint, this.#where, 0, this.#varintHave, this.#varint);
        this.#varintHave = 0;
        if (this.#step === Step.Varint) this.#varintDone(r.int64());
        else if (this.#step === Step.Tag) this.#tagDone(r.small());
        else this.#lengthDone(r.small());
        return i;
      }
      if (this.#at === this.#limit()) {
        throw protocolError(this.#where, "a protobuf message ends inside a field");
      }
    }
    return i;
  }

  #tagDone(tag: number): void {
    this.#field = Math.floor(tag / 8);
    this.#wire = tag % 8;
    if (this.#wire === VARINT) this.#step = Step.Varint;
    else if (this.#wire === BYTES) this.#step = Step.Length;
    else if (this.#wire === FIXED64 || this.#wire === FIXED32) {
      const length = this.#wire === FIXED64 ? 8 : 4;
      if (this.#at + length > this.#limit()) {
        throw protocolError(this.#where, "a protobuf field runs past its message");
      }
      this.#startBytes(length, Use.Skip);
    } else {
      throw protocolError(this.#where, `protobuf wire type ${this.#wire}, which etcd does not send`);
    }
  }

  #varintDone(value: bigint): void {
    const walk = this.#walk;
    if (walk?.kind === "kv") {
      if (this.#field === 2) walk.createRevision = value;
      else if (this.#field === 3) walk.modRevision = value;
      else if (this.#field === 4) walk.version = value;
      else if (this.#field === 6) walk.lease = value;
    } else if (walk?.kind === "header" && this.#field === 3) walk.revision = value;
    this.#fieldDone();
  }

  #lengthDone(length: number): void {
    const end = this.#at + length;
    if (end > this.#limit()) throw protocolError(this.#where, "a protobuf field runs past its message");
    const walk = this.#walk;
    const field = this.#field;
    if (walk === undefined && (field === 1 || field === 2)) {
      const kind = field === 1 ? "header" : "kv";
      if (length <= this.#small) this.#startBytes(length, kind === "header" ? Use.Header : Use.Kv);
      else this.#startWalk(kind, end);
    } else if (walk?.kind === "kv" && field === 1) this.#startBytes(length, Use.Key);
    else if (walk?.kind === "kv" && field === 5) {
      const omit = this.#max !== undefined && length > this.#max;
      this.#startBytes(length, omit ? Use.Omit : Use.Value);
    } else this.#startBytes(length, Use.Skip);
  }

  #startWalk(kind: "header" | "kv", end: number): void {
    this.#walk = {
      kind,
      end,
      key: "",
      value: "",
      omittedBytes: undefined,
      createRevision: 0n,
      modRevision: 0n,
      version: 0n,
      lease: 0n,
      revision: 0n,
    };
    this.#step = Step.Tag;
  }

  #startBytes(length: number, use: Use): void {
    this.#bytesEnd = this.#at + length;
    this.#bytesLength = length;
    this.#use = use;
    this.#step = Step.Bytes;
    if (length === 0) this.#bytesDone(EMPTY, 0, 0);
  }

  #readBytes(buf: Buffer, from: number): number {
    const want = this.#bytesEnd - this.#at;
    const take = Math.min(want, buf.length - from);
    this.#at += take;
    const keep = this.#use !== Use.Skip && this.#use !== Use.Omit;
    if (keep && (take < want || this.#partsBytes > 0)) {
      this.#parts.push(Buffer.from(buf.subarray(from, from + take)));
      this.#partsBytes += take;
      if (take === want) {
        const whole = Buffer.concat(this.#parts, this.#partsBytes);
        this.#parts = [];
        this.#partsBytes = 0;
        this.#bytesDone(whole, 0, whole.length);
      }
    } else if (take === want) {
      // The whole field (or the rest of a skipped one) is in this chunk: decoded in place.
      this.#bytesDone(buf, from, from + take);
    }
    return from + take;
  }

  /** The current Bytes field is complete: `bytes[start, end)` holds it unless it was skipped. */
  #bytesDone(bytes: Buffer, start: number, end: number): void {
    const walk = this.#walk;
    switch (this.#use) {
      case Use.Header:
        this.#revision = decodeResponseHeader(bytes, start, end, this.#where);
        break;
      case Use.Kv:
        this.#entries.push(decodeListEntry(bytes, start, end, this.#where, this.#max));
        break;
      case Use.Key:
        if (walk !== undefined) walk.key = bytes.toString("utf8", start, end);
        break;
      case Use.Value:
        if (walk !== undefined) {
          walk.value = bytes.toString("utf8", start, end);
          walk.omittedBytes = undefined;
        }
        break;
      case Use.Omit:
        if (walk !== undefined) {
          walk.value = "";
          walk.omittedBytes = this.#bytesLength;
        }
        break;
    }
    this.#fieldDone();
  }

  /** A field ended: close the walked submessage and the message when they end with it. */
  #fieldDone(): void {
    const walk = this.#walk;
    if (walk !== undefined && this.#at === walk.end) {
      this.#walk = undefined;
      if (walk.kind === "header") this.#revision = walk.revision;
      else {
        if (walk.key === "") throw protocolError(this.#where, "a kv has no key");
        this.#entries.push(listEntry(walk, walk.omittedBytes, this.#max));
      }
    }
    this.#step = this.#walk === undefined && this.#at === this.#messageEnd ? Step.Done : Step.Tag;
  }
}
