/**
 * `weft demo`: seed 000 (flannel host-gw with etcd) on one machine, with weft on the embedded SQLite
 * store. Three hosts 172.17.42.41–43 share one L2 segment (network namespaces joined by a bridge);
 * each runs a weft agent, gets a /26 of 192.168.0.0/16, and has a "container" namespace on a docker0
 * bridge configured from subnet.env like docker's --bip, with FORWARD policy DROP as docker sets it.
 * It prints each host's routes and subnet.env, pings across hosts, traces a path, and removes
 * everything it created — also on Ctrl-C or failure. Nothing outside its namespaces is changed.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { openStore } from "../../stores/index.ts";
import { WeftError, WeftErrorCode } from "../errors.ts";
import {
  canUseNetns,
  createSegment,
  type Host,
  Netns,
  removeAll,
  type Segment,
  uniqueName,
} from "../netns/netns.ts";

const HOSTS = ["172.17.42.41", "172.17.42.42", "172.17.42.43"];
const PREFIX = "/cluster.hostgw/network";
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

async function runDemoSteps(segment: Segment, hosts: DemoHost[], db: string): Promise<void> {
  say(`== seed 000 topology: ${HOSTS.join(", ")} on one L2 segment; store: sqlite ${db}`);
  const store = openStore("sqlite", { endpoints: [db] });
  await store.create(`${PREFIX}/config`, SEED_000_CONFIG);
  await store.close();
  say(`$ weft config set --store=sqlite --etcd-prefix=${PREFIX} < flannel.json`);

  for (const [i, h] of hosts.entries()) {
    await h.host.ns.exec(["iptables", "-P", "FORWARD", "DROP"]);
    const args = [
      ...weftCommand(),
      "--store=sqlite",
      `--store-endpoints=${db}`,
      `--etcd-prefix=${PREFIX}`,
      "--iface=eth0",
      `--subnet-file=${join(h.dir, "subnet.env")}`,
    ];
    h.agent = h.host.ns.spawn(args);
    say(`[host${i + 1} ${h.host.address}] $ weft --store=sqlite --etcd-prefix=${PREFIX} --iface=eth0 &`);
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
    say(`[host${i + 1}] $ ip route show`);
    say((await h.host.ns.ip("route", "show")).stdout.trimEnd());
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
  void segment;
}

const USAGE = `usage: weft demo

Builds seed 000 (host-gw on one L2 segment) in network namespaces it creates: a store namespace and
three hosts, one weft agent per host on a shared SQLite store, a container namespace behind each
host's docker0 with FORWARD policy DROP. It prints each host's routes and subnet.env, pings every
container from every other host, traces one path, and removes everything it made, also on failure
or Ctrl-C. Needs root and iproute2, iptables, ping and traceroute; the root namespace is not touched.
`;

export async function runDemo(argv: readonly string[]): Promise<number> {
  if (argv.includes("-h") || argv.includes("--help")) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (argv.length > 0) {
    process.stderr.write(`weft demo: unexpected argument "${argv[0]}" (it takes none)\n${USAGE}`);
    return 2;
  }
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
    segment = await createSegment("wd", HOSTS, 16);
    for (const [i, host] of segment.hosts.entries()) {
      const hostDir = join(dir, `host${i + 1}`);
      hosts.push({ host, dir: hostDir });
    }
    await runDemoSteps(segment, hosts, join(dir, "weft.db"));
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
