// weft's vxlan backend against flanneld v0.28.9 vxlan (and weft host-gw), on etcd v3.
//
//   bun test/bench/vxlan.bench.ts            (as root; prints markdown tables, asserts nothing)
//
// weft runs as the compiled binary (`bun build/compile.ts --only <arch> --out <tmp>/dist`), or from
// source with a note saying why when the compile fails. flanneld comes from build/test-bin.sh (cached
// in ~/.cache/weft-test-bin); without it weft's figures are printed with a line saying why.
//
// Setup (all in namespaces this script creates, removed at the end, on failure and on Ctrl-C): one L2
// segment (src/netns) with etcd in the bridge namespace on 172.17.42.1:2379 and seven hosts on the
// same /16: 172.17.42.41 weft vxlan, .42 weft host-gw, .43 flanneld vxlan (each with its own etcd
// prefix), .44/.45 a weft host-gw pair and .46/.47 a weft vxlan pair for iperf3. Each measured agent
// runs alone, one after the other, through test/bench/vxlan-inside.ts inside its host namespace.
// 1. Initial sync for N = 1,000 and 5,000 peer leases (flanneld's JSON, etcd lease each, distinct
//    PublicIPs 172.17.100.1… in the segment's /16, distinct VtepMACs 02:77:00:…): agent start → all N
//    routes, N permanent ARP entries and N FDB entries on flannel.1 (host-gw: N routes) seen by a
//    netlink monitor on the route, neigh and link groups, cross-checked after each run with `ip route
//    show`, `ip neigh show dev flannel.1` and `bridge fdb show dev flannel.1`. weft: 1 warm-up + 5 runs
//    per N; flanneld: 1 warm-up + 5 runs at 1,000 and 3 at 5,000, each stopped at 120 s ("> 120 s";
//    a stopped start is not repeated).
// 2. Repairs with 1,000 peers on weft vxlan: one route, ARP entry or FDB entry deleted by a netlink
//    request (what `ip route del`, `ip neigh del`, `bridge fdb del` send), 100 each, timed to the
//    monitor seeing it written again; flannel.1 set down and flannel.1 deleted, 10 each, timed to the
//    device up with all its entries back. flanneld vxlan: 5 rounds of one route + one ARP + one FDB
//    delete (three peers, at once), 15 s timeout each.
// 3. iperf3 (TCP, 5 s per run, 3 rounds taking turns): container → container over weft host-gw and
//    over weft vxlan (network namespaces behind docker0, from subnet.env as `weft demo` makes them),
//    and host → host directly over the segment; the ratio container ÷ direct.
//
// Environment:
//   WEFT_BENCH_WEFT=source       measure `bun src/main.ts` instead of the compiled binary
//   WEFT_BENCH_AGENTS=weft       skip flanneld (default weft,flanneld)
//   WEFT_BENCH_SIZES=1000        peer counts for the sync part (default 1000,5000; the first gets the repairs)
//   WEFT_BENCH_IPERF=0           skip the iperf3 part
//   WEFT_BENCH_KEEP=1            keep the temporary directory with the agents' logs
import { mkdtempSync, readlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { canUseNetns, createSegment, type Host, type Segment } from "../../src/netns/netns.ts";
import { ETCD_ENDPOINT, SEGMENT_PREFIX_LEN } from "./agent-fixtures.ts";
import {
  benchTeardown,
  FLANNELD_VERSION,
  loadavg,
  locateFlanneld,
  MAIN,
  startEtcd,
  type WeftCommand,
  weftCommand,
} from "./agent-setup.ts";
import type { RepairPlan, SyncSize, VxlanInsideArgs, VxlanInsideResult } from "./vxlan-fixtures.ts";
import { IPERF_SECONDS, measureThroughput, type PathResult } from "./vxlan-iperf.ts";
import { printReport } from "./vxlan-report.ts";

const INSIDE = join(import.meta.dir, "vxlan-inside.ts");
const WEFT_RUNS = 5;
const FLANNELD_RUNS = [5, 3] as const;
const WEFT_CAP_MS = 60_000;
const FLANNELD_CAP_MS = 120_000;
const INSIDE_TIMEOUT_MS = 12 * 60_000;
const IPERF_ROUNDS = 3;
const HOSTS = ["41", "42", "43", "44", "45", "46", "47"].map((h) => `172.17.42.${h}`);

const WEFT_REPAIRS: RepairPlan = {
  entrySamples: 100,
  linkSamples: 10,
  entryTimeoutMs: 2_000,
  linkTimeoutMs: 5_000,
  concurrent: false,
};
const FLANNELD_REPAIRS: RepairPlan = {
  entrySamples: 5,
  linkSamples: 0,
  entryTimeoutMs: 15_000,
  linkTimeoutMs: 15_000,
  concurrent: true,
};

function usage(problem: string): never {
  console.error(`vxlan.bench: ${problem}`);
  process.exit(2);
}

const weftMode = (() => {
  const raw = process.env.WEFT_BENCH_WEFT ?? "binary";
  if (raw === "binary" || raw === "source") return raw;
  return usage(`WEFT_BENCH_WEFT=${raw}: use "binary" (the default) or "source"`);
})();
const agents = (process.env.WEFT_BENCH_AGENTS ?? "weft,flanneld").split(",").map((a) => a.trim());
const sizes = (process.env.WEFT_BENCH_SIZES ?? "1000,5000").split(",").map((raw) => {
  const n = Number(raw.trim());
  if (!Number.isInteger(n) || n < 1 || n > 30_000) usage(`WEFT_BENCH_SIZES=${raw}: use peer counts 1..30000`);
  return n;
});
const iperfWanted = process.env.WEFT_BENCH_IPERF !== "0";

if (!canUseNetns()) {
  console.log("vxlan.bench: skipped, it needs root and `ip netns` to create its namespaces");
  process.exit(0);
}
for (const tool of ["etcd", "etcdctl", "bridge"]) {
  if (Bun.which(tool) === null) {
    console.log(`vxlan.bench: skipped, ${tool} is not installed (build/setup.sh installs it)`);
    process.exit(0);
  }
}

const started = performance.now();
const outerNetns = readlinkSync("/proc/self/ns/net");
const dir = mkdtempSync(join(tmpdir(), "weft-vxlan-bench-"));
const pidFile = join(dir, "agent-pids");
let segment: Segment | undefined;
let etcd: Subprocess | undefined;
let inside: Subprocess | undefined;
const others = new Set<Subprocess>();
let weftMarker = MAIN;

/** Stops everything this script started and removes its namespaces; safe to call twice. */
const teardown = benchTeardown("vxlan.bench", {
  stopOwn: async () => {
    inside?.kill("SIGKILL");
    await inside?.exited;
    for (const proc of others) proc.kill("SIGKILL");
    await Promise.all([...others].map((proc) => proc.exited));
  },
  pidFile,
  markers: () => [weftMarker, "flanneld"],
  etcd: () => etcd,
  segment: () => segment,
  dir,
});

interface Measured {
  readonly kind: "weft" | "flanneld";
  readonly backend: "vxlan" | "host-gw";
  readonly host: Host;
  readonly argv: readonly string[];
  readonly sizes: readonly SyncSize[];
  readonly capMs: number;
  readonly repairs?: RepairPlan;
}

/** Runs the driver for one agent and backend on its host. */
async function measure(m: Measured): Promise<VxlanInsideResult> {
  const label = `${m.kind} ${m.backend}`;
  const slug = `${m.kind}-${m.backend}`;
  const prefix = `/weft-bench/${slug}/network`;
  const subnetFile = join(dir, slug, "subnet.env");
  const common = [
    `--etcd-endpoints=${ETCD_ENDPOINT}`,
    `--etcd-prefix=${prefix}`,
    "--iface=eth0",
    `--subnet-file=${subnetFile}`,
  ];
  const args: VxlanInsideArgs = {
    label,
    kind: m.kind,
    backend: m.backend,
    command:
      m.kind === "weft"
        ? [...m.argv, ...common, `--control-socket=${join(dir, slug, "weft.sock")}`]
        : [...m.argv, ...common, "--iptables-forward-rules=true"],
    notifySocket: join(dir, `${slug}-notify.sock`),
    ns: m.host.ns.name,
    address: m.host.address,
    prefix,
    subnetFile,
    logDir: dir,
    pidFile,
    outerNetns,
    sizes: m.sizes,
    warmup: true,
    capMs: m.capMs,
    repairs: m.repairs,
  };
  // After Ctrl-C the cleanup has already run past the driver: start no new one.
  if (teardown.started) throw new Error("interrupted");
  console.error(`vxlan.bench: measuring ${label} in ${m.host.ns.name} (${m.host.address})`);
  const proc = Bun.spawn(
    ["ip", "netns", "exec", m.host.ns.name, process.execPath, INSIDE, JSON.stringify(args)],
    {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "inherit",
    },
  );
  inside = proc;
  const timer = setTimeout(() => proc.kill("SIGKILL"), INSIDE_TIMEOUT_MS);
  const [stdout, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  clearTimeout(timer);
  inside = undefined;
  const last = stdout.trim().split("\n").pop() ?? "";
  if (code === 0 && last.startsWith("{")) return JSON.parse(last) as VxlanInsideResult;
  return {
    label,
    kind: m.kind,
    backend: m.backend,
    capMs: m.capMs,
    sizes: [],
    repairs: [],
    monitorResyncs: 0,
    error: `its driver exited ${code}${last ? `: ${last}` : ""}`,
  };
}

const loadBefore = loadavg();
let etcdVersion = "?";
const results: VxlanInsideResult[] = [];
let throughput: readonly PathResult[] | string = iperfWanted ? "not reached" : "WEFT_BENCH_IPERF=0 was set";
let weftRun: WeftCommand | undefined;
const flanneld: ReturnType<typeof locateFlanneld> = agents.includes("flanneld")
  ? locateFlanneld()
  : { missing: `WEFT_BENCH_AGENTS=${agents.join(",")} was set` };
try {
  if (agents.includes("weft")) {
    weftRun = weftCommand("vxlan.bench", dir, weftMode);
    weftMarker = weftRun.marker;
  }
  segment = await createSegment("wvx", HOSTS, SEGMENT_PREFIX_LEN);
  etcdVersion = (
    await startEtcd(segment, dir, (proc) => {
      etcd = proc;
    })
  ).version;
  const [h1, h2, h3, h4, h5, h6, h7] = segment.hosts;
  if (
    h1 === undefined ||
    h2 === undefined ||
    h3 === undefined ||
    h4 === undefined ||
    h5 === undefined ||
    h6 === undefined ||
    h7 === undefined
  )
    throw new Error("createSegment returned fewer hosts than asked for");
  const weftSizes = sizes.map((n) => ({ n, runs: WEFT_RUNS }));
  if (weftRun !== undefined) {
    const argv = weftRun.argv;
    results.push(
      await measure({
        kind: "weft",
        backend: "vxlan",
        host: h1,
        argv,
        sizes: weftSizes,
        capMs: WEFT_CAP_MS,
        repairs: WEFT_REPAIRS,
      }),
    );
    results.push(
      await measure({
        kind: "weft",
        backend: "host-gw",
        host: h2,
        argv,
        sizes: weftSizes,
        capMs: WEFT_CAP_MS,
      }),
    );
  }
  if ("bin" in flanneld) {
    const flSizes = sizes.map((n, i) => ({
      n,
      runs: FLANNELD_RUNS[Math.min(i, FLANNELD_RUNS.length - 1)] ?? 2,
    }));
    results.push(
      await measure({
        kind: "flanneld",
        backend: "vxlan",
        host: h3,
        argv: [flanneld.bin],
        sizes: flSizes,
        capMs: FLANNELD_CAP_MS,
        repairs: FLANNELD_REPAIRS,
      }),
    );
  }
  if (!iperfWanted) {
    // skipped on request
  } else if (Bun.which("iperf3") === null) {
    throughput = "iperf3 is not installed (build/setup.sh installs it; Debian: apt-get install iperf3)";
  } else if (weftRun === undefined) {
    throughput = "weft was not measured";
  } else {
    console.error("vxlan.bench: iperf3 between containers over host-gw and vxlan, and host to host");
    try {
      throughput = await measureThroughput({
        segment,
        hostGw: [h4, h5],
        vxlan: [h6, h7],
        weftArgv: weftRun.argv,
        dir,
        pidFile,
        track: (proc) => {
          if (teardown.started) proc.kill("SIGKILL"); // started after Ctrl-C's cleanup
          others.add(proc);
          void proc.exited.then(() => others.delete(proc));
        },
        rounds: IPERF_ROUNDS,
        log: (line) => console.error(`  iperf3: ${line}`),
      });
    } catch (err) {
      throughput = `failed: ${err instanceof Error ? err.message : String(err)}`;
    }
  }
} finally {
  await teardown.run();
}

printReport({
  etcdVersion,
  flanneldVersion: FLANNELD_VERSION,
  loadBefore,
  loadAfter: loadavg(),
  weftNote: weftRun?.note ?? `not measured: WEFT_BENCH_AGENTS=${agents.join(",")} was set`,
  flanneldNote: "bin" in flanneld ? flanneld.note || flanneld.bin : `not measured: ${flanneld.missing}`,
  agents: results,
  throughput,
  iperfSeconds: IPERF_SECONDS,
  elapsedS: (performance.now() - started) / 1000,
});
