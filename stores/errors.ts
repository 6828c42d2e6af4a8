/**
 * Typed store errors. Every driver maps its server's failures onto these codes, so callers `switch` on
 * `code` and never parse messages. Messages are for people: they say what failed, with which key or
 * endpoint, and what to do.
 */

/** Every reason a store operation can fail. */
export const StoreErrorCode = {
  /** create-if-absent found the key already present. */
  KeyExists: "KEY_EXISTS",
  /** A compare-and-swap saw another revision than expected. */
  Conflict: "CONFLICT",
  /** The key (or the lease behind it) does not exist. */
  KeyNotFound: "KEY_NOT_FOUND",
  /** No endpoint answered in time, or every endpoint refused the connection. */
  Unavailable: "UNAVAILABLE",
  /**
   * The server refused the credentials, the token or the client certificate, or TLS failed otherwise
   * (the server's certificate is not trusted, a TLS file cannot be read): retrying cannot fix it.
   */
  Auth: "AUTH",
  /** The server answered something this driver does not understand. */
  Protocol: "PROTOCOL",
  /** The caller passed an argument the store cannot accept (bad key, bad TTL). */
  Invalid: "INVALID",
  /** The store was closed; no further calls are accepted. */
  Closed: "CLOSED",
  /** `--store=<name>` names no driver. */
  UnknownStore: "UNKNOWN_STORE",
} as const;
export type StoreErrorCode = (typeof StoreErrorCode)[keyof typeof StoreErrorCode];

export interface StoreErrorDetails {
  readonly key?: string | undefined;
  readonly endpoint?: string | undefined;
  readonly cause?: unknown;
}

/** Base class of every error a store raises. */
export class StoreError extends Error {
  readonly code: StoreErrorCode;
  readonly key: string | undefined;
  readonly endpoint: string | undefined;

  constructor(code: StoreErrorCode, message: string, details: StoreErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = "StoreError";
    this.code = code;
    this.key = details.key;
    this.endpoint = details.endpoint;
  }
}

export class KeyExistsError extends StoreError {
  constructor(key: string, details: Omit<StoreErrorDetails, "key"> = {}) {
    super(StoreErrorCode.KeyExists, `key ${key} already exists`, { ...details, key });
    this.name = "KeyExistsError";
  }
}

export class ConflictError extends StoreError {
  constructor(key: string, expected: bigint, actual: bigint | undefined, details: StoreErrorDetails = {}) {
    const now = actual === undefined ? "the key is gone" : `it is now at revision ${actual}`;
    super(StoreErrorCode.Conflict, `key ${key} changed: expected revision ${expected}, ${now}`, {
      ...details,
      key,
    });
    this.name = "ConflictError";
  }
}

export class KeyNotFoundError extends StoreError {
  constructor(key: string, details: Omit<StoreErrorDetails, "key"> = {}) {
    super(StoreErrorCode.KeyNotFound, `key ${key} does not exist`, { ...details, key });
    this.name = "KeyNotFoundError";
  }
}

export class UnavailableError extends StoreError {
  constructor(endpoint: string, reason: string, details: Omit<StoreErrorDetails, "endpoint"> = {}) {
    super(
      StoreErrorCode.Unavailable,
      `store endpoint ${endpoint} is unavailable: ${reason} (check that the server runs and --store-endpoints is right)`,
      { ...details, endpoint },
    );
    this.name = "UnavailableError";
  }
}

export class ClosedError extends StoreError {
  constructor(store: string) {
    super(StoreErrorCode.Closed, `the ${store} store is closed`);
    this.name = "ClosedError";
  }
}

/** True when `err` is a StoreError with the given code. */
export function isStoreError(err: unknown, code?: StoreErrorCode): err is StoreError {
  return err instanceof StoreError && (code === undefined || err.code === code);
}
