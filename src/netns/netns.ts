/**
 * Network namespaces for `weft demo` and the kernel tests. Everything that changes the kernel runs
 * inside namespaces made here (`ip -n <ns> …` or `ip netns exec <ns> …`); nothing touches the
 * namespace weft itself was started in. Every namespace is recorded and removed by `remove()`, by
 * `removeAll()`, and — should the process die on an exception — by an exit hook.
 */
import type { Subprocess } from "bun";

export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** A command that exited non-zero, with what it printed. */
export class CommandFailedError extends Error {
  readonly code = "COMMAND_FAILED" as const;
  constructor(
    readonly command: readonly string[],
    readonly result: CommandResult,
  ) {
    super(`${command.join(" ")} exited ${result.code}: ${result.stderr.trim() || result.stdout.trim()}`);
    this.name = "CommandFailedError";
  }
}

/** Runs a command to completion; rejects with CommandFailedError unless `allowFailure`. */
export async function run(
  command: readonly string[],
  options: { allowFailure?: boolean } = {},
): Promise<CommandResult> {
  const proc = Bun.spawn([...command], { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  const result = { code, stdout, stderr };
  if (code !== 0 && options.allowFailure !== true) throw new CommandFailedError(command, result);
  return result;
}

const created = new Set<string>();
process.on("exit", () => {
  for (const name of created) Bun.spawnSync(["ip", "netns", "delete", name], { stderr: "ignore" });
});

export class Netns {
  private constructor(readonly name: string) {}

  /** Creates a namespace with loopback up. Names must be unique; `uniqueName()` helps. */
  static async create(name: string): Promise<Netns> {
    await run(["ip", "netns", "add", name]);
    created.add(name);
    const ns = new Netns(name);
    await ns.ip("link", "set", "lo", "up");
    return ns;
  }

  /** `ip -n <ns> …` */
  ip(...args: string[]): Promise<CommandResult> {
    return run(["ip", "-n", this.name, ...args]);
  }

  /** Runs a command inside the namespace: `ip netns exec <ns> …`. */
  exec(command: readonly string[], options: { allowFailure?: boolean } = {}): Promise<CommandResult> {
    return run(["ip", "netns", "exec", this.name, ...command], options);
  }

  /** Starts a long-running process inside the namespace. */
  spawn(
    command: readonly string[],
    options: { env?: Record<string, string | undefined> } = {},
  ): Subprocess<"ignore", "pipe", "pipe"> {
    return Bun.spawn(["ip", "netns", "exec", this.name, ...command], {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, ...options.env },
    });
  }

  /** Sets a sysctl inside the namespace (`net.ipv4.ip_forward=1`). */
  async sysctl(setting: string): Promise<void> {
    await this.exec(["sysctl", "-q", "-w", setting]);
  }

  /** Deletes the namespace (its links and their peers go with it). */
  async remove(): Promise<void> {
    await run(["ip", "netns", "delete", this.name], { allowFailure: true });
    created.delete(this.name);
  }
}

let counter = 0;

/** A namespace name unique to this process: `<prefix>-<pid>-<n>` (at most 15 chars kept for veths). */
export function uniqueName(prefix: string): string {
  counter += 1;
  return `${prefix}-${process.pid}-${counter}`;
}

/** Removes every namespace this process created and has not removed yet. */
export async function removeAll(): Promise<void> {
  await Promise.all([...created].map((name) => run(["ip", "netns", "delete", name], { allowFailure: true })));
  created.clear();
}

/** True when this process may create namespaces (root with `ip` available). */
export function canUseNetns(): boolean {
  if (process.getuid?.() !== 0) return false;
  return Bun.spawnSync(["ip", "netns", "list"], { stdout: "ignore", stderr: "ignore" }).exitCode === 0;
}

export interface Host {
  readonly ns: Netns;
  /** Address on the host's segment, e.g. `172.17.42.41`. */
  readonly address: string;
  /** Name of the host's interface on the segment (`eth0`). */
  readonly iface: string;
}

export interface Segment {
  /** The namespace holding the bridge that joins the hosts (the "switch"). */
  readonly lan: Netns;
  readonly hosts: readonly Host[];
  remove(): Promise<void>;
}

/** One L2 segment of a routed topology: its hosts, and the router's address on it. */
export interface SegmentSpec {
  /** The router's address on this segment (on bridge `br<n>` in the lan namespace), e.g. `172.17.43.1`. */
  readonly router: string;
  readonly prefixLen: number;
  /** The hosts' eth0 addresses on this segment. */
  readonly addresses: readonly string[];
}

export interface RoutedHost extends Host {
  /** Index of the host's segment (its bridge is `br<segment>`). */
  readonly segment: number;
  /** The router's address on the host's segment: the host's default gateway. */
  readonly router: string;
}

export interface RoutedSegments extends Segment {
  /** The router: one bridge per segment, each with the router's address, ip_forward on. */
  readonly lan: Netns;
  /** Every host, segment 0's first, in the order the specs list them. */
  readonly hosts: readonly RoutedHost[];
}

interface BridgeSpec {
  readonly prefixLen: number;
  readonly addresses: readonly string[];
  /** Router address on the bridge; hosts then route `default via` it. None: a plain switch. */
  readonly router?: string;
}

/**
 * Builds the lan namespace with bridge `br<n>` per spec, and one host namespace per address whose
 * `eth0` is a veth plugged into its bridge. Hosts are numbered `h1…` and ports `p1…` across all
 * bridges. Everything made is removed again when a step fails.
 */
async function buildBridges(
  prefix: string,
  specs: readonly BridgeSpec[],
  options: { mtu?: number },
): Promise<{ lan: Netns; hosts: (Host & { segment: number })[]; remove(): Promise<void> }> {
  const all: Netns[] = [];
  const remove = async () => {
    await Promise.all(all.map((ns) => ns.remove()));
  };
  try {
    const lan = await Netns.create(uniqueName(`${prefix}-lan`));
    all.push(lan);
    const routed = specs.some((s) => s.router !== undefined);
    if (routed) await lan.sysctl("net.ipv4.ip_forward=1");
    const hosts: (Host & { segment: number })[] = [];
    for (const [segment, spec] of specs.entries()) {
      const bridge = `br${segment}`;
      await lan.ip("link", "add", bridge, "type", "bridge");
      if (spec.router !== undefined) {
        await lan.ip("addr", "add", `${spec.router}/${spec.prefixLen}`, "dev", bridge);
      }
      await lan.ip("link", "set", bridge, "up");
      for (const address of spec.addresses) {
        const n = hosts.length + 1;
        const ns = await Netns.create(uniqueName(`${prefix}-h${n}`));
        all.push(ns);
        const port = `p${n}`;
        await lan.ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns.name);
        await lan.ip("link", "set", port, "master", bridge, "up");
        if (options.mtu !== undefined) await ns.ip("link", "set", "eth0", "mtu", String(options.mtu));
        await ns.ip("addr", "add", `${address}/${spec.prefixLen}`, "dev", "eth0");
        await ns.ip("link", "set", "eth0", "up");
        if (spec.router !== undefined) await ns.ip("route", "add", "default", "via", spec.router);
        await ns.sysctl("net.ipv4.ip_forward=1");
        hosts.push({ ns, address, iface: "eth0", segment });
      }
    }
    return { lan, hosts, remove };
  } catch (err) {
    await remove();
    throw err;
  }
}

/**
 * One L2 segment: a "lan" namespace with bridge `br0`, and one namespace per host whose `eth0` is a
 * veth plugged into that bridge, addressed `<address>/<prefixLen>`, with ip_forward on. All links are
 * created from inside the namespaces (`ip -n`), never in the caller's namespace.
 */
export async function createSegment(
  prefix: string,
  addresses: readonly string[],
  prefixLen: number,
  options: { mtu?: number } = {},
): Promise<Segment> {
  const built = await buildBridges(prefix, [{ addresses, prefixLen }], options);
  return {
    lan: built.lan,
    hosts: built.hosts.map(({ ns, address, iface }) => ({ ns, address, iface })),
    remove: built.remove,
  };
}

/**
 * Several L2 segments joined by a router: the "lan" namespace holds bridge `br<n>` for segment n with
 * the router's address on it (`ip addr add <router>/<len> dev br<n>`) and forwards between them
 * (ip_forward=1). Each host's `eth0` is a veth on its segment's bridge, addressed
 * `<address>/<prefixLen>`, with `ip route add default via <router>` and ip_forward on. Hosts on
 * different segments reach each other only through the router, never on one L2 link.
 */
export async function createRoutedSegments(
  prefix: string,
  segments: readonly SegmentSpec[],
  options: { mtu?: number } = {},
): Promise<RoutedSegments> {
  const built = await buildBridges(prefix, segments, options);
  return {
    lan: built.lan,
    hosts: built.hosts.map((h) => ({ ...h, router: segments[h.segment]?.router ?? "" })),
    remove: built.remove,
  };
}
