// The external interface changes under a running agent — eth0 deleted and re-created (a new index,
// the same address), or re-addressed — and routes follow within seconds, without a restart. Three
// hosts in network namespaces on SQLite; each case starts its own cluster, so no case depends on another.
import { afterEach, expect, test } from "bun:test";
import { SEED_003_CONFIG } from "../../src/demo/demo.ts";
import type { Netns } from "../../src/netns/netns.ts";
import { describeNetns } from "../harness/netns.ts";
import { Cluster, eventually, SEED_000_CONFIG } from "./cluster.ts";
import { addContainers, type Container, pingAll } from "./fixtures/containers.ts";
import { vxlanDevice } from "./fixtures/vxlan-state.ts";

/** "Within a few seconds": the agent reacts to the netlink events at once; this is the slack for a loaded machine. */
const BACK_WITHIN_MS = 5_000;
const PEER_ROUTE = / via (172\.17\.42\.\d+) dev eth0 proto 77$/;

async function linkIndex(ns: Netns, dev: string): Promise<number> {
  const r = await ns.exec(["ip", "-j", "link", "show", "dev", dev]);
  return (JSON.parse(r.stdout) as { ifindex: number }[])[0]?.ifindex ?? -1;
}

/** Deletes host i's eth0 (its veth pair) and plugs a new one into the bridge with the same address. */
async function recreateEth0(cluster: Cluster, i: number, address: string): Promise<void> {
  const lan = cluster.segment.lan;
  const host = cluster.host(i).ns;
  const port = `p${i + 1}`;
  await lan.ip("link", "delete", port);
  await lan.ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", host.name);
  await lan.ip("link", "set", port, "master", "br0", "up");
  await host.ip("addr", "add", `${address}/16`, "dev", "eth0");
  await host.ip("link", "set", "eth0", "up");
}

describeNetns("external interface changes under a running agent", () => {
  let cluster: Cluster | undefined;
  const containers: Container[] = [];
  afterEach(async () => {
    await Promise.all(containers.splice(0).map((c) => c.ns.remove()));
    await cluster?.stop();
    cluster = undefined;
  }, 60_000);

  async function start(config: string, perHost = 2): Promise<Cluster> {
    const c = await Cluster.start({ store: "sqlite", hosts: 3, prefix: "/coreos.com/network" });
    cluster = c;
    await c.writeConfig(config);
    for (let i = 0; i < 3; i++) c.startAgent(i);
    await c.awaitRoutes(3, perHost);
    return c;
  }

  test("ext iface - host-gw: eth0 deleted and re-created with a new index gets its routes back, no restart", async () => {
    const c = await start(SEED_000_CONFIG);
    const host = c.host(1);
    const before = await c.routes(1);
    const pid = c.agents.get(1)?.proc.pid;
    const oldIndex = await linkIndex(host.ns, "eth0");
    await recreateEth0(c, 1, host.address);
    const newIndex = await linkIndex(host.ns, "eth0");
    expect(newIndex).not.toBe(oldIndex);
    await eventually(
      "host 1's routes back on the new eth0",
      async () => {
        const now = await c.routes(1);
        return now.length === before.length && now.every((r) => PEER_ROUTE.test(r));
      },
      BACK_WITHIN_MS,
    );
    expect(await c.routes(1)).toEqual(before);
    expect(c.agents.get(1)?.proc.pid).toBe(pid);
    expect(c.agents.get(1)?.proc.exitCode).toBeNull();
    expect(c.agents.get(1)?.log()).toContain("external interface changed");
    await addContainers(c, 3, containers);
    await pingAll(containers);
  }, 60_000);

  test("ext iface - host-gw: a re-addressed eth0 republishes the lease and peers route to the new address", async () => {
    const c = await start(SEED_000_CONFIG);
    const ns = c.host(2).ns;
    const subnet = c.subnetEnv(2).FLANNEL_SUBNET ?? "";
    const network = subnet.replace(/\.(\d+)\//, (_, last: string) => `.${Number(last) - 1}/`);
    // The old address goes first (removing the primary would take a secondary with it); removing the
    // last address also makes the kernel flush every route through eth0.
    await ns.ip("addr", "del", `${c.host(2).address}/16`, "dev", "eth0");
    await ns.ip("addr", "add", "172.17.42.53/16", "dev", "eth0");
    for (const peer of [0, 1]) {
      await eventually(
        `host ${peer} to route ${network} via 172.17.42.53`,
        async () => (await c.routes(peer)).includes(`${network} via 172.17.42.53 dev eth0 proto 77`),
        BACK_WITHIN_MS,
      );
    }
    // The kernel flushed host 2's routes with its last address; they are back, and its subnet stays.
    await eventually(
      "host 2's routes to its peers back",
      async () => {
        const vias = (await c.routes(2)).map((r) => r.match(PEER_ROUTE)?.[1]).sort();
        return vias.join(" ") === "172.17.42.41 172.17.42.42";
      },
      BACK_WITHIN_MS,
    );
    expect(c.subnetEnv(2).FLANNEL_SUBNET).toBe(subnet);
    expect(c.agents.get(2)?.proc.exitCode).toBeNull();
    await addContainers(c, 3, containers);
    await pingAll(containers);
  }, 60_000);

  test("ext iface - vxlan: eth0 re-created with a new index gets flannel.100 on the new link, entries and traffic back", async () => {
    const c = await start(SEED_003_CONFIG);
    const host = c.host(1);
    const mac = (await vxlanDevice(host.ns, "flannel.100"))?.mac;
    const before = await c.routes(1);
    await recreateEth0(c, 1, host.address);
    await eventually(
      "flannel.100 on the new eth0 with host 1's routes",
      async () => {
        const device = await vxlanDevice(host.ns, "flannel.100");
        return device?.info.link === "eth0" && (await c.routes(1)).length === before.length;
      },
      BACK_WITHIN_MS,
    );
    const device = await vxlanDevice(host.ns, "flannel.100");
    expect(device?.mac).toBe(mac as string);
    expect(device?.info.local).toBe(host.address);
    expect(await c.routes(1)).toEqual(before);
    await addContainers(c, 3, containers);
    await pingAll(containers);
  }, 60_000);
});
