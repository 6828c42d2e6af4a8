// What a full resync (the lease watch lost its history: compaction, a store restart) costs the agent's
// event handling at 1,000 / 5,000 / 20,000 peers, in process, no root needed.
//
//   bun test/bench/resync.bench.ts           (prints a table, asserts nothing; WEFT_BENCH_SIZES=20000)
//
// The agent's own pieces, wired as src/agent/agent.ts wires them: the LeaseWatcher over a store that
// answers lists from memory (test/unit/fixtures/scripted-store.ts), the host-gw backend's `peer()`, a
// PeerTable, and KernelTables with nexthop objects over the in-memory FakeKernel
// (test/unit/fixtures/fake-kernel.ts). The kernel is left out on purpose: a resync that finds
// nothing changed writes nothing, and the dumps it costs are in routes.bench.ts. Timed on one clock:
// - first sync: the watcher's list handed over → every nexthop and route written (2 N writes);
// - resync: `relist()` (what the watch does on a compaction) → the watcher's new set published, the
//   desired entries brought up to date (the agent's `#recomputeChanged`: only leases that differ) and an
//   apply that finds nothing to do; this is the time a lease event that arrives meanwhile waits;
// - one event afterwards: one lease's new PublicIP → its nexthop replaced (the O(1) path).
import { HostGwBackend } from "../../src/backend/host-gw.ts";
import { PeerTable } from "../../src/backend/peer-table.ts";
import { parseLease } from "../../src/lease/lease.ts";
import { LeaseWatcher } from "../../src/lease/watcher.ts";
import { createLogger } from "../../src/log.ts";
import { Metrics } from "../../src/metrics.ts";
import { parseCidr } from "../../src/net/ipv4.ts";
import { KernelTables } from "../../src/reconcile/kernel-tables.ts";
import type { KeyValue, ListResult } from "../../stores/store.ts";
import { FakeKernel } from "../unit/fixtures/fake-kernel.ts";
import { scriptedStore } from "../unit/fixtures/scripted-store.ts";
import { manualClock } from "../unit/helpers.ts";
import { percentile, table } from "./stats.ts";

const SIZES = (process.env.WEFT_BENCH_SIZES ?? "1000,5000,20000").split(",").map(Number);
const ROUNDS = 5;
const PREFIX = "/coreos.com/network/subnets/";
const network = parseCidr("10.128.0.0/9");
const ext = { index: 2, name: "eth0", mtu: 1500, addresses: [parseCidr("172.17.42.41/16", "keep")] };

function leaseKv(
  i: number,
  revision: bigint,
  publicIP = `172.17.${128 + ((i >> 8) & 127)}.${(i & 255) | 1}`,
): KeyValue {
  return {
    key: `${PREFIX}10.${128 + (i >> 8)}.${i & 255}.0-24`,
    value: JSON.stringify({ PublicIP: publicIP, PublicIPv6: null, BackendType: "host-gw" }),
    revision,
    expires: true,
  };
}

interface Round {
  readonly firstMs: number;
  readonly resyncMs: number;
  readonly eventMs: number;
}

async function round(n: number): Promise<Round> {
  const entries = Array.from({ length: n }, (_, i) => leaseKv(i, 1n));
  const list: ListResult = { entries, revision: 2n };
  const store = scriptedStore([list, { entries, revision: 3n }]);
  const kernel = new FakeKernel();
  const backend = new HostGwBackend(ext, kernel as never);
  const tables = new KernelTables(kernel, {
    protocol: 77,
    network,
    deviceIndex: () => undefined,
    nexthops: "on",
  });
  const ctx = { ownSubnet: parseCidr("10.255.255.0/24"), ext, protocol: 77 };
  let peers: PeerTable | undefined;
  let published: () => void = () => undefined;
  const controller = new AbortController();
  const watcher = new LeaseWatcher({
    store,
    prefix: PREFIX,
    network,
    subnetLen: 24,
    log: createLogger({ level: "error", write: () => undefined }),
    metrics: new Metrics(),
    clock: manualClock(),
    onChange: (leases, changedKey) => {
      // As the agent (#leasesChanged): a rebuild only for the first set, then only what changed.
      if (peers === undefined) {
        peers = new PeerTable((l, c) => backend.peer(l, c), ctx, leases.values());
        tables.setDesired(peers);
      } else if (changedKey === undefined) {
        peers.sync(leases, (_key, changes) => tables.setDesiredChanges(changes));
      } else {
        tables.setDesiredChanges(peers.update(changedKey, leases.get(changedKey)));
      }
      tables.allowSweep();
      published();
    },
  });
  const next = () =>
    new Promise<void>((resolve) => {
      published = resolve;
    });

  let started = performance.now();
  const first = next();
  const running = watcher.run(controller.signal);
  await first;
  await tables.apply();
  const firstMs = performance.now() - started;
  if (kernel.routes.size !== n) throw new Error(`first sync: ${kernel.routes.size} of ${n} routes`);

  started = performance.now();
  const resynced = next();
  watcher.relist();
  await resynced;
  const outcome = await tables.apply();
  const resyncMs = performance.now() - started;
  if (outcome.replaced + outcome.deleted !== 0)
    throw new Error("a resync of unchanged leases wrote something");

  // One lease moves to a new PublicIP: parsed, one peer updated, one nexthop replaced.
  const kv = leaseKv(0, 4n, "172.17.99.99");
  const parsed = parseLease(kv, { network, subnetLen: 24, subnets: PREFIX });
  if (!parsed.ok) throw new Error(parsed.reason);
  started = performance.now();
  if (peers === undefined) throw new Error("no peer table");
  tables.setDesiredChanges(peers.update(kv.key, parsed.lease));
  const event = await tables.apply();
  if (event.replaced !== 1) throw new Error(`one event replaced ${event.replaced} entries`);
  const eventMs = performance.now() - started;
  controller.abort();
  await running.catch(() => undefined);
  return { firstMs, resyncMs, eventMs };
}

const rows: string[][] = [];
for (const n of SIZES) {
  await round(n); // warm-up
  const rounds: Round[] = [];
  for (let i = 0; i < ROUNDS; i++) rounds.push(await round(n));
  const p = (pick: (r: Round) => number) => percentile(rounds.map(pick), 50).toFixed(1);
  const max = (pick: (r: Round) => number) => Math.max(...rounds.map(pick)).toFixed(1);
  rows.push([
    n.toLocaleString("en"),
    `${p((r) => r.firstMs)} (${max((r) => r.firstMs)})`,
    `${p((r) => r.resyncMs)} (${max((r) => r.resyncMs)})`,
    `${p((r) => r.eventMs)} (${max((r) => r.eventMs)})`,
  ]);
}
const load = (await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ");
console.log(
  `resync.bench: Bun ${Bun.version}, load ${load}, ${ROUNDS} rounds after a warm-up, in-memory kernel`,
);
console.log(
  table(
    [
      "peers",
      "first sync: list → 2N writes, ms p50 (max)",
      "full resync, nothing changed, ms p50 (max)",
      "one event after it, ms p50 (max)",
    ],
    rows,
  ),
);
