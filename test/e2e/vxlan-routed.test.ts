// vxlan across a router: seed 003 exactly as written (config set with the etcd v2 API, agents started
// with `-iface=<the host's IP>`, --store=etcd2), with two hosts on one segment and a third behind a
// router, where host-gw cannot reach; and DirectRouting, where hosts on one segment route directly
// and only the one behind the router goes through VXLAN.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { SEED_003_CONFIG } from "../../src/demo/demo.ts";
import { describeNetns } from "../harness/netns.ts";
import { Cluster, eventually } from "./cluster.ts";
import { addContainers, type Container, pingAll } from "./fixtures/containers.ts";
import { entries, vxlanDevice } from "./fixtures/vxlan-state.ts";

describeNetns("seed 003 on etcd v2, hosts on two segments", () => {
  let cluster: Cluster;
  const containers: Container[] = [];
  const dev = "flannel.100";
  beforeAll(async () => {
    cluster = await Cluster.start({
      store: "etcd2",
      hosts: 3,
      segments: [2, 1],
      prefix: "/coreos.com/network",
    });
    // `etcdctl set /coreos.com/network/config < flannel-network-config.json` (v2 API).
    await cluster.writeConfig(SEED_003_CONFIG);
    // `flanneld -iface=192.168.205.10`, with this lab's addresses.
    for (let i = 0; i < 3; i++) cluster.startAgent(i, [`-iface=${cluster.host(i).address}`]);
    await cluster.awaitRoutes(3, 2);
  }, 60_000);
  afterAll(async () => {
    await Promise.all(containers.map((c) => c.ns.remove()));
    await cluster?.stop();
  }, 60_000);

  test("seed 003 - -iface=<IP> makes that address the PublicIP and the VTEP source; flannel.100 at MTU 1450", async () => {
    const listing = await cluster.etcdctl("ls", "/coreos.com/network/subnets");
    const keys = listing.split("\n").filter((l) => l !== "");
    expect(keys.length).toBe(3);
    for (const key of keys) {
      const value = JSON.parse(await cluster.etcdctl("get", key)) as {
        PublicIP: string;
        BackendType: string;
      };
      expect(["172.17.42.41", "172.17.42.42", "172.17.43.41"]).toContain(value.PublicIP);
      expect(value.BackendType).toBe("vxlan");
      // Subnets are /20s between SubnetMin 10.10.0.0 and SubnetMax 10.99.0.0.
      const [, second] = key.match(/\/10\.(\d+)\.\d+\.0-20$/) ?? [];
      expect(Number(second) >= 10 && Number(second) <= 99).toBe(true);
    }
    for (let i = 0; i < 3; i++) {
      const device = await vxlanDevice(cluster.host(i).ns, dev);
      expect(device?.mtu).toBe(1450);
      expect(device?.info).toMatchObject({ id: 100, port: 8472, local: cluster.host(i).address });
      expect(cluster.subnetEnv(i).FLANNEL_MTU).toBe("1450");
    }
  });

  test("seed 003 - neighbour and FDB entries match the leases; the peer behind the router is reached through it", async () => {
    const values = new Map<string, { PublicIP: string; BackendData: { VtepMAC: string } }>();
    for (const key of (await cluster.etcdctl("ls", "/coreos.com/network/subnets"))
      .split("\n")
      .filter(Boolean)) {
      values.set(
        key.slice(key.lastIndexOf("/") + 1).replace("-", "/"),
        JSON.parse(await cluster.etcdctl("get", key)),
      );
    }
    for (let i = 0; i < 3; i++) {
      const peers = [...values.entries()].filter(([, v]) => v.PublicIP !== cluster.host(i).address);
      const ns = cluster.host(i).ns;
      expect(await entries(ns, "neigh", dev)).toEqual(
        peers
          .map(([subnet, v]) => `${subnet.split("/")[0]} lladdr ${v.BackendData.VtepMAC} PERMANENT`)
          .sort(),
      );
      expect(await entries(ns, "fdb", dev)).toEqual(
        peers.map(([, v]) => `${v.BackendData.VtepMAC} dst ${v.PublicIP} self permanent`).sort(),
      );
    }
    // The underlay path from segment 0 to segment 1 goes through the router.
    const path = await cluster.host(0).ns.ip("route", "get", cluster.host(2).address);
    expect(path.stdout).toContain("via 172.17.42.1 dev eth0");
  });

  test("seed 003 - containers ping across all hosts, carried on the underlay as UDP 8472 (tcpdump)", async () => {
    const ns = cluster.host(2).ns;
    const capture = ns.spawn(["tcpdump", "-i", "eth0", "-n", "-l", "-c", "2", "udp", "port", "8472"]);
    let errText = "";
    const decoder = new TextDecoder();
    void (async () => {
      for await (const chunk of capture.stderr) errText += decoder.decode(chunk);
    })();
    try {
      await eventually("tcpdump to listen", () => errText.includes("listening on"), 10_000);
      await addContainers(cluster, 3, containers);
      await pingAll(containers);
      const exited = await Promise.race([capture.exited, Bun.sleep(10_000).then(() => "timeout" as const)]);
      expect(exited).toBe(0);
      const out = await new Response(capture.stdout).text();
      // e.g. `IP 172.17.42.41.36214 > 172.17.43.41.8472: OTV, flags [I] (0x08), overlay 0, instance 100`
      expect(out).toMatch(/IP 172\.17\.4[23]\.4[12]\.\d+ > 172\.17\.4[23]\.4[12]\.8472: .*instance 100/);
    } finally {
      capture.kill();
    }
  }, 60_000);
});

describeNetns("vxlan DirectRouting", () => {
  let cluster: Cluster;
  const containers: Container[] = [];
  beforeAll(async () => {
    cluster = await Cluster.start({
      store: "sqlite",
      hosts: 3,
      segments: [2, 1],
      prefix: "/coreos.com/network",
    });
    await cluster.writeConfig(
      '{"Network": "10.2.0.0/16", "SubnetLen": 24, "Backend": {"Type": "vxlan", "DirectRouting": true}}',
    );
    for (let i = 0; i < 3; i++) cluster.startAgent(i);
    await cluster.awaitRoutes(3, 2);
  }, 60_000);
  afterAll(async () => {
    await Promise.all(containers.map((c) => c.ns.remove()));
    await cluster?.stop();
  }, 60_000);

  test("vxlan DirectRouting - hosts on one segment route directly via eth0, the host behind the router through flannel.1", async () => {
    const subnet = (i: number) => (cluster.subnetEnv(i).FLANNEL_SUBNET ?? "").replace(/\.1\/24$/, ".0/24");
    const direct = (to: number) => `${subnet(to)} via ${cluster.host(to).address} dev eth0 proto 77`;
    const tunnel = (to: number) =>
      `${subnet(to)} via ${subnet(to).replace("/24", "")} dev flannel.1 proto 77 onlink`;
    expect(await cluster.routes(0)).toEqual([direct(1), tunnel(2)].sort());
    expect(await cluster.routes(1)).toEqual([direct(0), tunnel(2)].sort());
    expect(await cluster.routes(2)).toEqual([tunnel(0), tunnel(1)].sort());
    // Only the tunnelled peer has neighbour and FDB entries.
    expect((await entries(cluster.host(0).ns, "fdb", "flannel.1")).map((l) => l.split(" dst ")[1])).toEqual([
      "172.17.43.41 self permanent",
    ]);
    expect((await entries(cluster.host(2).ns, "fdb", "flannel.1")).length).toBe(2);
    await addContainers(cluster, 3, containers);
    await pingAll(containers);
  }, 60_000);
});
