/**
 * The netlink wire format, without I/O: a writer that appends nlmsghdr-framed messages with 4-byte
 * aligned attributes to a caller-owned buffer, and readers for what the kernel answers (multipart
 * dumps, NLMSG_DONE, NLMSG_ERROR carrying an errno or 0 for an ack, extended-ack text). Object codecs
 * (codec-route.ts, codec-link.ts, codec-addr.ts, codec-neigh.ts) build on these. Netlink uses host byte
 * order except where a field says otherwise (ports are big-endian).
 */
import { NLM_F, NLMSG, NLMSGERR_ATTR, SIZE } from "./constants.ts";
import { NetlinkError } from "./errors.ts";

const HOST_LE = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;
const EMSGSIZE = 90;
const EPROTO = 71;
const NLA_TYPE_MASK = 0x3fff;
const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** Rounds up to the 4-byte netlink alignment (NLMSG_ALIGN / NLA_ALIGN). */
export function align(length: number): number {
  return (length + 3) & ~3;
}

/**
 * Appends messages to one buffer, so a batch goes to the kernel in a single send. `begin()` starts a
 * message, the struct and attribute methods append to it, `end()` patches nlmsg_len; `abort()` drops a
 * half-written message. Writing past the buffer throws NetlinkError EMSGSIZE.
 */
export class MessageWriter {
  readonly buffer: Uint8Array;
  readonly #view: DataView;
  #offset = 0;
  #start = -1;

  constructor(buffer: Uint8Array) {
    this.buffer = buffer;
    this.#view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  }

  /** Bytes written so far (complete messages plus any message in progress). */
  get length(): number {
    return this.#offset;
  }

  get remaining(): number {
    return this.buffer.length - this.#offset;
  }

  /** The complete messages written since the last reset, as a view of the buffer. */
  bytes(): Uint8Array {
    return this.buffer.subarray(0, this.#start < 0 ? this.#offset : this.#start);
  }

  reset(): void {
    this.#offset = 0;
    this.#start = -1;
  }

  /** Starts a message: nlmsghdr with a placeholder length and nlmsg_pid 0 (the kernel fills it). */
  begin(type: number, flags: number, seq: number): this {
    this.#start = this.#offset;
    this.#reserve(SIZE.NLMSGHDR);
    this.#view.setUint32(this.#offset, 0, HOST_LE);
    this.#view.setUint16(this.#offset + 4, type, HOST_LE);
    this.#view.setUint16(this.#offset + 6, flags, HOST_LE);
    this.#view.setUint32(this.#offset + 8, seq >>> 0, HOST_LE);
    this.#view.setUint32(this.#offset + 12, 0, HOST_LE);
    this.#offset += SIZE.NLMSGHDR;
    return this;
  }

  /** Finishes the message begun last and returns its length. */
  end(): number {
    const length = this.#offset - this.#start;
    this.#view.setUint32(this.#start, length, HOST_LE);
    this.#start = -1;
    return length;
  }

  /** Drops the message begun last. */
  abort(): void {
    if (this.#start < 0) return;
    this.#offset = this.#start;
    this.#start = -1;
  }

  u8(value: number): this {
    this.#reserve(1);
    this.#view.setUint8(this.#offset++, value);
    return this;
  }

  u16(value: number): this {
    this.#reserve(2);
    this.#view.setUint16(this.#offset, value, HOST_LE);
    this.#offset += 2;
    return this;
  }

  u32(value: number): this {
    this.#reserve(4);
    this.#view.setUint32(this.#offset, value >>> 0, HOST_LE);
    this.#offset += 4;
    return this;
  }

  i32(value: number): this {
    this.#reserve(4);
    this.#view.setInt32(this.#offset, value, HOST_LE);
    this.#offset += 4;
    return this;
  }

  /** An attribute whose payload is the first `size` bytes of `payload`, padded to 4 bytes. */
  attr(type: number, payload: Uint8Array, size = payload.length): this {
    this.#attrHeader(type, SIZE.NLATTR + size);
    const buffer = this.buffer;
    const offset = this.#offset;
    for (let i = 0; i < size; i++) buffer[offset + i] = payload[i] ?? 0;
    const padded = align(size);
    for (let i = size; i < padded; i++) buffer[offset + i] = 0;
    this.#offset = offset + padded;
    return this;
  }

  attrU8(type: number, value: number): this {
    this.#attrHeader(type, SIZE.NLATTR + 1);
    this.#view.setUint32(this.#offset, 0);
    this.#view.setUint8(this.#offset, value);
    this.#offset += 4;
    return this;
  }

  attrU16(type: number, value: number, bigEndian = false): this {
    this.#attrHeader(type, SIZE.NLATTR + 2);
    this.#view.setUint32(this.#offset, 0);
    this.#view.setUint16(this.#offset, value, bigEndian ? false : HOST_LE);
    this.#offset += 4;
    return this;
  }

  attrU32(type: number, value: number): this {
    this.#attrHeader(type, SIZE.NLATTR + 4);
    this.#view.setUint32(this.#offset, value >>> 0, HOST_LE);
    this.#offset += 4;
    return this;
  }

  /** A string attribute, NUL-terminated (IFLA_IFNAME) unless `nul` is false (iproute2's IFLA_INFO_KIND). */
  attrString(type: number, value: string, nul = true): this {
    const bytes = encoder.encode(value);
    const out = new Uint8Array(bytes.length + (nul ? 1 : 0));
    out.set(bytes);
    return this.attr(type, out);
  }

  /** A flag attribute: present or absent, no payload (IFLA_VXLAN_GBP). */
  attrFlag(type: number): this {
    this.#attrHeader(type, SIZE.NLATTR);
    return this;
  }

  /** Opens a nested attribute; pass the returned offset to `nestEnd`. */
  nest(type: number): number {
    const start = this.#offset;
    this.#attrHeader(type, 0);
    return start;
  }

  nestEnd(start: number): this {
    this.#view.setUint16(start, this.#offset - start, HOST_LE);
    return this;
  }

  #attrHeader(type: number, length: number): void {
    this.#reserve(align(length));
    this.#view.setUint16(this.#offset, length, HOST_LE);
    this.#view.setUint16(this.#offset + 2, type, HOST_LE);
    this.#offset += SIZE.NLATTR;
  }

  #reserve(bytes: number): void {
    if (this.#offset + bytes > this.buffer.length) {
      throw new NetlinkError("encode netlink message", EMSGSIZE, {
        hint: `the ${this.buffer.length}-byte request buffer is full (a bug: batches must be flushed earlier)`,
      });
    }
  }
}

/** Reads host-order fields and attributes out of a received datagram. */
export class Reader {
  readonly data: Uint8Array;
  readonly #view: DataView;

  constructor(data: Uint8Array) {
    this.data = data;
    this.#view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }

  u8(offset: number): number {
    return this.#view.getUint8(offset);
  }

  u16(offset: number): number {
    return this.#view.getUint16(offset, HOST_LE);
  }

  u16be(offset: number): number {
    return this.#view.getUint16(offset, false);
  }

  u32(offset: number): number {
    return this.#view.getUint32(offset, HOST_LE);
  }

  i32(offset: number): number {
    return this.#view.getInt32(offset, HOST_LE);
  }

  /** A string attribute payload without its trailing NUL. */
  string(offset: number, length: number): string {
    let end = offset + length;
    while (end > offset && this.data[end - 1] === 0) end--;
    return decoder.decode(this.data.subarray(offset, end));
  }

  /** Calls `fn(type, payloadOffset, payloadLength)` for each attribute in [start, end). */
  attrs(start: number, end: number, fn: (type: number, offset: number, length: number) => void): void {
    let offset = start;
    while (offset + SIZE.NLATTR <= end) {
      const length = this.u16(offset);
      if (length < SIZE.NLATTR || offset + length > end) return;
      fn(this.u16(offset + 2) & NLA_TYPE_MASK, offset + SIZE.NLATTR, length - SIZE.NLATTR);
      offset += align(length);
    }
  }
}

/** One message of a datagram: header fields and where its payload lies in `reader.data`. */
export interface RawMessage {
  readonly type: number;
  readonly flags: number;
  readonly seq: number;
  readonly pid: number;
  /** Payload start (after nlmsghdr). */
  readonly offset: number;
  /** Payload end (exclusive). */
  readonly end: number;
}

/** Splits a datagram into its messages. A malformed length ends the walk with NetlinkError EPROTO. */
export function parseMessages(reader: Reader): RawMessage[] {
  const out: RawMessage[] = [];
  const total = reader.data.length;
  let offset = 0;
  while (offset + SIZE.NLMSGHDR <= total) {
    const length = reader.u32(offset);
    if (length < SIZE.NLMSGHDR || offset + length > total) {
      throw new NetlinkError("decode netlink reply", EPROTO, {
        hint: `message at byte ${offset} claims ${length} bytes of a ${total}-byte datagram`,
      });
    }
    out.push({
      type: reader.u16(offset + 4),
      flags: reader.u16(offset + 6),
      seq: reader.u32(offset + 8),
      pid: reader.u32(offset + 12),
      offset: offset + SIZE.NLMSGHDR,
      end: offset + length,
    });
    offset += align(length);
  }
  return out;
}

/** An NLMSG_ERROR decoded: `errno` 0 is an ack; otherwise the positive errno of the failed request. */
export interface ErrorReply {
  readonly errno: number;
  /** Sequence number of the request this answers (copied from the echoed header). */
  readonly requestSeq: number;
  readonly requestType: number;
  /** Extended-ack text (NLMSGERR_ATTR_MSG), when the socket asked for it and the kernel had some. */
  readonly kernelMessage: string | undefined;
}

/** Decodes the payload of an NLMSG_ERROR message (struct nlmsgerr + optional extended-ack TLVs). */
export function parseError(reader: Reader, message: RawMessage): ErrorReply {
  if (message.end - message.offset < 4 + SIZE.NLMSGHDR) {
    throw new NetlinkError("decode netlink reply", EPROTO, {
      hint: "NLMSG_ERROR shorter than struct nlmsgerr",
    });
  }
  const errno = -reader.i32(message.offset);
  const request = message.offset + 4;
  const requestLength = reader.u32(request);
  let kernelMessage: string | undefined;
  if ((message.flags & NLM_F.ACK_TLVS) !== 0) {
    const tlvs = request + ((message.flags & NLM_F.CAPPED) !== 0 ? SIZE.NLMSGHDR : align(requestLength));
    reader.attrs(tlvs, message.end, (type, offset, length) => {
      if (type === NLMSGERR_ATTR.MSG) kernelMessage = reader.string(offset, length);
    });
  }
  return { errno, requestSeq: reader.u32(request + 8), requestType: reader.u16(request + 4), kernelMessage };
}

/** True for the message that ends a dump (NLMSG_DONE), whose payload is an int error (0 or -errno). */
export function isDone(message: RawMessage): boolean {
  return message.type === NLMSG.DONE;
}

/** True when the kernel says the dump changed while it was being read (NLM_F_DUMP_INTR). */
export function isInterrupted(message: RawMessage): boolean {
  return (message.flags & NLM_F.DUMP_INTR) !== 0;
}
