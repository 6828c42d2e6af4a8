// A rolling migration caught half way: seed 000 (host-gw, etcd v3, prefix /cluster.hostgw/network) on
// one L2 segment with weft on hosts 0–1 and the Go-built flanneld v0.28.9 on hosts 2–3. Each agent
// must see the others' leases, route to their subnets, and write leases the other can read.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { addContainer } from "../../src/demo/demo.ts";
import { describeNetns } from "../harness/netns.ts";
import { Cluster, eventually, SEED_000_CONFIG } from "./cluster.ts";

const HOSTS = 4;
const WEFT = [0, 1];
const FLANNELD = [2, 3];

/** `192.168.3.65/26` (FLANNEL_SUBNET, the first host address) → `192.168.3.64/26`. */
function networkOf(flannelSubnet: string): string {
  const [first = "", len = ""] = flannelSubnet.split("/");
  const parts = first.split(".");
  return `${parts[0]}.${parts[1]}.${parts[2]}.${Number(parts[3]) - 1}/${len}`;
}

describeNetns("interop with flanneld v0.28.9", () => {
  let cluster: Cluster;
  /** Tests that ran to their end; every agent's log is printed when one did not. */
  let passed = 0;

  beforeAll(async () => {
    // The first run builds flanneld from the Go module proxy (several minutes); later runs hit the cache.
    await Cluster.testBin("flanneld");
  }, 600_000);

  beforeAll(async () => {
    cluster = await Cluster.start({ store: "etcd", hosts: HOSTS });
    await cluster.writeConfig(SEED_000_CONFIG);
    const startup = await cluster.startInTurn(HOSTS, FLANNELD);
    const t1 = performance.now();
    await eventually(
      "every host to route to every peer",
      async () => {
        for (let i = 0; i < HOSTS; i++) if ((await cluster.routesAll(i)).length !== HOSTS - 1) return false;
        return true;
      },
      30_000,
    );
    startup.push(`every peer route ${Math.round(performance.now() - t1)} ms after the last subnet.env`);
    console.error(`interop: spawn to subnet.env: ${startup.join(", ")}`);
  }, 120_000);

  afterAll(async () => {
    if (cluster !== undefined && passed < 4) {
      for (const [i, agent] of cluster.agents)
        console.error(`--- ${agent.kind} on host ${i} (last 3000 chars) ---\n${agent.log().slice(-3000)}`);
    }
    await cluster?.stop();
  }, 60_000);

  test("interop - every host routes each other host's subnet via its eth0 address", async () => {
    const subnets = Array.from({ length: HOSTS }, (_, i) =>
      networkOf(cluster.subnetEnv(i).FLANNEL_SUBNET ?? ""),
    );
    expect(new Set(subnets).size).toBe(HOSTS);
    for (let i = 0; i < HOSTS; i++) {
      const routes = await cluster.routesAll(i);
      const expected = subnets
        .map((subnet, j) => ({ subnet, via: cluster.host(j).address }))
        .filter((_, j) => j !== i)
        .map(({ subnet, via }) =>
          // weft marks its routes with proto 77; flanneld's netlink default is proto boot, which
          // `ip route show` leaves out.
          WEFT.includes(i) ? `${subnet} via ${via} dev eth0 proto 77` : `${subnet} via ${via} dev eth0`,
        )
        .sort();
      expect({ host: i, routes }).toEqual({ host: i, routes: expected });
    }
    passed++;
  });

  test("interop - flanneld's and weft's leases are byte-identical in form, each on a 24 h etcd lease", async () => {
    const out = await cluster.etcdctl("get", "--prefix", `${cluster.prefix}/subnets/`, "-w", "json");
    // Lease IDs exceed 2^53: read them as text, not through JSON.parse.
    const kvs = [...out.matchAll(/"key":"([^"]+)"[^}]*?"value":"([^"]+)"(?:,"lease":(\d+))?/g)].map((m) => ({
      key: Buffer.from(m[1] ?? "", "base64").toString(),
      value: Buffer.from(m[2] ?? "", "base64").toString(),
      lease: m[3],
    }));
    const byKey = new Map(kvs.map((kv) => [kv.key, kv]));
    expect(byKey.size).toBe(HOSTS);
    for (let i = 0; i < HOSTS; i++) {
      const subnet = networkOf(cluster.subnetEnv(i).FLANNEL_SUBNET ?? "").replace("/", "-");
      const kv = byKey.get(`${cluster.prefix}/subnets/${subnet}`);
      const agent = FLANNELD.includes(i) ? "flanneld" : "weft";
      expect({ host: i, agent, value: kv?.value }).toEqual({
        host: i,
        agent,
        value: `{"PublicIP":"${cluster.host(i).address}","PublicIPv6":null,"BackendType":"host-gw"}`,
      });
      expect(kv?.lease).toBeDefined();
      const ttl = await cluster.etcdctl("lease", "timetolive", BigInt(kv?.lease ?? "0").toString(16));
      const granted = Number(ttl.match(/granted with TTL\((\d+)s\)/)?.[1]);
      const remaining = Number(ttl.match(/remaining\((\d+)s\)/)?.[1]);
      expect({ host: i, agent, granted }).toEqual({ host: i, agent, granted: 86_400 });
      expect(remaining).toBeGreaterThan(86_400 - 600);
    }
    passed++;
  });

  test("interop - subnet.env from flanneld and from weft name the same network and MTU", () => {
    for (let i = 0; i < HOSTS; i++) {
      const env = cluster.subnetEnv(i);
      expect({
        host: i,
        network: env.FLANNEL_NETWORK,
        mtu: env.FLANNEL_MTU,
        masq: env.FLANNEL_IPMASQ,
      }).toEqual({
        host: i,
        network: "192.168.0.0/16",
        mtu: "1500",
        masq: "false",
      });
      expect(env.FLANNEL_SUBNET).toMatch(/^192\.168\.\d+\.\d+\/26$/);
    }
    passed++;
  });

  test("interop - containers ping both ways between weft and flanneld hosts with FORWARD policy DROP", async () => {
    const containers: Awaited<ReturnType<typeof addContainer>>[] = [];
    try {
      for (let i = 0; i < HOSTS; i++) {
        await cluster.host(i).ns.exec(["iptables", "-P", "FORWARD", "DROP"]);
        containers.push(await addContainer(cluster.host(i).ns, cluster.subnetFile(i), i + 1));
      }
      // flanneld sets the policy to ACCEPT once, at its start; it must still be DROP here, so that
      // packets pass only through the agents' FORWARD accept rules.
      for (let i = 0; i < HOSTS; i++) {
        const policy = (await cluster.host(i).ns.exec(["iptables", "-S", "FORWARD"])).stdout.split("\n")[0];
        expect({ host: i, policy }).toEqual({ host: i, policy: "-P FORWARD DROP" });
      }
      const failed: string[] = [];
      for (const [a, from] of containers.entries()) {
        for (const [b, to] of containers.entries()) {
          if (a === b) continue;
          const r = await from.ns.exec(["ping", "-c", "1", "-W", "2", to.ip], { allowFailure: true });
          if (r.code !== 0) failed.push(`host ${a} ${from.ip} → host ${b} ${to.ip}`);
        }
      }
      expect(failed).toEqual([]);
      passed++;
    } finally {
      await Promise.all(containers.map((c) => c.ns.remove()));
    }
  }, 60_000);
});
