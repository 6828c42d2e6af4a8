// What an agent does with bad input and with many peers at once (SQLite store, hosts in namespaces).
import { afterEach, expect } from "bun:test";
import { testNetns } from "../harness/netns.ts";
import { Cluster, eventually, SEED_000_CONFIG } from "./cluster.ts";

let cluster: Cluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
}, 60_000);

testNetns(
  "agent - garbage leases are ignored with a warning; the agent keeps routing valid peers",
  async () => {
    cluster = await Cluster.start({ store: "sqlite", hosts: 2 });
    await cluster.writeConfig(SEED_000_CONFIG);
    const p = `${cluster.prefix}/subnets`;
    await cluster.put(`${p}/192.168.9.0-26`, "{not json");
    await cluster.put(`${p}/192.168.9.64-26`, '{"PublicIP":"not-an-ip","BackendType":"host-gw"}');
    await cluster.put(`${p}/10.1.0.0-26`, '{"PublicIP":"172.17.42.99","BackendType":"host-gw"}');
    await cluster.put(`${p}/0.0.0.0-0`, '{"PublicIP":"172.17.42.99","BackendType":"host-gw"}');
    cluster.startAgent(0);
    cluster.startAgent(1);
    await eventually(
      "both hosts to route to each other",
      async () => (await cluster?.routes(0))?.length === 1 && (await cluster?.routes(1))?.length === 1,
    );
    const own = (cluster.subnetEnv(0).FLANNEL_SUBNET ?? "").split("/")[0] ?? "";
    const parts = own.split(".");
    // A second key (dual-stack form) claiming host 0's own subnet: the plain key sorts first and wins.
    await cluster.put(
      `${p}/${parts[0]}.${parts[1]}.${parts[2]}.${Number(parts[3]) - 1}-26&fd00::-64`,
      '{"PublicIP":"172.17.42.42","BackendType":"host-gw"}',
    );
    const reasons = [
      "overlaps",
      "value is not JSON",
      "is not an IPv4 address",
      "is outside the network",
      "would replace the default route",
    ];
    const agentLog = () => cluster?.agents.get(0)?.log() ?? "";
    await eventually("host 0 to report every bad lease", () => reasons.every((r) => agentLog().includes(r)));
    for (const reason of reasons) expect(agentLog()).toContain(reason);
    expect(await cluster.routes(0)).toHaveLength(1);
    expect(cluster.agents.get(0)?.proc.exitCode).toBeNull();
    expect((await cluster.host(0).ns.ip("route", "show", "default")).stdout).toBe("");
  },
  60_000,
);

testNetns(
  "agent - an invalid network config is retried, said once naming field and value, and fixed live",
  async () => {
    cluster = await Cluster.start({ store: "sqlite", hosts: 2 });
    const c = cluster;
    // Written as etcdctl would, unchecked (weft config set would refuse it).
    await c.put(`${c.prefix}/config`, SEED_000_CONFIG.replace('"SubnetLen": 26', '"SubnetLen": 33'));
    c.startAgent(0, ["--healthz-port=9473", "--healthz-ip=127.0.0.1"]);
    c.startAgent(1);
    const readyz = async () =>
      (
        await c
          .host(0)
          .ns.exec(
            [
              process.execPath,
              "-e",
              'const r = await fetch("http://127.0.0.1:9473/readyz").catch(() => undefined); console.log(r ? `${r.status} ${await r.text()}` : "down");',
            ],
            { allowFailure: true },
          )
      ).stdout.trim();
    await eventually("the invalid config to be reported", () =>
      (c.agents.get(0)?.log() ?? "").includes("is invalid"),
    );
    // /healthz and /readyz answer before there is a config; /readyz says why it is not ready.
    await eventually("/readyz to name the invalid field", async () =>
      /^503 .*SubnetLen 33/.test(await readyz()),
    );
    await Bun.sleep(2_500);
    const log = c.agents.get(0)?.log() ?? "";
    expect(log.match(/SubnetLen 33 is invalid/g)?.length).toBe(1);
    expect(c.agents.get(0)?.proc.exitCode).toBeNull();
    // Fixed live with a valid config: both agents go on without a restart.
    await c.put(`${c.prefix}/config`, SEED_000_CONFIG);
    await eventually("both hosts to route to each other", async () => {
      return (await c.routes(0)).length === 1 && (await c.routes(1)).length === 1;
    });
    await eventually("/readyz to answer 200", async () => (await readyz()).startsWith("200"));
  },
  60_000,
);

testNetns(
  "agent - a config missing at the prefix but found elsewhere is named with the flag that fixes it",
  async () => {
    cluster = await Cluster.start({ store: "sqlite", hosts: 1, prefix: "/coreos.com/network" });
    await cluster.writeConfig(SEED_000_CONFIG);
    cluster.startAgent(0, ["--etcd-prefix=/cluster.hostgw/network"]);
    await eventually("the hint", () =>
      (cluster?.agents.get(0)?.log() ?? "").includes(
        "found a network config at /coreos.com/network/config: run weft with --etcd-prefix=/coreos.com/network",
      ),
    );
  },
  30_000,
);

testNetns(
  "agent - 20 agents started at once on one store get 20 distinct subnets and full routes",
  async () => {
    cluster = await Cluster.start({ store: "sqlite", hosts: 20 });
    await cluster.writeConfig(SEED_000_CONFIG);
    for (let i = 0; i < 20; i++) cluster.startAgent(i);
    await eventually(
      "every host to route to its 19 peers",
      async () => {
        for (let i = 0; i < 20; i++) if ((await cluster?.routes(i))?.length !== 19) return false;
        return true;
      },
      60_000,
    );
    // Ready means the lease is held and the first full apply succeeded; each agent logs that moment.
    await eventually("every agent to finish its first full apply", () =>
      Array.from({ length: 20 }, (_, i) => cluster?.agents.get(i)?.log() ?? "").every((log) =>
        log.includes("first full apply done"),
      ),
    );
    const subnets = new Set(Array.from({ length: 20 }, (_, i) => cluster?.subnetEnv(i).FLANNEL_SUBNET));
    expect(subnets.size).toBe(20);
  },
  120_000,
);

testNetns(
  "agent - a peer lease that expires (not renewed) loses its route on every host",
  async () => {
    cluster = await Cluster.start({ store: "sqlite", hosts: 2 });
    await cluster.writeConfig(SEED_000_CONFIG);
    cluster.startAgent(0);
    cluster.startAgent(1);
    await eventually(
      "both hosts to route to each other",
      async () => (await cluster?.routes(0))?.length === 1 && (await cluster?.routes(1))?.length === 1,
    );
    const { openStore } = await import("../../stores/index.ts");
    const store = openStore("sqlite", { endpoints: [cluster.endpoint] });
    try {
      // A host that joined (172.17.42.50 is on the segment's /16) and then died without renewing.
      await store.create(
        `${cluster.prefix}/subnets/192.168.200.0-26`,
        '{"PublicIP":"172.17.42.50","PublicIPv6":null,"BackendType":"host-gw"}',
        { ttlSeconds: 2 },
      );
      await eventually(
        "both hosts to route to the new peer",
        async () => (await cluster?.routes(0))?.length === 2 && (await cluster?.routes(1))?.length === 2,
      );
      await eventually(
        "both hosts to drop it after expiry",
        async () => (await cluster?.routes(0))?.length === 1 && (await cluster?.routes(1))?.length === 1,
        15_000,
      );
      expect((await cluster.routes(0)).some((r) => r.startsWith("192.168.200.0/26"))).toBe(false);
    } finally {
      await store.close();
    }
  },
  60_000,
);

testNetns(
  "agent - a peer that is not directly reachable gets no route and is reported",
  async () => {
    cluster = await Cluster.start({ store: "sqlite", hosts: 1 });
    await cluster.writeConfig(SEED_000_CONFIG);
    await cluster.put(
      `${cluster.prefix}/subnets/192.168.100.0-26`,
      '{"PublicIP":"10.20.30.40","PublicIPv6":null,"BackendType":"host-gw"}',
    );
    cluster.startAgent(0);
    await eventually(
      "the unreachable peer to be reported",
      () => (cluster?.agents.get(0)?.log() ?? "").includes("not directly reachable"),
      15_000,
    );
    expect(await cluster.routes(0)).toEqual([]);
    expect((await cluster.host(0).ns.ip("route", "show")).stdout).not.toContain("192.168.100.0");
  },
  60_000,
);

testNetns(
  "agent - --iptables-forward-rules=false installs no FORWARD accept rules; --ip-masq installs masquerade",
  async () => {
    cluster = await Cluster.start({ store: "sqlite", hosts: 2 });
    await cluster.writeConfig(SEED_000_CONFIG);
    cluster.startAgent(0, ["--iptables-forward-rules=false", "--ip-masq"]);
    cluster.startAgent(1);
    await eventually(
      "both hosts to route to each other",
      async () => (await cluster?.routes(0))?.length === 1 && (await cluster?.routes(1))?.length === 1,
    );
    await eventually(
      "host 1's forward rules",
      async () =>
        (await cluster?.host(1).ns.exec(["iptables-save", "-t", "filter"]))?.stdout.includes("WEFT-FWD") ===
        true,
    );
    const host0 = await cluster.host(0).ns.exec(["iptables-save"]);
    expect(host0.stdout).not.toMatch(/-A WEFT-FWD .*ACCEPT/);
    expect(host0.stdout).toMatch(/-A WEFT-POSTRTG .*MASQUERADE/);
    expect(cluster.subnetEnv(0).FLANNEL_IPMASQ).toBe("true");
  },
  60_000,
);
