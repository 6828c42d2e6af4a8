/**
 * The nftables dataplane (network config `EnableNFTables: true`): weft's own `table ip weft` with base
 * chains `forward` (filter hook, priority filter) and `postrouting` (nat hook, priority srcnat), the same
 * rules as the iptables mode (see `rules.ts`), replaced in one `nft -f -` transaction and verified by one
 * `nft -j list table ip weft`. The table is recognised as ours by its name; its rules also carry the
 * `weft:fwd` / `weft:masq` comments.
 *
 * Why there is an iptables bridge. An `accept` in one nftables base chain only ends that chain: every
 * other base chain on the same hook still sees the packet, and a drop anywhere wins. Docker (through
 * iptables-nft) sets the `ip filter FORWARD` chain's policy to DROP, so our `forward` accept alone
 * does not let pod traffic through (tested in test/netns/firewall-nft.test.ts; flanneld's nftables mode
 * has this problem). So each convergence also reads `nft -j list chains` (one more exec, no rules):
 * - when iptables' `FORWARD` chain exists and forward rules are on, the iptables `WEFT-FWD` accept and
 *   its jump are kept there too (the iptables mode with `ipMasq: false`), which is what makes traffic
 *   pass; a finding says so;
 * - otherwise any WEFT-FWD/WEFT-POSTRTG left from an earlier iptables-mode run is removed (after our
 *   table is in place, so there is no gap when switching modes);
 * - any other forward-hook base chain with policy drop (a native nftables ruleset, firewalld) is
 *   reported as a finding: the operator must accept the Network there, weft does not edit foreign
 *   tables. A drop *rule* in such a chain cannot be seen without reading the whole ruleset; the
 *   operator is responsible for it.
 */
import { FirewallError } from "./errors.ts";
import { type Finding, FindingCode, Severity } from "./findings.ts";
import type {
  ApplyOptions,
  ApplyResult,
  Firewall,
  FirewallDescription,
  FirewallPlan,
  PlanStep,
} from "./firewall.ts";
import { IptablesFirewall } from "./iptables.ts";
import {
  type NftChainInfo,
  type NftTableState,
  parseNftChains,
  parseNftTable,
  planNft,
  renderNftRule,
} from "./nftables-text.ts";
import {
  type DesiredRules,
  desiredRules,
  type FirewallSpec,
  NO_RULES,
  normalizeSpec,
  Owned,
} from "./rules.ts";
import type { CommandRunner } from "./runner.ts";
import { Serial } from "./serial.ts";

export interface NftablesOptions {
  readonly run: CommandRunner;
  readonly spec: FirewallSpec;
  /** Known `masquerade fully-random` support; detected on the first failed transaction when omitted. */
  readonly randomFully?: boolean | undefined;
  /** Keep the iptables WEFT-FWD accept when iptables' FORWARD chain exists (default true). */
  readonly iptablesBridge?: boolean | undefined;
}

const MODE = "nftables" as const;
const LIST_TABLE = ["nft", "-j", "list", "table", "ip", Owned.nftTable] as const;
const LIST_CHAINS = ["nft", "-j", "list", "chains"] as const;
const APPLY = ["nft", "-f", "-"] as const;

const isIptablesForward = (c: NftChainInfo): boolean =>
  c.family === "ip" && c.table === "filter" && c.name === "FORWARD" && c.hook === "forward";
const isIptablesLeftover = (c: NftChainInfo): boolean =>
  c.family === "ip" &&
  ((c.table === "filter" && c.name === Owned.forwardChain) ||
    (c.table === "nat" && c.name === Owned.postroutingChain));

export class NftablesFirewall implements Firewall {
  readonly mode = MODE;
  readonly #run: CommandRunner;
  readonly #bridgeEnabled: boolean;
  readonly #bridge: IptablesFirewall;
  readonly #serial = new Serial();
  #spec: FirewallSpec;
  #randomFully: boolean | undefined;

  constructor(options: NftablesOptions) {
    this.#run = options.run;
    this.#spec = normalizeSpec(options.spec);
    this.#randomFully = options.randomFully;
    this.#bridgeEnabled = options.iptablesBridge ?? true;
    this.#bridge = new IptablesFirewall({ run: options.run, spec: bridgeSpec(this.#spec) });
  }

  setSpec(spec: FirewallSpec): void {
    this.#spec = normalizeSpec(spec);
    this.#bridge.setSpec(bridgeSpec(this.#spec));
  }

  async plan(): Promise<FirewallPlan> {
    const desired = desiredRules(this.#spec);
    const actual = await this.#read();
    const plan = planNft(desired, actual, { randomFully: this.#randomFully ?? true });
    const steps: PlanStep[] = plan.inSync ? [] : [{ command: APPLY, input: plan.script }];
    const chains = await this.#chains();
    const lines = [...plan.lines];
    const bridge = this.#bridgeAction(desired, chains);
    if (bridge !== "none") {
      const other = bridge === "apply" ? await this.#bridge.plan() : await this.#bridgePlanRemove();
      lines.push(...other.lines);
      steps.push(...other.steps);
    }
    const findings = this.#findings(desired, chains);
    return { mode: MODE, inSync: lines.length === 0, lines, steps, findings };
  }

  apply(options: ApplyOptions = {}): Promise<ApplyResult> {
    return this.#serial.run(() => this.#converge(desiredRules(this.#spec), options.force === true));
  }

  ensure(): Promise<ApplyResult> {
    return this.#serial.run(() => this.#converge(desiredRules(this.#spec), false));
  }

  remove(): Promise<ApplyResult> {
    return this.#serial.run(() => this.#converge(NO_RULES, false));
  }

  describe(): FirewallDescription {
    const desired = desiredRules(this.#spec);
    const options = { randomFully: this.#randomFully ?? true };
    return {
      mode: MODE,
      owns: [
        `nftables table ip ${Owned.nftTable} (chains ${Owned.nftForwardChain}, ${Owned.nftPostroutingChain})`,
        `iptables filter chain ${Owned.forwardChain} and its FORWARD jump, while iptables' FORWARD chain exists`,
      ],
      desired: [
        ...(desired.forward ?? []).map((r) => `forward: ${renderNftRule(r, options)}`),
        ...(desired.postrouting ?? []).map((r) => `postrouting: ${renderNftRule(r, options)}`),
      ],
      randomFully: this.#randomFully,
    };
  }

  /** One `nft -j list table ip weft`; null when the table does not exist. */
  async #read(): Promise<NftTableState | null> {
    const result = await this.#run(LIST_TABLE);
    if (result.code === 0) return parseNftTable(result.stdout);
    if (/no such file or directory/i.test(result.stderr)) return null;
    throw FirewallError.fromCommand("reading nftables table", LIST_TABLE, result);
  }

  /** One `nft -j list chains` (definitions of every chain, no rules). */
  async #chains(): Promise<NftChainInfo[]> {
    const result = await this.#run(LIST_CHAINS);
    if (result.code !== 0) throw FirewallError.fromCommand("listing nftables chains", LIST_CHAINS, result);
    return parseNftChains(result.stdout);
  }

  async #converge(desired: DesiredRules, force: boolean): Promise<ApplyResult> {
    const table = await this.#convergeTable(desired, force);
    const chains = await this.#chains();
    const findings = [...table.findings, ...this.#findings(desired, chains)];
    const action = this.#bridgeAction(desired, chains);
    if (action === "none") return { ...table, findings };
    const bridged = action === "apply" ? await this.#bridge.apply() : await this.#bridge.remove();
    return {
      changed: table.changed || bridged.changed,
      lines: [...table.lines, ...bridged.lines],
      findings: [...findings, ...bridged.findings],
    };
  }

  async #convergeTable(desired: DesiredRules, force: boolean): Promise<ApplyResult> {
    let lastError: FirewallError | undefined;
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const actual = await this.#read();
      const plan = planNft(desired, actual, { randomFully: this.#randomFully ?? true, force });
      if (plan.inSync) return { changed: false, lines: [], findings: [] };
      const first = await this.#transaction(plan.script);
      if (first === undefined) {
        if (plan.usesRandomFully) this.#randomFully = true;
        return { changed: true, lines: plan.lines, findings: [] };
      }
      lastError = first;
      if (plan.usesRandomFully && this.#randomFully === undefined) {
        const fallback = planNft(desired, actual, { randomFully: false, force });
        const second = await this.#transaction(fallback.script);
        if (second === undefined) {
          this.#randomFully = false;
          return { changed: true, lines: fallback.lines, findings: [randomFullyFinding(first)] };
        }
        lastError = second;
      }
    }
    throw lastError;
  }

  async #transaction(script: string): Promise<FirewallError | undefined> {
    const result = await this.#run(APPLY, script);
    if (result.code === 0) return undefined;
    return FirewallError.fromCommand("applying nftables rules", APPLY, result, script);
  }

  #bridgeAction(desired: DesiredRules, chains: readonly NftChainInfo[]): "apply" | "remove" | "none" {
    if (this.#bridgeEnabled && desired.forward !== null && chains.some(isIptablesForward)) return "apply";
    return chains.some(isIptablesLeftover) ? "remove" : "none";
  }

  async #bridgePlanRemove(): Promise<FirewallPlan> {
    const removal = new IptablesFirewall({
      run: this.#run,
      spec: { ...this.#spec, forwardRules: false, ipMasq: false },
    });
    return removal.plan();
  }

  #findings(desired: DesiredRules, chains: readonly NftChainInfo[]): Finding[] {
    const findings: Finding[] = [];
    if (desired.forward === null) return findings;
    const bridged = this.#bridgeEnabled && chains.some(isIptablesForward);
    for (const c of chains) {
      if (c.hook !== "forward" || c.table === Owned.nftTable) continue;
      if (isIptablesForward(c) && bridged) {
        findings.push({
          code: FindingCode.IptablesForwardBridge,
          severity: Severity.Info,
          subject: "ip filter FORWARD",
          value: c.policy,
          message: `iptables' FORWARD chain exists (policy ${c.policy ?? "?"}); an accept in table ip ${Owned.nftTable} cannot override it, so the ${Owned.forwardChain} accept for ${this.#spec.network} is kept in iptables too`,
        });
      } else if (c.policy === "drop") {
        findings.push({
          code: FindingCode.ForeignForwardDrop,
          severity: Severity.Warning,
          subject: `${c.family} ${c.table} ${c.name}`,
          value: c.policy,
          message: `forward-hook chain ${c.family} ${c.table} ${c.name} drops by policy, which overrides the accept in table ip ${Owned.nftTable}; add "ip saddr ${this.#spec.network} accept" and "ip daddr ${this.#spec.network} accept" to that chain`,
        });
      }
    }
    return findings;
  }
}

/** The iptables half of the bridge: forward accept only, never masquerade (nftables does that). */
function bridgeSpec(spec: FirewallSpec): FirewallSpec {
  return { ...spec, ipMasq: false, forwardRules: true };
}

function randomFullyFinding(error: FirewallError): Finding {
  return {
    code: FindingCode.RandomFullyUnsupported,
    severity: Severity.Warning,
    subject: "masquerade fully-random",
    value: error.stderr.trim(),
    message: "nft or the kernel refused `masquerade fully-random`; masquerade rules run without it",
  };
}
