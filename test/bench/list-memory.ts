/**
 * What one list of a prefix of large values costs a fresh process, for the large-value benches
 * (etcd-large-values.bench.ts, json-large-values.bench.ts): each row runs in a child of its own, which
 * lists an empty prefix first (connections open, code compiled), notes its RSS, lists the prefix once
 * and reports the peak RSS above that baseline, sampled every 10 ms and read from /proc/self/status
 * (VmHWM, the kernel's high-water mark). Figures are printed, never asserted.
 */
import { readFileSync } from "node:fs";
import type { Store } from "../../stores/store.ts";

const MiB = 1024 * 1024;

export interface ListFigures {
  readonly baselineMiB: number;
  readonly peakSampledMiB: number;
  readonly hwmMiB: number;
  readonly ms: number;
  readonly entries: number;
  readonly omitted: number;
  readonly valueBytes: number;
}

function hwmBytes(): number {
  const line = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync("/proc/self/status", "utf8"));
  return Number(line?.[1] ?? Number.NaN) * 1024;
}

/** In the child: one list of `prefix` with `limit` as maxValueBytes, measured; closes `store`. */
export async function measureList(
  store: Store,
  prefix: string,
  limit: number | undefined,
): Promise<ListFigures> {
  try {
    await store.list("/weft-bench/nothing/");
    Bun.gc(true);
    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 10);
    const t0 = performance.now();
    const listed = await store.list(prefix, limit === undefined ? {} : { maxValueBytes: limit });
    const ms = performance.now() - t0;
    clearInterval(sampler);
    peak = Math.max(peak, process.memoryUsage().rss);
    return {
      baselineMiB: baseline / MiB,
      peakSampledMiB: (peak - baseline) / MiB,
      hwmMiB: (hwmBytes() - baseline) / MiB,
      ms,
      entries: listed.entries.length,
      omitted: listed.entries.filter((e) => e.omittedBytes !== undefined).length,
      valueBytes: listed.entries.reduce((sum, e) => sum + e.value.length, 0),
    };
  } finally {
    await store.close();
  }
}

/** Runs `script --child …args` and returns the figures it printed. */
export async function listInChild(script: string, args: readonly string[]): Promise<ListFigures> {
  const p = Bun.spawn([process.execPath, script, "--child", ...args], { stdout: "pipe", stderr: "inherit" });
  const out = await new Response(p.stdout).text();
  if ((await p.exited) !== 0) throw new Error(`the measuring child failed: ${out}`);
  return JSON.parse(out) as ListFigures;
}

/** The child's side: prints the figures for the parent and exits. */
export function reportToParent(figures: ListFigures): never {
  process.stdout.write(JSON.stringify(figures));
  process.exit(0);
}

/** The columns every row shares, after the bench's own. */
export const LIST_COLUMNS = [
  "maxValueBytes",
  "entries",
  "values kept, MiB",
  "RSS before, MiB",
  "peak RSS above it (10 ms samples), MiB",
  "VmHWM above it, MiB",
  "list, ms",
];

/** A row's cells for LIST_COLUMNS. */
export function listCells(limit: number | undefined, f: ListFigures): string[] {
  return [
    limit === undefined ? "none" : String(limit),
    `${f.entries} (${f.omitted} omitted)`,
    (f.valueBytes / MiB).toFixed(1),
    f.baselineMiB.toFixed(0),
    f.peakSampledMiB.toFixed(0),
    f.hwmMiB.toFixed(0),
    f.ms.toFixed(0),
  ];
}
