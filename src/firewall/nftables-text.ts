/**
 * Pure half of the nftables mode: rules rendered as `nft` statements, the reader of
 * `nft -j list table ip weft` (each rule's JSON turned back into the same statement text, so desired
 * and actual compare as strings), the reader of `nft -j list chains`, and the planner.
 *
 * The whole `table ip weft` is weft's. A change is one `nft -f -` transaction that keeps the table and
 * its base chains (`add chain` is idempotent) and flushes and refills their rules; nftables commits a
 * batch atomically, so packets see the old rules or the new ones, never an empty chain. Deleting and
 * re-creating the table was tried first: it re-registers the NAT hook, and under load one new flow in
 * 150 left unmasqueraded during 25 forced re-applies. The rebuild is kept only for a table holding
 * objects that are not ours, or a chain whose hook definition must change.
 */
import { type DesiredRules, Owned, type Rule, Verdict } from "./rules.ts";

export interface NftRenderOptions {
  readonly randomFully: boolean;
}

const hex = (n: number): string => `0x${n.toString(16)}`;
const quote = (text: string): string => `"${text.replace(/["\\]/g, "")}"`;

/** One rule as an `nft` statement, e.g. `ip saddr 10.5.0.0/16 accept comment "weft:fwd"`. */
export function renderNftRule(rule: Rule, options: NftRenderOptions): string {
  const parts: string[] = [];
  if (rule.src !== undefined) parts.push(`ip saddr ${rule.src.negate ? "!= " : ""}${rule.src.cidr}`);
  if (rule.dst !== undefined) parts.push(`ip daddr ${rule.dst.negate ? "!= " : ""}${rule.dst.cidr}`);
  if (rule.mark !== undefined) parts.push(`meta mark & ${hex(rule.mark.mask)} == ${hex(rule.mark.value)}`);
  switch (rule.verdict) {
    case Verdict.Accept:
      parts.push("accept");
      break;
    case Verdict.Return:
      parts.push("return");
      break;
    case Verdict.Masquerade:
      parts.push(rule.fullyRandom === true && options.randomFully ? "masquerade fully-random" : "masquerade");
      break;
  }
  parts.push(`comment ${quote(rule.comment)}`);
  return parts.join(" ");
}

/** A base chain's definition. */
export interface NftChainDef {
  readonly type: string;
  readonly hook: string;
  readonly prio: number;
  readonly policy: string;
}

/** The definitions weft's two base chains must have. */
export const CHAIN_DEFS: Readonly<Record<"forward" | "postrouting", NftChainDef>> = {
  forward: { type: "filter", hook: "forward", prio: 0, policy: "accept" },
  postrouting: { type: "nat", hook: "postrouting", prio: 100, policy: "accept" },
};

const CHAIN_HEADERS = {
  forward: "type filter hook forward priority filter; policy accept;",
  postrouting: "type nat hook postrouting priority srcnat; policy accept;",
} as const;

/** Our table as read back: chain definitions, rules as statement text, and anything unexpected. */
export interface NftTableState {
  readonly chains: ReadonlyMap<string, Partial<NftChainDef>>;
  readonly rules: ReadonlyMap<string, readonly string[]>;
  /** Objects in our table that weft never creates (sets, maps, …), as short descriptions. */
  readonly foreign: readonly string[];
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
const isObject = (v: unknown): v is Record<string, Json> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

function operand(value: Json): string {
  if (typeof value === "string" || typeof value === "number") {
    return typeof value === "string" && /^\d+\.\d+\.\d+\.\d+$/.test(value) ? `${value}/32` : String(value);
  }
  if (isObject(value)) {
    const prefix = value.prefix;
    if (isObject(prefix)) return `${prefix.addr}/${prefix.len}`;
    const payload = value.payload;
    if (isObject(payload)) return `${payload.protocol} ${payload.field}`;
    const meta = value.meta;
    if (isObject(meta)) return `meta ${meta.key}`;
    const and = value["&"];
    if (Array.isArray(and) && and.length === 2) {
      const [left, mask] = and as [Json, Json];
      return `${operand(left)} & ${typeof mask === "number" ? hex(mask) : operand(mask)}`;
    }
  }
  return `?${JSON.stringify(value)}`;
}

/** One JSON statement back to text, in the vocabulary `renderNftRule` writes; unknown → `?<json>`. */
function statement(expr: Json): string {
  if (!isObject(expr)) return `?${JSON.stringify(expr)}`;
  const match = expr.match;
  if (isObject(match)) {
    const left = operand(match.left ?? null);
    const isMark = left.startsWith("meta mark &");
    const right = isMark && typeof match.right === "number" ? hex(match.right) : operand(match.right ?? null);
    if (isMark) return `${left} ${match.op} ${right}`;
    return `${left} ${match.op === "==" ? "" : `${match.op} `}${right}`;
  }
  if ("accept" in expr) return "accept";
  if ("return" in expr) return "return";
  if ("masquerade" in expr) {
    const masq = expr.masquerade;
    const flags = isObject(masq) ? masq.flags : undefined;
    const list = Array.isArray(flags) ? flags : flags === undefined ? [] : [flags];
    return ["masquerade", ...list.map(String)].join(" ");
  }
  return `?${JSON.stringify(expr)}`;
}

/** Parses `nft -j list table ip weft` output. */
export function parseNftTable(text: string): NftTableState {
  const chains = new Map<string, Partial<NftChainDef>>();
  const rules = new Map<string, string[]>();
  const foreign: string[] = [];
  const doc = JSON.parse(text) as { nftables?: Json[] };
  for (const item of doc.nftables ?? []) {
    if (!isObject(item)) continue;
    const [kind] = Object.keys(item);
    const body = kind === undefined ? undefined : item[kind];
    if (kind === "metainfo" || kind === "table" || !isObject(body)) continue;
    if (kind === "chain") {
      const def: { -readonly [K in keyof NftChainDef]?: NftChainDef[K] } = {};
      if (typeof body.type === "string") def.type = body.type;
      if (typeof body.hook === "string") def.hook = body.hook;
      if (typeof body.prio === "number") def.prio = body.prio;
      if (typeof body.policy === "string") def.policy = body.policy;
      chains.set(String(body.name), def);
    } else if (kind === "rule") {
      const exprs = Array.isArray(body.expr) ? body.expr : [];
      const comment = typeof body.comment === "string" ? ` comment ${quote(body.comment)}` : "";
      const list = rules.get(String(body.chain)) ?? [];
      list.push(`${exprs.map(statement).join(" ")}${comment}`);
      rules.set(String(body.chain), list);
    } else {
      foreign.push(`${kind} ${String(body.name ?? "")}`.trim());
    }
  }
  return { chains, rules, foreign };
}

/** A chain from `nft -j list chains` (any table). */
export interface NftChainInfo {
  readonly family: string;
  readonly table: string;
  readonly name: string;
  readonly hook?: string | undefined;
  readonly policy?: string | undefined;
  readonly prio?: number | undefined;
}

/** Parses `nft -j list chains`. */
export function parseNftChains(text: string): NftChainInfo[] {
  const doc = JSON.parse(text) as { nftables?: Json[] };
  const out: NftChainInfo[] = [];
  for (const item of doc.nftables ?? []) {
    if (!isObject(item) || !isObject(item.chain)) continue;
    const c = item.chain;
    out.push({
      family: String(c.family),
      table: String(c.table),
      name: String(c.name),
      hook: typeof c.hook === "string" ? c.hook : undefined,
      policy: typeof c.policy === "string" ? c.policy : undefined,
      prio: typeof c.prio === "number" ? c.prio : undefined,
    });
  }
  return out;
}

export interface NftPlan {
  readonly inSync: boolean;
  readonly lines: readonly string[];
  /** The `nft -f -` input; empty when in sync. */
  readonly script: string;
  readonly usesRandomFully: boolean;
}

const TABLE = `ip ${Owned.nftTable}`;

/** The desired chains with rendered rules (chains whose rules are `null` are left out). */
function desiredChains(
  desired: DesiredRules,
  options: NftRenderOptions,
): Map<"forward" | "postrouting", string[]> {
  const out = new Map<"forward" | "postrouting", string[]>();
  if (desired.forward !== null)
    out.set(
      "forward",
      desired.forward.map((r) => renderNftRule(r, options)),
    );
  if (desired.postrouting !== null) {
    out.set(
      "postrouting",
      desired.postrouting.map((r) => renderNftRule(r, options)),
    );
  }
  return out;
}

/** The full `nft -f` script that replaces our table by the desired one (or deletes it). */
export function renderNftScript(
  desired: DesiredRules,
  options: NftRenderOptions,
  actual: NftTableState | null = null,
): string {
  const chains = desiredChains(desired, options);
  if (chains.size === 0) return `add table ${TABLE}\ndelete table ${TABLE}\n`;
  // Rebuilding the whole table re-registers its hooks, and a flow that starts in that moment can
  // miss NAT. So the table and its base chains stay, and only their rules are flushed and refilled
  // inside the transaction; the rebuild remains for a table holding things that are not ours or a
  // chain whose hook definition must change.
  const rebuild =
    actual !== null &&
    (actual.foreign.length > 0 ||
      [...chains.keys()].some((name) => {
        const def = actual.chains.get(name);
        return def !== undefined && !sameDef(def, CHAIN_DEFS[name]);
      }));
  const lines = [`add table ${TABLE}`];
  if (rebuild) {
    lines.push(`delete table ${TABLE}`, `table ${TABLE} {`);
    for (const [name, rules] of chains) {
      lines.push(`  chain ${name} {`, `    ${CHAIN_HEADERS[name]}`, ...rules.map((r) => `    ${r}`), "  }");
    }
    lines.push("}");
    return `${lines.join("\n")}\n`;
  }
  for (const [name, rules] of chains) {
    lines.push(`add chain ${TABLE} ${name} { ${CHAIN_HEADERS[name]} }`, `flush chain ${TABLE} ${name}`);
    for (const rule of rules) lines.push(`add rule ${TABLE} ${name} ${rule}`);
  }
  for (const name of actual?.chains.keys() ?? []) {
    if (!chains.has(name as "forward" | "postrouting")) {
      lines.push(`flush chain ${TABLE} ${name}`, `delete chain ${TABLE} ${name}`);
    }
  }
  return `${lines.join("\n")}\n`;
}

const sameDef = (a: Partial<NftChainDef> | undefined, b: NftChainDef): boolean =>
  a !== undefined && a.type === b.type && a.hook === b.hook && a.prio === b.prio && a.policy === b.policy;

const describeDef = (d: Partial<NftChainDef>): string =>
  `type ${d.type ?? "-"} hook ${d.hook ?? "-"} prio ${d.prio ?? "-"} policy ${d.policy ?? "-"}`;

/** Plans the transaction that makes `actual` (null: table absent) equal `desired`. Pure. */
export function planNft(
  desired: DesiredRules,
  actual: NftTableState | null,
  options: NftRenderOptions & { readonly force?: boolean | undefined },
): NftPlan {
  const want = desiredChains(desired, options);
  const lines: string[] = [];
  if (actual === null) {
    if (want.size > 0) lines.push(`nft: + table ${TABLE}`);
  } else if (want.size === 0) {
    lines.push(`nft: - table ${TABLE}`);
  }
  if (actual !== null && want.size > 0) {
    for (const name of actual.chains.keys()) {
      if (!want.has(name as "forward" | "postrouting")) lines.push(`nft: - chain ${name}`);
    }
    for (const item of actual.foreign) lines.push(`nft: - ${item}`);
  }
  for (const [name, rules] of want) {
    const def = actual?.chains.get(name);
    if (actual !== null && def === undefined) lines.push(`nft: + chain ${name}`);
    if (def !== undefined && !sameDef(def, CHAIN_DEFS[name])) {
      lines.push(`nft: ~ chain ${name}: ${describeDef(def)} → ${describeDef(CHAIN_DEFS[name])}`);
    }
    const have = actual?.rules.get(name) ?? [];
    const removed = have.filter((r) => !rules.includes(r));
    const added = rules.filter((r) => !have.includes(r));
    for (const r of removed) lines.push(`nft: - ${name}: ${r}`);
    for (const r of added) lines.push(`nft: + ${name}: ${r}`);
    if (removed.length === 0 && added.length === 0 && have.join("\n") !== rules.join("\n")) {
      lines.push(`nft: ~ ${name}: rule order or duplicates differ`);
    }
  }
  if (lines.length === 0 && options.force === true && want.size > 0)
    lines.push(`nft: = table ${TABLE} (forced)`);
  if (lines.length === 0) return { inSync: true, lines, script: "", usesRandomFully: false };
  const script = renderNftScript(desired, options, actual);
  return { inSync: false, lines, script, usesRandomFully: script.includes("fully-random") };
}
