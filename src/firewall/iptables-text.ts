/**
 * Pure half of the iptables mode: rules rendered in exactly the form `iptables-save` prints them
 * (iptables 1.8.9, both backends: addresses first, then `-m` matches in the order given, then the
 * target), the parser of `iptables-save` output, and the planner that turns desired rules plus one
 * saved ruleset into one `iptables-restore --noflush` script.
 *
 * The script never flushes a built-in chain and never deletes a correct jump. Re-declaring our own
 * chain (`:WEFT-FWD - [0:0]`) flushes it inside the transaction, and the `-A` lines that follow refill
 * it; the whole script is committed at once (one nf_tables batch, or one table replace in legacy), so
 * no packet ever sees the chain empty.
 */
import { type DesiredRules, Owned, type Rule, Verdict } from "./rules.ts";

export interface RenderOptions {
  /** Whether MASQUERADE may carry `--random-fully`. */
  readonly randomFully: boolean;
}

/** A double-quoted string the way iptables-save prints comments. */
function quote(text: string): string {
  return `"${text.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

/** One rule without its `-A <chain>` prefix, exactly as `iptables-save` prints it. */
export function renderIptablesRule(rule: Rule, options: RenderOptions): string {
  const parts: string[] = [];
  if (rule.src !== undefined) parts.push(`${rule.src.negate ? "! " : ""}-s ${rule.src.cidr}`);
  if (rule.dst !== undefined) parts.push(`${rule.dst.negate ? "! " : ""}-d ${rule.dst.cidr}`);
  if (rule.mark !== undefined) parts.push(`-m mark --mark ${hex(rule.mark.value)}/${hex(rule.mark.mask)}`);
  parts.push(`-m comment --comment ${quote(rule.comment)}`);
  switch (rule.verdict) {
    case Verdict.Accept:
      parts.push("-j ACCEPT");
      break;
    case Verdict.Return:
      parts.push("-j RETURN");
      break;
    case Verdict.Masquerade:
      parts.push(
        rule.fullyRandom === true && options.randomFully ? "-j MASQUERADE --random-fully" : "-j MASQUERADE",
      );
      break;
  }
  return parts.join(" ");
}

/** The jump from a built-in chain into ours, as `iptables-save` prints it. */
export function renderJump(chain: string, comment: string): string {
  return `-m comment --comment ${quote(comment)} -j ${chain}`;
}

/** One table of an `iptables-save` dump. */
export interface SavedTable {
  /** Chain name → policy (`ACCEPT`, `DROP`, or `-` for user chains). */
  readonly chains: ReadonlyMap<string, string>;
  /** Chain name → its rules in order, each without the `-A <chain> ` prefix. */
  readonly rules: ReadonlyMap<string, readonly string[]>;
}

/** Table name → table. A table the kernel has not created yet is simply absent. */
export type SavedRuleset = ReadonlyMap<string, SavedTable>;

/** Parses `iptables-save` output (any tables; counters and comments ignored). */
export function parseIptablesSave(text: string): SavedRuleset {
  const tables = new Map<string, { chains: Map<string, string>; rules: Map<string, string[]> }>();
  let current: { chains: Map<string, string>; rules: Map<string, string[]> } | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.trimEnd();
    if (line === "" || line.startsWith("#")) continue;
    if (line.startsWith("*")) {
      current = { chains: new Map(), rules: new Map() };
      tables.set(line.slice(1), current);
    } else if (line === "COMMIT") {
      current = undefined;
    } else if (current !== undefined && line.startsWith(":")) {
      const [name = "", policy = "-"] = line.slice(1).split(" ");
      current.chains.set(name, policy);
    } else if (current !== undefined && line.startsWith("-A ")) {
      const rest = line.slice(3);
      const space = rest.indexOf(" ");
      const chain = space < 0 ? rest : rest.slice(0, space);
      const body = space < 0 ? "" : rest.slice(space + 1);
      const list = current.rules.get(chain) ?? [];
      list.push(body);
      current.rules.set(chain, list);
    }
  }
  return tables;
}

/** True when a saved rule body jumps (or goes) to `chain`. */
export function isJumpTo(body: string, chain: string): boolean {
  return new RegExp(`(?:^|\\s)(?:-j|-g|--jump|--goto) ${chain.replace(/[-]/g, "\\-")}(?:\\s|$)`).test(body);
}

/** One of weft's chains and where it hangs. */
export interface OwnedChain {
  readonly table: "filter" | "nat";
  readonly chain: string;
  /** The built-in chain that jumps to it. */
  readonly hook: "FORWARD" | "POSTROUTING";
  readonly comment: string;
  /** Desired rule bodies in order, or `null` when the chain must not exist. */
  readonly rules: readonly string[] | null;
}

/** Weft's two chains with the rendered desired rules. */
export function ownedChains(desired: DesiredRules, options: RenderOptions): readonly OwnedChain[] {
  const render = (rules: readonly Rule[] | null) => rules?.map((r) => renderIptablesRule(r, options)) ?? null;
  return [
    {
      table: "filter",
      chain: Owned.forwardChain,
      hook: "FORWARD",
      comment: Owned.forwardComment,
      rules: render(desired.forward),
    },
    {
      table: "nat",
      chain: Owned.postroutingChain,
      hook: "POSTROUTING",
      comment: Owned.masqComment,
      rules: render(desired.postrouting),
    },
  ];
}

export interface IptablesPlan {
  /** True when the saved state already equals the desired state: nothing to run. */
  readonly inSync: boolean;
  /** The pending diff for people (`weft plan`, `--dry-run`), one change per line. */
  readonly lines: readonly string[];
  /** The `iptables-restore --noflush` input; empty when in sync. */
  readonly script: string;
  /** Whether the script contains `--random-fully` (to detect support on failure). */
  readonly usesRandomFully: boolean;
}

export interface PlanOptions extends RenderOptions {
  /** Re-declare and refill our chains even when they look right (jumps are still left alone). */
  readonly force?: boolean | undefined;
}

/** Counts the bodies of `a` missing from `b` (multiset difference), in `a`'s order. */
function missingFrom(a: readonly string[], b: readonly string[]): string[] {
  const left = new Map<string, number>();
  for (const x of b) left.set(x, (left.get(x) ?? 0) + 1);
  const out: string[] = [];
  for (const x of a) {
    const n = left.get(x) ?? 0;
    if (n > 0) left.set(x, n - 1);
    else out.push(x);
  }
  return out;
}

const sameList = (a: readonly string[], b: readonly string[]): boolean =>
  a.length === b.length && a.every((x, i) => x === b[i]);

interface TableScript {
  readonly declare: string[];
  readonly deletes: string[];
  readonly adds: string[];
  readonly removes: string[];
}

/** Plans one chain: appends its script lines to `out` and its diff lines to `lines`. */
function planChain(
  owned: OwnedChain,
  saved: SavedTable | undefined,
  force: boolean,
  out: TableScript,
  lines: string[],
) {
  const { table, chain, hook } = owned;
  const exists = saved?.chains.has(chain) ?? false;
  const actual = saved?.rules.get(chain) ?? [];
  const jumps = (saved?.rules.get(hook) ?? []).filter((body) => isJumpTo(body, chain));
  const jump = renderJump(chain, owned.comment);
  const deleteJumps = () => {
    for (const body of jumps) {
      out.deletes.push(`-D ${hook} ${body}`);
      lines.push(`${table}: - -A ${hook} ${body}`);
    }
  };

  if (owned.rules === null) {
    deleteJumps();
    if (exists) {
      out.declare.push(`:${chain} - [0:0]`);
      out.removes.push(`-X ${chain}`);
      lines.push(`${table}: - chain ${chain} (${actual.length} rules)`);
    }
    return;
  }

  const desired = owned.rules;
  if (!exists || force || !sameList(actual, desired)) {
    out.declare.push(`:${chain} - [0:0]`);
    for (const body of desired) out.adds.push(`-A ${chain} ${body}`);
    if (!exists) {
      lines.push(`${table}: + chain ${chain}`);
      for (const body of desired) lines.push(`${table}: + -A ${chain} ${body}`);
    } else {
      const removed = missingFrom(actual, desired);
      const added = missingFrom(desired, actual);
      for (const body of removed) lines.push(`${table}: - -A ${chain} ${body}`);
      for (const body of added) lines.push(`${table}: + -A ${chain} ${body}`);
      if (removed.length === 0 && added.length === 0) {
        lines.push(
          sameList(actual, desired)
            ? `${table}: = chain ${chain} refilled (forced)`
            : `${table}: ~ chain ${chain} rule order differs; refilled in order`,
        );
      }
    }
  }

  if (jumps.length === 1 && jumps[0] === jump) return;
  // Zero, several, or a foreign-looking jump: delete them all and insert the one canonical jump at the
  // top, in the same transaction, so there is never a moment without exactly one jump.
  deleteJumps();
  out.adds.push(`-I ${hook} 1 ${jump}`);
  lines.push(`${table}: + -I ${hook} 1 ${jump}`);
}

/** Plans the transaction that makes `saved` equal `desired`. Pure. */
export function planIptables(desired: DesiredRules, saved: SavedRuleset, options: PlanOptions): IptablesPlan {
  const lines: string[] = [];
  const sections: string[] = [];
  for (const table of ["filter", "nat"] as const) {
    const out: TableScript = { declare: [], deletes: [], adds: [], removes: [] };
    for (const owned of ownedChains(desired, options).filter((c) => c.table === table)) {
      planChain(owned, saved.get(table), options.force === true, out, lines);
    }
    const body = [...out.declare, ...out.deletes, ...out.adds, ...out.removes];
    if (body.length > 0) sections.push([`*${table}`, ...body, "COMMIT"].join("\n"));
  }
  const script = sections.length === 0 ? "" : `${sections.join("\n")}\n`;
  return { inSync: script === "", lines, script, usesRandomFully: script.includes("--random-fully") };
}
