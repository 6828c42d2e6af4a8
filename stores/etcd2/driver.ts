import type { StoreDriver } from "../driver.ts";
import { CAPABILITIES, Etcd2Store } from "./index.ts";

/** etcd's v2 keys API: `--store=etcd2`. */
export const etcd2Driver: StoreDriver = {
  name: "etcd2",
  endpoints: "etcd-urls",
  defaultEndpoint: undefined,
  uses: { tls: true, userPassword: true },
  flags: [],
  capabilities: CAPABILITIES,
  learnedOnConnect: [],
  open: (options, runtime) => new Etcd2Store(options, runtime),
};
