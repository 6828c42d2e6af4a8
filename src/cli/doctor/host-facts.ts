/**
 * What `weft doctor` reads from this host (the network namespace it runs in), read-only: the
 * `iptables-save` dump, nftables chains and tables (`nft -j list …`), link MTUs from /sys, the
 * neighbour table thresholds, and flanneld processes. Nothing here writes anything.
 */
import { readdir, readFile, readlink } from "node:fs/promises";
import { errorMessage } from "../../errors.ts";
import { parseIptablesSave, type SavedRuleset } from "../../firewall/iptables-text.ts";
import { type NftChainInfo, parseNftChains } from "../../firewall/nftables-text.ts";
import type { CommandRunner } from "../../firewall/runner.ts";
import type { GcThresh, ProcessInfo } from "./host-rules.ts";

const firstLine = (text: string) => text.trim().split("\n")[0] ?? "";

/** One `iptables-save` (whichever backend the host's alternatives select, as the agent uses). */
export async function readIptables(run: CommandRunner): Promise<SavedRuleset | { readonly error: string }> {
  const r = await run(["iptables-save"]);
  if (r.code !== 0) return { error: `iptables-save exited ${r.code}: ${firstLine(r.stderr)}` };
  return parseIptablesSave(r.stdout);
}

/** `nft -j list chains`; undefined when nft is missing or refuses. */
export async function readNftChains(run: CommandRunner): Promise<NftChainInfo[] | undefined> {
  const r = await run(["nft", "-j", "list", "chains"]);
  if (r.code !== 0) return undefined;
  try {
    return parseNftChains(r.stdout);
  } catch {
    return undefined;
  }
}

/** `nft -j list tables` as family and name; empty when nft is missing. */
export async function readNftTables(run: CommandRunner): Promise<{ family: string; name: string }[]> {
  const r = await run(["nft", "-j", "list", "tables"]);
  if (r.code !== 0) return [];
  try {
    const doc = JSON.parse(r.stdout) as { nftables?: { table?: { family?: unknown; name?: unknown } }[] };
    return (doc.nftables ?? []).flatMap((item) =>
      item.table === undefined ? [] : [{ family: String(item.table.family), name: String(item.table.name) }],
    );
  } catch {
    return [];
  }
}

/** A link's MTU from /sys/class/net (of this namespace); undefined when the link does not exist. */
export async function readMtu(name: string): Promise<number | undefined> {
  try {
    const value = Number((await readFile(`/sys/class/net/${name}/mtu`, "utf8")).trim());
    return Number.isInteger(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/** The integers of a `gc_thresh`-like answer; undefined when any is not a whole number. */
export function toThresh(values: readonly unknown[]): GcThresh | undefined {
  const [thresh1, thresh2, thresh3] = values.map((v) => Number(v));
  if (![thresh1, thresh2, thresh3].every((v) => Number.isInteger(v))) return undefined;
  return { thresh1: thresh1 ?? 0, thresh2: thresh2 ?? 0, thresh3: thresh3 ?? 0 };
}

/**
 * `net.ipv4.neigh.default.gc_thresh1/2/3`. These are host-wide: a network namespace other than the
 * first has no such files, so the fallback asks the kernel's ARP table (`ip -j ntable show`).
 */
export async function readGcThresh(run: CommandRunner): Promise<GcThresh | { readonly error: string }> {
  try {
    const values = await Promise.all(
      [1, 2, 3].map((n) => readFile(`/proc/sys/net/ipv4/neigh/default/gc_thresh${n}`, "utf8")),
    );
    const thresh = toThresh(values.map((v) => v.trim()));
    if (thresh !== undefined) return thresh;
  } catch {
    // Not the first namespace: ask netlink below.
  }
  const r = await run(["ip", "-j", "ntable", "show", "name", "arp_cache"]);
  if (r.code !== 0) return { error: `ip ntable show exited ${r.code}: ${firstLine(r.stderr)}` };
  try {
    const tables = JSON.parse(r.stdout) as Record<string, unknown>[];
    const table = tables.find((t) => t.dev === undefined && t.thresh3 !== undefined);
    const thresh = table === undefined ? undefined : toThresh([table.thresh1, table.thresh2, table.thresh3]);
    return thresh ?? { error: "ip ntable show names no arp_cache thresholds" };
  } catch (err) {
    return { error: `cannot read ip ntable show: ${errorMessage(err)}` };
  }
}

/**
 * Processes named `name` (in /proc/<pid>/comm) in this process's network namespace: an agent in
 * another namespace (a container, a test host) does not manage this one's routes. When the namespace
 * of a process cannot be read, it is counted.
 */
export async function findProcesses(name: string): Promise<ProcessInfo[]> {
  const own = await readlink("/proc/self/ns/net").catch(() => undefined);
  const found: ProcessInfo[] = [];
  for (const entry of await readdir("/proc").catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const comm = await readFile(`/proc/${entry}/comm`, "utf8").catch(() => "");
    if (comm.trim() !== name) continue;
    const ns = await readlink(`/proc/${entry}/ns/net`).catch(() => undefined);
    if (own !== undefined && ns !== undefined && ns !== own) continue;
    found.push({ pid: Number(entry), comm: name });
  }
  return found;
}
