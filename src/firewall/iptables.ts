/**
 * The iptables dataplane. Each convergence is one `iptables-save` (the only exec when nothing drifted)
 * and, on drift, one `iptables-restore --noflush --wait` transaction that re-declares and refills our
 * chains and fixes the jumps; see `iptables-text.ts` for the script rules and `rules.ts` for ownership.
 *
 * How this avoids flanneld's bugs:
 * - #2237 (egress lost while flanneld restarts): no separate flush at startup; a restarted agent that
 *   finds its chains intact runs nothing, and a drifted chain is flushed and refilled in one commit.
 * - #1337 (resync blind to order and duplicates): the read-back compares each chain rule by rule, in
 *   order, and requires exactly one jump; anything else is drift.
 * - #1317 (legacy vs nf_tables split): weft uses whichever `iptables-restore` the host's alternatives
 *   select, like Docker and kube-proxy on the same host; `restoreCommand`/`saveCommand` override it.
 * - one exec per rule (`iptables -C` ×12 every 5 s): replaced by one read.
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
import {
  type IptablesPlan,
  ownedChains,
  parseIptablesSave,
  planIptables,
  type SavedRuleset,
} from "./iptables-text.ts";
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

export interface IptablesOptions {
  readonly run: CommandRunner;
  readonly spec: FirewallSpec;
  /** Known MASQUERADE --random-fully support; detected on the first failed transaction when omitted. */
  readonly randomFully?: boolean | undefined;
  readonly saveCommand?: readonly string[] | undefined;
  readonly restoreCommand?: readonly string[] | undefined;
}

const MODE = "iptables" as const;

export class IptablesFirewall implements Firewall {
  readonly mode = MODE;
  readonly #run: CommandRunner;
  readonly #save: readonly string[];
  readonly #restore: readonly string[];
  readonly #serial = new Serial();
  #spec: FirewallSpec;
  #randomFully: boolean | undefined;

  constructor(options: IptablesOptions) {
    this.#run = options.run;
    this.#spec = normalizeSpec(options.spec);
    this.#randomFully = options.randomFully;
    this.#save = options.saveCommand ?? ["iptables-save"];
    this.#restore = options.restoreCommand ?? ["iptables-restore", "--noflush", "--wait"];
  }

  setSpec(spec: FirewallSpec): void {
    this.#spec = normalizeSpec(spec);
  }

  async plan(): Promise<FirewallPlan> {
    const saved = await this.#read();
    const plan = this.#plan(desiredRules(this.#spec), saved, false, this.#randomFully ?? true);
    const steps: PlanStep[] = plan.inSync ? [] : [{ command: this.#restore, input: plan.script }];
    return { mode: MODE, inSync: plan.inSync, lines: plan.lines, steps, findings: this.#findings(saved) };
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
    const chains = ownedChains(desiredRules(this.#spec), { randomFully: this.#randomFully ?? true });
    return {
      mode: MODE,
      owns: [
        `filter chain ${Owned.forwardChain} and its jump from FORWARD (comment "${Owned.forwardComment}")`,
        `nat chain ${Owned.postroutingChain} and its jump from POSTROUTING (comment "${Owned.masqComment}")`,
      ],
      desired: chains.flatMap((c) => (c.rules ?? []).map((r) => `-t ${c.table} -A ${c.chain} ${r}`)),
      randomFully: this.#randomFully,
    };
  }

  /** One `iptables-save`: every table, parsed. */
  async #read(): Promise<SavedRuleset> {
    const result = await this.#run(this.#save);
    if (result.code !== 0) throw FirewallError.fromCommand("reading iptables", this.#save, result);
    return parseIptablesSave(result.stdout);
  }

  #plan(desired: DesiredRules, saved: SavedRuleset, force: boolean, randomFully: boolean): IptablesPlan {
    return planIptables(desired, saved, { randomFully, force });
  }

  async #converge(desired: DesiredRules, force: boolean): Promise<ApplyResult> {
    let lastError: FirewallError | undefined;
    // One retry with a fresh read, as felix does: another writer may have changed the tables between our
    // save and our restore (a `-D` of a rule that vanished fails the whole transaction, harmlessly).
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const saved = await this.#read();
      const findings = this.#findings(saved);
      const plan = this.#plan(desired, saved, force, this.#randomFully ?? true);
      if (plan.inSync) {
        if (this.#randomFully === undefined && desired.postrouting !== null) this.#randomFully = true;
        return { changed: false, lines: [], findings };
      }
      const first = await this.#restoreScript(plan.script);
      if (first === undefined) {
        if (plan.usesRandomFully) this.#randomFully = true;
        return { changed: true, lines: plan.lines, findings };
      }
      lastError = first;
      if (plan.usesRandomFully && this.#randomFully === undefined) {
        const fallback = this.#plan(desired, saved, force, false);
        const second = await this.#restoreScript(fallback.script);
        if (second === undefined) {
          this.#randomFully = false;
          return { changed: true, lines: fallback.lines, findings: [...findings, randomFullyFinding(first)] };
        }
        lastError = second;
      }
    }
    throw lastError;
  }

  /** Runs one restore; returns the error instead of throwing so the caller can fall back or retry. */
  async #restoreScript(script: string): Promise<FirewallError | undefined> {
    const result = await this.#run(this.#restore, script);
    if (result.code === 0) return undefined;
    return FirewallError.fromCommand("applying iptables rules", this.#restore, result, script);
  }

  #findings(saved: SavedRuleset): Finding[] {
    const policy = saved.get("filter")?.chains.get("FORWARD");
    if (policy === "DROP" && !this.#spec.forwardRules) {
      return [
        {
          code: FindingCode.ForwardDropWithoutRules,
          severity: Severity.Warning,
          subject: "iptables filter FORWARD",
          value: policy,
          message: `the FORWARD chain drops by policy and --iptables-forward-rules is off, so traffic of ${this.#spec.network} routed through this host is dropped; enable --iptables-forward-rules or accept ${this.#spec.network} in FORWARD yourself`,
        },
      ];
    }
    return [];
  }
}

function randomFullyFinding(error: FirewallError): Finding {
  return {
    code: FindingCode.RandomFullyUnsupported,
    severity: Severity.Warning,
    subject: "MASQUERADE --random-fully",
    value: error.stderr.trim(),
    message:
      "iptables or the kernel refused MASQUERADE --random-fully; masquerade rules run without it (source ports are then chosen sequentially, which can collide under heavy SNAT load)",
  };
}
