// Seed 000 (flannel host-gw) end to end: three hosts in network namespaces on one L2 segment, one weft
// agent each, on every store a real deployment would use (etcd v2 written like `etcdctl set`, etcd v3,
// and the embedded SQLite store).
import { afterAll, beforeAll, beforeEach, expect, test } from "bun:test";
import { addContainer } from "../../src/demo/demo.ts";
import { describeNetns } from "../harness/netns.ts";
import { type Cluster, type ClusterStore, eventually, startMesh } from "./cluster.ts";

const ROUTE = /^(192\.168\.\d+\.\d+\/26) via (172\.17\.42\.4[1-4]) dev eth0 proto 77$/;

function ipToNumber(ip: string): number {
  return ip.split(".").reduce((n, octet) => n * 256 + Number(octet), 0);
}

for (const store of ["etcd2", "etcd", "consul", "nats", "sqlite"] as ClusterStore[]) {
  describeNetns(`host-gw on ${store}`, () => {
    let cluster: Cluster;
    beforeAll(async () => {
      cluster = await startMesh(store, 3);
    }, 60_000);
    afterAll(async () => {
      await cluster?.stop();
    }, 60_000);
    // Each case starts from the full mesh, whatever the cases before it stopped or deleted.
    beforeEach(async () => {
      for (let i = 0; i < 3; i++) if (!cluster.agents.has(i)) cluster.startAgent(i);
      await cluster.awaitRoutes(3);
    }, 60_000);

    /** The lease subnet (network address) of host i, from its subnet.env. */
    const leaseSubnet = (i: number) =>
      (cluster.subnetEnv(i).FLANNEL_SUBNET ?? "").replace(
        /\.(\d+)\//,
        (_, last: string) => `.${Number(last) - 1}/`,
      );

    /** Host i leaves: its agent stops and its lease is deleted (as after a 24 h outage). */
    async function leave(i: number): Promise<string> {
      const network = leaseSubnet(i);
      expect(await cluster.stopAgent(i)).toBe(0);
      await cluster.del(`${cluster.prefix}/subnets/${network.replace("/", "-")}`);
      return network;
    }

    test(`host-gw ${store} - every host routes each peer subnet via the peer's eth0 address`, async () => {
      const subnets = [0, 1, 2].map((i) => cluster.subnetEnv(i).FLANNEL_SUBNET ?? "");
      for (let i = 0; i < 3; i++) {
        const routes = await cluster.routes(i);
        expect(routes.every((r) => ROUTE.test(r))).toBe(true);
        const vias = routes.map((r) => r.match(ROUTE)?.[2]).sort();
        expect(vias).toEqual([41, 42, 43].filter((h) => h !== 41 + i).map((h) => `172.17.42.${h}`));
        for (const r of routes) {
          const [, dst = "", via = ""] = r.match(ROUTE) ?? [];
          // The route's destination is the subnet that the host at `via` wrote into its subnet.env.
          const ownerFirstHost = (subnets[Number(via.split(".")[3]) - 41] ?? "").split("/")[0] ?? "";
          expect(ipToNumber(dst.split("/")[0] ?? "") + 1).toBe(ipToNumber(ownerFirstHost));
        }
      }
    });

    test(`host-gw ${store} - subnet.env has the network, a /26 inside SubnetMin..SubnetMax and MTU 1500`, () => {
      const seen = new Set<string>();
      for (let i = 0; i < 3; i++) {
        const env = cluster.subnetEnv(i);
        expect(env.FLANNEL_NETWORK).toBe("192.168.0.0/16");
        expect(env.FLANNEL_MTU).toBe("1500");
        expect(env.FLANNEL_IPMASQ).toBe("false");
        const [first = "", len] = (env.FLANNEL_SUBNET ?? "").split("/");
        expect(len).toBe("26");
        const network = ipToNumber(first) - 1;
        expect(network % 64).toBe(0);
        expect(network >= ipToNumber("192.168.0.64") && network <= ipToNumber("192.168.250.192")).toBe(true);
        seen.add(first);
      }
      expect(seen.size).toBe(3);
    });

    test(`host-gw ${store} - containers on docker0 (--bip from subnet.env) ping across hosts with FORWARD policy DROP`, async () => {
      const containers: Awaited<ReturnType<typeof addContainer>>[] = [];
      try {
        for (let i = 0; i < 3; i++) {
          await cluster.host(i).ns.exec(["iptables", "-P", "FORWARD", "DROP"]);
          containers.push(await addContainer(cluster.host(i).ns, cluster.subnetFile(i), i + 1));
        }
        for (const from of containers) {
          for (const to of containers) {
            if (from === to) continue;
            const r = await from.ns.exec(["ping", "-c", "1", "-W", "2", to.ip], { allowFailure: true });
            expect({ from: from.ip, to: to.ip, code: r.code }).toEqual({ from: from.ip, to: to.ip, code: 0 });
          }
        }
      } finally {
        await Promise.all(containers.map((c) => c.ns.remove()));
      }
    }, 30_000);

    test(`host-gw ${store} - an agent restart keeps its subnet and never removes a route`, async () => {
      const before = await cluster.routes(0);
      const subnet = cluster.subnetEnv(0).FLANNEL_SUBNET;
      expect(await cluster.stopAgent(0)).toBe(0);
      expect(await cluster.routes(0)).toEqual(before);
      cluster.startAgent(0);
      for (let k = 0; k < 20; k++) {
        expect(await cluster.routes(0)).toEqual(before);
        await Bun.sleep(50);
      }
      await eventually(
        "the restarted agent to log its lease",
        () => cluster.agents.get(0)?.log().includes("acquired subnet lease") === true,
      );
      expect(cluster.subnetEnv(0).FLANNEL_SUBNET).toBe(subnet);
      expect(await cluster.routes(0)).toEqual(before);
    });

    test(`host-gw ${store} - a host that leaves (lease deleted) loses its route on every peer`, async () => {
      const network = (await leave(2)).split("/")[0] ?? "";
      await eventually("hosts 1 and 2 to drop the departed host's route", async () => {
        const a = await cluster.routes(0);
        const b = await cluster.routes(1);
        return (
          a.length === 1 &&
          b.length === 1 &&
          !a.some((r) => r.startsWith(network)) &&
          !b.some((r) => r.startsWith(network))
        );
      });
    });

    test(`host-gw ${store} - a host whose lease is gone takes its subnet.env subnet again`, async () => {
      const subnet = cluster.subnetEnv(2).FLANNEL_SUBNET ?? "";
      expect(subnet).not.toBe("");
      await leave(2);
      await eventually("hosts 1 and 2 to drop the departed host's route", async () => {
        const a = await cluster.routes(0);
        return a.length === 1;
      });
      cluster.startAgent(2);
      await eventually(
        "the agent to take the previous subnet",
        () => cluster.agents.get(2)?.log().includes("rule=previous-subnet") === true,
      );
      expect(cluster.subnetEnv(2).FLANNEL_SUBNET).toBe(subnet);
      const network = subnet.replace(/\.(\d+)\//, (_, last: string) => `.${Number(last) - 1}/`);
      await eventually("hosts 1 and 2 to route to it again", async () => {
        const a = await cluster.routes(0);
        const b = await cluster.routes(1);
        return a.some((r) => r.startsWith(`${network} `)) && b.some((r) => r.startsWith(`${network} `));
      });
    });
  });
}
