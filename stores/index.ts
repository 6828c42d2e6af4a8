/**
 * The static registry of store drivers: `--store=<name>` → driver. A static map (not registration by
 * import side effect) so the compiled binary's contents are explicit.
 */

import { ConsulStore } from "./consul.ts";
import { StoreError, StoreErrorCode } from "./errors.ts";
import { Etcd2Store } from "./etcd2.ts";
import { Etcd3Store } from "./etcd3/index.ts";
import { NatsStore } from "./nats/index.ts";
import { SqliteStore } from "./sqlite.ts";
import { type Store, type StoreName, type StoreOptions, storeNames } from "./store.ts";

const drivers: Record<StoreName, (options: StoreOptions) => Store> = {
  etcd: (options) => new Etcd3Store(options),
  etcd2: (options) => new Etcd2Store(options),
  consul: (options) => new ConsulStore(options),
  nats: (options) => new NatsStore(options),
  sqlite: (options) => new SqliteStore(options),
};

export function isStoreName(name: string): name is StoreName {
  return (storeNames as readonly string[]).includes(name);
}

/** Opens the named store. No I/O happens until the first call. */
export function openStore(name: string, options: StoreOptions): Store {
  if (!isStoreName(name)) {
    throw new StoreError(
      StoreErrorCode.UnknownStore,
      `unknown store "${name}": valid stores are ${storeNames.join(", ")} (--store)`,
    );
  }
  if (options.endpoints.length === 0) {
    throw new StoreError(
      StoreErrorCode.Invalid,
      `the ${name} store needs at least one endpoint (--store-endpoints)`,
    );
  }
  return drivers[name](options);
}

export * from "./errors.ts";
export * from "./store.ts";
