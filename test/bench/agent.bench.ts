// The whole agent against flanneld v0.28.9, host-gw on etcd v3, with 1,000 leases in the store.
//
//   bun test/bench/agent.bench.ts            (as root; prints two tables, asserts nothing)
//
// weft runs as the compiled binary: the script first runs `bun build/compile.ts --only <arch> --out
// <its tmp dir>/dist` and starts `<tmp>/dist/weft-linux-<arch> --store=etcd …`; when the compile
// fails it says why and measures `bun src/main.ts` instead (the report says which ran).
//
// Setup (all in namespaces this script creates, removed at the end, on failure and on Ctrl-C): one L2
// segment (src/netns) with a bridge namespace running etcd on 172.17.42.1:2379 and two hosts on the
// same /16, 172.17.42.41 for weft and 172.17.42.42 for flanneld, each agent with its own etcd prefix
// holding the host-gw config (10.128.0.0/9, /24 subnets) and 1,000 peer leases in flanneld's JSON,
// every one with its own 24 h etcd lease as flanneld writes them, PublicIPs inside 172.17.0.0/16. The
// agents run one after the other, never together. For each agent, test/bench/agent-inside.ts runs
// inside its host namespace (`ip netns exec`), spawns the agent itself (so the agent's pid is known)
// with NOTIFY_SOCKET set to a unix datagram socket it binds, and measures on one clock:
// 1. start (always runs): spawn the agent and time three things: http://127.0.0.1:<port>/readyz
//    answering 200 (polled every 1 ms); READY=1 arriving on NOTIFY_SOCKET (sd_notify, polled every
//    1 ms; flanneld sends it once its backend runs); all 1,000 peer routes in the kernel, counted
//    with a netlink route monitor (weft's Monitor) and cross-checked with `ip route show proto
//    77|boot`. Before each run the agent is stopped, its peer routes deleted, its own lease deleted
//    and its subnet file removed, so every run is a new node joining a 1,000-node cluster (firewall
//    rules of the previous run stay). One warm-up run, then 5.
// 2. events: with the agent synced, 200 new leases one at a time (etcd lease granted beforehand, the
//    timed write is the put), then 200 deletes; from just before the write to the RTM_NEWROUTE /
//    RTM_DELROUTE the monitor sees.
// 3. repairs: delete one of the agent's routes with a netlink request (what `ip route del` sends) and
//    time until the monitor sees it added again; 200 samples for weft, 5 for flanneld whose repair
//    comes from its 10 s routeCheck loop (a random 0–10 s pause before each delete, 15 s timeout).
// 4. memory: the last-started agent keeps running until 60 s after its spawn (read at once, with its
//    real age, when the phases before took longer), then its /proc/<pid>/status gives VmRSS, RssAnon,
//    RssFile, RssShmem and VmHWM, next to the number of its peer routes in the kernel at that moment.
//    The second table puts them next to flanneld's, with both binaries' file sizes.
//
// Environment:
//   WEFT_BENCH_WEFT=source      measure `bun src/main.ts` instead of the compiled binary
//   WEFT_BENCH_PHASES=a,b       which of start,events,repairs,memory to run (default all; start always
//                               runs), e.g. WEFT_BENCH_PHASES=start,memory for a quick RSS check
//   WEFT_BENCH_AGENTS=weft      skip flanneld (default weft,flanneld)
//   WEFT_BENCH_KEEP=1           keep the temporary directory with the agents' logs
//
// flanneld comes from build/test-bin.sh (cached in ~/.cache/weft-test-bin); when it cannot be built
// or run, weft's figures are printed with a line saying why flanneld is missing, and the other way
// round when weft fails.
import { mkdtempSync, readlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { canUseNetns, createSegment, type Host, type Segment } from "../../src/netns/netns.ts";
import {
  type AgentKind,
  ETCD_ENDPOINT,
  emptyResult,
  HEALTHZ_PORT,
  type InsideResult,
  MEMORY_AGE_MS,
  PHASES,
  type Phase,
  SEGMENT_PREFIX_LEN,
} from "./agent-fixtures.ts";
import type { InsideArgs } from "./agent-inside.ts";
import { printReport } from "./agent-report.ts";
import {
  benchTeardown,
  FLANNELD_VERSION,
  fileMiB,
  loadavg,
  locateFlanneld,
  MAIN,
  startEtcd,
  type WeftCommand,
  weftCommand,
} from "./agent-setup.ts";

const INSIDE = join(import.meta.dir, "agent-inside.ts");
const START_RUNS = 5;
const WEFT_REPAIRS = 200;
const FLANNELD_REPAIRS = 5;
const INSIDE_TIMEOUT_MS = 15 * 60_000;

/** Which agents to measure (`WEFT_BENCH_AGENTS=weft` skips flanneld); WEFT_BENCH_KEEP=1 keeps the logs. */
const agents = (process.env.WEFT_BENCH_AGENTS ?? "weft,flanneld").split(",");

function usage(problem: string): never {
  console.error(`agent.bench: ${problem}`);
  process.exit(2);
}

/** WEFT_BENCH_PHASES with "start" added: the other phases need a started agent. */
function phasesFromEnv(): Phase[] {
  const raw = process.env.WEFT_BENCH_PHASES ?? "";
  if (raw.trim() === "") return [...PHASES];
  const names = raw.split(",").map((name) => name.trim());
  const unknown = names.filter((name) => !PHASES.some((phase) => phase === name));
  if (unknown.length > 0) {
    usage(
      `WEFT_BENCH_PHASES=${raw}: unknown phase "${unknown.join(",")}"; use a comma list of ${PHASES.join(",")}`,
    );
  }
  return PHASES.filter((phase) => phase === "start" || names.includes(phase));
}

/** WEFT_BENCH_WEFT: "binary" (default) or "source". */
function weftModeFromEnv(): "binary" | "source" {
  const raw = process.env.WEFT_BENCH_WEFT ?? "binary";
  if (raw === "binary" || raw === "source") return raw;
  return usage(`WEFT_BENCH_WEFT=${raw}: use "binary" (the default) or "source"`);
}

const phases = phasesFromEnv();
const weftMode = weftModeFromEnv();

if (!canUseNetns()) {
  console.log("agent.bench: skipped, it needs root and `ip netns` to create its namespaces");
  process.exit(0);
}
if (Bun.which("etcd") === null || Bun.which("etcdctl") === null) {
  console.log("agent.bench: skipped, etcd and etcdctl are not installed (build/setup.sh installs them)");
  process.exit(0);
}

const outerNetns = readlinkSync("/proc/self/ns/net");
const dir = mkdtempSync(join(tmpdir(), "weft-agent-bench-"));
const pidFile = join(dir, "agent-pids");
let segment: Segment | undefined;
let etcd: Subprocess | undefined;
let inside: Subprocess | undefined;
/** What identifies a weft agent in /proc/<pid>/cmdline: its binary, or src/main.ts. */
let weftMarker = MAIN;

/** Stops everything this script started and removes its namespaces; safe to call twice. */
const teardown = benchTeardown("agent.bench", {
  stopOwn: async () => {
    inside?.kill("SIGKILL");
    await inside?.exited;
  },
  pidFile,
  markers: () => [weftMarker, "flanneld"],
  etcd: () => etcd,
  segment: () => segment,
  dir,
});

/** Runs the driver for one agent; `argv` is the agent's command up to the flags both share. */
async function measure(kind: AgentKind, host: Host, argv: readonly string[]): Promise<InsideResult> {
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
  // weft's control socket in the bench's directory, never the machine's /run/weft.
  const command =
    kind === "weft"
      ? [...argv, ...common, `--control-socket=${join(dir, kind, "weft.sock")}`]
      : [...argv, ...common, "--iptables-forward-rules=true"];
  const args: InsideArgs = {
    kind,
    command,
    notifySocket: join(dir, `${kind}-notify.sock`),
    phases,
    memoryAgeMs: MEMORY_AGE_MS,
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
  // After Ctrl-C the cleanup has already run past the driver: start no new one.
  if (teardown.started) throw new Error("interrupted");
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
  return { ...emptyResult(kind, 0), error };
}

const loadBefore = loadavg();
const flanneld: ReturnType<typeof locateFlanneld> = agents.includes("flanneld")
  ? locateFlanneld()
  : { missing: `WEFT_BENCH_AGENTS=${agents.join(",")} was set` };
let etcdVersion = "?";
let weft: InsideResult | undefined;
let flannel: InsideResult | undefined;
let flannelMissing = "missing" in flanneld ? flanneld.missing : undefined;
let weftRun: WeftCommand | undefined;
try {
  weftRun = agents.includes("weft") ? weftCommand("agent.bench", dir, weftMode) : undefined;
  if (weftRun !== undefined) weftMarker = weftRun.marker;
  segment = await createSegment("wab", ["172.17.42.41", "172.17.42.42"], SEGMENT_PREFIX_LEN);
  etcdVersion = (
    await startEtcd(segment, dir, (proc) => {
      etcd = proc;
    })
  ).version;
  const [weftHost, flannelHost] = segment.hosts;
  if (weftHost === undefined || flannelHost === undefined) throw new Error("createSegment returned no hosts");
  if (weftRun !== undefined) weft = await measure("weft", weftHost, weftRun.argv);
  if ("bin" in flanneld) {
    flannel = await measure("flanneld", flannelHost, [flanneld.bin]);
    if (flannel.error !== undefined) flannelMissing = `flanneld failed during the run: ${flannel.error}`;
  }
} finally {
  await teardown.run();
}

printReport({
  etcdVersion,
  flanneldVersion: FLANNELD_VERSION,
  loadBefore,
  loadAfter: loadavg(),
  phases,
  startRuns: START_RUNS,
  weft,
  flanneld: flannel,
  weftNote: weftRun?.note ?? `not measured (WEFT_BENCH_AGENTS=${agents.join(",")})`,
  flanneldMissing: flannelMissing,
  flanneldBuildNote: "bin" in flanneld ? flanneld.note : "",
  weftBinaryMiB: weftRun?.binaryMiB,
  flanneldBinaryMiB: "bin" in flanneld ? fileMiB(flanneld.bin) : undefined,
});
