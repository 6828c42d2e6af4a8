/** Every fuzz target, in report order. */

import type { FuzzTarget } from "./target.ts";
import { etcd3GrpcTarget } from "./targets-grpc.ts";
import { flagsTarget, leaseTarget, networkConfigTarget } from "./targets-parsers.ts";
import { consulTarget, etcd2Target, etcd3Target, etcd3WatchTarget, natsTarget } from "./targets-stores.ts";

export const TARGETS: readonly FuzzTarget[] = [
  networkConfigTarget,
  leaseTarget,
  flagsTarget,
  etcd3Target,
  etcd3WatchTarget,
  etcd3GrpcTarget,
  etcd2Target,
  consulTarget,
  natsTarget,
] as readonly FuzzTarget[];
