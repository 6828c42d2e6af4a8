/**
 * The printed result of test/bench/agent.bench.ts: the latency table (weft next to flanneld), the
 * memory table (RSS at ~60 s with 1,000 peers, binary sizes) and the notes saying what was measured
 * how, and why a figure is missing.
 */
import { type InsideResult, JOINS, type MemoryReading, PEERS, type Phase } from "./agent-fixtures.ts";
import { percentile, table } from "./stats.ts";

export interface AgentReport {
  readonly etcdVersion: string;
  readonly flanneldVersion: string;
  readonly loadBefore: string;
  readonly loadAfter: string;
  readonly phases: readonly Phase[];
  /** Measured start runs per agent (after one warm-up). */
  readonly startRuns: number;
  readonly weft: InsideResult | undefined;
  readonly flanneld: InsideResult | undefined;
  /** How weft ran (compiled binary or source, and why). */
  readonly weftNote: string;
  /** Why flanneld has no figures, when it has none. */
  readonly flanneldMissing: string | undefined;
  /** build/test-bin.sh's BUILD-NOTE for flanneld ("" when none). */
  readonly flanneldBuildNote: string;
  readonly weftBinaryMiB: number | undefined;
  readonly flanneldBinaryMiB: number | undefined;
}

/** weft's targets from issue #6. */
const READY_TARGET_MS = 150;
const RSS_TARGET_MB = 60;
const MIB = 1024 * 1024;
const RSS_TARGET_MIB = (RSS_TARGET_MB * 1_000_000) / MIB;

const ms = (v: number) => (Number.isNaN(v) ? "-" : v < 10 ? v.toFixed(2) : v.toFixed(1));
const mib = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? "-" : v.toFixed(1));
const ok = (r: InsideResult | undefined): r is InsideResult => r !== undefined && r.error === undefined;
const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

/** A series of a measured agent, without its warm-up entry when it has one; [] for a failed agent. */
function measured(
  r: InsideResult | undefined,
  pick: (r: InsideResult) => number[],
  warmup = false,
): number[] {
  if (!ok(r)) return [];
  return warmup ? pick(r).slice(1) : pick(r);
}

function stat(samples: number[], which: "p50" | "max" | "p99"): number {
  if (samples.length === 0) return Number.NaN;
  if (which === "max") return Math.max(...samples);
  return percentile(samples, which === "p50" ? 50 : 99);
}

interface Row {
  readonly label: string;
  /** Rows of a phase that did not run are left out. */
  readonly phase: Phase;
  readonly pick: (r: InsideResult) => number[];
  /** The series' first entry is a warm-up run, left out of the table. */
  readonly warmup: boolean;
  /** Which upper statistic: "max" for the few start runs, "p99" for the event series. */
  readonly upper: "max" | "p99";
  readonly target: string;
}

const peers = PEERS.toLocaleString("en");
const ROWS: readonly Row[] = [
  {
    label: `start → /readyz 200 (${peers} leases)`,
    phase: "start",
    pick: (r) => r.readyMs,
    warmup: true,
    upper: "max",
    target: `≤ ${READY_TARGET_MS} ms`,
  },
  {
    label: "start → READY=1 (sd_notify)",
    phase: "start",
    pick: (r) => r.notifyMs,
    warmup: true,
    upper: "max",
    target: `≤ ${READY_TARGET_MS} ms`,
  },
  {
    label: `start → all ${peers} routes in kernel`,
    phase: "start",
    pick: (r) => r.routesMs,
    warmup: true,
    upper: "max",
    target: "",
  },
  {
    label: "store put (join) → route added",
    phase: "events",
    pick: (r) => r.joinMs,
    warmup: false,
    upper: "p99",
    target: "p99 ≤ 20 ms",
  },
  {
    label: "store delete (leave) → route removed",
    phase: "events",
    pick: (r) => r.leaveMs,
    warmup: false,
    upper: "p99",
    target: "p99 ≤ 20 ms",
  },
  {
    label: "route deleted → route back",
    phase: "repairs",
    pick: (r) => r.repairMs,
    warmup: false,
    upper: "p99",
    target: "p99 ≤ 100 ms",
  },
  {
    label: "(context) store put round trip",
    phase: "events",
    pick: (r) => r.putRttMs,
    warmup: false,
    upper: "p99",
    target: "",
  },
];

function latencyTable(report: AgentReport): string {
  return table(
    [
      "measurement (ms)",
      "n weft/fl",
      "weft p50",
      "weft p99|max",
      "flanneld p50",
      "flanneld p99|max",
      "fl/weft p50",
      "weft target",
    ],
    ROWS.filter((row) => report.phases.includes(row.phase)).map((row) => {
      const w = measured(report.weft, row.pick, row.warmup);
      const f = measured(report.flanneld, row.pick, row.warmup);
      const w50 = stat(w, "p50");
      const f50 = stat(f, "p50");
      return [
        row.label,
        `${w.length}/${f.length}`,
        ms(w50),
        w.length === 0 ? "-" : `${ms(stat(w, row.upper))} ${row.upper}`,
        ms(f50),
        f.length === 0 ? "-" : `${ms(stat(f, row.upper))} ${row.upper}`,
        Number.isNaN(w50) || Number.isNaN(f50) ? "-" : `${(f50 / w50).toFixed(1)}x`,
        row.target,
      ];
    }),
  );
}

/** The figures of one memory-table row, in MiB (undefined when not measured). */
interface MemoryFigures {
  readonly rss?: number | undefined;
  readonly anon?: number | undefined;
  readonly file?: number | undefined;
  readonly shmem?: number | undefined;
  readonly hwm?: number | undefined;
  readonly binary?: number | undefined;
}

function memoryFigures(m: MemoryReading | undefined, binaryMiB: number | undefined): MemoryFigures {
  const kib = (v: number | undefined) => (v === undefined ? undefined : v / 1024);
  return {
    rss: kib(m?.vmRssKiB),
    anon: kib(m?.anonKiB),
    file: kib(m?.fileKiB),
    shmem: kib(m?.shmemKiB),
    hwm: kib(m?.hwmKiB),
    binary: binaryMiB,
  };
}

function ratio(w: MemoryFigures, f: MemoryFigures): MemoryFigures {
  const div = (a: number | undefined, b: number | undefined) =>
    a === undefined || b === undefined || b === 0 ? undefined : a / b;
  return {
    rss: div(w.rss, f.rss),
    anon: div(w.anon, f.anon),
    file: div(w.file, f.file),
    shmem: div(w.shmem, f.shmem),
    hwm: div(w.hwm, f.hwm),
    binary: div(w.binary, f.binary),
  };
}

function memoryTable(report: AgentReport): string {
  const memoryOf = (r: InsideResult | undefined) => (ok(r) ? r.memory : undefined);
  const weft = memoryOf(report.weft);
  const flanneld = memoryOf(report.flanneld);
  const w = memoryFigures(weft, report.weftBinaryMiB);
  const f = memoryFigures(flanneld, report.flanneldBinaryMiB);
  const x = (v: number | undefined) => (v === undefined ? "-" : `${v.toFixed(2)}x`);
  const figures = (label: string, m: MemoryReading | undefined, v: MemoryFigures) => [
    label,
    m === undefined ? "-" : (m.ageMs / 1000).toFixed(1),
    m === undefined ? "-" : String(m.peerRoutes),
    ...[v.rss, v.anon, v.file, v.shmem, v.hwm, v.binary].map(mib),
  ];
  const r = ratio(w, f);
  return table(
    ["memory (MiB)", "age s", "peer routes", "RSS", "anon", "file", "shmem", "HWM", "binary"],
    [
      figures("weft", weft, w),
      figures("flanneld", flanneld, f),
      ["ratio weft÷flanneld", "", "", ...[r.rss, r.anon, r.file, r.shmem, r.hwm, r.binary].map(x)],
      ["weft target", "", "", `≤ ${RSS_TARGET_MIB.toFixed(1)} (${RSS_TARGET_MB} MB)`],
    ],
  );
}

/** weft against its targets, in words. */
function targetsLine(report: AgentReport): string {
  const verdict = (value: number, limit: number) =>
    Number.isNaN(value) ? "not measured" : value <= limit ? "met" : "NOT met";
  const rss = ok(report.weft) && report.weft.memory ? report.weft.memory.vmRssKiB / 1024 : Number.NaN;
  const readyMax = stat(
    measured(report.weft, (r) => r.readyMs, true),
    "max",
  );
  const notifyMax = stat(
    measured(report.weft, (r) => r.notifyMs, true),
    "max",
  );
  return (
    `weft targets: RSS ≤ ${RSS_TARGET_MB} MB (${RSS_TARGET_MIB.toFixed(1)} MiB): ${mib(rss)} MiB, ${verdict(rss, RSS_TARGET_MIB)}; ` +
    `start → ready ≤ ${READY_TARGET_MS} ms: /readyz max ${ms(readyMax)} ms, ${verdict(readyMax, READY_TARGET_MS)}; ` +
    `READY=1 max ${ms(notifyMax)} ms, ${verdict(notifyMax, READY_TARGET_MS)}`
  );
}

/** What timed out in the phases that ran. */
function missed(r: InsideResult, phases: readonly Phase[]): string {
  const parts = [
    ...(phases.includes("events") ? [`${r.joinMissed} joins, ${r.leaveMissed} leaves (5 s timeout)`] : []),
    ...(phases.includes("repairs")
      ? [`${r.repairMissed} repairs (${r.repairTimeoutMs / 1000} s timeout)`]
      : []),
  ];
  return parts.length === 0 ? "" : `missed: ${parts.join(", ")}; `;
}

function agentNotes(r: InsideResult, phases: readonly Phase[]): string[] {
  if (r.error !== undefined) return [`${r.kind}: FAILED: ${r.error}`];
  const first = (series: number[]) => ms(series[0] ?? Number.NaN);
  const notes = [
    `${r.kind}: warm-up start (not in the table) /readyz ${first(r.readyMs)} ms, READY=1 ${first(r.notifyMs)} ms, routes ${first(r.routesMs)} ms; ` +
      `prewrite of ${PEERS} leases ${ms(r.prewriteMs)} ms; ip route counted ${r.routesCounted.join(",")} peer routes after each start; ` +
      `${missed(r, phases)}monitor overruns ${r.monitorResyncs}`,
  ];
  if (r.memory !== undefined) {
    const m = r.memory;
    notes.push(
      `${r.kind}: /proc/<pid>/status read ${(m.ageMs / 1000).toFixed(1)} s after spawn (comm "${m.comm}"): VmRSS ${m.vmRssKiB} kB, ` +
        `RssAnon ${m.anonKiB} kB, RssFile ${m.fileKiB} kB, RssShmem ${m.shmemKiB} kB, VmHWM ${m.hwmKiB} kB, ${m.peerRoutes} of ${PEERS} peer routes in the kernel`,
    );
  }
  return notes;
}

function notes(report: AgentReport): string[] {
  const out = [`weft ${report.weftNote}`];
  for (const r of [report.weft, report.flanneld])
    if (r !== undefined) out.push(...agentNotes(r, report.phases));
  const fl = report.flanneld;
  if (ok(fl) && fl.repairMs.length > 0) {
    out.push(
      `flanneld repair samples (ms): ${fl.repairMs.map((v) => v.toFixed(0)).join(", ")} (its routeCheck runs every 10 s; random 0–10 s pause before each delete)`,
    );
  }
  if (report.flanneldMissing !== undefined) out.push(`flanneld missing: ${report.flanneldMissing}`);
  else if (report.flanneldBuildNote !== "") out.push(`flanneld build: ${report.flanneldBuildNote}`);
  out.push(
    `phases: ${report.phases.join(",")}; start: 1 warm-up + ${plural(report.startRuns, "run")} per agent; ` +
      `/readyz and NOTIFY_SOCKET polled every 1 ms; joins/leaves: ${JOINS} each, one at a time; ratio column = flanneld p50 / weft p50 (above 1 means weft is faster)`,
  );
  return out;
}

export function printReport(report: AgentReport): void {
  console.log(
    `agent.bench: host-gw, etcd ${report.etcdVersion} in the segment, Bun ${Bun.version}, ${navigator.hardwareConcurrency} CPUs; flanneld ${
      report.flanneldMissing === undefined ? report.flanneldVersion : "not measured"
    }`,
  );
  console.log(`load average (1/5/15 min): before ${report.loadBefore}, after ${report.loadAfter}`);
  console.log(latencyTable(report));
  console.log();
  console.log(memoryTable(report));
  console.log(`- ${targetsLine(report)}`);
  console.log(
    notes(report)
      .map((n) => `- ${n}`)
      .join("\n"),
  );
}
