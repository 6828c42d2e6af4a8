// The whole agent against flanneld v0.28.9, host-gw on etcd v3, with 1,000 leases in the store.
//
//   bun test/bench/agent.bench.ts            (as root; prints a table, asserts nothing)
//
// Setup (all in namespaces this script creates, removed at the end, on failure and on Ctrl-C): one L2
// segment (src/netns) with a bridge namespace running etcd on 172.17.42.1:2379 and two hosts on the
// same /16, 172.17.42.41 for weft and 172.17.42.42 for flanneld, each agent with its own etcd prefix
// holding the host-gw config (10.128.0.0/9, /24 subnets) and 1,000 peer leases in flanneld's JSON,
// every one with its own 24 h etcd lease as flanneld writes them, PublicIPs inside 172.17.0.0/16. The
// agents run one after the other, never together. For each agent, test/bench/agent-inside.ts runs
// inside its host namespace (`ip netns exec`) and measures on one clock:
// 1. start → ready: spawn the agent, poll http://127.0.0.1:<port>/readyz every 5 ms until 200, and
//    count peer routes with a netlink route monitor (weft's Monitor) until all 1,000 are in the kernel
//    (then cross-check with `ip route show proto 77|boot`). Before each run the agent is stopped, its
//    peer routes deleted, its own lease deleted and its subnet file removed, so every run is a new node
//    joining a 1,000-node cluster (firewall rules of the previous run stay). One warm-up run, then 5.
// 2. store event → route: with the agent synced, 200 new leases one at a time (etcd lease granted
//    beforehand, the timed write is the put), then 200 deletes; from just before the write to the
//    RTM_NEWROUTE / RTM_DELROUTE the monitor sees.
// 3. drift repair: delete one of the agent's routes with a netlink request (what `ip route del` sends)
//    and time until the monitor sees it added again; 200 samples for weft, 5 for flanneld whose repair
//    comes from its 10 s routeCheck loop (a random 0–10 s pause before each delete, 15 s timeout).
//
// flanneld comes from build/test-bin.sh (cached in ~/.cache/weft-test-bin); when it cannot be built
// or run, weft's figures are printed with a line saying why flanneld is missing.
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { canUseNetns, createSegment, type Host, removeAll, type Segment } from "../../src/netns/netns.ts";
import {
  type AgentKind,
  ETCD_ENDPOINT,
  HEALTHZ_PORT,
  type InsideResult,
  JOINS,
  PEERS,
  SEGMENT_PREFIX_LEN,
  STORE_IP,
} from "./agent-fixtures.ts";
import type { InsideArgs } from "./agent-inside.ts";
import { percentile, table } from "./stats.ts";

const ROOT = join(import.meta.dir, "..", "..");
const MAIN = join(ROOT, "src", "main.ts");
const INSIDE = join(import.meta.dir, "agent-inside.ts");
const FLANNELD_VERSION = "v0.28.9";
const START_RUNS = 5;
const WEFT_REPAIRS = 200;
const FLANNELD_REPAIRS = 5;
const INSIDE_TIMEOUT_MS = 15 * 60_000;

/** Which agents to measure (`WEFT_BENCH_AGENTS=weft` skips flanneld); WEFT_BENCH_KEEP=1 keeps the logs. */
const agents = (process.env.WEFT_BENCH_AGENTS ?? "weft,flanneld").split(",");
const loadavg = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");

if (!canUseNetns()) {
  console.log("agent.bench: skipped, it needs root and `ip netns` to create its namespaces");
  process.exit(0);
}
if (Bun.which("etcd") === null || Bun.which("etcdctl") === null) {
  console.log("agent.bench: skipped, etcd and etcdctl are not installed (build/setup.sh installs them)");
  process.exit(0);
}

/** The cached flanneld, built on first use; or why there is none. */
function locateFlanneld(): { bin: string; note: string } | { missing: string } {
  if (!agents.includes("flanneld")) return { missing: `WEFT_BENCH_AGENTS=${agents.join(",")} was set` };
  const build = Bun.spawnSync(["bash", join(ROOT, "build", "test-bin.sh"), "flanneld"], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, FLANNELD_VERSION },
  });
  if (build.exitCode !== 0) {
    const why = build.stderr.toString().trim().split("\n").slice(-6).join(" | ");
    return { missing: `build/test-bin.sh flanneld failed (exit ${build.exitCode}): ${why}` };
  }
  const bin = build.stdout.toString().trim().split("\n").pop() ?? "";
  if (!existsSync(bin)) return { missing: `build/test-bin.sh printed no binary (${bin})` };
  const notePath = join(bin, "..", "BUILD-NOTE");
  const note = existsSync(notePath) ? readFileSync(notePath, "utf8").trim() : "";
  return { bin, note };
}

const outerNetns = readlinkSync("/proc/self/ns/net");
const dir = mkdtempSync(join(tmpdir(), "weft-agent-bench-"));
const pidFile = join(dir, "agent-pids");
let segment: Segment | undefined;
let etcd: Subprocess | undefined;
let inside: Subprocess | undefined;
let cleaning: Promise<void> | undefined;

/** Stops everything this script started and removes its namespaces; safe to call twice. */
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    inside?.kill("SIGKILL");
    await inside?.exited;
    // Agents the driver started: killed by pid, only if the pid still runs one of our agents.
    const pids = existsSync(pidFile) ? readFileSync(pidFile, "utf8").split("\n").filter(Boolean) : [];
    for (const pid of pids) {
      let cmdline = "";
      try {
        cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      } catch {
        continue; // gone
      }
      if (cmdline.includes(MAIN) || cmdline.includes("flanneld")) process.kill(Number(pid), "SIGKILL");
    }
    etcd?.kill("SIGKILL");
    await etcd?.exited;
    await segment?.remove();
    await removeAll();
    if (process.env.WEFT_BENCH_KEEP === "1") console.error(`agent.bench: logs kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  })();
  return cleaning;
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    console.error(`agent.bench: ${signal}, cleaning up`);
    void cleanup().finally(() => process.exit(130));
  });
}

async function startEtcd(seg: Segment): Promise<string> {
  await seg.lan.ip("addr", "add", `${STORE_IP}/${SEGMENT_PREFIX_LEN}`, "dev", "br0");
  const fd = openSync(join(dir, "etcd.log"), "a");
  try {
    etcd = Bun.spawn(
      [
        "ip",
        "netns",
        "exec",
        seg.lan.name,
        "etcd",
        "--name=bench",
        `--data-dir=${join(dir, "etcd")}`,
        `--listen-client-urls=${ETCD_ENDPOINT}`,
        `--advertise-client-urls=${ETCD_ENDPOINT}`,
        `--listen-peer-urls=http://${STORE_IP}:2380`,
        `--initial-advertise-peer-urls=http://${STORE_IP}:2380`,
        `--initial-cluster=bench=http://${STORE_IP}:2380`,
        "--log-level=warn",
      ],
      { stdin: "ignore", stdout: fd, stderr: fd },
    );
  } finally {
    closeSync(fd);
  }
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const r = await seg.lan.exec(["etcdctl", `--endpoints=${ETCD_ENDPOINT}`, "endpoint", "health"], {
      allowFailure: true,
    });
    if (r.code === 0) {
      const v = await seg.lan.exec(["etcdctl", `--endpoints=${ETCD_ENDPOINT}`, "version"], {
        allowFailure: true,
      });
      return /etcdctl version: (\S+)/.exec(v.stdout)?.[1] ?? "?";
    }
    await Bun.sleep(100);
  }
  throw new Error(
    `etcd did not start in the segment: ${readFileSync(join(dir, "etcd.log"), "utf8").slice(-500)}`,
  );
}

async function measure(kind: AgentKind, host: Host, bin: string): Promise<InsideResult> {
  const prefix = `/weft-bench/${kind}/network`;
  const subnetFile = join(dir, kind, "subnet.env");
  const common = [
    `--etcd-endpoints=${ETCD_ENDPOINT}`,
    `--etcd-prefix=${prefix}`,
    "--iface=eth0",
    `--subnet-file=${subnetFile}`,
    `--healthz-port=${HEALTHZ_PORT}`,
    "--healthz-ip=127.0.0.1",
  ];
  const command =
    kind === "weft"
      ? [process.execPath, MAIN, "--store=etcd", ...common]
      : [bin, ...common, "--iptables-forward-rules=true"];
  const args: InsideArgs = {
    kind,
    command,
    ns: host.ns.name,
    address: host.address,
    prefix,
    subnetFile,
    logDir: dir,
    pidFile,
    outerNetns,
    runs: START_RUNS,
    repairs: kind === "weft" ? WEFT_REPAIRS : FLANNELD_REPAIRS,
    repairTimeoutMs: kind === "weft" ? 2_000 : 15_000,
    repairPhaseMs: kind === "weft" ? 0 : 10_000,
  };
  console.error(`agent.bench: measuring ${kind} in ${host.ns.name} (${host.address})`);
  const proc = Bun.spawn(
    ["ip", "netns", "exec", host.ns.name, process.execPath, INSIDE, JSON.stringify(args)],
    { stdin: "ignore", stdout: "pipe", stderr: "inherit" },
  );
  inside = proc;
  const timer = setTimeout(() => proc.kill("SIGKILL"), INSIDE_TIMEOUT_MS);
  const [stdout, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  clearTimeout(timer);
  inside = undefined;
  const last = stdout.trim().split("\n").pop() ?? "";
  if (code !== 0 || !last.startsWith("{"))
    return failed(kind, `its driver exited ${code}${last ? `: ${last}` : ""}`);
  return JSON.parse(last) as InsideResult;
}

function failed(kind: AgentKind, error: string): InsideResult {
  return {
    kind,
    error,
    prewriteMs: Number.NaN,
    readyMs: [],
    routesMs: [],
    routesCounted: [],
    joinMs: [],
    leaveMs: [],
    putRttMs: [],
    repairMs: [],
    joinMissed: 0,
    leaveMissed: 0,
    repairMissed: 0,
    repairTimeoutMs: 0,
    monitorResyncs: 0,
  };
}

const loadBefore = loadavg();
const flanneld = locateFlanneld();
let etcdVersion = "?";
let weft: InsideResult | undefined;
let flannel: InsideResult | undefined;
let flannelMissing = "missing" in flanneld ? flanneld.missing : undefined;
try {
  segment = await createSegment("wab", ["172.17.42.41", "172.17.42.42"], SEGMENT_PREFIX_LEN);
  etcdVersion = await startEtcd(segment);
  const [weftHost, flannelHost] = segment.hosts;
  if (weftHost === undefined || flannelHost === undefined) throw new Error("createSegment returned no hosts");
  if (agents.includes("weft")) weft = await measure("weft", weftHost, "");
  if ("bin" in flanneld) {
    flannel = await measure("flanneld", flannelHost, flanneld.bin);
    if (flannel.error !== undefined) flannelMissing = `flanneld failed during the run: ${flannel.error}`;
  }
} finally {
  await cleanup();
}
const loadAfter = loadavg();

// --- report ----------------------------------------------------------------------------------------

const ms = (v: number) => (Number.isNaN(v) ? "-" : v < 10 ? v.toFixed(2) : v.toFixed(1));
const measured = (r: InsideResult | undefined, pick: (r: InsideResult) => number[], warmup = false) => {
  if (r === undefined || r.error !== undefined) return [];
  return warmup ? pick(r).slice(1) : pick(r);
};
interface Row {
  readonly label: string;
  readonly weft: number[];
  readonly flanneld: number[];
  /** Which upper statistic: "max" for the few start runs, "p99" for the event series. */
  readonly upper: "max" | "p99";
  readonly target: string;
}
const rows: Row[] = [
  {
    label: `start → /readyz 200 (${PEERS.toLocaleString("en")} leases)`,
    weft: measured(weft, (r) => r.readyMs, true),
    flanneld: measured(flannel, (r) => r.readyMs, true),
    upper: "max",
    target: "≤ 150 ms",
  },
  {
    label: `start → all ${PEERS.toLocaleString("en")} routes in kernel`,
    weft: measured(weft, (r) => r.routesMs, true),
    flanneld: measured(flannel, (r) => r.routesMs, true),
    upper: "max",
    target: "",
  },
  {
    label: "store put (join) → route added",
    weft: measured(weft, (r) => r.joinMs),
    flanneld: measured(flannel, (r) => r.joinMs),
    upper: "p99",
    target: "p99 ≤ 20 ms",
  },
  {
    label: "store delete (leave) → route removed",
    weft: measured(weft, (r) => r.leaveMs),
    flanneld: measured(flannel, (r) => r.leaveMs),
    upper: "p99",
    target: "p99 ≤ 20 ms",
  },
  {
    label: "route deleted → route back",
    weft: measured(weft, (r) => r.repairMs),
    flanneld: measured(flannel, (r) => r.repairMs),
    upper: "p99",
    target: "p99 ≤ 100 ms",
  },
  {
    label: "(context) store put round trip",
    weft: measured(weft, (r) => r.putRttMs),
    flanneld: measured(flannel, (r) => r.putRttMs),
    upper: "p99",
    target: "",
  },
];
const stat = (samples: number[], which: "p50" | "max" | "p99") =>
  samples.length === 0
    ? Number.NaN
    : which === "p50"
      ? percentile(samples, 50)
      : which === "max"
        ? Math.max(...samples)
        : percentile(samples, 99);

console.log(
  `agent.bench: host-gw, etcd ${etcdVersion} in the segment, Bun ${Bun.version}, ${navigator.hardwareConcurrency} CPUs; flanneld ${
    flannelMissing === undefined ? FLANNELD_VERSION : "not measured"
  }`,
);
console.log(`load average (1/5/15 min): before ${loadBefore}, after ${loadAfter}`);
console.log(
  table(
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
    rows.map((row) => {
      const w50 = stat(row.weft, "p50");
      const f50 = stat(row.flanneld, "p50");
      return [
        row.label,
        `${row.weft.length}/${row.flanneld.length}`,
        ms(w50),
        `${ms(stat(row.weft, row.upper))} ${row.upper}`,
        ms(f50),
        row.flanneld.length === 0 ? "-" : `${ms(stat(row.flanneld, row.upper))} ${row.upper}`,
        Number.isNaN(w50) || Number.isNaN(f50) ? "-" : `${(f50 / w50).toFixed(1)}x`,
        row.target,
      ];
    }),
  ),
);
const notes: string[] = [];
for (const r of [weft, flannel]) {
  if (r === undefined) continue;
  if (r.error !== undefined) {
    notes.push(`${r.kind}: FAILED: ${r.error}`);
    continue;
  }
  notes.push(
    `${r.kind}: warm-up start (not in the table) ready ${ms(r.readyMs[0] ?? Number.NaN)} ms, routes ${ms(r.routesMs[0] ?? Number.NaN)} ms; ` +
      `prewrite of ${PEERS} leases ${ms(r.prewriteMs)} ms; ip route counted ${r.routesCounted.join(",")} peer routes after each start; ` +
      `missed: ${r.joinMissed} joins, ${r.leaveMissed} leaves (5 s timeout), ${r.repairMissed} repairs (${r.repairTimeoutMs / 1000} s timeout); monitor overruns ${r.monitorResyncs}`,
  );
}
if (flannel !== undefined && flannel.error === undefined) {
  notes.push(
    `flanneld repair samples (ms): ${flannel.repairMs.map((v) => v.toFixed(0)).join(", ")} (its routeCheck runs every 10 s; random 0–10 s pause before each delete)`,
  );
}
if (flannelMissing !== undefined) notes.push(`flanneld missing: ${flannelMissing}`);
else if ("bin" in flanneld && flanneld.note !== "") notes.push(`flanneld build: ${flanneld.note}`);
notes.push(
  `joins/leaves: ${JOINS} each, one at a time; ratio column = flanneld p50 / weft p50 (above 1 means weft is faster)`,
);
console.log(notes.map((n) => `- ${n}`).join("\n"));
