/**
 * The one error type of the netlink layer: a `WeftError` with code "NETLINK" (src/errors.ts) that also
 * carries the errno the kernel (or libc) returned, its symbolic name, the operation in iproute2 terms,
 * and the kernel's extended-ack text when there is one, so a log line says what failed, why, and what
 * to do. `isWeftError(err, "NETLINK")` recognises it.
 */
import { WeftError, WeftErrorCode } from "../errors.ts";
import { errnoName, errnoText } from "./errno.ts";

/** What a person can do about the common errno values of rtnetlink requests. */
const hints: Readonly<Record<number, string>> = {
  1: "changing routes, links or neighbours needs root or CAP_NET_ADMIN",
  3: "the object to delete is not there (already gone, or owned by another protocol)",
  17: "an equal object exists and the request did not ask to replace it",
  19: "the network interface does not exist (check --iface)",
  101: "the gateway is not on a directly connected network (check the peer's PublicIP and --iface)",
  105: "the kernel dropped messages because a socket buffer was full; a full resync is needed",
};

export interface NetlinkErrorDetails {
  /** Text from the kernel's extended ack (NLMSGERR_ATTR_MSG), e.g. "Nexthop has invalid gateway". */
  readonly kernelMessage?: string | undefined;
  /** Overrides the default hint for this errno. */
  readonly hint?: string | undefined;
  readonly cause?: unknown;
}

/** A failed netlink operation: `errno` is the positive Linux errno value (EEXIST = 17). */
export class NetlinkError extends WeftError {
  declare readonly code: typeof WeftErrorCode.Netlink;
  /** Positive errno value. */
  readonly errno: number;
  /** Symbolic errno name: "EEXIST", "ENETUNREACH", "ESRCH", "EPERM"… */
  readonly errnoName: string;
  /** What was attempted, e.g. "ip route replace 10.5.1.0/24 via 172.17.42.2". */
  readonly operation: string;
  readonly kernelMessage: string | undefined;

  constructor(operation: string, errno: number, details: NetlinkErrorDetails = {}) {
    const hint = details.hint ?? hints[errno];
    const kernel = details.kernelMessage === undefined ? "" : ` (kernel: ${details.kernelMessage})`;
    super(
      WeftErrorCode.Netlink,
      `${operation}: ${errnoName(errno)} ${errnoText(errno)}${kernel}${hint === undefined ? "" : `; ${hint}`}`,
      { cause: details.cause },
    );
    this.name = "NetlinkError";
    this.errno = errno;
    this.errnoName = errnoName(errno);
    this.operation = operation;
    this.kernelMessage = details.kernelMessage;
  }
}
