// Faults at the cluster level (issue 12, items 12–14), against real servers in network namespaces:
// a 3-member etcd cluster and a 3-node NATS JetStream cluster (bucket replicas 3) losing the member
// an agent talks to and then the leader; one host cut off from the store for 30 s; an agent
// SIGKILLed in the middle of 200 peers joining and leaving.
import { afterAll, beforeAll, expect } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describeNetns, testNetns } from "../harness/netns.ts";
import { type Cluster, eventually, SEED_000_CONFIG, STORE_IP, startMesh } from "./cluster.ts";
import { EtcdMembers } from "./fixtures/etcd-members.ts";
import type { MemberCluster } from "./fixtures/member-cluster.ts";
import { NatsMembers } from "./fixtures/nats-members.ts";

/** `<dst> via <gw>` of each `ip route` line, sorted. */
function destVia(lines: readonly string[]): string[] {
  return lines
    .map((l) => l.match(/^(\S+) via (\S+)/))
    .filter((m): m is RegExpMatchArray => m !== null)
    .map((m) => `${m[1]} via ${m[2]}`)
    .sort();
}

interface EtcdKv {
  key: string;
  value: string;
  lease?: string | number;
}

/** Lease keys under `<prefix>/subnets/` with their etcd lease id and PublicIP (from `etcdctl get -w json`). */
function parseLeases(json: string): Map<string, { lease: string; publicIp: string }> {
  const out = new Map<string, { lease: string; publicIp: string }>();
  // Lease ids are int64: quote them before JSON.parse rounds them to a double.
  const quoted = json.replace(/"lease":(\d+)/g, '"lease":"$1"');
  const kvs = (JSON.parse(quoted) as { kvs?: EtcdKv[] }).kvs ?? [];
  for (const kv of kvs) {
    const key = Buffer.from(kv.key, "base64").toString();
    const value = JSON.parse(Buffer.from(kv.value, "base64").toString()) as { PublicIP?: string };
    out.set(key, { lease: String(kv.lease ?? 0), publicIp: value.PublicIP ?? "" });
  }
  return out;
}

/** Every agent host 0..n-1 of `members` holds n-1 routes. */
function awaitMesh(members: MemberCluster, n: number, timeoutMs = 20_000): Promise<void> {
  return eventually(
    `${n} agents to route to each other`,
    async () => {
      for (let i = 0; i < n; i++) if ((await members.routes(i)).length !== n - 1) return false;
      return true;
    },
    timeoutMs,
  );
}

/** The routes host `own` should hold for these leases: `<subnet> via <PublicIP>` of every other lease. */
function routesFor(leases: Iterable<[string, string]>, own: string): string[] {
  return [...leases]
    .filter(([, ip]) => ip !== own)
    .map(([k, ip]) => `${k.slice(k.lastIndexOf("/") + 1).replace("-", "/")} via ${ip}`)
    .sort();
}

describeNetns("faults - 3-member etcd cluster", () => {
  let etcd: EtcdMembers;
  const log: string[] = [];
  beforeAll(async () => {
    etcd = await EtcdMembers.start(5);
  }, 60_000);
  afterAll(async () => {
    console.log(log.join("\n"));
    await etcd?.stop();
  }, 60_000);

  const leases = async () =>
    parseLeases(await etcd.etcdctl("get", `${etcd.prefix}/subnets/`, "--prefix", "-w", "json"));

  testNetns(
    "faults etcd cluster - agents keep leases and watches when their member and then the leader die; joiners get routes",
    async () => {
      await etcd.etcdctl("put", `${etcd.prefix}/config`, SEED_000_CONFIG);
      for (let i = 0; i < 3; i++) etcd.startAgent(i);
      await awaitMesh(etcd, 3);
      const before = await leases();
      expect(before.size).toBe(3);

      // 1. The member agent 0 talks to (its established :2379 connections).
      let talked: number[] = [];
      await eventually("agent 0 to hold a connection to a member", async () => {
        talked = await etcd.agentMembers(0);
        return talked.length > 0;
      });
      const victim = talked[0] ?? 0;
      log.push(`etcd cluster: agent 0 talks to member ${victim} (${talked.join(",")}); SIGKILL it`);
      await etcd.killMember(victim);
      const t1 = Date.now();
      etcd.startAgent(3);
      await awaitMesh(etcd, 4, 30_000);
      log.push(`etcd cluster: joiner 3 routed on all 4 hosts ${Date.now() - t1} ms after the member kill`);
      expect(await etcd.agentMembers(0)).not.toContain(victim);

      // 2. The member comes back with its data; then the leader dies (quorum needs two of three).
      etcd.startMember(victim);
      await etcd.awaitHealthy(3);
      const leader = await etcd.leader();
      const conns = await Promise.all([0, 1, 2, 3].map((i) => etcd.agentMembers(i)));
      log.push(
        `etcd cluster: member ${victim} back; leader is member ${leader}; agents 0-3 talk to members ${JSON.stringify(conns)}; SIGKILL the leader`,
      );
      await etcd.killMember(leader);
      const t2 = Date.now();
      etcd.startAgent(4);
      await awaitMesh(etcd, 5, 30_000);
      log.push(`etcd cluster: joiner 4 routed on all 5 hosts ${Date.now() - t2} ms after the leader kill`);

      // The first three agents still hold the same keys under the same etcd leases, and those leases live.
      const after = await leases();
      expect(after.size).toBe(5);
      for (const [key, value] of before) expect(after.get(key)?.lease).toBe(value.lease);
      const live = await etcd.etcdctl("lease", "list");
      for (const { lease } of after.values()) expect(live).toContain(BigInt(lease).toString(16));
      // Every route equals what the store says.
      for (let i = 0; i < 5; i++) {
        const want = routesFor(
          [...after].map(([k, v]) => [k, v.publicIp]),
          etcd.host(i).address,
        );
        expect(destVia(await etcd.routes(i))).toEqual(want);
      }
      for (const agent of etcd.agents.values()) expect(agent.proc.exitCode).toBeNull();
    },
    120_000,
  );
});

describeNetns("faults - 3-node NATS JetStream cluster, replicas 3", () => {
  let nats: NatsMembers;
  const log: string[] = [];
  beforeAll(async () => {
    nats = await NatsMembers.start(5);
  }, 180_000);
  afterAll(async () => {
    console.log(log.join("\n"));
    await nats?.stop();
  }, 60_000);

  const leases = async () =>
    Object.entries(
      JSON.parse(await nats.admin("list", `${nats.prefix}/subnets/`)) as Record<string, string>,
    ).map(([k, v]): [string, string] => [k, (JSON.parse(v) as { PublicIP: string }).PublicIP]);

  testNetns(
    "faults nats cluster - agents keep leases and watches when their server and then the stream leader die; joiners get routes",
    async () => {
      // The agents run with --nats-replicas=3: while they wait for the network config, the first one
      // to connect creates the bucket, with 3 replicas.
      for (let i = 0; i < 3; i++) nats.startAgent(i);
      expect(await nats.admin("replicas", "weft")).toBe("3");
      await nats.admin("put", `${nats.prefix}/config`, SEED_000_CONFIG);
      await awaitMesh(nats, 3, 30_000);
      const before = new Map(await leases());
      expect(before.size).toBe(3);
      const envs = [0, 1, 2].map((i) => readFileSync(nats.subnetFile(i), "utf8"));

      let talked: number[] = [];
      await eventually("agent 0 to hold a connection to a server", async () => {
        talked = await nats.agentMembers(0);
        return talked.length > 0;
      });
      const victim = talked[0] ?? 0;
      log.push(
        `nats cluster: agent 0 talks to server ${victim}; stream leader ${await nats.streamLeader("weft")}; SIGKILL server ${victim}`,
      );
      await nats.killMember(victim);
      const t1 = Date.now();
      nats.startAgent(3);
      await awaitMesh(nats, 4, 60_000);
      log.push(`nats cluster: joiner 3 routed on all 4 hosts ${Date.now() - t1} ms after the server kill`);
      expect(await nats.agentMembers(0)).not.toContain(victim);

      nats.startMember(victim);
      await nats.awaitHealthy(victim);
      const leader = await nats.streamLeader("weft");
      log.push(`nats cluster: server ${victim} back; stream leader is ${leader}; SIGKILL it`);
      await nats.killMember(leader);
      const t2 = Date.now();
      nats.startAgent(4);
      await eventually("joiner 4 to hold a lease", () => existsSync(nats.subnetFile(4)), 60_000);
      const leased = Date.now() - t2;
      await awaitMesh(nats, 5, 60_000);
      log.push(
        `nats cluster: joiner 4 leased ${leased} ms and routed on all 5 hosts ${Date.now() - t2} ms after the leader kill`,
      );

      for (const [i, agent] of nats.agents) {
        const warnings = agent
          .log()
          .split("\n")
          .filter((l) => / (WARN|ERROR) /.test(l));
        log.push(`nats cluster: agent ${i} logged ${warnings.length} warnings`, ...warnings.slice(0, 6));
      }
      const after = new Map(await leases());
      expect(after.size).toBe(5);
      for (const [key, ip] of before) expect(after.get(key)).toBe(ip);
      for (let i = 0; i < 3; i++) expect(readFileSync(nats.subnetFile(i), "utf8")).toBe(envs[i] ?? "");
      for (let i = 0; i < 5; i++)
        expect(destVia(await nats.routes(i))).toEqual(routesFor(after, nats.host(i).address));
      for (const agent of nats.agents.values()) expect(agent.proc.exitCode).toBeNull();
    },
    180_000,
  );
});

describeNetns("faults - partition from the store", () => {
  let cluster: Cluster;
  const log: string[] = [];
  beforeAll(async () => {
    cluster = await startMesh("etcd", 3);
  }, 60_000);
  afterAll(async () => {
    console.log(log.join("\n"));
    await cluster?.stop();
  }, 60_000);

  const iptables = (i: number, op: "-I" | "-D") =>
    Promise.all([
      cluster.host(i).ns.exec(["iptables", "-w", op, "INPUT", "-s", STORE_IP, "-j", "DROP"]),
      cluster.host(i).ns.exec(["iptables", "-w", op, "OUTPUT", "-d", STORE_IP, "-j", "DROP"]),
    ]);

  testNetns(
    "faults partition - a host cut off from the store for 30 s keeps routing, keeps its route on peers, and converges after",
    async () => {
      const before = await Promise.all([0, 1, 2].map((i) => cluster.routes(i)));
      const logBefore = cluster.agents.get(2)?.log().length ?? 0;
      await iptables(2, "-I");
      const start = Date.now();
      let added = false;
      const newRoute = "192.168.99.0/26 via 172.17.42.60";
      try {
        while (Date.now() - start < 30_000) {
          // Nothing moves on any host: host 2 keeps its routes, peers keep host 2's route.
          for (let i = 0; i < 3; i++) {
            const now = destVia(await cluster.routes(i));
            const was = destVia(before[i] ?? []);
            for (const r of was) expect(now).toContain(r);
          }
          if (!added && Date.now() - start > 5_000) {
            await cluster.put(
              `${cluster.prefix}/subnets/192.168.99.0-26`,
              JSON.stringify({
                PublicIP: "172.17.42.60",
                PublicIPv6: null,
                BackendType: "host-gw",
                BackendData: null,
              }),
            );
            added = true;
            await eventually("hosts 0 and 1 to route the new lease", async () => {
              for (const i of [0, 1]) if (!destVia(await cluster.routes(i)).includes(newRoute)) return false;
              return true;
            });
          }
          await Bun.sleep(1_000);
        }
        // The partitioned host could not have heard of it.
        expect(destVia(await cluster.routes(2))).not.toContain(newRoute);
      } finally {
        await iptables(2, "-D");
      }
      const healed = Date.now();
      await eventually(
        "the partitioned host to route the lease added during the partition",
        async () => destVia(await cluster.routes(2)).includes(newRoute),
        60_000,
      );
      const convergeMs = Date.now() - healed;
      const lines = (cluster.agents.get(2)?.log() ?? "").slice(logBefore).trim().split("\n").filter(Boolean);
      log.push(`partition: host 2 logged ${lines.length} lines from the cut until convergence`);
      log.push(...lines.slice(0, 20));
      log.push(
        `partition: lease added during the 30 s partition reached host 2 ${convergeMs} ms after healing`,
      );
      // Host 2's lease survived (24 h TTL) and every host agrees again.
      const keys = await cluster.etcdctl("get", `${cluster.prefix}/subnets/`, "--prefix", "--keys-only");
      expect(keys.match(/subnets\//g)?.length).toBe(4);
      for (let i = 0; i < 3; i++) expect((await cluster.routes(i)).length).toBe(3);
      for (const agent of cluster.agents.values()) expect(agent.proc.exitCode).toBeNull();
      expect(convergeMs).toBeLessThan(10_000);
    },
    120_000,
  );
});

describeNetns("faults - agent SIGKILL during lease churn", () => {
  let cluster: Cluster;
  const log: string[] = [];
  beforeAll(async () => {
    cluster = await startMesh("etcd", 1);
  }, 60_000);
  afterAll(async () => {
    console.log(log.join("\n"));
    await cluster?.stop();
  }, 60_000);

  testNetns(
    "faults churn - after a SIGKILL and restart in the middle of 200 peers joining and leaving, the kernel equals the store",
    async () => {
      const expected = async () => {
        const leases = parseLeases(
          await cluster.etcdctl("get", `${cluster.prefix}/subnets/`, "--prefix", "-w", "json"),
        );
        return [...leases]
          .filter(([, v]) => v.publicIp !== cluster.host(0).address)
          .map(([k, v]) => `${k.slice(k.lastIndexOf("/") + 1).replace("-", "/")} via ${v.publicIp}`)
          .sort();
      };
      const script = join(import.meta.dir, "fixtures", "lease-churn.ts");
      const churn = cluster.segment.lan.spawn([
        process.execPath,
        script,
        "etcd",
        cluster.endpoint,
        cluster.prefix,
        "200",
        "1200",
        "7",
      ]);
      const out = new Response(churn.stdout).text();
      await Bun.sleep(2_500);
      expect(churn.exitCode).toBeNull();
      await cluster.stopAgent(0, "SIGKILL");
      await Bun.sleep(1_000);
      expect(churn.exitCode).toBeNull();
      // What the dead agent left behind against what the store holds now: both sides must be repaired.
      const [frozen, stored] = await Promise.all([cluster.routes(0).then(destVia), expected()]);
      const staleAtRestart = frozen.filter((r) => !stored.includes(r)).length;
      const missingAtRestart = stored.filter((r) => !frozen.includes(r)).length;
      cluster.startAgent(0);
      const code = await churn.exited;
      if (code !== 0)
        throw new Error(`lease churn failed (${code}): ${await new Response(churn.stderr).text()}`);
      const present = (await out).trim();
      const churnEnd = Date.now();

      const want = await expected();
      let got: string[] = [];
      try {
        await eventually(
          "the kernel to equal the store",
          async () => {
            got = destVia(await cluster.routes(0));
            return got.length === want.length && got.every((r, n) => r === want[n]);
          },
          30_000,
        );
      } catch (err) {
        const stale = got.filter((r) => !want.includes(r));
        const missing = want.filter((r) => !got.includes(r));
        throw new Error(`${String(err)}: stale ${JSON.stringify(stale)}, missing ${JSON.stringify(missing)}`);
      }
      log.push(
        `churn: restart found ${staleAtRestart} stale and ${missingAtRestart} missing routes; ${present}; ${want.length} leases in the store; kernel equal ${Date.now() - churnEnd} ms after the churn stopped`,
      );
      expect(staleAtRestart).toBeGreaterThan(0);
      expect(missingAtRestart).toBeGreaterThan(0);
      // And it stays equal.
      await Bun.sleep(1_000);
      expect(destVia(await cluster.routes(0))).toEqual(want);
      expect(await expected()).toEqual(want);
      expect(want.length).toBeGreaterThan(0);
      expect(cluster.agents.get(0)?.proc.exitCode).toBeNull();
    },
    120_000,
  );
});
