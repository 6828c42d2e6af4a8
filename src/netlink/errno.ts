/**
 * Linux errno numbers as rtnetlink returns them (negated in NLMSG_ERROR), with their symbolic names
 * and the glibc strerror text. Only the values the kernel's routing, link and neighbour code
 * produces are listed; anything else prints as `errno <n>`.
 */

const table: Readonly<Record<number, readonly [name: string, text: string]>> = {
  1: ["EPERM", "Operation not permitted"],
  2: ["ENOENT", "No such file or directory"],
  3: ["ESRCH", "No such process"],
  4: ["EINTR", "Interrupted system call"],
  5: ["EIO", "Input/output error"],
  6: ["ENXIO", "No such device or address"],
  9: ["EBADF", "Bad file descriptor"],
  11: ["EAGAIN", "Resource temporarily unavailable"],
  12: ["ENOMEM", "Cannot allocate memory"],
  13: ["EACCES", "Permission denied"],
  16: ["EBUSY", "Device or resource busy"],
  17: ["EEXIST", "File exists"],
  19: ["ENODEV", "No such device"],
  22: ["EINVAL", "Invalid argument"],
  24: ["EMFILE", "Too many open files"],
  28: ["ENOSPC", "No space left on device"],
  34: ["ERANGE", "Numerical result out of range"],
  61: ["ENODATA", "No data available"],
  71: ["EPROTO", "Protocol error"],
  90: ["EMSGSIZE", "Message too long"],
  92: ["ENOPROTOOPT", "Protocol not available"],
  93: ["EPROTONOSUPPORT", "Protocol not supported"],
  95: ["EOPNOTSUPP", "Operation not supported"],
  97: ["EAFNOSUPPORT", "Address family not supported by protocol"],
  98: ["EADDRINUSE", "Address already in use"],
  99: ["EADDRNOTAVAIL", "Cannot assign requested address"],
  100: ["ENETDOWN", "Network is down"],
  101: ["ENETUNREACH", "Network is unreachable"],
  105: ["ENOBUFS", "No buffer space available"],
  110: ["ETIMEDOUT", "Connection timed out"],
  113: ["EHOSTUNREACH", "No route to host"],
};

/** Symbolic name of an errno value: `17` → `"EEXIST"`. */
export function errnoName(errno: number): string {
  return table[errno]?.[0] ?? `errno ${errno}`;
}

/** strerror text of an errno value: `17` → `"File exists"`. */
export function errnoText(errno: number): string {
  return table[errno]?.[1] ?? `errno ${errno}`;
}
