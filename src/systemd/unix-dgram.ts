/**
 * AF_UNIX datagram sockets through libc (Bun has no unix datagram API): open, sendto, bind and a
 * non-blocking recv. Only bytes move here; addresses are encoded in protocol.ts.
 *
 * FFI discipline as in src/netlink/socket.ts: every buffer handed to C is a view of a module-scope
 * allocation larger than 1 KiB (outside the GC heap, never moved), and `ptr()` is taken in the
 * argument list of the call that uses it.
 */
import { dlopen, FFIType, ptr, read } from "bun:ffi";
import { WeftError, WeftErrorCode } from "../errors.ts";
import { AF_UNIX, encodeSockaddrUn } from "./protocol.ts";

const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;
const EAGAIN = 11;

const { i32, u32, u64, i64_fast, ptr: pointer } = FFIType;
const libc = dlopen("libc.so.6", {
  socket: { args: [i32, i32, i32], returns: i32 },
  bind: { args: [i32, pointer, u32], returns: i32 },
  sendto: { args: [i32, pointer, u64, i32, pointer, u32], returns: i64_fast },
  recv: { args: [i32, pointer, u64, i32], returns: i64_fast },
  close: { args: [i32], returns: i32 },
  __errno_location: { args: [], returns: pointer },
});
const c = libc.symbols;

const BUFFER_SIZE = 64 * 1024;
const buffer = new Uint8Array(BUFFER_SIZE);
const address = new Uint8Array(4096);

function errno(): number {
  const location = c.__errno_location();
  return location === null ? 0 : read.i32(location, 0);
}

function fail(operation: string, path: string | undefined): never {
  const err = errno();
  throw new WeftError(WeftErrorCode.Io, `unix datagram socket: ${operation} failed with errno ${err}`, {
    path,
    value: err,
  });
}

/** One AF_UNIX SOCK_DGRAM socket. */
export class UnixDatagramSocket {
  #fd: number;

  private constructor(fd: number) {
    this.#fd = fd;
  }

  /** `socket(AF_UNIX, SOCK_DGRAM|SOCK_CLOEXEC, 0)`. */
  static open(): UnixDatagramSocket {
    const fd = c.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail("socket", undefined);
    return new UnixDatagramSocket(fd);
  }

  /** Sends one datagram to `path` (`@name` for the abstract namespace). */
  sendTo(path: string, data: Uint8Array): void {
    if (this.#fd < 0) fail("sendto on a closed socket", path);
    if (data.length > BUFFER_SIZE) fail("sendto of an oversized datagram", path);
    const { bytes, length } = encodeSockaddrUn(path);
    address.set(bytes);
    buffer.set(data);
    const n = c.sendto(this.#fd, ptr(buffer), data.length, MSG_NOSIGNAL | MSG_DONTWAIT, ptr(address), length);
    if (Number(n) < 0) fail("sendto", path);
  }

  /** Binds to `path` (tests listen this way). */
  bind(path: string): void {
    const { bytes, length } = encodeSockaddrUn(path);
    address.set(bytes);
    if (c.bind(this.#fd, ptr(address), length) < 0) fail("bind", path);
  }

  /** One waiting datagram, or undefined when none is queued (never blocks). */
  tryRecv(): Uint8Array | undefined {
    if (this.#fd < 0) fail("recv on a closed socket", undefined);
    const n = Number(c.recv(this.#fd, ptr(buffer), BUFFER_SIZE, MSG_DONTWAIT));
    if (n < 0) {
      if (errno() === EAGAIN) return undefined;
      fail("recv", undefined);
    }
    return buffer.slice(0, n);
  }

  close(): void {
    if (this.#fd < 0) return;
    c.close(this.#fd);
    this.#fd = -1;
  }
}
