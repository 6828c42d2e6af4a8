/**
 * What the netlink protocol code needs from a socket. `NetlinkSocket` (socket.ts, bun:ffi) implements
 * it for the kernel; unit tests implement it with a scripted fake, so framing, sequence matching, dump
 * retries and overrun handling are tested without root.
 */

/** `recv` flags. */
export const MSG_DONTWAIT = 0x40;

/** errno values the protocol code reacts to. */
export const Errno = {
  EPERM: 1,
  ESRCH: 3,
  EINTR: 4,
  EBADF: 9,
  EAGAIN: 11,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  EPROTO: 71,
  EMSGSIZE: 90,
  ENETUNREACH: 101,
  ENOBUFS: 105,
  ETIMEDOUT: 110,
} as const;

/** The outcome of one `recv`: bytes in `data` (valid until the next recv on any socket). */
export type RecvResult =
  | { readonly ok: true; readonly data: Uint8Array; readonly truncated: boolean }
  | { readonly ok: false; readonly errno: number };

export interface Datagram {
  readonly data: Uint8Array;
  readonly truncated: boolean;
}

/** The outcome of one `recvMany`: the datagrams (views valid until the next recv on any socket). */
export type RecvManyResult =
  | { readonly ok: true; readonly datagrams: readonly Datagram[] }
  | { readonly ok: false; readonly errno: number };

export interface Transport {
  /** The socket's netlink port id (nl_pid); multicast events caused by its requests carry it. */
  readonly portId: number;
  /** Sends one datagram holding one or many netlink messages; throws NetlinkError on failure. */
  send(bytes: Uint8Array): void;
  /** Receives one datagram; errors (EAGAIN with MSG_DONTWAIT, ENOBUFS) are returned, not thrown. */
  recv(flags: number): RecvResult;
  /** Receives every queued datagram (up to an implementation limit) in one call; for collecting acks. */
  recvMany(flags: number): RecvManyResult;
  /** Effective receive buffer size in bytes, which bounds how many acks one batch may wait for. */
  readonly receiveBufferBytes: number;
  close(): void;
}
