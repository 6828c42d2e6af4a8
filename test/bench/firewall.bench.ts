/**
 * Firewall benchmark, inside a throwaway network namespace (root only; skipped otherwise): weft's
 * iptables apply (save + one restore) and steady-state verify (one save), flanneld's resync pattern
 * (one `iptables -S <chain> 1` per chain plus one `iptables -C` per rule, as go-iptables does), and the
 * nftables mode's apply and verify. Each is measured on an empty ruleset and next to 5,000 foreign nat
 * rules (a kube-proxy-sized table). Figures are printed, never asserted.
 *
 *   bun test/bench/firewall.bench.ts
 */
import { IptablesFirewall } from "../../src/firewall/iptables.ts";
import { ownedChains } from "../../src/firewall/iptables-text.ts";
import { NftablesFirewall } from "../../src/firewall/nftables.ts";
import { desiredRules, type FirewallSpec } from "../../src/firewall/rules.ts";
import type { CommandRunner } from "../../src/firewall/runner.ts";
import { canUseNetns, Netns, uniqueName } from "../../src/netns/netns.ts";
import { nsRunner } from "../netns/fixtures/firewall-topology.ts";
import { percentile, table } from "./stats.ts";

const ROUNDS = 30;
const FOREIGN = 5_000;
const spec: FirewallSpec = {
  network: "10.5.0.0/16",
  subnet: "10.5.72.0/24",
  ipMasq: true,
  forwardRules: true,
};

async function time(rounds: number, body: () => Promise<void>): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < rounds; i += 1) {
    const start = performance.now();
    await body();
    samples.push(performance.now() - start);
  }
  return samples;
}

/** flanneld's ensure cycle: chain checks, then `iptables -C` for every rule (all must pass). */
async function flannelCheck(run: CommandRunner): Promise<void> {
  for (const chain of ownedChains(desiredRules(spec), { randomFully: true })) {
    await run(["iptables", "-w", "-t", chain.table, "-S", chain.chain, "1"]);
    const jump = `-m comment --comment weft:${chain.table === "filter" ? "fwd" : "masq"} -j ${chain.chain}`;
    await run(["iptables", "-w", "-t", chain.table, "-C", chain.hook, ...jump.split(" ")]);
    for (const rule of chain.rules ?? []) {
      const args = rule.replaceAll('"', "").split(" ");
      const result = await run(["iptables", "-w", "-t", chain.table, "-C", chain.chain, ...args]);
      if (result.code !== 0) throw new Error(`flannel-style check failed: ${result.stderr}`);
    }
  }
}

async function addForeign(run: CommandRunner): Promise<void> {
  const lines = ["*nat", ":KUBE-BENCH - [0:0]"];
  for (let i = 0; i < FOREIGN; i += 1) {
    lines.push(`-A KUBE-BENCH -d 172.30.${i >> 8}.${i & 255}/32 -p tcp --dport 80 -j RETURN`);
  }
  lines.push("COMMIT", "");
  const result = await run(["iptables-restore", "--noflush"], lines.join("\n"));
  if (result.code !== 0) throw new Error(result.stderr);
}

const fmt = (samples: number[]) =>
  [percentile(samples, 50), percentile(samples, 90)].map((v) => v.toFixed(2));

async function main(): Promise<void> {
  if (!canUseNetns()) {
    console.log("firewall bench skipped: needs root and `ip netns`");
    return;
  }
  const rows: string[][] = [];
  for (const foreign of [false, true]) {
    const ns = await Netns.create(uniqueName("wfb"));
    try {
      const { run, calls } = nsRunner(ns);
      if (foreign) await addForeign(run);
      const label = foreign ? ` (+${FOREIGN} foreign nat rules)` : "";
      const ipt = new IptablesFirewall({ run, spec });
      const count = (before: number) => String((calls.length - before) / ROUNDS);
      let mark = calls.length;
      rows.push([
        `iptables apply, forced${label}`,
        ...fmt(await time(ROUNDS, () => ipt.apply({ force: true }).then(() => {}))),
        count(mark),
      ]);
      mark = calls.length;
      rows.push([
        `iptables verify (no-op apply)${label}`,
        ...fmt(await time(ROUNDS, () => ipt.ensure().then(() => {}))),
        count(mark),
      ]);
      mark = calls.length;
      rows.push([
        `flanneld-style check (-S + -C per rule)${label}`,
        ...fmt(await time(ROUNDS, () => flannelCheck(run))),
        count(mark),
      ]);
      await ipt.remove();
      const nft = new NftablesFirewall({ run, spec, iptablesBridge: false });
      mark = calls.length;
      rows.push([
        `nft apply, forced${label}`,
        ...fmt(await time(ROUNDS, () => nft.apply({ force: true }).then(() => {}))),
        count(mark),
      ]);
      mark = calls.length;
      rows.push([
        `nft verify (no-op apply)${label}`,
        ...fmt(await time(ROUNDS, () => nft.ensure().then(() => {}))),
        count(mark),
      ]);
    } finally {
      await ns.remove();
    }
  }
  console.log(table(["operation (inside a netns)", "p50 ms", "p90 ms", "execs"], rows));
}

await main();
