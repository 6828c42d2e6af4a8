/**
 * etcd v3 list memory benchmark: what does listing a prefix of large values cost in memory?
 *
 * One etcd 3.4 on 127.0.0.1, COUNT values of SIZE_KIB KiB under one prefix (written through the
 * driver). Each measurement runs in a child process of its own (a fresh heap): it opens an
 * `Etcd3Store`, lists an empty prefix (connections open, code compiled), notes its RSS, then lists
 * the prefix once and reports the peak RSS above that baseline, both sampled every 10 ms and read
 * from /proc/self/status (VmHWM, the kernel's high-water mark). Paths: gRPC (as the driver ships) and
 * the JSON gateway only (`grpcList: false`), each whole and with `maxValueBytes` 4096. Figures are
 * printed, never asserted.
 *
 *   bun test/bench/etcd-large-values.bench.ts          (COUNT=200, SIZE_KIB=1024)
 */
import { readFileSync } from "node:fs";
import { Etcd3Store } from "../../stores/etcd/index.ts";
import { startEtcd } from "../harness/servers.ts";
import { markdownTable } from "./stats.ts";

const COUNT = Number(process.env.COUNT ?? 200);
const SIZE_KIB = Number(process.env.SIZE_KIB ?? 1024);
const PREFIX = "/weft-bench/large/";
const LIMIT = 4096;
const MiB = 1024 * 1024;

interface Figures {
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

/** The child: one list of PREFIX, measured. */
async function measure(endpoint: string, grpcList: boolean, limit: number | undefined): Promise<Figures> {
  const store = new Etcd3Store({ endpoints: [endpoint], requestTimeoutMs: 120_000 }, {}, { grpcList });
  try {
    await store.list("/weft-bench/nothing/");
    Bun.gc(true);
    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 10);
    const t0 = performance.now();
    const listed = await store.list(PREFIX, limit === undefined ? {} : { maxValueBytes: limit });
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

async function child(endpoint: string, grpcList: boolean, limit: number | undefined): Promise<Figures> {
  const p = Bun.spawn(
    [process.execPath, import.meta.path, "--child", endpoint, String(grpcList), String(limit ?? "")],
    { stdout: "pipe", stderr: "inherit" },
  );
  const out = await new Response(p.stdout).text();
  if ((await p.exited) !== 0) throw new Error(`the measuring child failed: ${out}`);
  return JSON.parse(out) as Figures;
}

if (process.argv[2] === "--child") {
  const [endpoint = "", grpc = "true", limit = ""] = process.argv.slice(3);
  const figures = await measure(endpoint, grpc === "true", limit === "" ? undefined : Number(limit));
  process.stdout.write(JSON.stringify(figures));
  process.exit(0);
}

const server = await startEtcd();
const writer = new Etcd3Store({ endpoints: [server.endpoint] }, {}, { grpcList: false });
try {
  const value = "v".repeat(SIZE_KIB * 1024);
  for (let i = 0; i < COUNT; i++) await writer.create(`${PREFIX}${String(i).padStart(4, "0")}`, value);
  const rows: string[][] = [];
  for (const [path, grpcList] of [
    ["gRPC", true],
    ["JSON gateway", false],
  ] as const) {
    for (const limit of [LIMIT, undefined]) {
      const f = await child(server.endpoint, grpcList, limit);
      rows.push([
        path,
        limit === undefined ? "none" : String(limit),
        `${f.entries} (${f.omitted} omitted)`,
        (f.valueBytes / MiB).toFixed(1),
        f.baselineMiB.toFixed(0),
        f.peakSampledMiB.toFixed(0),
        f.hwmMiB.toFixed(0),
        f.ms.toFixed(0),
      ]);
    }
  }
  console.log(`etcd list of ${COUNT} values of ${SIZE_KIB} KiB, one child process per row\n`);
  console.log(
    markdownTable(
      [
        "path",
        "maxValueBytes",
        "entries",
        "values kept, MiB",
        "RSS before, MiB",
        "peak RSS above it (10 ms samples), MiB",
        "VmHWM above it, MiB",
        "list, ms",
      ],
      rows,
    ),
  );
} finally {
  await writer.close();
  await server.stop();
}
