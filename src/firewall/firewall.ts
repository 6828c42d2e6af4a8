/**
 * The firewall as the agent sees it: one interface, two dataplanes (iptables via `iptables-restore`,
 * nftables via `nft -f`), chosen by the network config's `EnableNFTables`.
 *
 * Why a reconciler and not a sequence of commands: like felix, the firewall keeps a *desired* state in
 * memory (`setSpec` only changes memory) and compares it with the *actual* kernel state read back in one
 * call (`iptables-save` / `nft -j list table ip weft`). `plan()` shows the difference, `apply()` and the
 * periodic `ensure()` make it vanish in one atomic transaction and do nothing else when there is none.
 * Nothing is removed on shutdown: containers keep their forwarding and masquerading while the agent
 * restarts (flannel #2237 lost egress exactly there). `remove()` exists for uninstall and tests.
 */
import { FirewallError } from "./errors.ts";
import type { Finding } from "./findings.ts";
import { IptablesFirewall } from "./iptables.ts";
import { NftablesFirewall } from "./nftables.ts";
import { type FirewallSpec, Owned } from "./rules.ts";
import { type CommandRunner, spawnRunner } from "./runner.ts";

export const FirewallMode = { Iptables: "iptables", Nftables: "nftables" } as const;
export type FirewallMode = (typeof FirewallMode)[keyof typeof FirewallMode];

/** One command `apply()` would run, with its input: what `--dry-run` prints. */
export interface PlanStep {
  readonly command: readonly string[];
  readonly input: string;
}

/** The pending difference between desired and actual state. */
export interface FirewallPlan {
  readonly mode: FirewallMode;
  /** True when nothing needs to change. */
  readonly inSync: boolean;
  /** The diff for people, one change per line (`filter: + -A WEFT-FWD -s 10.5.0.0/16 …`). */
  readonly lines: readonly string[];
  /** The transactions that would run, in order. */
  readonly steps: readonly PlanStep[];
  /** Problems noticed while reading (e.g. a foreign DROP that our rules cannot override). */
  readonly findings: readonly Finding[];
}

/** What one `apply()`, `ensure()` or `remove()` did. */
export interface ApplyResult {
  /** True when a transaction ran (the state had drifted or the spec changed). */
  readonly changed: boolean;
  /** The diff that was applied (empty when nothing changed). */
  readonly lines: readonly string[];
  readonly findings: readonly Finding[];
}

export interface ApplyOptions {
  /** Rewrite our chains even when they look right (used by tests and `weft apply --force`). */
  readonly force?: boolean | undefined;
}

/** What the firewall owns and wants, for `weft describe` and the startup log line. */
export interface FirewallDescription {
  readonly mode: FirewallMode;
  /** How a restarted agent recognises its objects (chain names, comments, table). */
  readonly owns: readonly string[];
  /** The desired rules as the dataplane writes them. */
  readonly desired: readonly string[];
  /** MASQUERADE --random-fully support: true/false once known, undefined before the first apply. */
  readonly randomFully: boolean | undefined;
}

/** The common interface of both dataplanes. */
export interface Firewall {
  readonly mode: FirewallMode;
  /** Replaces the desired state (memory only); the next `apply()`/`ensure()` converges to it. */
  setSpec(spec: FirewallSpec): void;
  /** Reads the kernel once and returns the pending diff; changes nothing. */
  plan(): Promise<FirewallPlan>;
  /** Converges to the desired state: one read, and one transaction only if something differs. */
  apply(options?: ApplyOptions): Promise<ApplyResult>;
  /** The periodic resync (`--iptables-resync`): the same convergence, reported as drift repair. */
  ensure(): Promise<ApplyResult>;
  /** Deletes everything weft owns (uninstall, tests). Never called on shutdown. */
  remove(): Promise<ApplyResult>;
  describe(): FirewallDescription;
}

export interface FirewallOptions {
  readonly mode: FirewallMode;
  readonly spec: FirewallSpec;
  /** Defaults to running the tools directly (`spawnRunner()`). Tests inject `ip netns exec <ns>`. */
  readonly run?: CommandRunner | undefined;
  /** Known MASQUERADE fully-random support; detected on the first failed transaction when omitted. */
  readonly randomFully?: boolean | undefined;
}

/** `EnableNFTables` → mode. */
export function modeFromConfig(enableNFTables: boolean): FirewallMode {
  return enableNFTables ? FirewallMode.Nftables : FirewallMode.Iptables;
}

/** Builds the firewall for `options.mode`. Touches nothing until `plan()`/`apply()`. */
export function createFirewall(options: FirewallOptions): Firewall {
  const run = options.run ?? spawnRunner();
  const common = { run, spec: options.spec, randomFully: options.randomFully };
  switch (options.mode) {
    case FirewallMode.Iptables:
      return new IptablesFirewall(common);
    case FirewallMode.Nftables:
      return new NftablesFirewall(common);
  }
}

/**
 * Removes what the other mode left behind after `EnableNFTables` was switched; call once after the
 * first successful `apply()`, so the new rules are in place before the old ones go. The nftables mode
 * already cleans iptables leftovers in every convergence, so this only acts for the iptables mode:
 * it deletes `table ip weft` when present. Returns true when something was removed.
 */
export async function removeOtherMode(
  mode: FirewallMode,
  run: CommandRunner = spawnRunner(),
): Promise<boolean> {
  if (mode === FirewallMode.Nftables) return false;
  const listed = await run(["nft", "list", "table", "ip", Owned.nftTable]);
  if (listed.code !== 0) return false; // absent, or nft is not installed: nothing of ours there
  const command = ["nft", "delete", "table", "ip", Owned.nftTable];
  const deleted = await run(command);
  if (deleted.code !== 0)
    throw FirewallError.fromCommand("removing the nftables-mode table", command, deleted);
  return true;
}
