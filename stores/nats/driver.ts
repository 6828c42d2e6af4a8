import type { StoreDriver } from "../driver.ts";
import { CAPABILITIES, LEARNED_ON_CONNECT, NatsStore } from "./index.ts";
import { MAX_REPLICAS, replicasRule } from "./replicas.ts";

/** A NATS JetStream KV bucket: `--store=nats`; `--etcd-username/password` are the NATS user. */
export const natsDriver: StoreDriver = {
  name: "nats",
  endpoints: "urls",
  defaultEndpoint: "nats://127.0.0.1:4222",
  uses: { tls: true, userPassword: true },
  flags: [
    { name: "nats-creds", valueName: "<file>", help: "NATS credentials file" },
    {
      name: "nats-replicas",
      valueName: `<1..${MAX_REPLICAS}>`,
      defaultValue: "1",
      help: "JetStream servers that keep a copy of the KV bucket weft creates; an existing bucket keeps its own",
      rule: replicasRule,
    },
  ],
  capabilities: CAPABILITIES,
  learnedOnConnect: LEARNED_ON_CONNECT,
  open: (options, runtime) => new NatsStore(options, runtime),
};
