/**
 * The static registry of store drivers: `--store=<name>` → driver. A static map (not registration by
 * import side effect) so the compiled binary's contents are explicit.
 */

import { consulDriver } from "./consul/driver.ts";
import type { StoreDriver } from "./driver.ts";
import { StoreError, StoreErrorCode } from "./errors.ts";
import { etcdDriver } from "./etcd/driver.ts";
import { etcd2Driver } from "./etcd2/driver.ts";
import { natsDriver } from "./nats/driver.ts";
import type { StoreRuntimeOptions } from "./runtime.ts";
import { sqliteDriver } from "./sqlite/driver.ts";
import { type Store, type StoreName, type StoreOptions, storeNames } from "./store.ts";

/** Every driver, by `--store` name. */
export const storeDrivers: Readonly<Record<StoreName, StoreDriver>> = {
  etcd: etcdDriver,
  etcd2: etcd2Driver,
  consul: consulDriver,
  nats: natsDriver,
  sqlite: sqliteDriver,
};

export function isStoreName(name: string): name is StoreName {
  return (storeNames as readonly string[]).includes(name);
}

/** Opens the named store. No I/O happens until the first call. */
export function openStore(name: string, options: StoreOptions, runtime?: StoreRuntimeOptions): Store {
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
  return storeDrivers[name].open(options, runtime);
}

export type { StoreConnectionUse, StoreDriver, StoreFlag } from "./driver.ts";
export * from "./errors.ts";
export * from "./store.ts";
