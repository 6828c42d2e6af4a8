/**
 * The printed result of test/bench/scale.bench.ts, as markdown tables: initial sync against N (weft,
 * flanneld, the two kernel floors, the ratios and targets), event latency under churn, idle CPU and
 * memory, start → ready; then notes saying how each side ran and why a figure is missing.
 */
import type { AgentKind } from "./agent-fixtures.ts";
import { CAP_MS, CHURN, type ChurnResult, type IdleResult, type ScalePhase } from "./scale-fixtures.ts";
import { percentile, markdownTable as table } from "./stats.ts";

/** The sides of the initial-sync table, in the order they run in each round. */
export const SYNC_SIDES = ["weft", "floor-inline", "floor-nexthop", "flanneld"] as const;
export type SyncSide = (typeof SYNC_SIDES)[number];

/** weft's targets from issue #13. */
export const FLOOR_TARGET = 1.5;
export const FLANNELD_TARGET = 150;
export const FLANNELD_TARGET_N = 5_000;
const CHURN_P99_TARGET_MS = 20;

export interface SyncSample {
  readonly warmup: boolean;
  /** Start (or spawn of `ip`) → done, ms; undefined when capped. */
  readonly ms: number | undefined;
  /** Peer routes the monitor counted at the end. */
  readonly reached: number;
  /** Peer routes `ip route show` (agents) or a dump (floor) counted at the end. */
  readonly counted: number;
}

export interface ScaleResults {
  /** Per N, per side: every sync sample (warm-ups flagged). */
  readonly sync: Map<number, Map<SyncSide, SyncSample[]>>;
  readonly idle: { kind: AgentKind; n: number; result?: IdleResult; missing?: string }[];
  readonly churn: { kind: AgentKind; n: number; result?: ChurnResult; missing?: string }[];
  readonly ready: {
    n: number;
    kind: AgentKind;
    notifyMs: number[];
    readyzMs: number[];
    failures: string[];
  }[];
  /** Errors and remarks, in the order they happened. */
  readonly notes: string[];
}

export interface ScaleReport {
  readonly results: ScaleResults;
  readonly sizes: readonly number[];
  readonly phases: readonly ScalePhase[];
  readonly etcdVersion: string;
  readonly flanneldVersion: string;
  readonly weftNote: string;
  readonly flanneldNote: string;
  /** "commit abc1234" or "uncommitted tree at abc1234". */
  readonly revision: string;
  readonly loadBefore: string;
  readonly loadAfter: string;
  /** 1-minute load averages sampled every 10 s during the run. */
  readonly loadSamples: readonly number[];
  readonly elapsedS: number;
  readonly chart: string;
}

const fmtMs = (v: number | undefined) =>
  v === undefined || Number.isNaN(v) ? "-" : v < 10 ? v.toFixed(2) : v < 1_000 ? v.toFixed(1) : v.toFixed(0);
const fmtN = (n: number) => n.toLocaleString("en");
const p50 = (v: readonly number[]) => (v.length === 0 ? Number.NaN : percentile(v, 50));
const p99 = (v: readonly number[]) => (v.length === 0 ? Number.NaN : percentile(v, 99));
const max = (v: readonly number[]) => (v.length === 0 ? Number.NaN : Math.max(...v));
const mib = (kib: number) => (kib / 1024).toFixed(1);

/** The measured (non-warm-up) samples of one side at one N. */
export function measuredOf(results: ScaleResults, n: number, side: SyncSide): SyncSample[] {
  return (results.sync.get(n)?.get(side) ?? []).filter((s) => !s.warmup);
}

/** The p50 of a side's sync times, with a capped run as +∞ (so that a majority of capped runs says "> cap"). */
export function syncP50(samples: readonly SyncSample[]): number {
  return p50(samples.map((s) => s.ms ?? Number.POSITIVE_INFINITY));
}

function syncCell(samples: readonly SyncSample[]): string {
  if (samples.length === 0) return "-";
  const mid = syncP50(samples);
  if (mid === Number.POSITIVE_INFINITY) {
    const reached = Math.max(...samples.map((s) => s.reached));
    return `> ${CAP_MS / 1000} s (reached ${fmtN(reached)})`;
  }
  const times = samples.map((s) => s.ms ?? Number.POSITIVE_INFINITY);
  const hi = Math.max(...times);
  return `${fmtMs(mid)} (${fmtMs(Math.min(...times))}–${hi === Number.POSITIVE_INFINITY ? `> ${CAP_MS / 1000} s` : fmtMs(hi)})`;
}

/** The better (lower p50) of the two kernel floors. */
export function bestFloor(results: ScaleResults, n: number): number {
  const a = syncP50(measuredOf(results, n, "floor-inline"));
  const b = syncP50(measuredOf(results, n, "floor-nexthop"));
  return Math.min(
    Number.isNaN(a) ? Number.POSITIVE_INFINITY : a,
    Number.isNaN(b) ? Number.POSITIVE_INFINITY : b,
  );
}

function syncTable(report: ScaleReport): string {
  const r = report.results;
  const rows = report.sizes
    .filter((n) => r.sync.has(n))
    .map((n) => {
      const weft = measuredOf(r, n, "weft");
      const fl = measuredOf(r, n, "flanneld");
      const w = syncP50(weft);
      const f = syncP50(fl);
      const floor = bestFloor(r, n);
      const overFloor = Number.isFinite(w) && Number.isFinite(floor) ? `${(w / floor).toFixed(2)}×` : "-";
      const flOverWeft =
        !Number.isFinite(w) || fl.length === 0
          ? "-"
          : f === Number.POSITIVE_INFINITY
            ? `> ${(CAP_MS / w).toFixed(0)}×`
            : `${(f / w).toFixed(1)}×`;
      const counts = SYNC_SIDES.map((side) => measuredOf(r, n, side).length).join(" / ");
      return [
        fmtN(n),
        syncCell(weft),
        syncCell(fl),
        syncCell(measuredOf(r, n, "floor-inline")),
        syncCell(measuredOf(r, n, "floor-nexthop")),
        overFloor,
        flOverWeft,
        counts,
      ];
    });
  return table(
    [
      "N",
      "weft, ms p50 (min–max)",
      "flanneld",
      "floor: ip -batch, inline via",
      "floor: ip -batch, nexthop + nhid",
      `weft ÷ best floor (≤ ${FLOOR_TARGET})`,
      `flanneld ÷ weft (≥ ${FLANNELD_TARGET} at ${fmtN(FLANNELD_TARGET_N)})`,
      "rounds weft / inline / nexthop / flanneld",
    ],
    rows,
  );
}

function targetsLine(report: ScaleReport): string {
  const r = report.results;
  const parts: string[] = [];
  for (const n of report.sizes.filter((size) => r.sync.has(size))) {
    const w = syncP50(measuredOf(r, n, "weft"));
    const floor = bestFloor(r, n);
    if (!Number.isFinite(w) || !Number.isFinite(floor)) parts.push(`N=${fmtN(n)}: floor ratio not measured`);
    else
      parts.push(
        `N=${fmtN(n)}: weft ${(w / floor).toFixed(2)}× best floor, ${w / floor <= FLOOR_TARGET ? "met" : "NOT met"}`,
      );
  }
  const w5 = syncP50(measuredOf(r, FLANNELD_TARGET_N, "weft"));
  const f5 = syncP50(measuredOf(r, FLANNELD_TARGET_N, "flanneld"));
  if (Number.isFinite(w5) && !Number.isNaN(f5)) {
    const ratio = f5 / w5;
    parts.push(
      `flanneld ÷ weft at ${fmtN(FLANNELD_TARGET_N)}: ${Number.isFinite(ratio) ? ratio.toFixed(1) : "> cap"}×, ${ratio >= FLANNELD_TARGET ? "met" : "NOT met"}`,
    );
  } else parts.push(`flanneld ÷ weft at ${fmtN(FLANNELD_TARGET_N)}: not measured`);
  return `targets (p50): ${parts.join("; ")}`;
}

/** p50 / p99 / max of a latency series where each missed sample counts as "> timeout". */
function latencyCell(samples: readonly number[], missed: number): string {
  const all = [...samples, ...Array.from({ length: missed }, () => Number.POSITIVE_INFINITY)];
  const cell = (v: number) => (v === Number.POSITIVE_INFINITY ? `> ${CHURN.timeoutMs / 1000} s` : fmtMs(v));
  return `${cell(p50(all))} / ${cell(p99(all))} / ${cell(max(all))}`;
}

/** The churn target, in words. */
function churnLine(report: ScaleReport): string | undefined {
  const weft = report.results.churn.find((c) => c.kind === "weft")?.result;
  if (weft === undefined) return undefined;
  const all = [...weft.putMs, ...Array.from({ length: weft.putMissed }, () => Number.POSITIVE_INFINITY)];
  const v = p99(all);
  return `target: weft put → route p99 ≤ ${CHURN_P99_TARGET_MS} ms: ${Number.isFinite(v) ? `${fmtMs(v)} ms` : "> timeout"}, ${v <= CHURN_P99_TARGET_MS ? "met" : "NOT met"}; a missed operation (not seen within ${CHURN.timeoutMs / 1000} s) counts as "> ${CHURN.timeoutMs / 1000} s" in the percentiles`;
}

function churnTable(report: ScaleReport): string {
  const rows = report.results.churn.map(({ kind, n, result, missing }) => {
    if (result === undefined) return [`${kind} (N = ${fmtN(n)})`, `not measured: ${missing ?? "?"}`];
    return [
      `${kind} (N = ${fmtN(n)})`,
      String(result.putMs.length + result.putMissed),
      latencyCell(result.putMs, result.putMissed),
      String(result.putMissed),
      String(result.delMs.length + result.delMissed),
      latencyCell(result.delMs, result.delMissed),
      String(result.delMissed),
      `${result.achievedRate.toFixed(1)} (lag max ${fmtMs(result.lagMaxMs)} ms)`,
      fmtMs(p50(result.putRttMs)),
      fmtMs(result.agentCpuMsPerS),
      `${result.failed} / ${result.monitorOverruns}`,
    ];
  });
  return table(
    [
      "agent",
      "puts",
      `put → route p50 / p99 / max ms (p99 ≤ ${CHURN_P99_TARGET_MS})`,
      "missed",
      "deletes",
      "delete → route gone p50 / p99 / max ms",
      "missed",
      "ops/s sent",
      "put RTT p50 ms",
      "agent CPU ms/s",
      "failed requests / monitor overruns",
    ],
    rows,
  );
}

function idleTable(report: ScaleReport): string {
  const order = (kind: AgentKind) => (kind === "weft" ? 0 : 1);
  const sorted = [...report.results.idle].sort((a, b) => a.n - b.n || order(a.kind) - order(b.kind));
  const rows = sorted.map(({ kind, n, result, missing }) => {
    if (result === undefined) return [kind, fmtN(n), `not measured: ${missing ?? "?"}`];
    const m = result.memory;
    return [
      kind,
      fmtN(n),
      fmtN(result.peerRoutes),
      result.cpuMsPerS.toFixed(2),
      mib(m.vmRssKiB),
      mib(m.anonKiB),
      mib(m.fileKiB),
      mib(m.shmemKiB),
      mib(m.hwmKiB),
      result.ageS.toFixed(0),
    ];
  });
  return table(
    [
      "agent",
      "N",
      "peer routes",
      "idle CPU ms/s (30 s)",
      "VmRSS MiB",
      "RssAnon",
      "RssFile",
      "RssShmem",
      "VmHWM",
      "age s",
    ],
    rows,
  );
}

function readyTable(report: ScaleReport): string {
  const rows: string[][] = [];
  for (const n of [...new Set(report.results.ready.map((x) => x.n))]) {
    const of = (kind: AgentKind) => report.results.ready.find((x) => x.n === n && x.kind === kind);
    const weft = of("weft");
    const fl = of("flanneld");
    const ratio =
      weft !== undefined && fl !== undefined && weft.notifyMs.length > 0 && fl.notifyMs.length > 0
        ? `${(p50(fl.notifyMs) / p50(weft.notifyMs)).toFixed(1)}×`
        : "-";
    const row = (kind: string, signal: string, v: readonly number[], failures: number, last: string) => [
      fmtN(n),
      kind,
      signal,
      String(v.length),
      fmtMs(p50(v)),
      fmtMs(p99(v)),
      fmtMs(max(v)),
      String(failures),
      last,
    ];
    if (weft !== undefined) {
      rows.push(row("weft", "READY=1", weft.notifyMs, weft.failures.length, ""));
      rows.push(row("weft", "/readyz 200", weft.readyzMs, weft.failures.length, ""));
    }
    if (fl !== undefined) rows.push(row("flanneld", "READY=1", fl.notifyMs, fl.failures.length, ratio));
  }
  return table(
    ["N", "agent", "signal", "n", "p50 ms", "p99 ms", "max ms", "failed", "flanneld ÷ weft (READY=1 p50)"],
    rows,
  );
}

function loadLine(report: ScaleReport): string {
  const s = report.loadSamples;
  const during =
    s.length === 0
      ? "no samples"
      : `min ${Math.min(...s).toFixed(2)}, p50 ${p50(s).toFixed(2)}, max ${Math.max(...s).toFixed(2)} over ${s.length} samples`;
  return `load average (1/5/15 min): before ${report.loadBefore}, after ${report.loadAfter}; 1-min load during the run (every 10 s): ${during}`;
}

export function printReport(report: ScaleReport): void {
  const phases = report.phases;
  console.log(
    `scale.bench: host-gw, etcd ${report.etcdVersion} in the segment, Bun ${Bun.version}, ${navigator.hardwareConcurrency} CPUs, ` +
      `flanneld ${report.flanneldVersion}; weft at ${report.revision}; ran ${(report.elapsedS / 60).toFixed(1)} min`,
  );
  console.log(loadLine(report));
  if (phases.includes("sync") && report.results.sync.size > 0) {
    console.log(
      "\n### Initial sync: process start → all N peer routes in the kernel (ip -batch: spawn → exit)\n",
    );
    console.log(syncTable(report));
    console.log(`\n- ${targetsLine(report)}`);
  }
  if (report.results.churn.length > 0) {
    console.log("\n### Event latency under churn (store request → route event)\n");
    console.log(churnTable(report));
    const line = churnLine(report);
    if (line !== undefined) console.log(`\n- ${line}`);
  }
  if (report.results.idle.length > 0) {
    console.log("\n### Idle CPU and memory (synced, 30 s window)\n");
    console.log(idleTable(report));
  }
  if (report.results.ready.length > 0) {
    console.log("\n### Start → ready (weft and flanneld alternating)\n");
    console.log(readyTable(report));
  }
  console.log("");
  for (const note of [
    `weft ${report.weftNote}`,
    `flanneld: ${report.flanneldNote}`,
    ...report.results.notes,
    report.chart,
  ])
    console.log(`- ${note}`);
}
