// Peer routes through kernel nexthop objects (issue 13), three host-gw hosts on SQLite in network
// namespaces: one nexthop per peer route, repaired when deleted, swept when stale, routes with inline
// gateways (flanneld's) replaced in place, and `--route-nexthops=false` back to inline gateways.
import { afterAll, beforeAll, expect } from "bun:test";
import { nexthopIdOf } from "../../src/reconcile/route-table.ts";
import { netnsUsable, testNetns } from "../harness/netns.ts";
import { type Cluster, eventually, startMesh, withoutNhid } from "./cluster.ts";

let cluster: Cluster;
beforeAll(async () => {
  if (!netnsUsable) return;
  cluster = await startMesh("sqlite", 3);
}, 60_000);
afterAll(async () => {
  await cluster?.stop();
}, 60_000);

interface IpNexthop {
  readonly id: number;
  readonly gateway?: string;
  readonly dev?: string;
  readonly protocol?: string;
}

async function nexthops(i: number): Promise<IpNexthop[]> {
  const { stdout } = await cluster.host(i).ns.ip("-j", "nexthop", "show");
  return (JSON.parse(stdout.trim() === "" ? "[]" : stdout) as IpNexthop[]).sort((a, b) => a.id - b.id);
}

/** weft's routes on host i as `ip route` prints them, nhid included. */
async function rawRoutes(i: number): Promise<string[]> {
  const { stdout } = await cluster.host(i).ns.ip("route", "show");
  return stdout
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => / proto 77( |$)/.test(l))
    .sort();
}

testNetns(
  "nexthops - every peer route goes through a nexthop of weft's whose id is the subnet's address",
  async () => {
    for (let i = 0; i < 3; i++) {
      const routes = await rawRoutes(i);
      expect(routes).toHaveLength(2);
      const nhs = (await nexthops(i)).filter((n) => n.protocol === "77");
      expect(nhs).toHaveLength(2);
      for (const line of routes) {
        const m = /^(\S+) nhid (\d+) via (\S+) dev eth0 proto 77$/.exec(line);
        expect(m).not.toBeNull();
        const [, dst = "", id = "", gateway = ""] = m ?? [];
        expect(Number(id)).toBe(nexthopIdOf(dst));
        expect(nhs.find((n) => n.id === Number(id))).toMatchObject({ gateway, dev: "eth0" });
      }
    }
  },
  30_000,
);

testNetns(
  "nexthops - `ip nexthop del` takes the route with it; both come back from the netlink events",
  async () => {
    const ns = cluster.host(0).ns;
    const before = await rawRoutes(0);
    const victim = (await nexthops(0)).find((n) => n.protocol === "77");
    if (victim === undefined) throw new Error("no nexthop of weft's on host 0");
    await ns.ip("nexthop", "del", "id", String(victim.id));
    await eventually(
      "the nexthop and its route to come back",
      async () =>
        (await rawRoutes(0)).join("\n") === before.join("\n") &&
        (await nexthops(0)).some((n) => n.id === victim.id && n.gateway === victim.gateway),
      10_000,
    );
    await eventually(
      "the repair to be logged",
      () => cluster.agents.get(0)?.log().includes("kernel nexthop changed outside weft; repairing") === true,
      5_000,
    );
  },
  30_000,
);

testNetns(
  "nexthops - a restart replaces inline-gateway routes in place, sweeps weft's stale nexthops, leaves others'",
  async () => {
    const i = 1;
    const ns = cluster.host(i).ns;
    const expected = await cluster.routes(i);
    expect(await cluster.stopAgent(i)).toBe(0);
    // What flanneld (proto boot) would have left: the same routes with inline gateways.
    for (const line of await rawRoutes(i)) {
      const [dst = "", , , , gateway = ""] = line.split(" ");
      await ns.ip("route", "replace", dst, "via", gateway, "dev", "eth0", "proto", "boot");
    }
    // weft's nexthops are now unused; add a stale route of weft's through one more, and another owner's.
    await ns.ip(
      "nexthop",
      "add",
      "id",
      String(nexthopIdOf("192.168.250.0")),
      "via",
      "172.17.42.43",
      "dev",
      "eth0",
      "proto",
      "77",
    );
    await ns.ip(
      "route",
      "add",
      "192.168.250.0/26",
      "nhid",
      String(nexthopIdOf("192.168.250.0")),
      "proto",
      "77",
    );
    await ns.ip("nexthop", "add", "id", "7", "via", "172.17.42.42", "dev", "eth0", "proto", "static");
    const monitor = ns.spawn(["ip", "monitor", "route"]);
    try {
      cluster.startAgent(i);
      await eventually(
        "the routes to go through nexthops again",
        async () => (await rawRoutes(i)).filter((l) => l.includes(" nhid ")).length === 2,
        15_000,
      );
      await eventually(
        "the stale route and nexthop to be swept",
        async () => !(await nexthops(i)).some((n) => n.id === nexthopIdOf("192.168.250.0")),
        10_000,
      );
    } finally {
      monitor.kill();
    }
    const events = await new Response(monitor.stdout).text();
    // In place: no lease's route was ever deleted on the way.
    for (const line of expected) expect(events).not.toContain(`Deleted ${line.split(" ")[0]} `);
    expect(events).toContain("Deleted 192.168.250.0/26");
    expect((await rawRoutes(i)).map(withoutNhid)).toEqual(expected);
    expect((await nexthops(i)).find((n) => n.id === 7)).toMatchObject({
      gateway: "172.17.42.42",
      protocol: "static",
    });
    await ns.ip("nexthop", "del", "id", "7");
  },
  45_000,
);

testNetns(
  "nexthops - --route-nexthops=false programs inline gateways and sweeps weft's nexthops; the default brings them back",
  async () => {
    const i = 2;
    const expected = await cluster.routes(i);
    expect(await cluster.stopAgent(i)).toBe(0);
    cluster.startAgent(i, ["--route-nexthops=false"]);
    await eventually(
      "inline gateways and no nexthop of weft's",
      async () =>
        (await rawRoutes(i)).join("\n") === expected.join("\n") &&
        !(await nexthops(i)).some((n) => n.protocol === "77"),
      15_000,
    ).catch(async (err) => {
      console.log(cluster.agents.get(i)?.log(), await rawRoutes(i), await nexthops(i));
      throw err;
    });
    expect(await cluster.stopAgent(i)).toBe(0);
    cluster.startAgent(i);
    await eventually(
      "routes through nexthops again",
      async () => (await rawRoutes(i)).filter((l) => l.includes(" nhid ")).length === 2,
      15_000,
    );
    expect(await cluster.routes(i)).toEqual(expected);
  },
  45_000,
);
