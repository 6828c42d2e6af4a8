import type { StoreDriver } from "../driver.ts";
import { NatsStore } from "./index.ts";

/** A NATS JetStream KV bucket: `--store=nats`; `--etcd-username/password` are the NATS user. */
export const natsDriver: StoreDriver = {
  name: "nats",
  endpoints: "urls",
  defaultEndpoint: "nats://127.0.0.1:4222",
  uses: { tls: true, userPassword: true },
  flags: [{ name: "nats-creds", valueName: "<file>", help: "NATS credentials file" }],
  open: (options, runtime) => new NatsStore(options, runtime),
};
