// What an operator sees: `weft plan` (changes nothing), /readyz and /metrics, and kernel-setting warnings.
import { afterAll, beforeAll, expect } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { netnsUsable, testNetns } from "../harness/netns.ts";
import { Cluster, eventually, SEED_000_CONFIG, withoutNhid } from "./cluster.ts";

const MAIN = join(import.meta.dir, "..", "..", "src", "main.ts");
let cluster: Cluster;
/** The route lines `weft plan` printed for host 1 before its agent ran. */
let planned: string[] = [];

/** GET from inside host i's namespace (the agent listens on 127.0.0.1 there). */
async function httpGet(i: number, path: string): Promise<{ status: number; body: string }> {
  const script = `const r = await fetch("http://127.0.0.1:9471${path}").catch(() => undefined); console.log(JSON.stringify(r === undefined ? { status: 0, body: "" } : { status: r.status, body: await r.text() }));`;
  const r = await cluster.host(i).ns.exec([process.execPath, "-e", script], { allowFailure: true });
  return JSON.parse(r.stdout.trim() || '{"status":0,"body":""}');
}

beforeAll(async () => {
  if (!netnsUsable) return;
  cluster = await Cluster.start({ store: "sqlite", hosts: 3 });
  await cluster.writeConfig(SEED_000_CONFIG);
  cluster.startAgent(1);
  await eventually("host 2's agent to write its subnet.env", () => existsSync(cluster.subnetFile(1)));
}, 60_000);
afterAll(async () => {
  await cluster?.stop();
}, 60_000);

testNetns(
  "operator - weft plan prints the lease, routes and firewall it would install, and changes nothing",
  async () => {
    const ns = cluster.host(0).ns;
    await cluster.put(`${cluster.prefix}/subnets/0.0.0.0-0`, '{"PublicIP":"172.17.42.99"}');
    const r = await ns.exec([
      process.execPath,
      MAIN,
      "plan",
      "--store=sqlite",
      `--store-endpoints=${cluster.endpoint}`,
      `--etcd-prefix=${cluster.prefix}`,
      "--iface=eth0",
      `--subnet-file=${cluster.subnetFile(0)}`,
    ]);
    expect(r.stdout).toMatch(/^lease: would acquire 192\.168\.\d+\.\d+\/26 \(allocate-free\)$/m);
    expect(r.stdout).toMatch(
      /^ {2}\+ 192\.168\.\d+\.\d+\/26 nhid \d+ via 172\.17\.42\.42 dev eth0 proto 77$/m,
    );
    expect(r.stdout).toMatch(/^ {2}\+ id \d+ via 172\.17\.42\.42 dev eth0 scope link proto 77$/m);
    planned = r.stdout
      .split("\n")
      .filter((l) => l.startsWith("  + ") && !l.startsWith("  + id "))
      .map((l) => withoutNhid(l.slice(4)));
    expect(r.stdout).toContain("WEFT-FWD");
    expect(r.stdout).toMatch(/FLANNEL_NETWORK=192\.168\.0\.0\/16/);
    expect(await cluster.routes(0)).toEqual([]);
    expect(existsSync(cluster.subnetFile(0))).toBe(false);
    expect((await ns.exec(["iptables-save"])).stdout).not.toContain("WEFT");
    const store = (await import("../../stores/index.ts")).openStore("sqlite", {
      endpoints: [cluster.endpoint],
    });
    expect((await store.list(`${cluster.prefix}/subnets/`)).entries).toHaveLength(2);
    await store.close();
  },
  30_000,
);

testNetns(
  "operator - /readyz turns 200 once lease and first apply are done; /metrics says so",
  async () => {
    cluster.startAgent(0, ["--healthz-port=9471", "--healthz-ip=127.0.0.1"]);
    await eventually(
      "/readyz to answer 200",
      async () => (await httpGet(0, "/readyz")).status === 200,
      20_000,
    );
    expect((await httpGet(0, "/readyz")).body).toBe("weft is ready\n");
    expect((await httpGet(0, "/healthz")).status).toBe(200);
    const metrics = (await httpGet(0, "/metrics")).body;
    expect(metrics).toMatch(/^weft_ready 1$/m);
    expect(metrics).toMatch(/^weft_lease_held 1$/m);
    expect(metrics).toMatch(/^weft_routes 1$/m);
    expect(metrics).toMatch(/^# TYPE weft_apply_duration_seconds histogram$/m);
    const status = JSON.parse((await httpGet(0, "/status")).body) as {
      lease: { subnet: string };
      peers: { publicIP: string; route: boolean }[];
    };
    expect(status.peers).toEqual([expect.objectContaining({ publicIP: "172.17.42.42", route: true })]);
    // Plan and run agree: the routes the plan listed are the routes the agent installed.
    expect(planned.length).toBe(1);
    expect(await cluster.routes(0)).toEqual(planned);
    expect(
      cluster
        .subnetEnv(0)
        .FLANNEL_SUBNET?.startsWith(
          status.lease.subnet.split("/")[0]?.split(".").slice(0, 3).join(".") ?? "x",
        ),
    ).toBe(true);
  },
  30_000,
);

testNetns(
  "operator - ip_forward off is reported at start",
  async () => {
    await cluster.host(2).ns.sysctl("net.ipv4.ip_forward=0");
    cluster.startAgent(2);
    await eventually(
      "the ip_forward warning",
      () => /kernel setting.*net\.ipv4\.ip_forward/.test(cluster.agents.get(2)?.log() ?? ""),
      15_000,
    );
  },
  30_000,
);

testNetns(
  "operator - weft status shows the running agent's subnet, peers and routes",
  async () => {
    const args = [process.execPath, MAIN, "status", "--healthz-port=9471", "--healthz-ip=127.0.0.1"];
    const table = await cluster.host(0).ns.exec(args);
    const subnet = (cluster.subnetEnv(0).FLANNEL_SUBNET ?? "").replace(
      /\.(\d+)\//,
      (_, n) => `.${Number(n) - 1}/`,
    );
    expect(table.stdout).toMatch(new RegExp(`^lease +${subnet.replaceAll(".", "\\.")} +expires `, "m"));
    expect(table.stdout).toMatch(/^ready +yes$/m);
    expect(table.stdout).toMatch(/^backend +host-gw on eth0 \(PublicIP 172\.17\.42\.41\)$/m);
    expect(table.stdout).toMatch(
      /^192\.168\.\d+\.\d+\/26 +172\.17\.42\.42 +host-gw +via 172\.17\.42\.42 dev eth0$/m,
    );
    const json = JSON.parse((await cluster.host(0).ns.exec([...args, "--json"])).stdout) as {
      lease: { subnet: string };
    };
    expect(json.lease.subnet).toBe(subnet);
    const off = await cluster.host(0).ns.exec([process.execPath, MAIN, "status"], { allowFailure: true });
    expect(off.code).toBe(1);
    expect(off.stderr).toContain("--healthz-port");
  },
  30_000,
);
