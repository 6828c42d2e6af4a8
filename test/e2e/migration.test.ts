// Migrating a live host from flanneld to weft (README "Migrating from flanneld"): flanneld v0.28.9 with
// --ip-masq on host 1 of a host-gw cluster on etcd v3, containers pinging; stop flanneld, start weft.
// The host keeps its subnet, its routes are replaced in place, flanneld's FLANNEL-* chains are gone,
// and the containers never stop pinging. Also: switching EnableNFTables off removes `table ip weft`.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { addContainer } from "../../src/demo/demo.ts";
import { describeNetns } from "../harness/netns.ts";
import { Cluster, eventually, SEED_000_CONFIG } from "./cluster.ts";

type Container = Awaited<ReturnType<typeof addContainer>>;

describeNetns("migration from a running flanneld", () => {
  let cluster: Cluster;
  const containers: Container[] = [];
  beforeAll(async () => {
    await Cluster.testBin("flanneld");
  }, 600_000);
  beforeAll(async () => {
    cluster = await Cluster.start({ store: "etcd", hosts: 2 });
    await cluster.writeConfig(SEED_000_CONFIG);
    cluster.startAgent(0, ["--ip-masq"]);
    await eventually("host 0's subnet.env", async () => Bun.file(cluster.subnetFile(0)).exists());
    await cluster.startFlanneld(1, ["--ip-masq"]);
    await eventually("both hosts to route to each other", async () => {
      return (await cluster.routesAll(0)).length === 1 && (await cluster.routesAll(1)).length === 1;
    });
    for (let i = 0; i < 2; i++) {
      await cluster.host(i).ns.exec(["iptables", "-P", "FORWARD", "DROP"]);
      containers.push(await addContainer(cluster.host(i).ns, cluster.subnetFile(i), i + 1));
    }
  }, 120_000);
  afterAll(async () => {
    await Promise.all(containers.map((c) => c.ns.remove()));
    await cluster?.stop();
  }, 60_000);

  test("migration - flanneld → weft with --ip-masq: same subnet, routes replaced in place, no FLANNEL-* rules left, no ping lost", async () => {
    const ns = cluster.host(1).ns;
    const save = async () => (await ns.exec(["iptables-save"])).stdout;
    expect((await save()).match(/FLANNEL-/g)?.length ?? 0).toBeGreaterThanOrEqual(10);
    const subnet = cluster.subnetEnv(1).FLANNEL_SUBNET;
    const [from, to] = containers;
    // Pings both ways through the whole switch: 50 packets 0.1 s apart.
    const pings = [from, to].map((c, k) =>
      c?.ns.exec(["ping", "-c", "50", "-i", "0.1", "-W", "1", containers[1 - k]?.ip ?? ""], {
        allowFailure: true,
      }),
    );
    await Bun.sleep(1_000);
    expect(await cluster.stopAgent(1)).toBe(0);
    // flanneld leaves its rules, routes and lease behind.
    expect(await save()).toContain("FLANNEL-POSTRTG");
    cluster.startAgent(1, ["--ip-masq"]);
    await eventually("weft to take the host over", async () => {
      const log = cluster.agents.get(1)?.log() ?? "";
      return log.includes("removed firewall rules weft replaces") && log.includes("first full apply done");
    });
    const results = await Promise.all(pings);
    for (const r of results) expect(r?.stdout).toContain(" 0% packet loss");
    expect(cluster.subnetEnv(1).FLANNEL_SUBNET).toBe(subnet);
    expect(cluster.agents.get(1)?.log()).toContain("rule=reuse-own-lease");
    // Routes replaced in place: one route to the peer, now weft's.
    expect(await cluster.routesAll(1)).toEqual(await cluster.routes(1));
    expect((await cluster.routes(1)).length).toBe(1);
    const rules = await save();
    expect(rules).not.toContain("FLANNEL");
    expect(rules).toContain("-j WEFT-POSTRTG");
    expect(rules).toContain("-j WEFT-FWD");
  }, 60_000);
});

describeNetns("nftables mode through the agent", () => {
  let cluster: Cluster;
  const containers: Container[] = [];
  const config = (nft: boolean) =>
    SEED_000_CONFIG.replace('"SubnetLen": 26,', `"SubnetLen": 26, "EnableNFTables": ${nft},`);
  beforeAll(async () => {
    cluster = await Cluster.start({ store: "sqlite", hosts: 2 });
    await cluster.writeConfig(config(true));
    for (let i = 0; i < 2; i++) cluster.startAgent(i, ["--ip-masq"]);
    await cluster.awaitRoutes(2);
  }, 60_000);
  afterAll(async () => {
    await Promise.all(containers.map((c) => c.ns.remove()));
    await cluster?.stop();
  }, 60_000);

  test("nftables - EnableNFTables: table ip weft with the masquerade rules, no WEFT iptables chains, containers ping", async () => {
    for (let i = 0; i < 2; i++) {
      const ns = cluster.host(i).ns;
      await eventually(`host ${i}'s nftables table`, async () => {
        const r = await ns.exec(["nft", "list", "table", "ip", "weft"], { allowFailure: true });
        return r.code === 0 && r.stdout.includes("masquerade");
      });
      expect((await ns.exec(["iptables-save"])).stdout).not.toContain("WEFT-");
      // No FORWARD policy DROP here: an nftables accept cannot override an iptables drop (firewall/DESIGN.md).
      containers.push(await addContainer(ns, cluster.subnetFile(i), i + 1));
    }
    const r = await containers[0]?.ns.exec(["ping", "-c", "1", "-W", "2", containers[1]?.ip ?? ""], {
      allowFailure: true,
    });
    expect(r?.code).toBe(0);
  }, 60_000);

  test("nftables - switching EnableNFTables off and restarting: iptables chains in, table ip weft gone", async () => {
    await cluster.writeConfig(config(false));
    for (let i = 0; i < 2; i++) {
      expect(await cluster.stopAgent(i)).toBe(0);
      cluster.startAgent(i, ["--ip-masq"]);
    }
    for (let i = 0; i < 2; i++) {
      const ns = cluster.host(i).ns;
      await eventually(`host ${i} to drop table ip weft`, async () => {
        return (await ns.exec(["nft", "list", "table", "ip", "weft"], { allowFailure: true })).code !== 0;
      });
      expect((await ns.exec(["iptables-save"])).stdout).toContain("-j WEFT-POSTRTG");
      await eventually("the removal to be logged", () =>
        (cluster.agents.get(i)?.log() ?? "").includes("table ip weft (EnableNFTables is off)"),
      );
    }
    const r = await containers[1]?.ns.exec(["ping", "-c", "1", "-W", "2", containers[0]?.ip ?? ""], {
      allowFailure: true,
    });
    expect(r?.code).toBe(0);
  }, 60_000);
});
