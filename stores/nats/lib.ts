/**
 * The NATS client libraries, loaded on the first connect rather than at start-up: evaluating them
 * costs the compiled binary about 13 MB of RSS and some start-up time, which an agent on any other
 * store should not pay. Only types are imported statically.
 */
import type * as JetStream from "@nats-io/jetstream";
import type * as Kv from "@nats-io/kv";
import type * as Transport from "@nats-io/transport-node";

export interface NatsLib {
  readonly transport: typeof Transport;
  readonly jetstream: typeof JetStream;
  readonly kv: typeof Kv;
}

let loading: Promise<NatsLib> | undefined;

export function loadNatsLib(): Promise<NatsLib> {
  loading ??= Promise.all([
    import("@nats-io/transport-node"),
    import("@nats-io/jetstream"),
    import("@nats-io/kv"),
  ]).then(([transport, jetstream, kv]) => ({ transport, jetstream, kv }));
  return loading;
}
