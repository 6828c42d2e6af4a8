/**
 * The store contract: one narrow, lease-first key-value interface that every driver implements
 * (etcd v3, etcd v2, SQLite; Consul and NATS later). Nothing outside `stores/` knows which store runs.
 *
 * Semantics every driver passes in the shared contract suite (`test/stores/contract.ts`) against a real
 * server: atomic create-if-absent, compare-and-swap on revisions, TTL expiry seen by other clients'
 * watches, keys without TTL never expire, watches that resume or resync but never end silently,
 * monotonic revisions, byte-exact values, and keys containing `&`, `:`, `-` and `/`.
 */

/**
 * A position in the store's history: etcd v3 revision, etcd v2 index, SQLite change-log id.
 * Opaque to callers except for ordering; a bigint because some stores count in uint64.
 */
export type Revision = bigint;

/** One key as read from the store. */
export interface KeyValue {
  readonly key: string;
  /** The value exactly as written (UTF-8 text; flannel leases are JSON). */
  readonly value: string;
  /** Revision of the last write to this key; pass it as `expectRevision` for compare-and-swap. */
  readonly revision: Revision;
  /** False for keys written without a TTL (flannel reservations): they never expire. */
  readonly expires: boolean;
  /**
   * Seconds left before the key expires, when the driver knows it without an extra round trip per key
   * (etcd v2 and SQLite always; etcd v3 on writes, renewals and watch events unless the watch asked for
   * no details). Absent otherwise.
   */
  readonly ttlSeconds?: number | undefined;
  /**
   * Set when the value is longer than the `maxValueBytes` the read asked for: the value was left out
   * (`value` is "") and this is its length in bytes (see `ListOptions`). Absent on every entry read
   * without a limit.
   */
  readonly omittedBytes?: number | undefined;
}

/**
 * Options of `list` (and, through `WatchOptions`, of a watch's resyncs and puts).
 *
 * `maxValueBytes`: a value longer than this many UTF-8 bytes is handed over as "" with `omittedBytes`
 * (its length as stored; bytes that are no UTF-8 may count once or as the three of U+FFFD, by driver),
 * and a kept value is never longer. A large value is not held while the answer is read: SQLite
 * leaves it in the database, etcd v3 decodes its gRPC answer as it streams in, etcd v2, Consul and
 * the etcd v3 gateway read an answer over 8 MiB as it streams in (a shorter one whole, as text: that
 * much is held at once), NATS drops each message as it arrives. An agent started next to 200 values
 * of 1 MiB reads them without holding them. Absent: every value whole.
 */
export interface ListOptions {
  readonly maxValueBytes?: number | undefined;
}

/** A consistent snapshot of a prefix. */
export interface ListResult {
  /** Every live key under the prefix, sorted by key. */
  readonly entries: readonly KeyValue[];
  /** The store revision the snapshot was taken at; watch from here to miss nothing. */
  readonly revision: Revision;
}

/** Options of `create`. */
export interface CreateOptions {
  /** Seconds until the key expires unless renewed. Absent: the key never expires (a reservation). */
  readonly ttlSeconds?: number | undefined;
}

/** Options of `update`: a compare-and-swap. The key's expiry is set exactly as `create` sets it. */
export interface UpdateOptions extends CreateOptions {
  /** The revision the caller last saw; the write fails with `ConflictError` if the key moved on. */
  readonly expectRevision: Revision;
}

/** Options of `delete`. */
export interface DeleteOptions {
  /** When given, delete only if the key is still at this revision (else `ConflictError`). */
  readonly expectRevision?: Revision | undefined;
}

/**
 * Why a key disappeared. "unknown" only when the watch was opened with `details: false` and the
 * driver would have needed a round trip to tell (etcd v3: a key with a lease).
 */
export type DeleteReason = "deleted" | "expired" | "unknown";

/** Why a watch delivered a full snapshot instead of the next change. */
export type ResyncCause =
  /** The history the watch needed was compacted away (etcd v3 compaction, etcd v2 index cleared). */
  | "compacted"
  /** The connection broke and the driver cannot prove it saw every change in between. */
  | "reconnect"
  /** The driver found a hole in the revisions it received. */
  | "gap";

/** One change seen by a watch. */
export type WatchEvent =
  | { readonly type: "put"; readonly kv: KeyValue }
  | {
      readonly type: "delete";
      readonly key: string;
      /** Revision of the deletion itself. */
      readonly revision: Revision;
      readonly reason: DeleteReason;
    }
  | {
      /**
       * The full current contents of the watched prefix, replacing everything the caller knew.
       * Callers diff it against their state (mark and sweep). Later events follow `revision`.
       */
      readonly type: "resync";
      readonly entries: readonly KeyValue[];
      readonly revision: Revision;
      readonly cause: ResyncCause;
    };

/** Options of `watch`. */
export interface WatchOptions {
  /** Deliver every change made after this revision (usually `list().revision`). */
  readonly afterRevision: Revision;
  /** Aborting ends the iteration normally (the loop just finishes). */
  readonly signal?: AbortSignal | undefined;
  /**
   * False when the caller needs neither `ttlSeconds` on puts nor the reason of a delete: a driver
   * that would spend a round trip per event on them (etcd v3's lease lookups) delivers the event
   * at once instead, without `ttlSeconds` and with reason "unknown". Default true.
   */
  readonly details?: boolean | undefined;
  /** As in `ListOptions`, for the entries of resyncs and the values of puts. */
  readonly maxValueBytes?: number | undefined;
}

/** What a driver can do natively; the agent adapts (e.g. sweeping) where a store cannot. */
export interface Capabilities {
  /** Keys expire on the server by themselves; false when clients sweep a stored expiry. */
  readonly serverTtl: boolean;
  /** Agents on different machines can share it; false for the embedded SQLite store. */
  readonly multiHost: boolean;
  /** Deletes caused by expiry arrive with reason "expired" (else only "deleted"). */
  readonly expiryReason: boolean;
  /** Smallest TTL the store honours, in seconds. */
  readonly minTtlSeconds: number;
}

/**
 * A lease-first key-value store. Keys are full paths (`/coreos.com/network/subnets/10.5.52.0-24`).
 * Every method rejects with a `StoreError` (see `errors.ts`); after `close()` with `ClosedError`.
 */
export interface Store {
  /** The `--store` name this driver answers to. */
  readonly name: StoreName;
  readonly capabilities: Capabilities;

  /** The key, or undefined when absent. One round trip. */
  get(key: string): Promise<KeyValue | undefined>;

  /** Every key under `prefix` plus the revision of the snapshot. One round trip, no per-key calls. */
  list(prefix: string, options?: ListOptions): Promise<ListResult>;

  /** Writes the key only if absent (atomic). Rejects with `KeyExistsError` if it exists. */
  create(key: string, value: string, options?: CreateOptions): Promise<KeyValue>;

  /** Compare-and-swap. Rejects with `ConflictError` if the key is not at `expectRevision` (or gone). */
  update(key: string, value: string, options: UpdateOptions): Promise<KeyValue>;

  /**
   * Restarts the key's TTL at its full length without changing its value. A key without TTL is returned
   * unchanged. Rejects with `KeyNotFoundError` when the key (or its lease) is gone: the lease was lost.
   */
  renew(key: string): Promise<KeyValue>;

  /** Deletes the key. Resolves false if it was absent. Rejects with `ConflictError` on a revision mismatch. */
  delete(key: string, options?: DeleteOptions): Promise<boolean>;

  /**
   * Changes under `prefix` after `afterRevision`, in revision order, each exactly once. The iteration
   * never ends silently: across reconnects it resumes, or delivers a `resync` snapshot when it cannot
   * prove continuity; it ends only when `signal` aborts or the store closes, and throws a `StoreError`
   * only for faults retrying cannot fix (e.g. rejected credentials).
   */
  watch(prefix: string, options: WatchOptions): AsyncIterable<WatchEvent>;

  /** Ends every watch, stops timers and closes connections. Idempotent. */
  close(): Promise<void>;
}

/** The `--store` names weft knows. */
export const storeNames = ["etcd", "etcd2", "consul", "nats", "sqlite"] as const;
export type StoreName = (typeof storeNames)[number];

/** Minimal structured logger a driver may report to (reconnects, resyncs). */
export interface StoreLogger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
}

/** How to reach a store. Secrets are never logged. */
export interface StoreOptions {
  /** Server URLs (`http://127.0.0.1:2379`), tried in order; for SQLite the database file path. */
  readonly endpoints: readonly string[];
  readonly username?: string | undefined;
  readonly password?: string | undefined;
  /** A bearer token (Consul ACL token, NATS token). Never logged. */
  readonly token?: string | undefined;
  /** A credentials file (NATS `.creds`: JWT and NKey seed). Its content is never logged. */
  readonly credsFile?: string | undefined;
  /**
   * How many servers keep a copy of the data where the driver creates its own storage: the NATS KV
   * bucket (`--nats-replicas`, 1..5, default 1); an existing bucket keeps its own. Others ignore it.
   */
  readonly replicas?: number | undefined;
  /** Client TLS: PEM file paths. */
  readonly tls?:
    | { readonly certFile?: string; readonly keyFile?: string; readonly caFile?: string }
    | undefined;
  /** Time limit of one request, in milliseconds (default 5000). */
  readonly requestTimeoutMs?: number | undefined;
  readonly logger?: StoreLogger | undefined;
  /** Injected transport for tests; defaults to the global fetch. */
  readonly fetch?: typeof fetch | undefined;
}
