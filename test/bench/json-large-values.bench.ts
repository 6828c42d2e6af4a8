/**
 * etcd v2 and Consul list memory benchmark: what does listing a prefix of large values cost in memory,
 * with and without `maxValueBytes`? (The etcd v3 paths, gRPC and JSON gateway, are measured by
 * etcd-large-values.bench.ts.)
 *
 * One etcd 3.4 with `--enable-v2` and one Consul on 127.0.0.1 (random ports, stopped at the end), COUNT
 * values under one prefix each: ETCD2_KIB KiB for etcd v2, CONSUL_KIB KiB for Consul (its default
 * `kv_max_value_size` is 512 KiB). Each measurement runs in a child process of its own (a fresh heap,
 * see list-memory.ts). Figures are printed, never asserted.
 *
 *   bun test/bench/json-large-values.bench.ts                 (COUNT=200, ETCD2_KIB=1024, CONSUL_KIB=400)
 *   bun test/bench/json-large-values.bench.ts --stores=<dir>  also measures the drivers of another
 *                                                             copy of stores/ (e.g. an older commit's)
 */
import { resolve } from "node:path";
import type { Store, StoreName, StoreOptions } from "../../stores/store.ts";
import { startConsul } from "../harness/consul.ts";
import { startEtcd } from "../harness/servers.ts";
import { LIST_COLUMNS, listCells, listInChild, measureList, reportToParent } from "./list-memory.ts";
import { markdownTable } from "./stats.ts";

const COUNT = Number(process.env.COUNT ?? 200);
const ETCD2_KIB = Number(process.env.ETCD2_KIB ?? 1024);
const CONSUL_KIB = Number(process.env.CONSUL_KIB ?? 400);
const PREFIX = "/weft-bench/large/";
const LIMIT = 4096;
const HERE = resolve(import.meta.dir, "../../stores");

/** The child: one list of PREFIX through the driver of the stores/ copy in `dir`, measured. */
async function measure(dir: string, name: StoreName, endpoint: string, limit: number | undefined) {
  const { openStore } = (await import(`${dir}/index.ts`)) as {
    openStore(name: StoreName, options: StoreOptions): Store;
  };
  return measureList(openStore(name, { endpoints: [endpoint], requestTimeoutMs: 120_000 }), PREFIX, limit);
}

if (process.argv[2] === "--child") {
  const [dir = HERE, name = "etcd2", endpoint = "", limit = ""] = process.argv.slice(3);
  reportToParent(await measure(dir, name as StoreName, endpoint, limit === "" ? undefined : Number(limit)));
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
        const f = await listInChild(import.meta.path, [dir, name, endpoint, String(limit ?? "")]);
        rows.push([name, `${COUNT} × ${kib} KiB`, label, ...listCells(limit, f)]);
      }
    }
  }
  console.log("etcd v2 and Consul lists of large values, one child process per row\n");
  console.log(markdownTable(["store", "values", "drivers", ...LIST_COLUMNS], rows));
} finally {
  await Promise.all([etcd.stop(), consul.stop()]);
}
