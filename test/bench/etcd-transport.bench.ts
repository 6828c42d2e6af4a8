/**
 * etcd v3 transport benchmark: is a gRPC transport worth it for weft's start-path list?
 *
 * One etcd 3.4 on 127.0.0.1 (started with `--metrics=extensive` for its server-side handling time),
 * 1,000 / 5,000 / 20,000 flanneld-shaped leases (one etcd lease each, see store-leases.ts). For each N,
 * ROUNDS rounds, the paths interleaved round by round:
 *   - the driver's `Etcd3Store.list()` through the JSON gateway only (`grpcList: false`, weft before
 *     this bench), and as it ships: the same Range over gRPC (HTTP/2, hand-written protobuf);
 *   - the costs apart: gateway round trip (fetch + body text), JSON.parse, base64 (the driver's
 *     `decodeText` of every key and value), the rest of the driver's mapping; gRPC round trip,
 *     protobuf decode and mapping; and etcd's own handling time per Range, the same for both
 *     (`grpc_server_handling_seconds` of its /metrics: the gateway calls etcd's gRPC server too);
 *   - `etcdctl get --prefix` (spawned, output read from a pipe) and `etcdctl get` of an absent key
 *     (its start cost), when etcdctl is installed.
 * Figures are printed, never asserted.
 *
 *   bun test/bench/etcd-transport.bench.ts          (ROUNDS=30, SIZES=1000,5000,20000)
 *
 * Conclusion (2 vCPU VM shared with other work; figures in the README, "What it costs"): at 5,000
 * leases the gateway list took 81 ms p50 (load 2.4) and 163 ms (load 3.6–6.2), gRPC 17 and 33 ms: 64–130
 * ms less, well over the 30 ms that would justify a transport; at 20,000, 342–600 ms against 76–105 ms.
 * etcd's own handling is the same either way (7 ms at 5,000): the difference is the gateway marshalling
 * 1.3 MB of JSON inside etcd, plus base64 and JSON.parse here. So the driver lists over gRPC
 * (stores/etcd/grpc.ts, grpc-codec.ts) with the gateway as fallback, and the contract suite runs over
 * both paths; writes, leases and the watch stream stay on the gateway.
 */
import { spawn } from "bun";
import { decodeRange, decodeText, prefixRangeRequest, toKeyValue } from "../../stores/etcd/codec.ts";
import { GrpcSessions } from "../../stores/etcd/grpc.ts";
import {
  decodeRangeMessage,
  frameMessage,
  prefixRangeMessage,
  RANGE_METHOD,
  unframeMessage,
} from "../../stores/etcd/grpc-codec.ts";
import { Etcd3Store } from "../../stores/etcd/index.ts";
import { startEtcd } from "../harness/servers.ts";
import { markdownTable, percentile } from "./stats.ts";
import { loadavg, SUBNETS, seedLeases } from "./store-leases.ts";

const ROUNDS = Number(process.env.ROUNDS ?? 30);
const SIZES = (process.env.SIZES ?? "1000,5000,20000").split(",").map(Number);

// etcd reads every flag from ETCD_<FLAG> too; the harness passes the environment on.
process.env.ETCD_METRICS = "extensive";

type Samples = Record<string, number[]>;

function add(samples: Samples, name: string, ms: number): void {
  const list = samples[name] ?? [];
  list.push(ms);
  samples[name] = list;
}

/** Sum and count of etcd's handling time of Range calls (seconds), from its /metrics. */
async function rangeHandling(endpoint: string): Promise<{ sum: number; count: number }> {
  const text = await (await fetch(`${endpoint}/metrics`)).text();
  const pick = (suffix: string) => {
    const re = new RegExp(
      `^grpc_server_handling_seconds_${suffix}\\{[^}]*grpc_method="Range"[^}]*\\} (\\S+)$`,
      "m",
    );
    return Number(re.exec(text)?.[1] ?? Number.NaN);
  };
  return { sum: pick("sum"), count: pick("count") };
}

async function etcdctlMs(endpoint: string, args: string[]): Promise<{ ms: number; bytes: number }> {
  const t0 = performance.now();
  const p = spawn(["etcdctl", `--endpoints=${endpoint}`, ...args], {
    env: { ...process.env, ETCDCTL_API: "3" },
    stdout: "pipe",
    stderr: "ignore",
  });
  const out = await new Response(p.stdout).arrayBuffer();
  const code = await p.exited;
  const ms = performance.now() - t0;
  if (code !== 0) throw new Error(`etcdctl ${args.join(" ")} exited ${code}`);
  return { ms, bytes: out.byteLength };
}

const hasEtcdctl = Bun.which("etcdctl") !== null;
const loadBefore = await loadavg();
const server = await startEtcd();
const store = new Etcd3Store({ endpoints: [server.endpoint] }, {}, { grpcList: true });
const gatewayStore = new Etcd3Store({ endpoints: [server.endpoint] }, {}, { grpcList: false });
const grpc = new GrpcSessions(undefined);
const rangeBody = JSON.stringify(prefixRangeRequest(SUBNETS));
const rangeMessage = frameMessage(prefixRangeMessage(SUBNETS));
const unary = () =>
  grpc.unary(server.endpoint, RANGE_METHOD, rangeMessage, {
    signal: AbortSignal.timeout(60_000),
    timeoutMs: 60_000,
  });
const rows: string[][] = [];
const sizes: string[][] = [];
let seeded = 0;

try {
  for (const n of SIZES) {
    const seedStart = performance.now();
    await seedLeases(store, seeded, n);
    seeded = n;
    const seedMs = performance.now() - seedStart;
    const samples: Samples = {};
    let gatewayBytes = 0;
    let grpcBytes = 0;
    let etcdctlBytes = 0;
    // Warm-up: connections open, code paths compiled.
    for (let i = 0; i < 3; i++) {
      await store.list(SUBNETS);
      await gatewayStore.list(SUBNETS);
      await unary();
    }
    const serverTime = { gateway: 0, gatewayCalls: 0, grpc: 0, grpcCalls: 0 };
    for (let round = 0; round < ROUNDS; round++) {
      // (1) the driver's list through the gateway only (weft before gRPC lists).
      let before = await rangeHandling(server.endpoint);
      let t0 = performance.now();
      const listed = await gatewayStore.list(SUBNETS);
      add(samples, "driver list(), JSON gateway", performance.now() - t0);
      let after = await rangeHandling(server.endpoint);
      serverTime.gateway += after.sum - before.sum;
      serverTime.gatewayCalls += after.count - before.count;
      if (listed.entries.length !== n) throw new Error(`listed ${listed.entries.length} of ${n}`);

      // (2) the driver's list as it ships: the same Range over gRPC.
      before = await rangeHandling(server.endpoint);
      t0 = performance.now();
      const viaGrpc = await store.list(SUBNETS);
      add(samples, "driver list(), gRPC", performance.now() - t0);
      after = await rangeHandling(server.endpoint);
      serverTime.grpc += after.sum - before.sum;
      serverTime.grpcCalls += after.count - before.count;
      if (viaGrpc.entries.length !== n) throw new Error(`gRPC listed ${viaGrpc.entries.length} of ${n}`);

      // (3a) the gRPC path taken apart.
      t0 = performance.now();
      const body = await unary();
      const t1 = performance.now();
      const decoded = decodeRangeMessage(unframeMessage(body, "bench"), "bench");
      const t2 = performance.now();
      decoded.kvs.map((kv) => toKeyValue(kv));
      const t3 = performance.now();
      add(samples, "gRPC round trip (HTTP/2, whole body in)", t1 - t0);
      add(samples, "protobuf decode (incl. UTF-8 of keys, values)", t2 - t1);
      add(samples, "gRPC: mapping to KeyValue", t3 - t2);
      grpcBytes = body.length;

      // (3b) the gateway path taken apart: the same request the driver sends, each step timed.
      t0 = performance.now();
      const res = await fetch(`${server.endpoint}/v3/kv/range`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: rangeBody,
      });
      const text = await res.text();
      const g1 = performance.now();
      const json = JSON.parse(text) as { kvs?: { key: string; value: string }[] };
      const g2 = performance.now();
      for (const kv of json.kvs ?? []) {
        decodeText(kv.key, "kv.key", "bench");
        decodeText(kv.value, "kv.value", "bench");
      }
      const g3 = performance.now();
      const range = decodeRange(json, "bench");
      range.kvs.map((kv) => toKeyValue(kv));
      const g4 = performance.now();
      add(samples, "gateway round trip (fetch + body text)", g1 - t0);
      add(samples, "JSON.parse", g2 - g1);
      add(samples, "base64 decode (decodeText ×2 per kv)", g3 - g2);
      add(samples, "gateway: rest of the driver's decoding and mapping", g4 - g3 - (g3 - g2));
      gatewayBytes = text.length;

      if (hasEtcdctl && round < Math.min(ROUNDS, 20)) {
        const get = await etcdctlMs(server.endpoint, ["get", "--prefix", SUBNETS]);
        etcdctlBytes = get.bytes;
        add(samples, "etcdctl get --prefix (process start → exit)", get.ms);
        add(
          samples,
          "etcdctl get of an absent key (its start cost)",
          (await etcdctlMs(server.endpoint, ["get", "/absent"])).ms,
        );
      }
    }
    add(
      samples,
      "etcd handling per Range, gateway calls",
      (serverTime.gateway / serverTime.gatewayCalls) * 1_000,
    );
    add(samples, "etcd handling per Range, gRPC calls", (serverTime.grpc / serverTime.grpcCalls) * 1_000);
    for (const [name, values] of Object.entries(samples)) {
      const one = values.length === 1;
      rows.push([
        String(n),
        name,
        percentile(values, 50).toFixed(1),
        one ? "(mean)" : percentile(values, 99).toFixed(1),
      ]);
    }
    sizes.push([
      String(n),
      `${(gatewayBytes / 1024).toFixed(0)} KiB`,
      `${(grpcBytes / 1024).toFixed(0)} KiB`,
      hasEtcdctl ? `${(etcdctlBytes / 1024).toFixed(0)} KiB` : "-",
      `${(seedMs / 1000).toFixed(1)} s`,
    ]);
  }
} finally {
  grpc.close();
  await store.close();
  await gatewayStore.close();
  await server.stop();
}

console.log(
  `etcd v3 transport: list of N leases, ${ROUNDS} rounds per N (etcdctl: ${Math.min(ROUNDS, 20)}), load before ${loadBefore}, after ${await loadavg()}`,
);
console.log(markdownTable(["N", "what", "p50 ms", "p99 ms"], rows));
console.log();
console.log(markdownTable(["N", "gateway JSON body", "gRPC body", "etcdctl output", "seeding"], sizes));
