import type { StoreDriver } from "../driver.ts";
import { Etcd3Store } from "./index.ts";

/** etcd v3 over its JSON gateway, as flanneld: `--store=etcd`, the default. */
export const etcdDriver: StoreDriver = {
  name: "etcd",
  endpoints: "etcd-urls",
  defaultEndpoint: undefined,
  uses: { tls: true, userPassword: true },
  flags: [],
  open: (options, runtime) => new Etcd3Store(options, runtime),
};
