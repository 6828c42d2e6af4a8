/**
 * What a driver declares about itself, so the agent's flags read it instead of restating it: its
 * `--store` name, its default endpoint, which of the shared connection flags it uses, the flags only
 * it reads, what it can do, and how to open it.
 */
import type { StoreRuntimeOptions } from "./runtime.ts";
import type { Capabilities, Store, StoreName, StoreOptions } from "./store.ts";

/**
 * A flag only one driver reads (`--consul-token`, `--nats-replicas`): always a string flag (empty by
 * default unless it says otherwise); a driver that needs a number parses it and declares the rule.
 */
export interface StoreFlag {
  /** The name without dashes. */
  readonly name: string;
  readonly help: string;
  /** Placeholder of the value in help (`<file>`). */
  readonly valueName?: string;
  /** The default as text, shown in help; absent for none (""). */
  readonly defaultValue?: string;
  /** Never print the value (tokens). */
  readonly secret?: boolean;
  /**
   * The rule a value breaks, or undefined when it is valid. The agent's flag parser applies it when
   * this driver's store is chosen, so a bad value stops the agent naming the flag and the value.
   */
  readonly rule?: (value: string) => string | undefined;
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
  /**
   * What every store this driver opens can do, known without connecting: read it where a store is
   * not open yet. Where an ability depends on the server, the value here is the one every supported
   * server gives, and `learnedOnConnect` names it.
   */
  readonly capabilities: Capabilities;
  /**
   * Capabilities whose value depends on the server (NATS: `serverTtl`, true from nats-server 2.11.2):
   * an open store's `Store.capabilities` reports the declared value until it has connected, then the
   * server's, which is never weaker than the declared one. Empty for drivers whose abilities are fixed.
   */
  readonly learnedOnConnect: readonly (keyof Capabilities)[];
  /** Opens the store; no I/O happens until the first call. */
  open(options: StoreOptions, runtime?: StoreRuntimeOptions): Store;
}
