/**
 * `weft demo`: a flannel seed on one machine, with weft on the embedded SQLite store.
 * - default (seed 000, host-gw): three hosts 172.17.42.41–43 share one L2 segment (network namespaces
 *   joined by a bridge); each gets a /26 of 192.168.0.0/16.
 * - `--backend=vxlan` (seed 003): its config (10.0.0.0/8, /20 subnets, VNI 100, port 8472) and its hosts
 *   192.168.205.10 and .11, plus a third host 192.168.206.10 on another segment behind a router, which
 *   host-gw could not reach; agents started with `-iface=<the host's IP>` as the seed writes it.
 * Each host has a "container" namespace on a docker0 bridge configured from subnet.env like docker's
 * --bip/--mtu, with FORWARD policy DROP as docker sets it. The demo prints each host's routes (and the
 * vxlan device, neighbours and FDB), pings across hosts, traces a path, and removes everything it
 * created — also on Ctrl-C or failure. Nothing outside its namespaces is changed.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { openStore } from "../../stores/index.ts";
import { WeftError, WeftErrorCode } from "../errors.ts";
import {
  canUseNetns,
  createRoutedSegments,
  createSegment,
  type Host,
  Netns,
  removeAll,
  type Segment,
  uniqueName,
} from "../netns/netns.ts";
/** Seed 000's flannel.json, exactly as the tutorial writes it. */
export const SEED_000_CONFIG = `{
"Network": "192.168.0.0/16",
"SubnetLen": 26,
"SubnetMin": "192.168.0.64",
"SubnetMax": "192.168.250.192",
"Backend":
{
"Type": "host-gw"
}
}`;

/** Seed 003's flannel-network-config.json, exactly as the tutorial writes it. */
export const SEED_003_CONFIG = `{
"Network": "10.0.0.0/8",
"SubnetLen": 20,
"SubnetMin": "10.10.0.0",
"SubnetMax": "10.99.0.0",
"Backend": {
"Type": "vxlan",
"VNI": 100,
"Port": 8472
}
}`;

interface Scenario {
  readonly title: string;
  readonly prefix: string;
  readonly config: string;
  /** The extra lines to print per host, as commands run inside it. */
  readonly show: readonly (readonly string[])[];
  /** The flag that picks the external interface, as the seed writes it. */
  iface(host: Host): string;
  build(): Promise<Segment>;
}

const SCENARIOS: Readonly<Record<"host-gw" | "vxlan", Scenario>> = {
  "host-gw": {
    title: "seed 000 (host-gw): 172.17.42.41, .42, .43 on one L2 segment",
    prefix: "/cluster.hostgw/network",
    config: SEED_000_CONFIG,
    show: [["ip", "route", "show"]],
    iface: () => "--iface=eth0",
    build: () => createSegment("wd", ["172.17.42.41", "172.17.42.42", "172.17.42.43"], 16),
  },
  vxlan: {
    title:
      "seed 003 (vxlan, VNI 100): 192.168.205.10 and .11 on one segment, 192.168.206.10 on another behind a router",
    prefix: "/coreos.com/network",
    config: SEED_003_CONFIG,
    show: [
      ["ip", "-d", "link", "show", "flannel.100"],
      ["ip", "route", "show"],
      ["ip", "neigh", "show", "dev", "flannel.100"],
      ["bridge", "fdb", "show", "dev", "flannel.100"],
    ],
    iface: (host) => `-iface=${host.address}`,
    build: () =>
      createRoutedSegments("wd", [
        { router: "192.168.205.1", prefixLen: 24, addresses: ["192.168.205.10", "192.168.205.11"] },
        { router: "192.168.206.1", prefixLen: 24, addresses: ["192.168.206.10"] },
      ]),
  },
};

interface DemoHost {
  readonly host: Host;
  readonly dir: string;
  agent?: Subprocess<"ignore", "pipe", "pipe">;
  container?: Netns;
  containerIP?: string;
}

/** How to start weft itself: the compiled binary, or bun running src/main.ts. */
function weftCommand(): string[] {
  const main = Bun.main;
  return main.endsWith(".ts") ? [process.execPath, main] : [process.execPath];
}

function say(text: string): void {
  process.stdout.write(`${text}\n`);
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await Bun.sleep(100);
  }
  throw new WeftError(WeftErrorCode.DemoFailed, `demo: timed out after ${timeoutMs} ms waiting for ${what}`);
}

function readEnv(path: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(path, "utf8").split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return out;
}

/**
 * A container namespace on a docker0 bridge in the host namespace, addressed from subnet.env the way
 * docker's `--bip=$FLANNEL_SUBNET --mtu=$FLANNEL_MTU` does: the bridge gets FLANNEL_SUBNET, the
 * container the next address, with its default route via the bridge.
 */
export async function addContainer(
  host: Netns,
  subnetEnvPath: string,
  index: number,
): Promise<{ ns: Netns; ip: string }> {
  const env = readEnv(subnetEnvPath);
  const bip = env.FLANNEL_SUBNET ?? "";
  const mtu = env.FLANNEL_MTU ?? "1500";
  const [gateway = "", len = ""] = bip.split("/");
  const parts = gateway.split(".").map(Number);
  const ip = [parts[0], parts[1], parts[2], (parts[3] ?? 0) + 1].join(".");
  await host.ip("link", "add", "docker0", "type", "bridge");
  await host.ip("addr", "add", bip, "dev", "docker0");
  await host.ip("link", "set", "docker0", "mtu", mtu, "up");
  const ctr = await Netns.create(uniqueName(`wd-c${index}`));
  await host.ip("link", "add", `veth${index}`, "type", "veth", "peer", "name", "eth0", "netns", ctr.name);
  await host.ip("link", "set", `veth${index}`, "master", "docker0", "mtu", mtu, "up");
  await ctr.ip("addr", "add", `${ip}/${len}`, "dev", "eth0");
  await ctr.ip("link", "set", "eth0", "mtu", mtu, "up");
  await ctr.ip("route", "add", "default", "via", gateway);
  return { ns: ctr, ip };
}

async function runDemoSteps(scenario: Scenario, hosts: DemoHost[], db: string): Promise<void> {
  const { prefix } = scenario;
  say(`== ${scenario.title}; store: sqlite ${db}`);
  const store = openStore("sqlite", { endpoints: [db] });
  await store.create(`${prefix}/config`, scenario.config);
  await store.close();
  say(`$ weft config set --store=sqlite --etcd-prefix=${prefix} < flannel-network-config.json`);
  say(scenario.config);

  for (const [i, h] of hosts.entries()) {
    await h.host.ns.exec(["iptables", "-P", "FORWARD", "DROP"]);
    const iface = scenario.iface(h.host);
    const args = [
      ...weftCommand(),
      "--store=sqlite",
      `--store-endpoints=${db}`,
      `--etcd-prefix=${prefix}`,
      iface,
      `--subnet-file=${join(h.dir, "subnet.env")}`,
      // The demo's hosts share this machine's /run: each agent's control socket lives in its directory.
      `--control-socket=${join(h.dir, "weft.sock")}`,
    ];
    h.agent = h.host.ns.spawn(args);
    say(`[host${i + 1} ${h.host.address}] $ weft --store=sqlite --etcd-prefix=${prefix} ${iface} &`);
  }
  await waitFor(
    "every agent to route to every peer",
    async () => {
      for (const h of hosts) {
        const routes = (await h.host.ns.ip("route", "show", "proto", "77")).stdout
          .trim()
          .split("\n")
          .filter(Boolean);
        if (routes.length !== hosts.length - 1) return false;
      }
      return true;
    },
    20_000,
  );
  for (const [i, h] of hosts.entries()) {
    const container = await addContainer(h.host.ns, join(h.dir, "subnet.env"), i + 1);
    h.container = container.ns;
    h.containerIP = container.ip;
    say(`\n[host${i + 1}] $ cat /run/flannel/subnet.env`);
    say(readFileSync(join(h.dir, "subnet.env"), "utf8").trimEnd());
    for (const command of scenario.show) {
      say(`[host${i + 1}] $ ${command.join(" ")}`);
      say((await h.host.ns.exec(command)).stdout.trimEnd());
    }
  }
  const [first, , third] = hosts;
  say("");
  for (const from of hosts) {
    for (const to of hosts) {
      if (from === to || from.container === undefined || to.containerIP === undefined) continue;
      const r = await from.container.exec(["ping", "-c", "2", "-i", "0.2", "-W", "2", to.containerIP], {
        allowFailure: true,
      });
      const summary = r.stdout.split("\n").find((l) => l.includes("packets transmitted")) ?? r.stderr.trim();
      say(`container ${from.containerIP} → ${to.containerIP}: ${summary}`);
      if (r.code !== 0)
        throw new WeftError(
          WeftErrorCode.DemoFailed,
          `demo: ping ${from.containerIP} → ${to.containerIP} failed`,
        );
    }
  }
  if (first?.container !== undefined && third?.containerIP !== undefined) {
    say(`\n[container on host1] $ traceroute -n ${third.containerIP}`);
    const t = await first.container.exec(["traceroute", "-n", "-q", "1", "-w", "2", third.containerIP], {
      allowFailure: true,
    });
    say(t.stdout.trimEnd());
  }
  say(`\nall ${hosts.length} hosts route to each other's containers with FORWARD policy DROP; cleaning up`);
}

const USAGE = `usage: weft demo [--backend=host-gw|vxlan]

Builds a flannel seed in network namespaces it creates, with one weft agent per host on a shared
SQLite store and a container namespace behind each host's docker0 with FORWARD policy DROP:
  --backend=host-gw  (default) seed 000: three hosts on one L2 segment, host-gw routes
  --backend=vxlan    seed 003: VNI 100, hosts on two segments joined by a router, flannel.100
It prints each host's subnet.env and routes (and the vxlan device, neighbours and FDB), pings every
container from every other host, traces one path, and removes everything it made, also on failure
or Ctrl-C. Needs root and iproute2, iptables, ping and traceroute; the root namespace is not touched.
`;

export async function runDemo(argv: readonly string[]): Promise<number> {
  if (argv.includes("-h") || argv.includes("--help")) {
    process.stdout.write(USAGE);
    return 0;
  }
  let backend: keyof typeof SCENARIOS = "host-gw";
  for (const arg of argv) {
    const value = arg.match(/^--?backend=(.*)$/)?.[1];
    if (value === "host-gw" || value === "vxlan") {
      backend = value;
      continue;
    }
    const why = value === undefined ? "" : ` (--backend takes host-gw or vxlan)`;
    process.stderr.write(`weft demo: unexpected argument "${arg}"${why}\n${USAGE}`);
    return 2;
  }
  const scenario = SCENARIOS[backend];
  if (!canUseNetns()) {
    process.stderr.write("weft demo: needs root and iproute2 (it builds hosts in network namespaces)\n");
    return 1;
  }
  const dir = mkdtempSync(join(tmpdir(), "weft-demo-"));
  const hosts: DemoHost[] = [];
  let segment: Segment | undefined;
  const cleanup = async () => {
    for (const h of hosts) h.agent?.kill("SIGTERM");
    await Promise.all(hosts.map((h) => h.agent?.exited));
    await removeAll();
    rmSync(dir, { recursive: true, force: true });
  };
  const onSignal = () => {
    say("\ninterrupted; cleaning up");
    void cleanup().then(() => process.exit(130));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    segment = await scenario.build();
    for (const [i, host] of segment.hosts.entries()) {
      const hostDir = join(dir, `host${i + 1}`);
      hosts.push({ host, dir: hostDir });
    }
    await runDemoSteps(scenario, hosts, join(dir, "weft.db"));
    return 0;
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    for (const [i, h] of hosts.entries()) {
      if (h.agent === undefined) continue;
      h.agent.kill("SIGTERM");
      const out = await new Response(h.agent.stderr).text();
      process.stderr.write(
        `--- host${i + 1} agent log (last lines)\n${out.split("\n").slice(-15).join("\n")}\n`,
      );
    }
    return 1;
  } finally {
    await cleanup();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}
