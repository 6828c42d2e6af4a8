// The seeds as their users type them, with `weft` in place of `flanneld`.
// Seed 000 writes its config with the etcd v2 API (`etcdctl set`) and starts flanneld on the v3 store:
// weft must say where the config is and how to fix it, and work once the hint is followed.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { canUseNetns } from "../../src/netns/netns.ts";
import { Cluster, eventually, SEED_000_CONFIG } from "./cluster.ts";

describe.skipIf(!canUseNetns())("seed 000: config written with the etcd v2 API", () => {
  let cluster: Cluster;
  beforeAll(async () => {
    // An etcd with the v2 API on (etcd ≤ 3.5 `--enable-v2`), as the seed's etcd 3.4 lab has it.
    cluster = await Cluster.start({ store: "etcd2", hosts: 2 });
    await cluster.writeConfig(SEED_000_CONFIG);
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  }, 60_000);

  test("seed 000 - on the v3 store, weft says the config is in etcd's v2 keyspace and which flag fixes it", async () => {
    cluster.startAgent(0, ["--store=etcd"]);
    await eventually("the v2 hint", () =>
      (cluster.agents.get(0)?.log() ?? "").includes(
        `found ${cluster.prefix}/config in etcd's v2 keyspace (written with the v2 API, e.g. ETCDCTL_API=2 etcdctl set): run weft with --store=etcd2`,
      ),
    );
    expect(cluster.agents.get(0)?.proc.exitCode).toBeNull();
  }, 30_000);

  test("seed 000 - following the hint (--store=etcd2), both hosts route to each other", async () => {
    expect(await cluster.stopAgent(0)).toBe(0);
    cluster.startAgent(0);
    cluster.startAgent(1);
    await eventually("both hosts to route to each other", async () => {
      return (await cluster.routes(0)).length === 1 && (await cluster.routes(1)).length === 1;
    });
  }, 30_000);
});
