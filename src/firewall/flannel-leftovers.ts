/**
 * flanneld's firewall state, taken over when weft replaces it on a host: the chains FLANNEL-FWD
 * (filter) and FLANNEL-POSTRTG (nat) with their jumps, and the nftables tables `ip flannel-ipv4` /
 * `ip6 flannel-ipv6`. flanneld never removes them, and its MASQUERADE rule would keep masquerading
 * under weft even with `--ip-masq` off. They are removed only once weft's own rules are in place and
 * only when no flanneld process runs on the host (a flanneld still running would put them back, and
 * its rules are then its business).
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { FirewallError } from "./errors.ts";
import { isJumpTo, parseIptablesSave, type SavedRuleset } from "./iptables-text.ts";
import type { CommandRunner } from "./runner.ts";

/** flanneld's iptables chains, by table. */
export const FLANNEL_CHAINS = [
  { table: "filter", chain: "FLANNEL-FWD" },
  { table: "nat", chain: "FLANNEL-POSTRTG" },
] as const;

/** flanneld's nftables tables (`EnableNFTables`). */
export const FLANNEL_NFT_TABLES = [
  ["ip", "flannel-ipv4"],
  ["ip6", "flannel-ipv6"],
] as const;

/**
 * One `iptables-restore --noflush` script that deletes every jump to a flanneld chain, then flushes
 * and deletes the chains; and what it removes, for the log. Empty when nothing of flanneld's is there.
 */
export function planFlannelCleanup(saved: SavedRuleset): { script: string; removed: string[] } {
  const lines: string[] = [];
  const removed: string[] = [];
  for (const table of new Set(FLANNEL_CHAINS.map((c) => c.table))) {
    const t = saved.get(table);
    const chains = FLANNEL_CHAINS.filter((c) => c.table === table && t?.chains.has(c.chain)).map(
      (c): string => c.chain,
    );
    if (t === undefined || chains.length === 0) continue;
    lines.push(`*${table}`);
    for (const [chain, bodies] of t.rules) {
      if (chains.includes(chain)) continue;
      for (const body of bodies) {
        if (!chains.some((c) => isJumpTo(body, c))) continue;
        lines.push(`-D ${chain} ${body}`);
        removed.push(`${table}: -A ${chain} ${body}`);
      }
    }
    for (const chain of chains) {
      lines.push(`-F ${chain}`, `-X ${chain}`);
      removed.push(`${table}: chain ${chain} (${t.rules.get(chain)?.length ?? 0} rules)`);
    }
    lines.push("COMMIT");
  }
  return { script: lines.length === 0 ? "" : `${lines.join("\n")}\n`, removed };
}

/** Removes flanneld's chains and nftables tables; returns what was removed. */
export async function removeFlannelLeftovers(run: CommandRunner): Promise<string[]> {
  const removed: string[] = [];
  const save = ["iptables-save"];
  const saved = await run(save);
  if (saved.code === 0) {
    const plan = planFlannelCleanup(parseIptablesSave(saved.stdout));
    if (plan.script !== "") {
      const restore = ["iptables-restore", "--noflush", "--wait"];
      const done = await run(restore, plan.script);
      if (done.code !== 0)
        throw FirewallError.fromCommand("removing flanneld's chains", restore, done, plan.script);
      removed.push(...plan.removed);
    }
  }
  for (const [family, name] of FLANNEL_NFT_TABLES) {
    if ((await run(["nft", "list", "table", family, name])).code !== 0) continue;
    const command = ["nft", "delete", "table", family, name];
    const deleted = await run(command);
    if (deleted.code !== 0)
      throw FirewallError.fromCommand("removing flanneld's nftables table", command, deleted);
    removed.push(`nftables: table ${family} ${name}`);
  }
  return removed;
}

/**
 * The pids of processes named `flanneld` (from /proc/<pid>/comm) in this process's network namespace:
 * a flanneld serving another namespace (a container, a test host) is not this host's.
 */
export function flanneldPids(proc = "/proc"): number[] {
  const pids: number[] = [];
  let ours: string | undefined;
  try {
    ours = readlinkSync(`${proc}/self/ns/net`);
  } catch {
    ours = undefined;
  }
  for (const entry of readdirSync(proc)) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`${proc}/${entry}/comm`, "utf8").trim() !== "flanneld") continue;
      if (ours !== undefined && readlinkSync(`${proc}/${entry}/ns/net`) !== ours) continue;
      pids.push(Number(entry));
    } catch {
      // The process ended while we looked, or is not ours to inspect.
    }
  }
  return pids;
}
