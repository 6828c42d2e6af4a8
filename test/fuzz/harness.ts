/**
 * Runs fuzz targets: `count` inputs per target from a seeded PRNG (each target its own stream, so a
 * target's inputs do not depend on which others run), timing each input. A finding is an input that
 * threw what the target does not allow, broke an invariant, or took longer than `slowMs` (a hang in
 * the making: a catastrophic regular expression, a quadratic loop). Findings are grouped by kind,
 * each with its first input's index, so `run.ts --replay` can show it again.
 */
import { Rng } from "./prng.ts";
import type { FuzzTarget } from "./target.ts";

export interface Finding {
  /** `<error name>: <first line of the message>` or `slow`. */
  readonly kind: string;
  /** How many inputs hit it. */
  count: number;
  /** The first input that hit it. */
  readonly index: number;
  readonly input: string;
  /** Where it was thrown (the first frames of the stack). */
  readonly where: string;
}

export interface TargetResult {
  readonly name: string;
  readonly inputs: number;
  readonly ms: number;
  /** The slowest input, ms. */
  readonly slowestMs: number;
  readonly findings: readonly Finding[];
}

export interface RunOptions {
  readonly seed: number;
  readonly count: number;
  /** An input slower than this is a finding (default 1 s). */
  readonly slowMs?: number;
}

/** The input as text for the report, cut to `max` characters. */
export function showInput(input: unknown, max = 300): string {
  const text = JSON.stringify(input, (_, v) => (typeof v === "bigint" ? `${v}n` : v)) ?? String(input);
  return text.length > max ? `${text.slice(0, max)}… (${text.length} characters)` : text;
}

/** The PRNG of one target: the run's seed mixed with the target's name. */
export function targetRng(seed: number, name: string): Rng {
  let h = seed >>> 0;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return new Rng(h);
}

export function runTarget(target: FuzzTarget, options: RunOptions): TargetResult {
  const rng = targetRng(options.seed, target.name);
  const slowMs = options.slowMs ?? 1_000;
  const findings = new Map<string, Finding>();
  let slowest = 0;
  const started = performance.now();
  for (let index = 0; index < options.count; index++) {
    const input = target.generate(rng);
    const t0 = performance.now();
    let kind: string | undefined;
    let where = "";
    try {
      target.run(input);
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      kind = `${e.name}: ${e.message.split("\n")[0]?.slice(0, 160) ?? ""}`;
      where = (e.stack ?? "").split("\n").slice(1, 4).join(" | ").trim();
    }
    const ms = performance.now() - t0;
    slowest = Math.max(slowest, ms);
    if (kind === undefined && ms > slowMs) kind = `slow: ${ms.toFixed(0)} ms for one input`;
    if (kind === undefined) continue;
    // Group by the error class and the place, not by the message (it names the input).
    const group = `${kind.split(":")[0]} @ ${where.split(" | ")[0] ?? ""}`;
    const known = findings.get(group);
    if (known !== undefined) known.count++;
    else findings.set(group, { kind, count: 1, index, input: showInput(input), where });
  }
  return {
    name: target.name,
    inputs: options.count,
    ms: performance.now() - started,
    slowestMs: slowest,
    findings: [...findings.values()],
  };
}

/** The input a target generates at `index` for `seed` (to look at a finding again). */
export function replayInput(target: FuzzTarget, seed: number, index: number): unknown {
  const rng = targetRng(seed, target.name);
  let input: unknown;
  for (let i = 0; i <= index; i++) input = target.generate(rng);
  return input;
}
