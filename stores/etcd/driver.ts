import type { StoreDriver } from "../driver.ts";
import { CAPABILITIES, Etcd3Store } from "./index.ts";

/** etcd v3, as flanneld: `--store=etcd`, the default. The JSON gateway for everything, gRPC for the prefix list (falling back to the gateway). */
export const etcdDriver: StoreDriver = {
  name: "etcd",
  endpoints: "etcd-urls",
  defaultEndpoint: undefined,
  uses: { tls: true, userPassword: true },
  flags: [],
  capabilities: CAPABILITIES,
  learnedOnConnect: [],
  open: (options, runtime) => new Etcd3Store(options, runtime),
};
