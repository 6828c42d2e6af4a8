// The vxlan backend end to end, in network namespaces: seed 003's config (VNI 100, Port 8472, /20s of
// 10.0.0.0/8) on three hosts with weft on SQLite — the device, its ARP/FDB/route entries against the
// leases, containers pinging through UDP 8472, every kind of entry repaired, foreign entries left alone.
// Seed 004 (etcd v3, prefix with a trailing slash, --ip-masq, then the switch to host-gw) is below.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { addContainer, SEED_003_CONFIG } from "../../src/demo/demo.ts";
import { openStore } from "../../stores/index.ts";
import { describeNetns } from "../harness/netns.ts";
import { Cluster, eventually, withoutNhid } from "./cluster.ts";
import { addContainers, pingAll } from "./fixtures/containers.ts";
import { entries, vxlanDevice } from "./fixtures/vxlan-state.ts";

const MAIN = join(import.meta.dir, "..", "..", "src", "main.ts");

const ONLINK = /^(10\.\d+\.\d+\.0\/20) via (10\.\d+\.\d+\.0) dev flannel\.100 proto 77 onlink$/;

/** The leases in the SQLite store: subnet → parsed value. */
async function leases(
  cluster: Cluster,
): Promise<Map<string, { PublicIP: string; BackendData: { VNI: number; VtepMAC: string } }>> {
  const store = openStore("sqlite", { endpoints: [cluster.endpoint] });
  try {
    const { entries: kvs } = await store.list(`${cluster.prefix}/subnets/`);
    return new Map(
      kvs.map((kv) => [kv.key.slice(kv.key.lastIndexOf("/") + 1).replace("-", "/"), JSON.parse(kv.value)]),
    );
  } finally {
    await store.close();
  }
}

describeNetns("vxlan on sqlite (seed 003 config)", () => {
  let cluster: Cluster;
  const dev = "flannel.100";
  beforeAll(async () => {
    cluster = await Cluster.start({ store: "sqlite", hosts: 3, prefix: "/coreos.com/network" });
    await cluster.writeConfig(SEED_003_CONFIG);
    for (let i = 0; i < 3; i++) cluster.startAgent(i);
    await cluster.awaitRoutes(3, 2);
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  }, 60_000);

  test("vxlan - flannel.100: vxlan id 100 dstport 8472 nolearning, MTU 1450 on a 1500 link, <subnet>.0/32, up", async () => {
    for (let i = 0; i < 3; i++) {
      const device = await vxlanDevice(cluster.host(i).ns, dev);
      const env = cluster.subnetEnv(i);
      const network = (env.FLANNEL_SUBNET ?? "").replace(/\.1\/20$/, ".0");
      expect(device).toMatchObject({ mtu: 1450, up: true, addresses: [`${network}/32`] });
      expect(device?.info).toMatchObject({
        id: 100,
        port: 8472,
        learning: false,
        local: `172.17.42.${41 + i}`,
      });
      expect(env.FLANNEL_MTU).toBe("1450");
    }
  });

  test("vxlan - each lease is flanneld's JSON byte for byte, with the device's MAC as VtepMAC", async () => {
    const store = openStore("sqlite", { endpoints: [cluster.endpoint] });
    try {
      const { entries: kvs } = await store.list(`${cluster.prefix}/subnets/`);
      expect(kvs.length).toBe(3);
      for (const kv of kvs) {
        const value = JSON.parse(kv.value) as { PublicIP: string };
        const host = Number(value.PublicIP.split(".")[3]) - 41;
        const mac = (await vxlanDevice(cluster.host(host).ns, dev))?.mac;
        expect(kv.value).toBe(
          `{"PublicIP":"${value.PublicIP}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":100,"VtepMAC":"${mac}"}}`,
        );
      }
    } finally {
      await store.close();
    }
  });

  test("vxlan - every host has, per peer, an onlink route, a permanent neighbour and an FDB entry that match the peer's lease", async () => {
    const all = await leases(cluster);
    for (let i = 0; i < 3; i++) {
      const ns = cluster.host(i).ns;
      const own = `172.17.42.${41 + i}`;
      const peers = [...all.entries()].filter(([, v]) => v.PublicIP !== own);
      const routes = await cluster.routes(i);
      expect(routes.every((r) => ONLINK.test(r))).toBe(true);
      expect(routes).toEqual(
        peers.map(([subnet]) => `${subnet} via ${subnet.split("/")[0]} dev ${dev} proto 77 onlink`).sort(),
      );
      expect(await entries(ns, "neigh", dev)).toEqual(
        peers
          .map(([subnet, v]) => `${subnet.split("/")[0]} lladdr ${v.BackendData.VtepMAC} PERMANENT`)
          .sort(),
      );
      expect(await entries(ns, "fdb", dev)).toEqual(
        peers.map(([, v]) => `${v.BackendData.VtepMAC} dst ${v.PublicIP} self permanent`).sort(),
      );
    }
  });

  test("vxlan - containers ping across hosts, and the underlay carries it as UDP 8472", async () => {
    const containers: Awaited<ReturnType<typeof addContainer>>[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const ns = cluster.host(i).ns;
        await ns.exec(["iptables", "-P", "FORWARD", "DROP"]);
        // A counting rule (no target): how many VXLAN datagrams leave eth0.
        await ns.exec(["iptables", "-w", "-I", "OUTPUT", "-o", "eth0", "-p", "udp", "--dport", "8472"]);
        containers.push(await addContainer(ns, cluster.subnetFile(i), i + 1));
      }
      for (const from of containers) {
        for (const to of containers) {
          if (from === to) continue;
          const r = await from.ns.exec(["ping", "-c", "1", "-W", "2", to.ip], { allowFailure: true });
          expect({ from: from.ip, to: to.ip, code: r.code }).toEqual({ from: from.ip, to: to.ip, code: 0 });
        }
      }
      for (let i = 0; i < 3; i++) {
        const out = await cluster.host(i).ns.exec(["iptables", "-w", "-L", "OUTPUT", "-v", "-n", "-x"]);
        const line = out.stdout.split("\n").find((l) => l.includes("udp dpt:8472")) ?? "";
        expect(Number(line.trim().split(/\s+/)[0])).toBeGreaterThanOrEqual(2);
      }
      // A 1450-byte container MTU fits: a full-size ping with DF crosses without fragmentation.
      const big = await containers[0]?.ns.exec(
        ["ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1422", containers[1]?.ip ?? ""],
        {
          allowFailure: true,
        },
      );
      expect(big?.code).toBe(0);
    } finally {
      await Promise.all(containers.map((c) => c.ns.remove()));
      for (let i = 0; i < 3; i++)
        await cluster
          .host(i)
          .ns.ip("link", "del", "docker0")
          .catch(() => undefined);
    }
  }, 60_000);

  test("vxlan - a deleted route, neighbour and FDB entry, a device set down and a deleted device are each put back; foreign entries stay", async () => {
    const ns = cluster.host(0).ns;
    const snapshot = async () => [
      (await cluster.routes(0)).join("\n"),
      (await entries(ns, "neigh", dev)).join("\n"),
      (await entries(ns, "fdb", dev)).join("\n"),
    ];
    const before = await snapshot();
    const mac = (await vxlanDevice(ns, dev))?.mac;
    const addForeign = async () => {
      await ns.ip(
        "neigh",
        "add",
        "192.0.2.50",
        "lladdr",
        "02:00:00:00:00:01",
        "dev",
        dev,
        "nud",
        "permanent",
      );
      const fdb = ["00:00:00:00:00:00", "dev", dev, "dst", "172.17.42.99", "self", "permanent"];
      await ns.exec(["bridge", "fdb", "append", ...fdb]);
    };
    // Foreign entries on weft's device: a neighbour outside the network, the all-zeros FDB default,
    // and a foreign route through the device.
    await addForeign();
    await ns.ip("route", "add", "10.200.0.0/16", "dev", dev, "proto", "static");
    // What weft owns: the snapshot without the foreign entries.
    const withForeign = async () => {
      const s = await snapshot();
      return [
        s[0],
        s[1]
          ?.split("\n")
          .filter((l) => !l.startsWith("192.0.2.50"))
          .join("\n"),
        s[2]
          ?.split("\n")
          .filter((l) => !l.startsWith("00:00:00:00:00:00"))
          .join("\n"),
      ];
    };
    const back = (what: string) =>
      eventually(what, async () => JSON.stringify(await withForeign()) === JSON.stringify(before), 10_000);

    const [victimRoute = ""] = (await cluster.routes(0))[0]?.split(" ") ?? [];
    await ns.ip("route", "del", victimRoute);
    await back("the deleted route to come back");

    const [victimNeigh = ""] =
      (await entries(ns, "neigh", dev)).filter((l) => l.startsWith("10."))[0]?.split(" ") ?? [];
    await ns.ip("neigh", "del", victimNeigh, "dev", dev);
    await back("the deleted neighbour to come back");

    const [victimMac = ""] =
      (await entries(ns, "fdb", dev)).filter((l) => !l.startsWith("00:00"))[0]?.split(" ") ?? [];
    await ns.exec(["bridge", "fdb", "del", victimMac, "dev", dev, "self"]);
    await back("the deleted FDB entry to come back");

    expect((await ns.ip("route", "show", "10.200.0.0/16")).stdout).toContain("proto static");

    await ns.ip("link", "set", dev, "down");
    await eventually(
      "the device to be up again",
      async () => (await vxlanDevice(ns, dev))?.up === true,
      10_000,
    );
    await back("every entry after the device went down and came back");

    await ns.ip("link", "del", dev);
    await eventually("the device to be back", async () => (await vxlanDevice(ns, dev))?.up === true, 10_000);
    await back("every entry on the re-created device");
    // Re-created with the MAC the lease publishes, so peers' entries stay valid.
    expect((await vxlanDevice(ns, dev))?.mac).toBe(mac);

    // The foreign neighbour and FDB entry died with the deleted device; before that they survived
    // every repair. Add them again and check one more repair leaves them.
    await addForeign();
    await ns.ip("route", "del", victimRoute);
    await back("the route to come back once more");
    expect(await entries(ns, "neigh", dev)).toContain("192.0.2.50 lladdr 02:00:00:00:00:01 PERMANENT");
    expect(await entries(ns, "fdb", dev)).toContain("00:00:00:00:00:00 dst 172.17.42.99 self permanent");
    const log = cluster.agents.get(0)?.log() ?? "";
    expect(log).toContain("kernel route changed outside weft; repairing");
    expect(log).toContain("kernel neighbour changed outside weft; repairing");
    expect(log).toContain("kernel FDB entry changed outside weft; repairing");
    expect(log).toContain("created flannel.100");
  }, 60_000);

  test("vxlan - a peer whose VtepMAC and PublicIP change gets its neighbour and FDB entries replaced, never left stale", async () => {
    const key = `${cluster.prefix}/subnets/10.50.0.0-20`;
    const value = (ip: string, mac: string) =>
      `{"PublicIP":"${ip}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":100,"VtepMAC":"${mac}"}}`;
    const has = async (i: number, neigh: string, fdb: string) =>
      (await entries(cluster.host(i).ns, "neigh", dev)).includes(neigh) &&
      (await entries(cluster.host(i).ns, "fdb", dev)).includes(fdb) &&
      (await cluster.routes(i)).includes(`10.50.0.0/20 via 10.50.0.0 dev ${dev} proto 77 onlink`);
    await cluster.put(key, value("172.17.42.60", "02:aa:00:00:00:01"));
    await eventually("every host to program the new peer", async () => {
      for (let i = 0; i < 3; i++)
        if (
          !(await has(
            i,
            "10.50.0.0 lladdr 02:aa:00:00:00:01 PERMANENT",
            "02:aa:00:00:00:01 dst 172.17.42.60 self permanent",
          ))
        )
          return false;
      return true;
    });
    await cluster.put(key, value("172.17.42.61", "02:aa:00:00:00:02"));
    await eventually("every host to replace the peer's entries", async () => {
      for (let i = 0; i < 3; i++) {
        if (
          !(await has(
            i,
            "10.50.0.0 lladdr 02:aa:00:00:00:02 PERMANENT",
            "02:aa:00:00:00:02 dst 172.17.42.61 self permanent",
          ))
        )
          return false;
        if ((await entries(cluster.host(i).ns, "fdb", dev)).some((l) => l.startsWith("02:aa:00:00:00:01")))
          return false;
      }
      return true;
    });
    await cluster.del(key);
    await eventually("every host to drop the departed peer's entries", async () => {
      for (let i = 0; i < 3; i++) {
        const ns = cluster.host(i).ns;
        if ((await entries(ns, "neigh", dev)).some((l) => l.startsWith("10.50.0.0 "))) return false;
        if ((await entries(ns, "fdb", dev)).some((l) => l.startsWith("02:aa:"))) return false;
        if ((await cluster.routes(i)).some((l) => l.startsWith("10.50.0.0/20"))) return false;
      }
      return true;
    });
  }, 60_000);

  test("vxlan - a lease with an unusable VtepMAC or another VNI gets nothing and is reported", async () => {
    const bad = `${cluster.prefix}/subnets/10.51.0.0-20`;
    const other = `${cluster.prefix}/subnets/10.52.0.0-20`;
    await cluster.put(
      bad,
      `{"PublicIP":"172.17.42.62","BackendType":"vxlan","BackendData":{"VNI":100,"VtepMAC":"ff:ff:ff:ff:ff:ff"}}`,
    );
    await cluster.put(
      other,
      `{"PublicIP":"172.17.42.63","BackendType":"vxlan","BackendData":{"VNI":7,"VtepMAC":"02:bb:00:00:00:01"}}`,
    );
    await eventually("both to be reported", () => {
      const log = cluster.agents.get(0)?.log() ?? "";
      return log.includes("is not a unicast MAC address") && log.includes("BackendData.VNI 7 differs");
    });
    const routes = await cluster.routes(0);
    expect(routes.some((r) => r.startsWith("10.51.") || r.startsWith("10.52."))).toBe(false);
    expect(routes.length).toBe(2);
    await cluster.del(bad);
    await cluster.del(other);
  });

  test("vxlan - an agent restart keeps the device, its MAC, the lease and every entry", async () => {
    const ns = cluster.host(1).ns;
    const before = [
      await vxlanDevice(ns, dev),
      await cluster.routes(1),
      await entries(ns, "neigh", dev),
      await entries(ns, "fdb", dev),
    ];
    const lease = [...(await leases(cluster)).values()].find((v) => v.PublicIP === "172.17.42.42");
    expect(await cluster.stopAgent(1)).toBe(0);
    cluster.startAgent(1);
    await eventually(
      "the restarted agent to be done with its first apply",
      () => cluster.agents.get(1)?.log().includes("first full apply done") === true,
    );
    const after = [
      await vxlanDevice(ns, dev),
      await cluster.routes(1),
      await entries(ns, "neigh", dev),
      await entries(ns, "fdb", dev),
    ];
    expect(after).toEqual(before);
    expect([...(await leases(cluster)).values()].find((v) => v.PublicIP === "172.17.42.42")).toEqual(lease);
    expect(cluster.agents.get(1)?.log()).not.toContain("created flannel.100");
  }, 30_000);

  test("vxlan - weft status shows the device, VNI, VtepMAC, MTU and each peer's route through flannel.100", async () => {
    expect(await cluster.stopAgent(0)).toBe(0);
    cluster.startAgent(0, ["--healthz-port=9472", "--healthz-ip=127.0.0.1"]);
    const ns = cluster.host(0).ns;
    const mac = (await vxlanDevice(ns, dev))?.mac;
    const status = async () =>
      (
        await ns.exec([process.execPath, MAIN, "status", "--healthz-port=9472", "--healthz-ip=127.0.0.1"], {
          allowFailure: true,
        })
      ).stdout;
    await eventually("weft status to say ready", async () => (await status()).includes("ready       yes"));
    const out = await status();
    expect(out).toContain(
      `vxlan on eth0 (PublicIP 172.17.42.41): flannel.100, VNI 100, VtepMAC ${mac}, MTU 1450`,
    );
    expect(out).toContain("2, 2 neighbours and 2 FDB entries on flannel.100");
    expect(out.match(/ via 10\.\d+\.\d+\.0 dev flannel\.100$/gm)?.length).toBe(2);
  }, 30_000);

  test("vxlan - weft plan on a host without the device lists exactly the routes, neighbours and FDB entries the agent then installs", async () => {
    const ns = cluster.host(2).ns;
    expect(await cluster.stopAgent(2)).toBe(0);
    await ns.ip("link", "del", dev);
    const r = await ns.exec([
      process.execPath,
      MAIN,
      "plan",
      "--store=sqlite",
      `--store-endpoints=${cluster.endpoint}`,
      `--etcd-prefix=${cluster.prefix}`,
      "--iface=eth0",
      `--subnet-file=${cluster.subnetFile(2)}`,
    ]);
    expect(r.stdout).toContain("backend vxlan, MTU 1450");
    expect(r.stdout).toContain("would create flannel.100 (absent; vxlan id 100, MTU 1450)");
    expect(await vxlanDevice(ns, dev)).toBeUndefined();
    const section = (title: string) => {
      const lines = r.stdout.split("\n");
      const start = lines.findIndex((l) => l.startsWith(`${title}:`));
      const out: string[] = [];
      for (const line of lines.slice(start + 1)) {
        if (!line.startsWith("  + ")) break;
        out.push(withoutNhid(line.slice(4)));
      }
      return out.sort();
    };
    cluster.startAgent(2);
    await eventually(
      "the agent's first apply",
      () => cluster.agents.get(2)?.log().includes("first full apply done") === true,
    );
    expect(section("routes").length).toBe(2);
    expect(await cluster.routes(2)).toEqual(section("routes"));
    expect(await entries(ns, "neigh", dev)).toEqual(section("neighbours").map((l) => `${l} PERMANENT`));
    expect(await entries(ns, "fdb", dev)).toEqual(section("fdb").map((l) => `${l} self permanent`));
  }, 30_000);
});

/** Seed 004's flannel-config.json (vxlan with the default VNI, then host-gw). */
const seed004 = (type: string) => `{
"Network": "10.2.0.0/16",
"SubnetLen": 24,
"SubnetMin": "10.2.1.0",
"SubnetMax": "10.2.254.0",
"Backend":{
  "Type": "${type}"
   }
}`;

describeNetns("seed 004 on etcd v3: vxlan, then host-gw", () => {
  let cluster: Cluster;
  const containers: Awaited<ReturnType<typeof addContainer>>[] = [];
  beforeAll(async () => {
    // `-etcd-prefix=/docker/network/` as the seed writes it (trailing slash), config put with etcdctl v3.
    cluster = await Cluster.start({ store: "etcd", hosts: 2, prefix: "/docker/network/" });
    await cluster.etcdctl("put", "/docker/network/config", seed004("vxlan"));
    for (let i = 0; i < 2; i++) cluster.startAgent(i, ["-ip-masq=true"]);
    await cluster.awaitRoutes(2, 1);
  }, 60_000);
  afterAll(async () => {
    await Promise.all(containers.map((c) => c.ns.remove()));
    await cluster?.stop();
  }, 60_000);

  test("seed 004 - vxlan: leases under /docker/network/subnets/, flannel.1 at MTU 1450, docker options --mtu=1450, containers ping", async () => {
    const keys = (await cluster.etcdctl("get", "--prefix", "--keys-only", "/docker/network/subnets/"))
      .split("\n")
      .filter((l) => l !== "");
    expect(keys.length).toBe(2);
    expect(keys.every((k) => /^\/docker\/network\/subnets\/10\.2\.\d+\.0-24$/.test(k))).toBe(true);
    for (let i = 0; i < 2; i++) {
      expect((await vxlanDevice(cluster.host(i).ns, "flannel.1"))?.mtu).toBe(1450);
      const env = cluster.subnetEnv(i);
      expect(env.FLANNEL_MTU).toBe("1450");
      expect(env.FLANNEL_IPMASQ).toBe("true");
      // ExecStartPost=mk-docker-opts.sh, as the seed's unit runs it.
      const out = join(cluster.dir, `docker_opts${i}.env`);
      const proc = Bun.spawn(
        [process.execPath, MAIN, "mk-docker-opts", "-f", cluster.subnetFile(i), "-d", out],
        {
          stdout: "pipe",
          stderr: "pipe",
        },
      );
      expect(await proc.exited).toBe(0);
      const opts = await Bun.file(out).text();
      expect(opts).toContain(`DOCKER_OPTS=" --bip=${env.FLANNEL_SUBNET} --ip-masq=false --mtu=1450"`);
    }
    await addContainers(cluster, 2, containers);
    await pingAll(containers);
  }, 60_000);

  test("seed 004 - switching the config to host-gw and restarting: flannel.1 gone, host-gw routes in, same subnets, containers still ping", async () => {
    const subnets = [0, 1].map((i) => cluster.subnetEnv(i).FLANNEL_SUBNET);
    await cluster.etcdctl("put", "/docker/network/config", seed004("host-gw"));
    for (let i = 0; i < 2; i++) {
      expect(await cluster.stopAgent(i)).toBe(0);
      cluster.startAgent(i, ["-ip-masq=true"]);
    }
    await eventually("host-gw routes on both hosts and flannel.1 gone", async () => {
      for (let i = 0; i < 2; i++) {
        const routes = await cluster.routes(i);
        if (routes.length !== 1 || !/ via 172\.17\.42\.4\d dev eth0 proto 77$/.test(routes[0] ?? ""))
          return false;
        if ((await vxlanDevice(cluster.host(i).ns, "flannel.1")) !== undefined) return false;
      }
      return true;
    });
    expect([0, 1].map((i) => cluster.subnetEnv(i).FLANNEL_SUBNET)).toEqual(subnets);
    expect([0, 1].map((i) => cluster.subnetEnv(i).FLANNEL_MTU)).toEqual(["1500", "1500"]);
    const values = (
      await cluster.etcdctl("get", "--prefix", "--print-value-only", "/docker/network/subnets/")
    )
      .split("\n")
      .filter((l) => l.startsWith("{"));
    expect(values.map((v) => JSON.parse(v).BackendType)).toEqual(["host-gw", "host-gw"]);
    expect(values.every((v) => !v.includes("BackendData"))).toBe(true);
    expect(cluster.agents.get(0)?.log()).toContain("removed a device the current backend does not use");
    // The containers were made with MTU 1450 under vxlan; they keep working over host-gw.
    await pingAll(containers);
  }, 60_000);
});
