/** Every fuzz target, in report order. */

import type { FuzzTarget } from "./target.ts";
import { etcd3GrpcStreamTarget, etcd3GrpcTarget } from "./targets-grpc.ts";
import { jsonListsTarget, jsonStreamTarget } from "./targets-json-stream.ts";
import { flagsTarget, leaseTarget, networkConfigTarget } from "./targets-parsers.ts";
import { consulTarget, etcd2Target, etcd3Target, etcd3WatchTarget, natsTarget } from "./targets-stores.ts";

export const TARGETS: readonly FuzzTarget[] = [
  networkConfigTarget,
  leaseTarget,
  flagsTarget,
  etcd3Target,
  etcd3WatchTarget,
  etcd3GrpcTarget,
  etcd3GrpcStreamTarget,
  etcd2Target,
  consulTarget,
  jsonStreamTarget,
  jsonListsTarget,
  natsTarget,
] as readonly FuzzTarget[];
