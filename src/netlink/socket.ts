/**
 * The AF_NETLINK socket: the only file of weft that imports `bun:ffi`. It opens, binds, sends to,
 * receives from and closes NETLINK_ROUTE sockets through libc, and reports failures as errno values.
 * Protocol knowledge lives in the codec; this file only moves bytes.
 *
 * FFI discipline (reference/performance.md "FFI pitfalls"): every buffer handed to C is a view of a
 * large module-scope allocation made once (> 1 KiB, so it lives outside the garbage-collected heap and
 * is never moved); `ptr()` is taken in the argument list of the call that uses it, so no pointer is
 * ever stored, let alone held across an `await`. (Bun 1.4.5's typings list `buffer`/`buffer_length`
 * argument types that would avoid `ptr()` altogether, but its dlopen rejects them: "invalid ABI type".)
 */
import { dlopen, FFIType, ptr, read } from "bun:ffi";
import { NetlinkError } from "./errors.ts";
import { type Datagram, Errno, type RecvManyResult, type RecvResult, type Transport } from "./transport.ts";

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const NETLINK_ROUTE = 0;
const SOL_SOCKET = 1;
const SO_SNDBUF = 7;
const SO_RCVBUF = 8;
const SO_SNDBUFFORCE = 32;
const SO_RCVBUFFORCE = 33;
const SOL_NETLINK = 270;
const NETLINK_ADD_MEMBERSHIP = 1;
const NETLINK_CAP_ACK = 10;
const NETLINK_EXT_ACK = 11;

const MSG_TRUNC = 0x20;
/** Socket structs are in host byte order. */
const LE = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

const { i32, u32, u64, i64_fast, ptr: pointer } = FFIType;
const libc = dlopen("libc.so.6", {
  socket: { args: [i32, i32, i32], returns: i32 },
  bind: { args: [i32, pointer, u32], returns: i32 },
  getsockname: { args: [i32, pointer, pointer], returns: i32 },
  getsockopt: { args: [i32, i32, i32, pointer, pointer], returns: i32 },
  setsockopt: { args: [i32, i32, i32, pointer, u32], returns: i32 },
  send: { args: [i32, pointer, u64, i32], returns: i64_fast },
  recv: { args: [i32, pointer, u64, i32], returns: i64_fast },
  recvmmsg: { args: [i32, pointer, u32, i32, pointer], returns: i32 },
  close: { args: [i32], returns: i32 },
  __errno_location: { args: [], returns: pointer },
});
const c = libc.symbols;

/** Large enough for any single datagram the kernel sends (dump parts are at most 32 KiB). */
const RECV_BUFFER_SIZE = 256 * 1024;
const recvBuffer = new Uint8Array(RECV_BUFFER_SIZE);
/**
 * recvmmsg(2) receives up to RECV_SLOTS datagrams in one call, each into its own RECV_SLOT-byte slice of
 * `recvBuffer`; `mmsg` holds the struct mmsghdr array followed by the struct iovec array (LP64 layout).
 */
const RECV_SLOT = 2048;
const RECV_SLOTS = RECV_BUFFER_SIZE / RECV_SLOT;
const MMSGHDR = 64;
const IOVEC = 16;
const mmsg = new Uint8Array(RECV_SLOTS * (MMSGHDR + IOVEC));
const mmsgView = new DataView(mmsg.buffer);
/** sockaddr_nl, socklen_t and int option values are built here (4 KiB: outside the GC heap). */
const scratch = new Uint8Array(4096);
const scratchView = new DataView(scratch.buffer);
const SOCKADDR = 0;
const SOCKLEN = 16;
const OPTION = 32;

function errno(): number {
  const location = c.__errno_location();
  return location === null ? 0 : read.i32(location, 0);
}

function fail(operation: string, err: number, details: { hint?: string } = {}): never {
  throw new NetlinkError(operation, err, details);
}

export interface SocketOptions {
  /** rtnetlink multicast groups (RTNLGRP_* numbers) to join; empty for a request socket. */
  readonly groups?: readonly number[];
  /** Receive buffer in bytes; forced past net.core.rmem_max when the process has CAP_NET_ADMIN. */
  readonly receiveBufferBytes?: number;
  /** Send buffer in bytes; bounds the size of one batched send. */
  readonly sendBufferBytes?: number;
  /** Ask for extended acks (a kernel message with each error) and capped acks (no request echo). */
  readonly extendedAck?: boolean;
}

/** One NETLINK_ROUTE socket. Not thread-safe; every call is synchronous and never blocks unless asked. */
export class NetlinkSocket implements Transport {
  #fd: number;
  /** The port id the kernel bound this socket to (nl_pid). */
  readonly portId: number;
  readonly receiveBufferBytes: number;

  private constructor(fd: number, portId: number, receiveBufferBytes: number) {
    this.#fd = fd;
    this.portId = portId;
    this.receiveBufferBytes = receiveBufferBytes;
  }

  /** socket(AF_NETLINK, SOCK_RAW|SOCK_CLOEXEC, NETLINK_ROUTE) + bind + options. */
  static open(options: SocketOptions = {}): NetlinkSocket {
    const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) fail("socket(AF_NETLINK)", errno());
    try {
      if (options.receiveBufferBytes !== undefined) {
        setBuffer(fd, "SO_RCVBUF", SO_RCVBUFFORCE, SO_RCVBUF, options.receiveBufferBytes);
      }
      if (options.sendBufferBytes !== undefined) {
        setBuffer(fd, "SO_SNDBUF", SO_SNDBUFFORCE, SO_SNDBUF, options.sendBufferBytes);
      }
      if (options.extendedAck === true) {
        // Both are optional kernel features (4.3 / 4.12); without them errors just carry no text.
        setInt(fd, SOL_NETLINK, NETLINK_CAP_ACK, 1);
        setInt(fd, SOL_NETLINK, NETLINK_EXT_ACK, 1);
      }
      scratch.fill(0, SOCKADDR, SOCKADDR + 12);
      scratchView.setUint16(SOCKADDR, AF_NETLINK, LE);
      if (c.bind(fd, ptr(scratch, SOCKADDR), 12) < 0) fail("bind(AF_NETLINK)", errno());
      for (const group of options.groups ?? []) {
        if (setInt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group) !== 0) {
          fail(`setsockopt(NETLINK_ADD_MEMBERSHIP, ${group})`, errno());
        }
      }
      scratchView.setUint32(SOCKLEN, 12, LE);
      if (c.getsockname(fd, ptr(scratch, SOCKADDR), ptr(scratch, SOCKLEN)) < 0) {
        fail("getsockname(AF_NETLINK)", errno());
      }
      const portId = scratchView.getUint32(SOCKADDR + 4, LE);
      scratchView.setUint32(SOCKLEN, 4, LE);
      if (c.getsockopt(fd, SOL_SOCKET, SO_RCVBUF, ptr(scratch, OPTION), ptr(scratch, SOCKLEN)) < 0) {
        fail("getsockopt(SO_RCVBUF)", errno());
      }
      return new NetlinkSocket(fd, portId, scratchView.getInt32(OPTION, LE));
    } catch (err) {
      c.close(fd);
      throw err;
    }
  }

  /** The file descriptor, or -1 once closed. */
  get fd(): number {
    return this.#fd;
  }

  /**
   * Sends `bytes` (one or many netlink messages) to the kernel in one datagram. `bytes` must be a view
   * of a large, long-lived buffer (the channel's module-scope request buffer), never a small array.
   */
  send(bytes: Uint8Array): void {
    for (;;) {
      const fd = this.#openFd("send");
      const sent = Number(c.send(fd, ptr(bytes), bytes.length, 0));
      if (sent >= 0) return;
      const err = errno();
      if (err !== Errno.EINTR) fail("send(AF_NETLINK)", err);
    }
  }

  /**
   * Receives one datagram into the shared receive buffer. With MSG_DONTWAIT it returns EAGAIN instead
   * of waiting. Errors (EAGAIN, ENOBUFS…) are returned, not thrown: callers decide what they mean.
   */
  recv(flags: number): RecvResult {
    for (;;) {
      const fd = this.#openFd("recv");
      const n = Number(c.recv(fd, ptr(recvBuffer), RECV_BUFFER_SIZE, flags | MSG_TRUNC));
      if (n >= 0) {
        const truncated = n > RECV_BUFFER_SIZE;
        return { ok: true, data: recvBuffer.subarray(0, Math.min(n, RECV_BUFFER_SIZE)), truncated };
      }
      const err = errno();
      if (err !== Errno.EINTR) return { ok: false, errno: err };
    }
  }

  /**
   * Receives every queued datagram, up to 128 per call, with one recvmmsg(2): the cheap way to collect
   * the acks of a batch. A datagram longer than 2 KiB comes back truncated (and flagged).
   */
  recvMany(flags: number): RecvManyResult {
    const fd = this.#openFd("recvmmsg");
    const data = ptr(recvBuffer);
    const iovecs = ptr(mmsg, RECV_SLOTS * MMSGHDR);
    mmsg.fill(0);
    for (let i = 0; i < RECV_SLOTS; i++) {
      const header = i * MMSGHDR;
      const iov = RECV_SLOTS * MMSGHDR + i * IOVEC;
      setPointer(mmsgView, header + 16, iovecs + i * IOVEC); // msg_iov
      mmsgView.setUint32(header + 24, 1, LE); // msg_iovlen
      setPointer(mmsgView, iov, data + i * RECV_SLOT); // iov_base
      mmsgView.setUint32(iov + 8, RECV_SLOT, LE); // iov_len
    }
    for (;;) {
      const n = c.recvmmsg(fd, ptr(mmsg), RECV_SLOTS, flags, null);
      if (n >= 0) {
        const datagrams: Datagram[] = [];
        for (let i = 0; i < n; i++) {
          const length = mmsgView.getUint32(i * MMSGHDR + 56, LE); // msg_len
          const truncated = (mmsgView.getInt32(i * MMSGHDR + 48, LE) & MSG_TRUNC) !== 0; // msg_flags
          datagrams.push({ data: recvBuffer.subarray(i * RECV_SLOT, i * RECV_SLOT + length), truncated });
        }
        return { ok: true, datagrams };
      }
      const err = errno();
      if (err !== Errno.EINTR) return { ok: false, errno: err };
    }
  }

  /** Closes the descriptor; later calls fail with EBADF. Idempotent. */
  close(): void {
    if (this.#fd < 0) return;
    c.close(this.#fd);
    this.#fd = -1;
  }

  #openFd(operation: string): number {
    if (this.#fd < 0)
      fail(`${operation}(AF_NETLINK)`, Errno.EBADF, { hint: "the netlink socket was closed" });
    return this.#fd;
  }
}

function setPointer(view: DataView, offset: number, address: number): void {
  view.setUint32(offset, address % 0x100000000, LE);
  view.setUint32(offset + 4, Math.floor(address / 0x100000000), LE);
}

function setInt(fd: number, level: number, name: number, value: number): number {
  scratchView.setInt32(OPTION, value, LE);
  return c.setsockopt(fd, level, name, ptr(scratch, OPTION), 4);
}

/** The *FORCE variant needs CAP_NET_ADMIN; without it the kernel caps the plain one at [rw]mem_max. */
function setBuffer(fd: number, label: string, force: number, plain: number, bytes: number): void {
  if (setInt(fd, SOL_SOCKET, force, bytes) === 0) return;
  if (setInt(fd, SOL_SOCKET, plain, bytes) !== 0) fail(`setsockopt(${label}, ${bytes})`, errno());
}
