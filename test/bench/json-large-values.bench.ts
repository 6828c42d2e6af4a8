/**
 * etcd v2 and Consul list memory benchmark: what does listing a prefix of large values cost in memory,
 * with and without `maxValueBytes`? (The etcd v3 paths, gRPC and JSON gateway, are measured by
 * etcd-large-values.bench.ts.)
 *
 * One etcd 3.4 with `--enable-v2` and one Consul on 127.0.0.1 (random ports, stopped at the end), COUNT
 * values under one prefix each: ETCD2_KIB KiB for etcd v2, CONSUL_KIB KiB for Consul (its default
 * `kv_max_value_size` is 512 KiB). Each measurement runs in a child process of its own (a fresh heap):
 * it opens the driver, lists an empty prefix (connections open, code compiled), notes its RSS, then
 * lists the prefix once and reports the peak RSS above that, sampled every 10 ms and read from
 * /proc/self/status (VmHWM, the kernel's high-water mark). Figures are printed, never asserted.
 *
 *   bun test/bench/json-large-values.bench.ts                 (COUNT=200, ETCD2_KIB=1024, CONSUL_KIB=400)
 *   bun test/bench/json-large-values.bench.ts --stores=<dir>  also measures the drivers of another
 *                                                             copy of stores/ (e.g. an older commit's)
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import type { Store, StoreName, StoreOptions } from "../../stores/store.ts";
import { startConsul } from "../harness/consul.ts";
import { startEtcd } from "../harness/servers.ts";
import { markdownTable } from "./stats.ts";

const COUNT = Number(process.env.COUNT ?? 200);
const ETCD2_KIB = Number(process.env.ETCD2_KIB ?? 1024);
const CONSUL_KIB = Number(process.env.CONSUL_KIB ?? 400);
const PREFIX = "/weft-bench/large/";
const LIMIT = 4096;
const MiB = 1024 * 1024;
const HERE = resolve(import.meta.dir, "../../stores");

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

/** The child: one list of PREFIX through the driver of the stores/ copy in `dir`, measured. */
async function measure(dir: string, name: StoreName, endpoint: string, limit: number | undefined) {
  const { openStore } = (await import(`${dir}/index.ts`)) as {
    openStore(name: StoreName, options: StoreOptions): Store;
  };
  const store = openStore(name, { endpoints: [endpoint], requestTimeoutMs: 120_000 });
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
    } satisfies Figures;
  } finally {
    await store.close();
  }
}

async function child(dir: string, name: StoreName, endpoint: string, limit: number | undefined) {
  const p = Bun.spawn(
    [process.execPath, import.meta.path, "--child", dir, name, endpoint, String(limit ?? "")],
    {
      stdout: "pipe",
      stderr: "inherit",
    },
  );
  const out = await new Response(p.stdout).text();
  if ((await p.exited) !== 0) throw new Error(`the measuring child failed: ${out}`);
  return JSON.parse(out) as Figures;
}

if (process.argv[2] === "--child") {
  const [dir = HERE, name = "etcd2", endpoint = "", limit = ""] = process.argv.slice(3);
  const figures = await measure(dir, name as StoreName, endpoint, limit === "" ? undefined : Number(limit));
  process.stdout.write(JSON.stringify(figures));
  process.exit(0);
}

const other = process.argv.find((a) => a.startsWith("--stores="))?.slice("--stores=".length);
const copies: [string, string][] = [["this tree", HERE]];
if (other !== undefined) copies.push([other, resolve(other)]);

const [etcd, consul] = await Promise.all([startEtcd({ enableV2: true }), startConsul()]);
try {
  // Written with plain HTTP: the bench measures lists, and Consul's txn API caps a request at 512 KiB.
  const etcdValue = "v".repeat(ETCD2_KIB * 1024);
  const consulValue = "c".repeat(CONSUL_KIB * 1024);
  for (let i = 0; i < COUNT; i++) {
    const k = `${PREFIX}${String(i).padStart(4, "0")}`;
    const put = await fetch(`${etcd.endpoint}/v2/keys${k}`, {
      method: "PUT",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: `value=${etcdValue}`,
    });
    const kv = await fetch(`${consul.endpoint}/v1/kv${k}`, { method: "PUT", body: consulValue });
    if (!put.ok || !kv.ok)
      throw new Error(`writing ${k} failed: ${put.status} ${kv.status} ${await kv.text()}`);
  }
  const rows: string[][] = [];
  for (const [name, endpoint, kib] of [
    ["etcd2", etcd.endpoint, ETCD2_KIB],
    ["consul", consul.endpoint, CONSUL_KIB],
  ] as const) {
    for (const [label, dir] of copies) {
      for (const limit of [LIMIT, undefined]) {
        const f = await child(dir, name, endpoint, limit);
        rows.push([
          name,
          `${COUNT} × ${kib} KiB`,
          label,
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
  }
  console.log("etcd v2 and Consul lists of large values, one child process per row\n");
  console.log(
    markdownTable(
      [
        "store",
        "values",
        "drivers",
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
  await Promise.all([etcd.stop(), consul.stop()]);
}
