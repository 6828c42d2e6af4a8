// A rolling migration on vxlan: seed 004's network (10.2.0.0/16, /24s, vxlan with the default VNI 1) on
// etcd v3, weft on hosts 0–1 and the Go-built flanneld v0.28.9 on hosts 2–3, all on one L2 segment.
// Each agent must program flannel.1 and the per-peer neighbour, FDB entry and onlink route from the
// other's leases; then host 3 switches from flanneld to weft, taking over flanneld's device in place.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { addContainer } from "../../src/demo/demo.ts";
import type { Netns } from "../../src/netns/netns.ts";
import { describeNetns } from "../harness/netns.ts";
import { Cluster, eventually } from "./cluster.ts";
import { entries, type Vxlan, vxlanDevice } from "./fixtures/vxlan-state.ts";

const HOSTS = 4;
const WEFT = [0, 1];
const FLANNELD = [2, 3];
/** The flanneld host that test 2 switches to weft. */
const SWITCHED = 3;
const DEV = "flannel.1";
const CONFIG = `{"Network":"10.2.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan"}}`;

interface Lease {
  readonly subnet: string;
  readonly value: string;
  readonly etcdLease: string | undefined;
  readonly publicIp: string;
  readonly mac: string;
}

/** Every lease under `<prefix>/subnets/`, read with `etcdctl get -w json` (lease IDs kept as text). */
async function leases(cluster: Cluster): Promise<Lease[]> {
  const out = await cluster.etcdctl("get", "--prefix", `${cluster.prefix}/subnets/`, "-w", "json");
  return [...out.matchAll(/"key":"([^"]+)"[^}]*?"value":"([^"]+)"(?:,"lease":(\d+))?/g)].map((m) => {
    const key = Buffer.from(m[1] ?? "", "base64").toString();
    const value = Buffer.from(m[2] ?? "", "base64").toString();
    const parsed = JSON.parse(value) as { PublicIP: string; BackendData: { VtepMAC: string } };
    return {
      subnet: key.slice(key.lastIndexOf("/") + 1).replace("-", "/"),
      value,
      etcdLease: m[3],
      publicIp: parsed.PublicIP,
      mac: parsed.BackendData.VtepMAC,
    };
  });
}

/** `10.2.7.1/24` (FLANNEL_SUBNET) → `10.2.7.0/24`. */
function subnetOf(flannelSubnet: string): string {
  return flannelSubnet.replace(/\.1\/24$/, ".0/24");
}

/** The routes, neighbours and FDB entries host i keeps for its peers, whoever installed them. */
async function peerEntries(cluster: Cluster, i: number) {
  const ns = cluster.host(i).ns;
  return {
    host: i,
    routes: await cluster.routesAll(i),
    neigh: await entries(ns, "neigh", DEV),
    fdb: await entries(ns, "fdb", DEV),
  };
}

/** What host i should hold for its peers' leases; weft marks its routes `proto 77`. */
function expectedEntries(cluster: Cluster, i: number, all: readonly Lease[], weft: boolean) {
  const peers = all.filter((l) => l.publicIp !== cluster.host(i).address);
  const proto = weft ? " proto 77" : "";
  const gw = (l: Lease) => l.subnet.split("/")[0] ?? "";
  return {
    host: i,
    routes: peers.map((l) => `${l.subnet} via ${gw(l)} dev ${DEV}${proto} onlink`).sort(),
    neigh: peers.map((l) => `${gw(l)} lladdr ${l.mac} PERMANENT`).sort(),
    fdb: peers.map((l) => `${l.mac} dst ${l.publicIp} self permanent`).sort(),
  };
}

async function ifindex(ns: Netns): Promise<number | undefined> {
  const r = await ns.exec(["ip", "-j", "link", "show", "dev", DEV], { allowFailure: true });
  if (r.code !== 0) return undefined;
  return (JSON.parse(r.stdout) as Array<{ ifindex: number }>)[0]?.ifindex;
}

describeNetns("interop vxlan with flanneld v0.28.9", () => {
  let cluster: Cluster;
  const containers: Array<{ ns: Netns; ip: string }> = [];
  /** Tests that ran to their end; every agent's log is printed when one did not. */
  let passed = 0;

  /** Pings between every pair of containers that involves one of `hosts`; returns the failures. */
  const pingPairs = async (hosts: readonly number[]) => {
    const failed: string[] = [];
    for (const [a, from] of containers.entries()) {
      for (const [b, to] of containers.entries()) {
        if (a === b || !(hosts.includes(a) || hosts.includes(b))) continue;
        const r = await from.ns.exec(["ping", "-c", "1", "-W", "2", to.ip], { allowFailure: true });
        if (r.code !== 0) failed.push(`host ${a} ${from.ip} → host ${b} ${to.ip}`);
      }
    }
    return failed;
  };

  beforeAll(async () => {
    // The first run builds flanneld from the Go module proxy (several minutes); later runs hit the cache.
    await Cluster.testBin("flanneld");
  }, 600_000);

  beforeAll(async () => {
    cluster = await Cluster.start({ store: "etcd", hosts: HOSTS, prefix: "/coreos.com/network" });
    await cluster.writeConfig(CONFIG);
    const startup = await cluster.startInTurn(HOSTS, FLANNELD);
    const t1 = performance.now();
    await eventually(
      "every host to hold a route, a neighbour and an FDB entry per peer",
      async () => {
        for (let i = 0; i < HOSTS; i++) {
          const e = await peerEntries(cluster, i);
          if (e.routes.length !== HOSTS - 1 || e.neigh.length !== HOSTS - 1 || e.fdb.length !== HOSTS - 1)
            return false;
        }
        return true;
      },
      30_000,
    );
    startup.push(`every peer's entries ${Math.round(performance.now() - t1)} ms after the last subnet.env`);
    console.error(`interop vxlan: spawn to subnet.env: ${startup.join(", ")}`);
  }, 120_000);

  afterAll(async () => {
    if (cluster !== undefined && passed < 3) {
      for (const [i, agent] of cluster.agents)
        console.error(`--- ${agent.kind} on host ${i} (last 3000 chars) ---\n${agent.log().slice(-3000)}`);
    }
    await Promise.all(containers.map((c) => c.ns.remove()));
    await cluster?.stop();
  }, 60_000);

  test("interop vxlan - weft and flanneld hosts program flannel.1 and each peer's neighbour, FDB entry and onlink route from the other's leases; containers ping", async () => {
    const all = await leases(cluster);
    expect(all.length).toBe(HOSTS);
    const devices: Array<Vxlan | undefined> = [];
    for (let i = 0; i < HOSTS; i++) {
      const ns = cluster.host(i).ns;
      const env = cluster.subnetEnv(i);
      const subnet = subnetOf(env.FLANNEL_SUBNET ?? "");
      const device = await vxlanDevice(ns, DEV);
      devices.push(device);
      const kind = WEFT.includes(i) ? "weft" : "flanneld";
      expect({ host: i, kind, mtu: device?.mtu, up: device?.up, addresses: device?.addresses }).toEqual({
        host: i,
        kind,
        mtu: 1450,
        up: true,
        addresses: [subnet.replace("/24", "/32")],
      });
      expect(device?.info).toMatchObject({
        id: 1,
        port: 8472,
        learning: false,
        local: cluster.host(i).address,
      });
      expect({ host: i, network: env.FLANNEL_NETWORK, mtu: env.FLANNEL_MTU }).toEqual({
        host: i,
        network: "10.2.0.0/16",
        mtu: "1450",
      });
      // The lease: flanneld's JSON byte for byte, with this host's device MAC as VtepMAC.
      const lease = all.find((l) => l.subnet === subnet);
      expect({ host: i, kind, value: lease?.value }).toEqual({
        host: i,
        kind,
        value: `{"PublicIP":"${cluster.host(i).address}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${device?.mac}"}}`,
      });
      expect(await peerEntries(cluster, i)).toEqual(expectedEntries(cluster, i, all, WEFT.includes(i)));
    }
    // weft's device has flanneld's settings, apart from the local address.
    const settings = (d: Vxlan | undefined) => ({ ...d?.info, local: undefined });
    console.error(`interop vxlan: flanneld's flannel.1 on host 2: ${JSON.stringify(devices[2]?.info)}`);
    console.error(`interop vxlan: weft's flannel.1 on host 0: ${JSON.stringify(devices[0]?.info)}`);
    expect(settings(devices[0])).toEqual(settings(devices[2]));

    for (let i = 0; i < HOSTS; i++) {
      await cluster.host(i).ns.exec(["iptables", "-P", "FORWARD", "DROP"]);
      containers.push(await addContainer(cluster.host(i).ns, cluster.subnetFile(i), i + 1));
    }
    expect(await pingPairs([0, 1, 2, 3])).toEqual([]);
    passed++;
  }, 60_000);

  test("interop vxlan - a host switched from flanneld to weft keeps its subnet, device, MAC and lease; peers' entries stay valid", async () => {
    const ns = cluster.host(SWITCHED).ns;
    const others = [0, 1, 2, 3].filter((i) => i !== SWITCHED);
    const subnet = cluster.subnetEnv(SWITCHED).FLANNEL_SUBNET;
    const device = await vxlanDevice(ns, DEV);
    const index = await ifindex(ns);
    const before = await leases(cluster);
    const lease = before.find((l) => l.publicIp === cluster.host(SWITCHED).address);
    const othersBefore = await Promise.all(others.map((i) => peerEntries(cluster, i)));
    // flanneld's own routes carry no proto (boot, which `ip route` leaves out).
    expect(await peerEntries(cluster, SWITCHED)).toEqual(expectedEntries(cluster, SWITCHED, before, false));

    // A ping across the switch, from a weft host's container to the switched host's (≈ 6 s).
    const across = containers[0]?.ns.exec(
      ["ping", "-c", "60", "-i", "0.1", "-W", "1", containers[SWITCHED]?.ip ?? ""],
      { allowFailure: true },
    );
    await Bun.sleep(500);
    const t0 = performance.now();
    const code = await cluster.stopAgent(SWITCHED);
    // flanneld leaves its device, entries and lease (on the same etcd lease) behind.
    expect(await ifindex(ns)).toBe(index);
    expect((await leases(cluster)).find((l) => l.publicIp === cluster.host(SWITCHED).address)).toEqual(lease);
    const t1 = performance.now();
    const agent = cluster.startAgent(SWITCHED);
    await eventually(
      "weft on the switched host to finish its first apply",
      () => agent.log().includes("first full apply done"),
      30_000,
    );
    const t2 = performance.now();
    console.error(
      `interop vxlan: flanneld exited ${code} after ${Math.round(t1 - t0)} ms; weft's first apply ${Math.round(t2 - t1)} ms after spawn`,
    );
    const pinged = (await across)?.stdout ?? "";
    const summary = pinged.match(/\d+ packets transmitted.*/)?.[0] ?? pinged;
    console.error(`interop vxlan: ping across the switch: ${summary}`);
    // Nothing the containers use was removed or re-created: not one packet lost.
    expect(summary).toContain(" 0% packet loss");

    expect(cluster.subnetEnv(SWITCHED).FLANNEL_SUBNET).toBe(subnet);
    // Taken over, not re-created: same index, same MAC, same settings.
    expect(agent.log()).not.toContain(`created ${DEV}`);
    expect(agent.log()).toContain(`took over the existing ${DEV}`);
    expect(await ifindex(ns)).toBe(index);
    expect(await vxlanDevice(ns, DEV)).toEqual(device);
    // The lease value is unchanged byte for byte (so its VtepMAC too).
    const after = await leases(cluster);
    const leaseAfter = after.find((l) => l.publicIp === cluster.host(SWITCHED).address);
    expect(leaseAfter?.value).toBe(lease?.value ?? "");
    expect(leaseAfter?.mac).toBe(device?.mac ?? "");
    // weft holds the key on an etcd lease of its own, granted for 24 h like flanneld's.
    const ttl = await cluster.etcdctl(
      "lease",
      "timetolive",
      BigInt(leaseAfter?.etcdLease ?? "0").toString(16),
    );
    expect(ttl).toContain("granted with TTL(86400s)");
    // flanneld's proto-boot routes replaced in place by weft's proto 77 ones; nothing stale.
    await eventually(
      "weft's proto 77 routes on the switched host",
      async () =>
        JSON.stringify(await peerEntries(cluster, SWITCHED)) ===
        JSON.stringify(expectedEntries(cluster, SWITCHED, after, true)),
      10_000,
    ).catch(() => undefined);
    expect(await peerEntries(cluster, SWITCHED)).toEqual(expectedEntries(cluster, SWITCHED, after, true));
    expect((await vxlanDevice(ns, DEV))?.addresses).toEqual([(subnet ?? "").replace(/\.1\/24$/, ".0/32")]);
    // The other hosts, flanneld's included, hold exactly what they held before.
    await Bun.sleep(1000);
    expect(await Promise.all(others.map((i) => peerEntries(cluster, i)))).toEqual(othersBefore);
    expect(await pingPairs([SWITCHED])).toEqual([]);
    passed++;
  }, 90_000);

  test("interop vxlan - a deleted vxlan route stays missing on a flanneld host and is repaired on a weft host", async () => {
    const flanneld = FLANNELD.find((i) => i !== SWITCHED) ?? 2;
    const [lost = ""] = await cluster.routesAll(flanneld);
    const dst = lost.split(" ")[0] ?? "";
    await cluster.host(flanneld).ns.ip("route", "del", dst);
    const [weftLost = ""] = await cluster.routesAll(0);
    const weftDst = weftLost.split(" ")[0] ?? "";
    const t0 = performance.now();
    await cluster.host(0).ns.ip("route", "del", weftDst);
    await eventually(
      "weft to repair the deleted route",
      async () => (await cluster.routesAll(0)).includes(weftLost),
      3_000,
    );
    console.error(
      `interop vxlan: weft repaired a deleted vxlan route in ${Math.round(performance.now() - t0)} ms`,
    );
    await Bun.sleep(3_000);
    expect((await cluster.routesAll(flanneld)).some((r) => r.startsWith(`${dst} `))).toBe(false);
    // Put it back by hand, as an operator of flanneld would have to.
    await cluster.host(flanneld).ns.ip("route", "add", ...lost.split(" "));
    expect(await cluster.routesAll(flanneld)).toContain(lost);
    passed++;
  }, 30_000);
});
