/**
 * etcd v3 list memory benchmark: what does listing a prefix of large values cost in memory?
 *
 * One etcd 3.4 on 127.0.0.1, COUNT values of SIZE_KIB KiB under one prefix (written through the
 * driver). Each measurement runs in a child process of its own (a fresh heap, see list-memory.ts).
 * Paths: gRPC (as the driver ships) and
 * the JSON gateway only (`grpcList: false`), each whole and with `maxValueBytes` 4096. Figures are
 * printed, never asserted.
 *
 *   bun test/bench/etcd-large-values.bench.ts          (COUNT=200, SIZE_KIB=1024)
 */
import { Etcd3Store } from "../../stores/etcd/index.ts";
import { startEtcd } from "../harness/servers.ts";
import { LIST_COLUMNS, listCells, listInChild, measureList, reportToParent } from "./list-memory.ts";
import { markdownTable } from "./stats.ts";

const COUNT = Number(process.env.COUNT ?? 200);
const SIZE_KIB = Number(process.env.SIZE_KIB ?? 1024);
const PREFIX = "/weft-bench/large/";
const LIMIT = 4096;

if (process.argv[2] === "--child") {
  const [endpoint = "", grpc = "true", limit = ""] = process.argv.slice(3);
  const options = { endpoints: [endpoint], requestTimeoutMs: 120_000 };
  const store = new Etcd3Store(options, {}, { grpcList: grpc === "true" });
  reportToParent(await measureList(store, PREFIX, limit === "" ? undefined : Number(limit)));
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
      const f = await listInChild(import.meta.path, [server.endpoint, String(grpcList), String(limit ?? "")]);
      rows.push([path, ...listCells(limit, f)]);
    }
  }
  console.log(`etcd list of ${COUNT} values of ${SIZE_KIB} KiB, one child process per row\n`);
  console.log(markdownTable(["path", ...LIST_COLUMNS], rows));
} finally {
  await writer.close();
  await server.stop();
}
