/**
 * Typed errors of the agent (everything outside `stores/`, which has its own `StoreError`). Callers
 * `switch` on `code` and never parse messages; messages are for people and say what was wrong, with which
 * value, and what to do.
 */

/** Every reason the agent can fail. Add a code here rather than reusing one that means something else. */
export const WeftErrorCode = {
  /** The network config JSON (`<prefix>/config`) is malformed or breaks a rule. */
  ConfigInvalid: "CONFIG_INVALID",
  /** A flag or environment variable has a value that breaks its rule. */
  FlagInvalid: "FLAG_INVALID",
  /** A flag is unknown, or a flanneld flag that weft does not support. */
  FlagUnknown: "FLAG_UNKNOWN",
  /** No free subnet is left between SubnetMin and SubnetMax. */
  SubnetExhausted: "SUBNET_EXHAUSTED",
  /** A lease key or lease value cannot be understood. */
  LeaseInvalid: "LEASE_INVALID",
  /** A text is not a valid IPv4 address or CIDR. */
  AddressInvalid: "ADDRESS_INVALID",
  /** `subnet.env` holds a value that a consumer (mk-docker-opts) cannot use. */
  SubnetEnvInvalid: "SUBNET_ENV_INVALID",
  /** A netlink request failed. */
  Netlink: "NETLINK",
  /** An iptables or nftables change failed. */
  Firewall: "FIREWALL",
  /** Reading or writing a file failed. */
  Io: "IO",
  /** `weft demo` could not show what it promises (an agent did not converge, a ping failed). */
  DemoFailed: "DEMO_FAILED",
} as const;
export type WeftErrorCode = (typeof WeftErrorCode)[keyof typeof WeftErrorCode];

/** Optional context of a `WeftError`. */
export interface WeftErrorDetails {
  /** The config field or flag the error is about (`SubnetLen`, `Backend.VNI`, `--iface-regex`). */
  readonly field?: string | undefined;
  /** The offending value as the user wrote it. */
  readonly value?: unknown;
  /** The file the error is about (IO errors). */
  readonly path?: string | undefined;
  readonly cause?: unknown;
}

/** Base class of every error the agent raises. */
export class WeftError extends Error {
  readonly code: WeftErrorCode;
  readonly field: string | undefined;
  readonly value: unknown;
  readonly path: string | undefined;

  constructor(code: WeftErrorCode, message: string, details: WeftErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = "WeftError";
    this.code = code;
    this.field = details.field;
    this.value = details.value;
    this.path = details.path;
  }
}

/** True when `err` is a WeftError, optionally with the given code. */
export function isWeftError(err: unknown, code?: WeftErrorCode): err is WeftError {
  return err instanceof WeftError && (code === undefined || err.code === code);
}

/** The message of any thrown value, for wrapping foreign errors into a WeftError message. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
