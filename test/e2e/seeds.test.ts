// The seeds as their users type them, with `weft` in place of `flanneld`.
// Seed 000 writes its config with the etcd v2 API (`etcdctl set`) and starts flanneld on the v3 store:
// weft must say where the config is and how to fix it, and work once the hint is followed.
// Seed 001 starts the agents first, with no interface flag (the default route's interface), and sets
// the host-gw config with `etcdctl set` while they wait.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { describeNetns } from "../harness/netns.ts";
import { Cluster, eventually, SEED_000_CONFIG } from "./cluster.ts";

describeNetns("seed 000: config written with the etcd v2 API", () => {
  let cluster: Cluster;
  beforeAll(async () => {
    // An etcd with the v2 API on (etcd ≤ 3.5 `--enable-v2`), as the seed's etcd 3.4 lab has it; hosts
    // with a default route, since the seed's command line names no interface.
    cluster = await Cluster.start({ store: "etcd2", hosts: 2, segments: [2] });
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

  test("seed 000 - its exact command line plus the hint's --store=etcd2: both hosts route to each other", async () => {
    expect(await cluster.stopAgent(0)).toBe(0);
    // `flanneld -etcd-endpoints=http://etcd-server:2379 -etcd-prefix=/cluster.hostgw/network -logtostderr=true -v=3`
    const seed = [
      `-etcd-endpoints=${cluster.endpoint}`,
      "-etcd-prefix=/cluster.hostgw/network",
      "-logtostderr=true",
      "-v=3",
      "--store=etcd2",
    ];
    for (const i of [0, 1]) cluster.startAgent(i, seed, {}, { iface: false });
    await cluster.awaitRoutes(2);
    expect(cluster.agents.get(0)?.log()).toContain("weft always logs to stderr");
  }, 30_000);
});

describeNetns("seed 001: agents wait for the config, then pick it up", () => {
  let cluster: Cluster;
  beforeAll(async () => {
    // Hosts with a default route via 172.17.42.1, as the seed's `default via 10.10.10.1 dev eth0`.
    cluster = await Cluster.start({ store: "etcd2", hosts: 3, segments: [3], prefix: "/coreos.com/network" });
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  }, 60_000);

  test("seed 001 - started before the config exists and without --iface, the agents route via eth0 once it is set", async () => {
    for (let i = 0; i < 3; i++) cluster.startAgent(i, [], {}, { iface: false });
    await eventually("every agent to wait for the config", () =>
      [0, 1, 2].every((i) => (cluster.agents.get(i)?.log() ?? "").includes("waiting for the network config")),
    );
    await cluster.etcdctl(
      "set",
      "/coreos.com/network/config",
      '{"Network":"10.100.0.0/16", "Backend": {"Type": "host-gw"}}',
    );
    await cluster.awaitRoutes(3, 2);
    for (let i = 0; i < 3; i++) {
      const address = cluster.host(i).address;
      expect(cluster.agents.get(i)?.log()).toContain(`iface=eth0 ifaceIP=${address} publicIP=${address}`);
      for (const route of await cluster.routes(i))
        expect(route).toMatch(/^10\.100\.\d+\.0\/24 via 172\.17\.42\.4[1-3] dev eth0 proto 77$/);
    }
  }, 60_000);
});
