// `weft doctor` on a healthy host and on a host broken in every way it checks, inside network
// namespaces; and the etcd v2 hint against an etcd started with --enable-v2.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import type { DoctorFinding } from "../../src/cli/doctor/finding.ts";
import { describeNetns } from "../harness/netns.ts";
import { Cluster, eventually, SEED_000_CONFIG } from "./cluster.ts";

const MAIN = join(import.meta.dir, "..", "..", "src", "main.ts");
const NETWORK = "192.168.0.0/16";

interface DoctorRun {
  readonly code: number;
  readonly text: string;
  readonly findings: DoctorFinding[];
  byCheck(check: string): DoctorFinding | undefined;
}

/** Runs `weft doctor` inside host i's namespace, as text and as --json (both must agree on the exit). */
async function doctor(cluster: Cluster, i: number, args: readonly string[]): Promise<DoctorRun> {
  const ns = cluster.host(i).ns;
  const command = [process.execPath, MAIN, "doctor", ...args];
  const text = await ns.exec(command, { allowFailure: true });
  const json = await ns.exec([...command, "--json"], { allowFailure: true });
  expect(json.code).toBe(text.code);
  const findings = JSON.parse(json.stdout) as DoctorFinding[];
  return {
    code: text.code,
    text: text.stdout,
    findings,
    byCheck: (c) => findings.find((f) => f.check === c),
  };
}

describeNetns("doctor - sqlite cluster", () => {
  let cluster: Cluster;
  let dir: string;
  let fakeFlanneld: Subprocess | undefined;
  const socket = (i: number) => join(dir, `host${i}.sock`);
  const flagsOf = (i: number) => [
    "--store=sqlite",
    `--store-endpoints=${cluster.endpoint}`,
    `--etcd-prefix=${cluster.prefix}`,
    "--iface=eth0",
    `--subnet-file=${cluster.subnetFile(i)}`,
    `--control-socket=${socket(i)}`,
  ];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "weft-doctor-"));
    cluster = await Cluster.start({ store: "sqlite", hosts: 2 });
    await cluster.writeConfig(SEED_000_CONFIG);
    for (const i of [0, 1]) cluster.startAgent(i, [`--control-socket=${socket(i)}`]);
    await eventually(
      "both agents to route, write subnet.env and install WEFT-FWD",
      async () => {
        for (const i of [0, 1]) {
          if ((await cluster.routes(i)).length !== 1 || !existsSync(cluster.subnetFile(i))) return false;
          if (!(await cluster.host(i).ns.exec(["iptables-save"])).stdout.includes("-j WEFT-FWD"))
            return false;
        }
        return true;
      },
      30_000,
    );
  }, 90_000);

  afterAll(async () => {
    fakeFlanneld?.kill("SIGKILL");
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  test("doctor - a healthy host passes every check and exits 0", async () => {
    const ns = cluster.host(0).ns;
    // docker0 as docker makes it from subnet.env: MTU = FLANNEL_MTU.
    const mtu = cluster.subnetEnv(0).FLANNEL_MTU ?? "";
    await ns.ip("link", "add", "docker0", "type", "bridge");
    await ns.ip("link", "set", "docker0", "mtu", mtu);
    // docker ≥ 1.13 drops forwarded traffic by policy; weft's WEFT-FWD accepts the Network.
    await ns.exec(["iptables", "-P", "FORWARD", "DROP"]);
    await eventually(
      "the agent's control socket to say ready",
      async () => (await doctor(cluster, 0, flagsOf(0))).byCheck("agent")?.status === "ok",
      20_000,
    );
    const r = await doctor(cluster, 0, flagsOf(0));
    expect(r.code).toBe(0);
    expect(r.findings.filter((f) => f.status !== "ok")).toEqual([]);
    expect(r.findings.map((f) => f.check)).toEqual([
      "agent",
      "store",
      "config",
      "lease",
      "iface",
      "ip_forward",
      "rp_filter",
      "forward-policy",
      "mtu",
      "gc_thresh",
      "flannel-leftovers",
      "second-agent",
    ]);
    // FLANNEL_SUBNET is the first host address: 192.168.23.65/26 → lease 192.168.23.64/26.
    const subnet = (cluster.subnetEnv(0).FLANNEL_SUBNET ?? "").replace(
      /\.(\d+)\//,
      (_, n) => `.${Number(n) - 1}/`,
    );
    expect(r.byCheck("lease")?.finding).toBe(
      `lease ${subnet} (PublicIP 172.17.42.41) matches FLANNEL_SUBNET`,
    );
    expect(r.byCheck("config")?.finding).toBe(
      `${cluster.prefix}/config: Network ${NETWORK}, SubnetLen 26, backend host-gw`,
    );
    expect(r.byCheck("mtu")?.finding).toContain(`docker0 MTU ${mtu} ≤ FLANNEL_MTU ${mtu}`);
    expect(r.byCheck("forward-policy")?.finding).toBe(
      `iptables FORWARD policy is DROP; WEFT-FWD accepts ${NETWORK}`,
    );
    expect(r.byCheck("gc_thresh")?.finding).toContain("room for 1 peer");
    expect(r.text).toMatch(/^ok {4}agent +the agent answers on .*: ready/m);
    expect(r.text).not.toMatch(/^(WARN|FAIL)/m);
  }, 60_000);

  test("doctor - a broken host exits 1 and names each problem with its fix, changing nothing", async () => {
    const ns = cluster.host(1).ns;
    await cluster.stopAgent(1);
    // Everything doctor checks, broken at once.
    await ns.sysctl("net.ipv4.ip_forward=0");
    await ns.sysctl("net.ipv4.conf.eth0.rp_filter=1");
    await ns.exec(["iptables", "-P", "FORWARD", "DROP"]);
    await ns.exec(["iptables", "-D", "FORWARD", "-m", "comment", "--comment", "weft:fwd", "-j", "WEFT-FWD"]);
    await ns.exec(["iptables", "-F", "WEFT-FWD"]);
    await ns.exec(["iptables", "-X", "WEFT-FWD"]);
    await ns.exec(["iptables", "-t", "nat", "-N", "FLANNEL-POSTRTG"]);
    await ns.exec([
      "iptables",
      "-t",
      "nat",
      "-A",
      "POSTROUTING",
      "-m",
      "comment",
      "--comment",
      "flanneld masq",
      "-j",
      "FLANNEL-POSTRTG",
    ]);
    await ns.exec(["iptables", "-t", "nat", "-A", "FLANNEL-POSTRTG", "-s", NETWORK, "-j", "MASQUERADE"]);
    await ns.ip("link", "add", "docker0", "type", "bridge");
    await ns.ip("link", "set", "docker0", "mtu", "9000");
    const env = readFileSync(cluster.subnetFile(1), "utf8");
    const own = /FLANNEL_SUBNET=(\S+)/.exec(env)?.[1] ?? "";
    const other = cluster.subnetEnv(0).FLANNEL_SUBNET ?? "";
    writeFileSync(cluster.subnetFile(1), env.replace(own, other));
    await cluster.del(`${cluster.prefix}/config`);
    await cluster.put("/coreos.com/network/config", SEED_000_CONFIG);
    const flanneld = join(dir, "flanneld");
    copyFileSync("/bin/sleep", flanneld);
    fakeFlanneld = ns.spawn([flanneld, "120"]);
    await eventually("the stand-in flanneld to run", () => fakeFlanneld?.pid !== undefined);

    const before = (await ns.exec(["iptables-save"])).stdout.replace(/^#.*\n/gm, "");
    const r = await doctor(cluster, 1, flagsOf(1));
    expect(r.code).toBe(1);
    const status = Object.fromEntries(r.findings.map((f) => [f.check, f.status]));
    expect(status).toEqual({
      agent: "FAIL",
      store: "ok",
      config: "FAIL",
      lease: "FAIL",
      iface: "ok",
      ip_forward: "FAIL",
      rp_filter: "WARN",
      "forward-policy": "FAIL",
      mtu: "FAIL",
      gc_thresh: "ok",
      "flannel-leftovers": "WARN",
      "second-agent": "FAIL",
    });
    for (const f of r.findings.filter((f) => f.status !== "ok")) expect(f.fix).not.toBe("");
    // The stopped agent removed its socket ("does not exist"); one killed mid-shutdown leaves it ("no agent answers").
    expect(r.byCheck("agent")?.finding).toMatch(/is weft running\?/);
    expect(r.byCheck("agent")?.finding).toContain(socket(1));
    expect(r.byCheck("config")?.finding).toBe(
      `no network config at ${cluster.prefix}/config; found under flanneld's default prefix /coreos.com/network`,
    );
    expect(r.byCheck("config")?.fix).toContain("--etcd-prefix=/coreos.com/network");
    expect(r.byCheck("lease")?.finding).toContain(`${cluster.subnetFile(1)} says FLANNEL_SUBNET is in`);
    expect(r.byCheck("ip_forward")?.fix).toContain("sysctl -w net.ipv4.ip_forward=1");
    expect(r.byCheck("rp_filter")?.finding).toContain("net.ipv4.conf.eth0.rp_filter is 1");
    expect(r.byCheck("forward-policy")?.finding).toContain(
      "FORWARD policy is DROP and weft's WEFT-FWD accept rules are missing",
    );
    expect(r.byCheck("mtu")?.finding).toContain("docker0's MTU is 9000, larger than FLANNEL_MTU=1500");
    expect(r.byCheck("mtu")?.fix).toContain("--mtu=1500");
    expect(r.byCheck("flannel-leftovers")?.finding).toContain("iptables nat FLANNEL-POSTRTG");
    expect(r.byCheck("flannel-leftovers")?.fix).toContain(
      'iptables -t nat -D POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG',
    );
    expect(r.byCheck("second-agent")?.finding).toContain(`pid ${fakeFlanneld.pid}`);
    expect(r.text).toMatch(/^FAIL {2}ip_forward +net\.ipv4\.ip_forward is 0: .* — fix: sysctl -w/m);

    // Read-only: the rules and the sysctl are as broken as before.
    expect((await ns.exec(["iptables-save"])).stdout.replace(/^#.*\n/gm, "")).toBe(before);
    expect((await ns.exec(["cat", "/proc/sys/net/ipv4/ip_forward"])).stdout.trim()).toBe("0");

    // The flanneld in host 1's namespace is not host 0's problem.
    expect((await doctor(cluster, 0, flagsOf(0))).byCheck("second-agent")?.status).toBe("ok");
  }, 60_000);

  test("doctor - an agent that is not ready says why over the control socket", async () => {
    // An agent that waits for a config under a prefix where there is none.
    const prefix = "/nothing/here";
    await cluster.stopAgent(1);
    cluster.startAgent(1, [`--control-socket=${socket(1)}`, `--etcd-prefix=${prefix}`]);
    await eventually("the agent to wait", () =>
      (cluster.agents.get(1)?.log() ?? "").includes("waiting for the network config"),
    );
    const flags = flagsOf(1).map((f) => (f.startsWith("--etcd-prefix=") ? `--etcd-prefix=${prefix}` : f));
    const r = await doctor(cluster, 1, flags);
    expect(r.byCheck("agent")?.status).toBe("FAIL");
    expect(r.byCheck("agent")?.finding).toStartWith(
      `the agent answers on ${socket(1)} but is not ready: waiting for the network config at ${prefix}/config`,
    );
  }, 30_000);
});

describeNetns("doctor - etcd with the v2 API", () => {
  let cluster: Cluster;
  const flags = (store: string) => [
    `--store=${store}`,
    `--etcd-endpoints=${cluster.endpoint}`,
    `--etcd-prefix=${cluster.prefix}`,
    "--iface=eth0",
    `--subnet-file=${cluster.subnetFile(0)}`,
    `--control-socket=${join(cluster.dir, "absent.sock")}`,
  ];

  beforeAll(async () => {
    cluster = await Cluster.start({ store: "etcd2", hosts: 1 });
    // Seed 000: `etcdctl set /coreos.com/network/config '{…}'` (the v2 API).
    await cluster.etcdctl("set", `${cluster.prefix}/config`, SEED_000_CONFIG);
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  }, 60_000);

  test("doctor - a config written with the etcd v2 API is found in the v2 keyspace", async () => {
    const r = await doctor(cluster, 0, flags("etcd"));
    expect(r.code).toBe(1);
    expect(r.byCheck("store")).toMatchObject({
      status: "ok",
      finding: `etcd at ${cluster.endpoint} answers`,
    });
    const config = r.byCheck("config");
    expect(config?.status).toBe("FAIL");
    expect(config?.finding).toContain(
      `no network config at ${cluster.prefix}/config; found in etcd's v2 keyspace`,
    );
    expect(config?.fix).toContain("run with --store=etcd2, or copy it with weft config set");
    const v2 = await doctor(cluster, 0, flags("etcd2"));
    expect(v2.byCheck("config")?.status).toBe("ok");
  }, 60_000);
});
