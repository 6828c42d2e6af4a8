// weft at scale against flanneld v0.28.9 and the kernel floor, host-gw on etcd v3 (issue #13).
//
//   bun test/bench/scale.bench.ts        (as root; prints markdown tables, writes docs/scale.svg, asserts nothing)
//
// A full run took 15 and 16.5 min (two runs) on 2 vCPUs shared with other work (1-min load average p50
// 2.7 and 6.0), most of it flanneld: 5 syncs of 5,000 leases (45–65 s each), one capped start at 20,000
// (120 s), its idle and churn windows. It is bounded: every start and every `ip -batch` is stopped at
// 120 s, every driver command has a timeout, and a capped start is not repeated at that N.
// `WEFT_BENCH_SIZES=1000 WEFT_BENCH_PHASES=sync` takes under a minute.
//
// weft runs as the compiled binary (`bun build/compile.ts --only <arch> --out <tmp>/dist`), or from
// source with a note saying why when the compile fails; it measures whatever the tree programs (inline
// gateways, or nexthop objects). flanneld is the real binary from build/test-bin.sh (cached in
// ~/.cache/weft-test-bin); without it weft's figures are printed with a line saying why.
//
// Setup (all in namespaces this script creates, removed at the end, on failure and on Ctrl-C): one L2
// segment (src/netns) with etcd in the bridge namespace on 172.17.42.1:2379 and three hosts on the same
// /16: 172.17.42.41 for weft, .42 for flanneld (each agent with its own etcd prefix holding the host-gw
// config and N peer leases in flanneld's JSON, each with its own 24 h etcd lease, PublicIPs
// 172.17.100.1… inside the /16) and .43 for the kernel floor. A driver (test/bench/scale-inside.ts)
// stays up in each host namespace and takes commands, so the sides take turns round by round and only
// one of them works at a time. Each start is a new node joining: agent stopped, its nexthop objects and
// routes removed, its own lease and subnet file deleted.
// 1. sync, for each N of 1,000 / 5,000 / 20,000: process start → all N peer routes in the kernel,
//    counted by a netlink route monitor and cross-checked with `ip route show` afterwards; the kernel
//    floor in the same run: `ip -batch` of the same N routes with inline gateways (`route replace DST
//    via GW dev eth0 proto 77`), and of N nexthop objects + N routes (`nexthop replace id K via GW dev
//    eth0 proto 77`, then `route replace DST nhid K proto 77`), each timed from spawn of `ip` to its
//    exit on an empty table, with the same monitor open. Per round: weft, floor inline, floor nexthop,
//    flanneld; one warm-up round at the first N, then 5 rounds (3 at 20,000) for every side. A
//    flanneld start still short of N routes at 120 s is stopped, reported as "> 120 s" with the count it
//    reached, and not repeated at that N (the table shows its round count).
// 2. idle at 5,000 and 20,000: the agent of the last sync round stays up; 3 s to settle, then utime +
//    stime from /proc/<pid>/stat over 30 s, then VmRSS, RssAnon, RssFile, RssShmem, VmHWM.
// 3. churn at 5,000 (after idle): a writer process (test/bench/scale-churn.ts) sends 100 operations a
//    second for 60 s to etcd, puts of new leases and deletes of the lease put 1 s earlier alternating;
//    put → RTM_NEWROUTE and delete → RTM_DELROUTE for the subnet (or RTM_DELNEXTHOP of its nexthop,
//    which takes the route without an RTM_DELROUTE), on CLOCK_MONOTONIC in both processes; an
//    operation not seen within 5 s counts as "> 5 s"; the agent's CPU over the window.
// 4. ready at 1,000 and 5,000: 20 starts each, weft and flanneld alternating; start → READY=1 on
//    NOTIFY_SOCKET (both) and → /readyz 200 (weft, polled every 1 ms); the agent is stopped at once.
// 5. The chart: sync p50 against N for every side, log-log, written to docs/scale.svg.
//
// Environment:
//   WEFT_BENCH_SIZES=1000,5000   peer counts (default 1000,5000,20000; increasing, 1..30000)
//   WEFT_BENCH_PHASES=sync,ready which of sync,idle,churn,ready to run (default all)
//   WEFT_BENCH_AGENTS=weft       skip flanneld (default weft,flanneld); the kernel floor always runs with sync
//   WEFT_BENCH_WEFT=source       measure `bun src/main.ts` instead of the compiled binary
//   WEFT_BENCH_CHART=path|0      where the chart goes (default docs/scale.svg), 0 for none
//   WEFT_BENCH_KEEP=1            keep the temporary directory with the agents' logs
import { mkdirSync, mkdtempSync, readlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import type { Subprocess } from "bun";
import { canUseNetns, createSegment, type Host, type Segment } from "../../src/netns/netns.ts";
import { type AgentKind, ETCD_ENDPOINT, HEALTHZ_PORT, SEGMENT_PREFIX_LEN } from "./agent-fixtures.ts";
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
import { type ChartSeries, renderSyncChart } from "./scale-chart.ts";
import { Driver } from "./scale-driver.ts";
import {
  CAP_MS,
  DEFAULT_SIZES,
  type DriverArgs,
  READY_SIZES,
  SCALE_PHASES,
  type ScalePhase,
} from "./scale-fixtures.ts";
import { phaseRunner } from "./scale-phases.ts";
import {
  measuredOf,
  printReport,
  type ScaleResults,
  SYNC_SIDES,
  type SyncSide,
  syncP50,
} from "./scale-report.ts";

const ROOT = join(import.meta.dir, "..", "..");
const INSIDE = join(import.meta.dir, "scale-inside.ts");
const HOSTS = ["172.17.42.41", "172.17.42.42", "172.17.42.43"];
const MINUTE = 60_000;

function usage(problem: string): never {
  console.error(`scale.bench: ${problem}`);
  process.exit(2);
}

const sizes = (process.env.WEFT_BENCH_SIZES ?? DEFAULT_SIZES.join(",")).split(",").map((raw) => {
  const n = Number(raw.trim());
  if (!Number.isInteger(n) || n < 1 || n > 30_000) usage(`WEFT_BENCH_SIZES=${raw}: use peer counts 1..30000`);
  return n;
});
if (sizes.some((n, i) => i > 0 && n <= (sizes[i - 1] ?? 0)))
  usage(`WEFT_BENCH_SIZES=${sizes.join(",")}: list the sizes in increasing order (the store only grows)`);
const phases: ScalePhase[] = (() => {
  const raw = process.env.WEFT_BENCH_PHASES ?? "";
  if (raw.trim() === "") return [...SCALE_PHASES];
  const names = raw.split(",").map((name) => name.trim());
  const unknown = names.filter((name) => !SCALE_PHASES.some((phase) => phase === name));
  if (unknown.length > 0)
    usage(`WEFT_BENCH_PHASES=${raw}: unknown "${unknown.join(",")}"; use ${SCALE_PHASES.join(",")}`);
  return SCALE_PHASES.filter((phase) => names.includes(phase));
})();
const agents = (process.env.WEFT_BENCH_AGENTS ?? "weft,flanneld").split(",").map((a) => a.trim());
const weftMode = (() => {
  const raw = process.env.WEFT_BENCH_WEFT ?? "binary";
  if (raw === "binary" || raw === "source") return raw;
  return usage(`WEFT_BENCH_WEFT=${raw}: use "binary" (the default) or "source"`);
})();
const chartPath = (() => {
  const raw = process.env.WEFT_BENCH_CHART ?? join(ROOT, "docs", "scale.svg");
  return raw === "0" ? undefined : raw;
})();
const wants = (phase: ScalePhase) => phases.includes(phase);

if (!canUseNetns()) {
  console.log("scale.bench: skipped, it needs root and `ip netns` to create its namespaces");
  process.exit(0);
}
if (Bun.which("etcd") === null || Bun.which("etcdctl") === null) {
  console.log("scale.bench: skipped, etcd and etcdctl are not installed (build/setup.sh installs them)");
  process.exit(0);
}

const started = performance.now();
const outerNetns = readlinkSync("/proc/self/ns/net");
const dir = mkdtempSync(join(tmpdir(), "weft-scale-bench-"));
const pidFile = join(dir, "agent-pids");
let segment: Segment | undefined;
let etcd: Subprocess | undefined;
const drivers = new Map<AgentKind | "floor", Driver>();
let weftMarker = MAIN;
const loadSamples: number[] = [];
const loadTimer = setInterval(() => loadSamples.push(Number(loadavg().split(" ")[0])), 10_000);

/** Stops everything this script started and removes its namespaces; safe to call twice. */
const teardown = benchTeardown(
  "scale.bench",
  {
    stopOwn: async () => {
      clearInterval(loadTimer);
      await Promise.all([...drivers.values()].map((d) => d.close()));
    },
    pidFile,
    markers: () => [weftMarker, "flanneld"],
    etcd: () => etcd,
    segment: () => segment,
    dir,
  },
  () => {
    for (const d of drivers.values()) d.kill();
  },
);

const results: ScaleResults = { sync: new Map(), idle: [], churn: [], ready: [], notes: [] };
const progress = (line: string) => console.error(`scale.bench: ${line}`);
const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** The git revision the binary was built from, as the README names it. */
function revision(): string {
  const git = (...a: string[]) =>
    Bun.spawnSync(["git", ...a], { cwd: ROOT, stdout: "pipe", stderr: "ignore" });
  const rev = git("rev-parse", "--short", "HEAD");
  if (rev.exitCode !== 0) return "an unknown revision";
  const dirty = git("status", "--porcelain", "--", "src", "stores", "build", "package.json", "bun.lock");
  const short = rev.stdout.toString().trim();
  return dirty.stdout.toString().trim() === "" ? `commit ${short}` : `uncommitted tree at ${short}`;
}

function startDriver(side: AgentKind | "floor", host: Host, argv: readonly string[]): Driver {
  const prefix = `/weft-bench/${side}/network`;
  const subnetFile = join(dir, side, "subnet.env");
  const common = [
    `--etcd-endpoints=${ETCD_ENDPOINT}`,
    `--etcd-prefix=${prefix}`,
    "--iface=eth0",
    `--subnet-file=${subnetFile}`,
    `--healthz-port=${HEALTHZ_PORT}`,
    "--healthz-ip=127.0.0.1",
  ];
  // weft's control socket in the bench's directory, never the machine's /run/weft.
  const command =
    side === "floor"
      ? []
      : side === "weft"
        ? [...argv, ...common, `--control-socket=${join(dir, side, "weft.sock")}`]
        : [...argv, ...common, "--iptables-forward-rules=true"];
  mkdirSync(join(dir, side), { recursive: true });
  const args: DriverArgs = {
    side,
    command,
    notifySocket: join(dir, `${side}-notify.sock`),
    ns: host.ns.name,
    address: host.address,
    prefix,
    subnetFile,
    logDir: dir,
    pidFile,
    outerNetns,
  };
  const driver = Driver.start(INSIDE, args);
  drivers.set(side, driver);
  return driver;
}

const COLORS: Record<SyncSide, { name: string; color: string; dashed: boolean }> = {
  weft: { name: "weft (compiled binary)", color: "#1f77b4", dashed: false },
  flanneld: { name: `flanneld ${FLANNELD_VERSION}`, color: "#d62728", dashed: false },
  "floor-inline": { name: "kernel floor: ip -batch, inline via", color: "#7f7f7f", dashed: true },
  "floor-nexthop": { name: "kernel floor: ip -batch, nexthop + nhid", color: "#2ca02c", dashed: true },
};

function writeChart(rev: string): string {
  if (chartPath === undefined) return "chart: not written (WEFT_BENCH_CHART=0)";
  if (results.sync.size === 0) return "chart: not written (the sync part did not run)";
  const series: ChartSeries[] = SYNC_SIDES.map((side) => ({
    ...COLORS[side],
    points: [...results.sync.keys()].flatMap((n) => {
      const samples = measuredOf(results, n, side);
      if (samples.length === 0) return [];
      const mid = syncP50(samples);
      return [{ n, ms: Number.isFinite(mid) ? mid : CAP_MS, capped: !Number.isFinite(mid) }];
    }),
  }));
  const kernel = Bun.spawnSync(["uname", "-r"]).stdout.toString().trim();
  const sorted = [...loadSamples].sort((x, y) => x - y);
  const load = sorted.length === 0 ? "?" : (sorted[Math.floor(sorted.length / 2)] ?? 0).toFixed(1);
  const date = new Date().toISOString().slice(0, 10);
  const svg = renderSyncChart(
    series,
    "Initial sync, host-gw on etcd v3: start → all N peer routes in the kernel (p50)",
    [
      `weft at ${rev}, flanneld ${FLANNELD_VERSION}, ${date}; floors: spawn of ip → exit; flanneld capped at ${CAP_MS / 1000} s`,
      `${navigator.hardwareConcurrency} CPUs, Linux ${kernel}, 1-min load average p50 ${load} during the run`,
    ],
  );
  mkdirSync(dirname(chartPath), { recursive: true });
  writeFileSync(chartPath, svg);
  const shown = relative(process.cwd(), chartPath);
  return `chart: wrote ${shown.startsWith("..") ? chartPath : shown}`;
}

const { syncPart, holdOnly, readyPart, holdsAt } = phaseRunner({
  drivers,
  results,
  phases,
  interrupted: () => teardown.started,
  progress,
});

const loadBefore = loadavg();
const rev = revision();
let etcdVersion = "?";
let weftRun: WeftCommand | undefined;
const flanneld: ReturnType<typeof locateFlanneld> = agents.includes("flanneld")
  ? locateFlanneld()
  : { missing: `WEFT_BENCH_AGENTS=${agents.join(",")} was set` };
let chart = "chart: not written";
try {
  if (agents.includes("weft")) {
    weftRun = weftCommand("scale.bench", dir, weftMode);
    weftMarker = weftRun.marker;
  }
  segment = await createSegment("wsc", HOSTS, SEGMENT_PREFIX_LEN);
  etcdVersion = (
    await startEtcd(segment, dir, (proc) => {
      etcd = proc;
    })
  ).version;
  const [h1, h2, h3] = segment.hosts;
  if (h1 === undefined || h2 === undefined || h3 === undefined)
    throw new Error("createSegment returned too few hosts");
  if (weftRun !== undefined) startDriver("weft", h1, weftRun.argv);
  if ("bin" in flanneld) startDriver("flanneld", h2, [flanneld.bin]);
  if (wants("sync")) startDriver("floor", h3, []);
  for (const [i, n] of sizes.entries()) {
    if (teardown.started) break;
    progress(`N=${n}: writing leases`);
    await Promise.all(
      [...drivers.values()].map((d) =>
        d.request({ op: "prepare", n }, 15 * MINUTE).catch((err) => {
          results.notes.push(`${d.side} prepare ${n}: FAILED: ${errorText(err)}`);
        }),
      ),
    );
    if (wants("sync")) await syncPart(n, i === 0);
    else if (holdsAt(n)) await holdOnly(n);
    if (wants("ready") && READY_SIZES.includes(n)) await readyPart(n);
  }
  chart = writeChart(rev);
} catch (err) {
  results.notes.push(`the run stopped early: ${errorText(err)}`);
} finally {
  await teardown.run();
}

printReport({
  results,
  sizes,
  phases,
  etcdVersion,
  flanneldVersion: FLANNELD_VERSION,
  weftNote: weftRun?.note ?? `not measured (WEFT_BENCH_AGENTS=${agents.join(",")})`,
  flanneldNote: "bin" in flanneld ? flanneld.note || flanneld.bin : `not measured: ${flanneld.missing}`,
  revision: rev,
  loadBefore,
  loadAfter: loadavg(),
  loadSamples,
  elapsedS: (performance.now() - started) / 1000,
  chart,
});
