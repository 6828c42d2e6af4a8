import type { StoreDriver } from "../driver.ts";
import { CAPABILITIES, ConsulStore } from "./index.ts";

/** Consul's KV store with sessions as leases: `--store=consul`. */
export const consulDriver: StoreDriver = {
  name: "consul",
  endpoints: "urls",
  defaultEndpoint: "http://127.0.0.1:8500",
  uses: { tls: true, userPassword: false },
  flags: [{ name: "consul-token", help: "Consul ACL token", secret: true }],
  capabilities: CAPABILITIES,
  learnedOnConnect: [],
  open: (options, runtime) => new ConsulStore(options, runtime),
};
