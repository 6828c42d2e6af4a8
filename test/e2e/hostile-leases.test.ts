// Hostile or broken leases against real agents in network namespaces (issue 12, items 1–4), on SQLite;
// the large values on every store: none may remove or replace a working route of another peer, keep an agent from becoming ready,
// replace the kernel's connected route, or grow the agent's memory with the store's values.
import { afterEach, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { canUseNetns } from "../../src/netns/netns.ts";
import { UnixDatagramSocket } from "../../src/systemd/unix-dgram.ts";
import { Cluster, type ClusterStore, eventually, SEED_000_CONFIG } from "./cluster.ts";
import { addContainers, type Container, pingAll } from "./fixtures/containers.ts";

let cluster: Cluster | undefined;
const containers: Container[] = [];
afterEach(async () => {
  await Promise.all(containers.splice(0).map((c) => c.ns.remove()));
  await cluster?.stop();
  cluster = undefined;
}, 60_000);

const hostIP = (i: number) => `172.17.42.${41 + i}`;
const value = (ip: string) => JSON.stringify({ PublicIP: ip, PublicIPv6: null, BackendType: "host-gw" });

/** Each host's weft routes: one per peer, `<peer subnet> via <peer IP>`. */
function expectedRoutes(c: Cluster, hosts: number): string[][] {
  const subnets = Array.from({ length: hosts }, (_, i) => {
    const [ip = "", len = ""] = (c.subnetEnv(i).FLANNEL_SUBNET ?? "").split("/");
    const parts = ip.split(".").map(Number);
    return `${parts[0]}.${parts[1]}.${parts[2]}.${(parts[3] ?? 1) - 1}/${len}`;
  });
  return subnets.map((_, i) =>
    subnets.flatMap((s, j) => (j === i ? [] : [`${s} via ${hostIP(j)} dev eth0 proto 77`])).sort(),
  );
}

async function routesOf(c: Cluster, hosts: number): Promise<string[][]> {
  const out: string[][] = [];
  for (let i = 0; i < hosts; i++) out.push((await c.routes(i)).map((r) => r.replace(/\s+$/, "")));
  return out;
}

test.skipIf(!canUseNetns())(
  "hostile leases - the whole Network and a nested key as leases: every host keeps every /26 route, containers keep pinging",
  async () => {
    cluster = await Cluster.start({ store: "sqlite", hosts: 3 });
    const c = cluster;
    await c.writeConfig(SEED_000_CONFIG);
    for (let i = 0; i < 3; i++) c.startAgent(i);
    await c.awaitRoutes(3);
    const want = expectedRoutes(c, 3);
    expect(await routesOf(c, 3)).toEqual(want);
    await addContainers(c, 3, containers);
    await pingAll(containers);

    const p = `${c.prefix}/subnets`;
    const host1Subnet = (want[0]?.[0] ?? "").split(" ")[0]?.replace("/", "-") ?? "";
    // The reproduction: one key for the whole Network (it used to win every overlap and make
    // every agent drop all its peer routes), a /20 covering several hosts, and a nested key whose last
    // segment names an established lease (it used to sort first and take that subnet's route).
    const hostile = [`${p}/192.168.0.0-16`, `${p}/192.168.0.0-20`, `${p}/0/${host1Subnet}`];
    for (const key of hostile) await c.put(key, value("172.17.42.99"));
    await eventually("every agent to reject the three keys", () =>
      [0, 1, 2].every((i) => {
        const log = c.agents.get(i)?.log() ?? "";
        return hostile.every((key) => log.includes(`key=${key} `));
      }),
    );
    expect(await routesOf(c, 3)).toEqual(want);
    await pingAll(containers);
    for (let i = 0; i < 3; i++) {
      const log = c.agents.get(i)?.log() ?? "";
      // Logged once per key and revision.
      for (const key of hostile) expect(log.split(`key=${key} `).length - 1).toBe(1);
      expect(log).toContain("the config's SubnetLen");
      expect(log).toContain("no further path segments");
      expect(c.agents.get(i)?.proc.exitCode).toBeNull();
    }
    // Deleting them changes nothing either.
    for (const key of hostile) await c.del(key);
    await Bun.sleep(300);
    expect(await routesOf(c, 3)).toEqual(want);
  },
  90_000,
);

/**
 * A unix datagram socket standing in for systemd's NOTIFY_SOCKET, read every 50 ms (the kernel queues
 * only a few datagrams per socket): each message with when it arrived.
 */
function notifySocket(dir: string) {
  const path = join(dir, "notify.sock");
  const socket = UnixDatagramSocket.open();
  socket.bind(path);
  const messages: { text: string; at: number }[] = [];
  const timer = setInterval(() => {
    for (let d = socket.tryRecv(); d !== undefined; d = socket.tryRecv())
      messages.push({ text: new TextDecoder().decode(d), at: performance.now() });
  }, 50);
  return {
    path,
    messages,
    close: () => {
      clearInterval(timer);
      socket.close();
    },
  };
}

test.skipIf(!canUseNetns())(
  "hostile leases - a route the kernel refuses (PublicIP = the segment's broadcast address): READY=1, watchdog kept, one log line, the other peer routed",
  async () => {
    cluster = await Cluster.start({ store: "sqlite", hosts: 2 });
    const c = cluster;
    await c.writeConfig(SEED_000_CONFIG);
    // 172.17.255.255 is on eth0's network (172.17.0.0/16), so host-gw routes it, and the kernel
    // answers EINVAL "Nexthop has invalid gateway".
    await c.put(`${c.prefix}/subnets/192.168.200.0-26`, value("172.17.255.255"));
    const rx = notifySocket(c.dir);
    try {
      // systemd's watchdog at 1 s: WATCHDOG=1 every 500 ms while the agent is healthy.
      const agent = c.startAgent(0, [], { NOTIFY_SOCKET: rx.path, WATCHDOG_USEC: "1000000" });
      c.startAgent(1);
      await eventually("READY=1", () => rx.messages.some((m) => m.text === "READY=1"));
      await c.awaitRoutes(2);
      const readyAt = performance.now();
      // Past one retry at the slow end of the backoff (10 s).
      await Bun.sleep(11_000);
      // WATCHDOG=1 every 500 ms throughout: systemd never restarts the agent.
      const beats = rx.messages.filter((m) => m.text === "WATCHDOG=1" && m.at >= readyAt).map((m) => m.at);
      expect(beats.length).toBeGreaterThanOrEqual(15);
      const gaps = beats.slice(1).map((at, i) => at - (beats[i] ?? at));
      expect(Math.max(...gaps)).toBeLessThan(1_000);
      const log = agent.log();
      const refused = log.split("\n").filter((l) => l.includes("the kernel refuses"));
      expect(refused).toHaveLength(1);
      expect(refused[0]).toContain("192.168.200.0/26");
      expect(refused[0]).toContain("invalid gateway");
      expect(log).not.toContain("change failed");
      expect(log).not.toContain("withholding the systemd watchdog");
      expect(await c.routes(0)).toHaveLength(1);
      expect((await c.host(0).ns.ip("route", "show", "192.168.200.0/26")).stdout.trim()).toBe("");
      expect(agent.proc.exitCode).toBeNull();
    } finally {
      rx.close();
    }
  },
  60_000,
);

test.skipIf(!canUseNetns())(
  "hostile leases - a lease for a network of the external interface is skipped; the connected route stays",
  async () => {
    cluster = await Cluster.start({ store: "sqlite", hosts: 2 });
    const c = cluster;
    // The Network overlaps 10.100.200.0/24, a second network on every host's eth0.
    await c.writeConfig(
      '{"Network":"10.100.0.0/16","SubnetLen":24,"SubnetMin":"10.100.1.0","SubnetMax":"10.100.99.0","Backend":{"Type":"host-gw"}}',
    );
    for (let i = 0; i < 2; i++)
      await c.host(i).ns.ip("addr", "add", `10.100.200.${41 + i}/24`, "dev", "eth0");
    const connected = async (i: number) =>
      (await c.host(i).ns.ip("route", "show", "10.100.200.0/24")).stdout.trim();
    expect(await connected(0)).toMatch(
      /^10\.100\.200\.0\/24 dev eth0 proto kernel scope link src 10\.100\.200\.41/,
    );
    for (let i = 0; i < 2; i++) c.startAgent(i, [`--iface=${hostIP(i)}`]);
    await c.awaitRoutes(2);
    const before = await connected(0);
    await c.put(`${c.prefix}/subnets/10.100.200.0-24`, value(hostIP(1)));
    await eventually("host 0 to skip the lease", () =>
      (c.agents.get(0)?.log() ?? "").includes("it claims a network of the external interface"),
    );
    await Bun.sleep(300);
    expect(await connected(0)).toBe(before);
    expect(await connected(1)).toMatch(/proto kernel scope link/);
    expect(await c.routes(0)).toHaveLength(1);
    const log = c.agents.get(0)?.log() ?? "";
    expect(log).toContain("the Network overlaps a network of the external interface");
    expect(log).toContain("ifaceNetwork=10.100.200.0/24");
    // The hosts still reach each other on that network.
    const ping = await c
      .host(0)
      .ns.exec(["ping", "-c", "1", "-W", "2", "10.100.200.42"], { allowFailure: true });
    expect(ping.code).toBe(0);
  },
  60_000,
);

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1] ?? Number.NaN) / 1024;
}

/**
 * The largest value each store takes, up to 1 MiB: Consul refuses a transaction over 512 KiB (the
 * driver writes through one, the value in base64), NATS a message over 1 MiB (headers included).
 */
const LARGE_VALUE_BYTES: Record<ClusterStore, number> = {
  sqlite: 1 << 20,
  etcd: 1 << 20,
  etcd2: 1 << 20,
  consul: 360 << 10,
  nats: (1 << 20) - 1024,
};

for (const store of ["sqlite", "etcd", "etcd2", "consul", "nats"] as const) {
  const bytes = LARGE_VALUE_BYTES[store];
  test.skipIf(!canUseNetns())(
    `hostile leases - ${store}: 200 leases of ${bytes >> 10} KiB each: the agent's RSS stays bounded, while running and when it starts next to them, and routes stay`,
    async () => {
      cluster = await Cluster.start({ store, hosts: 2 });
      const c = cluster;
      await c.writeConfig(SEED_000_CONFIG);
      let agent = c.startAgent(0);
      c.startAgent(1);
      await c.awaitRoutes(2);
      await Bun.sleep(500);
      const baseline = rssMiB(agent.proc.pid);
      let peak = 0;
      let sampling = true;
      const sample = async () => {
        while (sampling) {
          try {
            peak = Math.max(peak, rssMiB(agent.proc.pid));
          } catch {
            // the process is between a stop and a start
          }
          await Bun.sleep(10);
        }
      };
      let sampler = sample();
      /** Once the agent rejected all 200 and 2 s more: the peak sampled and the RSS then; routes intact. */
      const settle = async () => {
        await eventually(
          "the agent to reject all 200",
          () => (agent.log().match(/over the 4096-byte limit/g)?.length ?? 0) >= 200,
        );
        await Bun.sleep(2_000);
        sampling = false;
        await sampler;
        const out = { peak, settled: rssMiB(agent.proc.pid) };
        expect(await c.routes(0)).toHaveLength(1);
        return out;
      };

      await c.fill(200, bytes);
      const running = await settle();

      // Restarted next to them: its first list leaves every value in the store (the read's value limit).
      await c.stopAgent(0);
      peak = 0;
      sampling = true;
      agent = c.startAgent(0);
      sampler = sample();
      await c.awaitRoutes(2);
      const restarted = await settle();
      const mib = (n: number) => n.toFixed(1);
      console.log(
        `hostile leases (${store}, 200 × ${bytes >> 10} KiB): RSS MiB baseline ${mib(baseline)}; written while running: peak ${mib(running.peak)}, settled ${mib(running.settled)}; restarted next to them: peak ${mib(restarted.peak)}, settled ${mib(restarted.settled)}`,
      );
      // Kept, the values alone would add 200 MiB (70 on Consul). Every read of leases leaves values over
      // 4 KiB out while decoding (the list at start, a watch's puts and resyncs), so neither the values
      // arriving nor a start next to them costs more than a few of them at a time. While they arrive,
      // Consul re-reads the whole prefix after each write, and an answer of up to 8 MiB is read as text
      // (http.ts, TEXT_BODY_BYTES): a few such reads between two collections are the running peak.
      expect(running.peak).toBeLessThan(baseline + 64);
      expect(running.settled).toBeLessThan(baseline + 30);
      expect(restarted.peak).toBeLessThan(baseline + 40);
      expect(restarted.settled).toBeLessThan(baseline + 30);
    },
    180_000,
  );
}
