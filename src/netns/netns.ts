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
  /** Address on the shared segment, e.g. `172.17.42.41`. */
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
  const all: Netns[] = [];
  try {
    const lan = await Netns.create(uniqueName(`${prefix}-lan`));
    all.push(lan);
    await lan.ip("link", "add", "br0", "type", "bridge");
    await lan.ip("link", "set", "br0", "up");
    const hosts: Host[] = [];
    for (const [i, address] of addresses.entries()) {
      const ns = await Netns.create(uniqueName(`${prefix}-h${i + 1}`));
      all.push(ns);
      const port = `p${i + 1}`;
      await lan.ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns.name);
      await lan.ip("link", "set", port, "master", "br0", "up");
      if (options.mtu !== undefined) await ns.ip("link", "set", "eth0", "mtu", String(options.mtu));
      await ns.ip("addr", "add", `${address}/${prefixLen}`, "dev", "eth0");
      await ns.ip("link", "set", "eth0", "up");
      await ns.sysctl("net.ipv4.ip_forward=1");
      hosts.push({ ns, address, iface: "eth0" });
    }
    return {
      lan,
      hosts,
      async remove() {
        await Promise.all(all.map((ns) => ns.remove()));
      },
    };
  } catch (err) {
    await Promise.all(all.map((ns) => ns.remove()));
    throw err;
  }
}
