/**
 * What a driver declares about itself, so the agent's flags read it instead of restating it: its
 * `--store` name, its default endpoint, which of the shared connection flags it uses, the flags only
 * it reads, and how to open it.
 */
import type { StoreRuntimeOptions } from "./runtime.ts";
import type { Store, StoreName, StoreOptions } from "./store.ts";

/** A flag only one driver reads (`--consul-token`); always a string flag, empty by default. */
export interface StoreFlag {
  /** The name without dashes. */
  readonly name: string;
  readonly help: string;
  /** Placeholder of the value in help (`<file>`). */
  readonly valueName?: string;
  /** Never print the value (tokens). */
  readonly secret?: boolean;
}

/** The shared connection flags (named `--etcd-*` after flanneld) a driver uses. */
export interface StoreConnectionUse {
  /** `--etcd-certfile`, `--etcd-keyfile`, `--etcd-cafile`: TLS to the server. */
  readonly tls: boolean;
  /** `--etcd-username`, `--etcd-password`: a user name and password. */
  readonly userPassword: boolean;
}

export interface StoreDriver {
  readonly name: StoreName;
  /**
   * What `--store-endpoints` holds: etcd URLs (read as etcd's Go client does, defaulting to
   * `--etcd-endpoints`), other URLs, or one database file path.
   */
  readonly endpoints: "etcd-urls" | "urls" | "file";
  /** The endpoint used when `--store-endpoints` is empty; undefined for `--etcd-endpoints`'s default. */
  readonly defaultEndpoint: string | undefined;
  readonly uses: StoreConnectionUse;
  /** Flags only this driver reads. */
  readonly flags: readonly StoreFlag[];
  /** Opens the store; no I/O happens until the first call. */
  open(options: StoreOptions, runtime?: StoreRuntimeOptions): Store;
}
