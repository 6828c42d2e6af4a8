/**
 * The in-namespace half of test/bench/scale.bench.ts: started by it with `ip netns exec <host> bun
 * test/bench/scale-inside.ts '<DriverArgs json>'`, it stays up for the whole run, reads one `Command`
 * a line on stdin and answers each with one `Reply` line on stdout (progress goes to stderr), so that
 * the outer script can take turns between weft, flanneld and the kernel floor round by round. It exits
 * when stdin closes, stopping its agent. It refuses to run in the namespace the benchmark started in.
 *
 * Everything runs inside this host's namespace on one clock (`performance.now()`): the agent is
 * spawned from here (its pid is the agent's) with NOTIFY_SOCKET bound here, leases go from here to
 * etcd over the segment, and a netlink route monitor (PeerRouteWatch, as in agent.bench) timestamps
 * every route of the agent's protocol. The floor side has no agent and no store: it times `ip -batch`
 * of the same routes, with the same monitor open.
 *
 * Every start or floor run begins from "a node that never ran an agent": agent stopped, nexthop
 * objects flushed (`ip nexthop flush`, which takes their routes along), peer routes deleted, own lease
 * and subnet file removed. Firewall rules of a previous run stay.
 */
import { readlinkSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { RTPROT } from "../../src/netlink/constants.ts";
import { Netlink, RTPROT_WEFT } from "../../src/netlink/netlink.ts";
import {
  ETCD_ENDPOINT,
  EtcdHttp,
  HEALTHZ_PORT,
  type Lease,
  NETWORK_CONFIG,
  peerLease,
  writeLeases,
} from "./agent-fixtures.ts";
import { NotifyListener, readProcMemory } from "./agent-probes.ts";
import { PeerRouteWatch } from "./agent-route-watch.ts";
import { AgentProcess, cpuMs, pollReadyz } from "./scale-agent.ts";
import { performanceOffsetMs } from "./scale-clock.ts";
import {
  CHURN,
  type ChurnReport,
  type ChurnResult,
  type Command,
  type DriverArgs,
  FLOOR_PROTOCOL,
  type FloorMode,
  type FloorResult,
  type IdleResult,
  type PrepareResult,
  READY_TIMEOUT_MS,
  type ReadyResult,
  type Reply,
  type SyncResult,
} from "./scale-fixtures.ts";
import { RouteEventLog } from "./scale-route-log.ts";

const CHURN_WRITER = join(import.meta.dir, "scale-churn.ts");
/** How long a converged start may still take to send READY=1 (reported, not waited for). */
const READY_GRACE_MS = 2_000;
/** After a sync, before the idle window: the agent's post-sync work (firewall, status) settles. */
const IDLE_SETTLE_MS = 3_000;

const args = JSON.parse(process.argv[2] ?? "{}") as DriverArgs;
const log = (line: string) => process.stderr.write(`  ${args.side}: ${line}\n`);

if (readlinkSync("/proc/self/ns/net") === args.outerNetns) {
  console.error("scale-inside: refusing to run in the benchmark's own network namespace");
  process.exit(2);
}

const floor = args.side === "floor";
const protocol = args.side === "flanneld" ? RTPROT.BOOT : floor ? FLOOR_PROTOCOL : RTPROT_WEFT;
const subnetsPrefix = `${args.prefix}/subnets/`;
const etcd = new EtcdHttp(ETCD_ENDPOINT);
const nl = Netlink.open();
const notify = floor ? undefined : NotifyListener.bind(args.notifySocket);
const agent = floor
  ? undefined
  : new AgentProcess({
      command: args.command,
      env: { NOTIFY_SOCKET: args.notifySocket },
      logDir: args.logDir,
      logName: args.side,
      pidFile: args.pidFile,
    });
let peers: Lease[] = [];
let watch: PeerRouteWatch | undefined;
let written = 0;
const batchFiles = new Map<FloorMode, { path: string; lines: number }>();

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    agent?.kill();
    process.exit(130);
  });
}

function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`${what} is missing on the ${args.side} side`);
  return value;
}

/** Resolves with `work`'s value, or undefined after `ms`; the timer ends with the race. */
function capped<T>(work: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  return Promise.race([work, expired]).finally(() => clearTimeout(timer));
}

// --- the host --------------------------------------------------------------------------------------

const inNetwork = (dst: string) => dst.startsWith("10.") && Number(dst.split(".")[1]) >= 128; // 10.128.0.0/9

/** Back to "a node that never ran an agent", except firewall rules a previous run left. */
async function resetHost(): Promise<void> {
  await agent?.stop();
  // Nexthop objects (weft's, or the floor's) take their routes with them, without RTM_DELROUTE.
  await Bun.spawn(["ip", "nexthop", "flush"], { stdout: "ignore", stderr: "ignore" }).exited;
  const { items } = await nl.routeList({ protocol });
  const ours = items.filter((r) => inNetwork(r.dst));
  if (ours.length > 0) {
    const { failures } = await nl.routeDelete(ours.map((r) => ({ dst: r.dst, protocol })));
    if (failures.length > 0) throw new Error(`could not flush routes: ${failures[0]?.message}`);
  }
  if (!floor) {
    for (const kv of await etcd.list(subnetsPrefix)) {
      const attrs = JSON.parse(kv.value) as { PublicIP?: string };
      if (attrs.PublicIP === args.address) await etcd.del(kv.key);
    }
    rmSync(args.subnetFile, { force: true });
  }
  const w = need(watch, "a prepared peer set");
  await w.relist();
  if (w.present.size !== 0) throw new Error(`${w.present.size} peer routes left after the flush`);
}

/** Peer routes as `ip route show proto …` lists them, with the lease's gateway after `via`. */
async function countRoutes(): Promise<number> {
  const proc = Bun.spawn(["ip", "route", "show", "proto", String(protocol)], {
    stdout: "pipe",
    stderr: "ignore",
  });
  const text = await new Response(proc.stdout).text();
  await proc.exited;
  const gateways = new Map(peers.map((p) => [p.dst, p.gateway]));
  return text.split("\n").filter((line) => {
    const words = line.trim().split(/\s+/);
    const via = words.indexOf("via");
    return via > 0 && gateways.get(words[0] ?? "") === words[via + 1];
  }).length;
}

// --- commands --------------------------------------------------------------------------------------

function writeBatchFiles(n: number): void {
  const routes = peers.map((p) => `route replace ${p.dst} via ${p.gateway} dev eth0 proto ${protocol}`);
  const nexthops = peers.map(
    (p, i) => `nexthop replace id ${i + 1} via ${p.gateway} dev eth0 proto ${protocol}`,
  );
  const nhRoutes = peers.map((p, i) => `route replace ${p.dst} nhid ${i + 1} proto ${protocol}`);
  for (const [mode, lines] of [
    ["inline", routes],
    ["nexthop", [...nexthops, ...nhRoutes]],
  ] as const) {
    const path = join(args.logDir, `floor-${mode}-${n}.batch`);
    writeFileSync(path, `${lines.join("\n")}\n`);
    batchFiles.set(mode, { path, lines: lines.length });
  }
}

async function prepare(n: number): Promise<PrepareResult> {
  if (n < written) throw new Error(`prepare ${n}: ${written} leases are already written; sizes must grow`);
  const t0 = performance.now();
  peers = Array.from({ length: n }, (_, i) => peerLease(i));
  if (floor) {
    writeBatchFiles(n);
  } else {
    if (written === 0) await etcd.put(`${args.prefix}/config`, NETWORK_CONFIG);
    await writeLeases(etcd, subnetsPrefix, peers.slice(written));
  }
  written = n;
  const ms = performance.now() - t0;
  await watch?.close();
  watch = new PeerRouteWatch(nl, protocol, new Map(peers.map((p) => [p.dst, p.gateway])));
  log(`${floor ? "batch files" : "leases"} for ${n} peers ready in ${ms.toFixed(0)} ms`);
  return { n, ms };
}

async function sync(label: string, capMs: number, keep: boolean): Promise<SyncResult> {
  const a = need(agent, "an agent");
  const w = need(watch, "a prepared peer set");
  const listener = need(notify, "NOTIFY_SOCKET");
  await resetHost();
  listener.discard();
  let notifiedAt: number | undefined;
  const notified = listener.nextReady().then((at) => {
    notifiedAt = at;
  });
  const resyncs = w.resyncs;
  const done = w.allPresent();
  a.spawn(label);
  const t0 = a.spawnedAt;
  const at = await a.untilExit(capped(done, capMs));
  if (at !== undefined && notifiedAt === undefined) await capped(notified, READY_GRACE_MS);
  const reached = w.present.size;
  const counted = await countRoutes();
  if (!keep || at === undefined) await a.stop();
  const since = (v: number | undefined) => (v === undefined ? undefined : v - t0);
  return {
    ms: since(at),
    reached,
    counted,
    notifyMs: since(notifiedAt),
    monitorResyncs: w.resyncs - resyncs,
  };
}

async function idle(seconds: number): Promise<IdleResult> {
  const a = need(agent, "an agent");
  const proc = need(a.proc, "a running agent");
  await a.untilExit(Bun.sleep(IDLE_SETTLE_MS));
  const c0 = cpuMs(proc.pid);
  const t0 = performance.now();
  await a.untilExit(Bun.sleep(seconds * 1_000));
  const c1 = cpuMs(proc.pid);
  const t1 = performance.now();
  const memory = readProcMemory(proc.pid, args.command[0] ?? "");
  return {
    seconds: (t1 - t0) / 1_000,
    cpuMsPerS: (c1 - c0) / ((t1 - t0) / 1_000),
    peerRoutes: need(watch, "a prepared peer set").present.size,
    memory,
    ageS: (t1 - a.spawnedAt) / 1_000,
  };
}

async function churn(): Promise<ChurnResult> {
  const a = need(agent, "an agent");
  const proc = need(a.proc, "a running agent");
  const offset = performanceOffsetMs();
  const events = new RouteEventLog(protocol);
  const cpu: { mono: number; ms: number }[] = [];
  const sampler = setInterval(() => cpu.push({ mono: performance.now() + offset, ms: cpuMs(proc.pid) }), 500);
  let report: ChurnReport;
  try {
    const writer = Bun.spawn(
      [process.execPath, CHURN_WRITER, JSON.stringify({ endpoint: ETCD_ENDPOINT, subnetsPrefix })],
      { stdin: "ignore", stdout: "pipe", stderr: "inherit" },
    );
    const timer = setTimeout(() => writer.kill("SIGKILL"), CHURN.seconds * 1_000 + 120_000);
    const [stdout, code] = await a.untilExit(
      Promise.all([new Response(writer.stdout).text(), writer.exited]),
    );
    clearTimeout(timer);
    const last = stdout.trim().split("\n").pop() ?? "";
    if (code !== 0 || !last.startsWith("{")) throw new Error(`the churn writer exited ${code}: ${last}`);
    report = JSON.parse(last) as ChurnReport;
    // Events of the last operations may still be on their way.
    const deadline = performance.now() + CHURN.timeoutMs;
    const complete = () =>
      report.ops.every(
        (op) =>
          op.error !== undefined ||
          events.first(op.dst, op.action === "put" ? "new" : "del", 0) !== undefined,
      );
    while (!complete() && performance.now() < deadline) await Bun.sleep(100);
  } finally {
    clearInterval(sampler);
    await events.close();
  }
  const putMs: number[] = [];
  const delMs: number[] = [];
  const putRttMs: number[] = [];
  let putMissed = 0;
  let delMissed = 0;
  let failed = 0;
  for (const op of report.ops) {
    if (op.error !== undefined) {
      failed++;
      continue;
    }
    const at = events.first(op.dst, op.action === "put" ? "new" : "del", op.sentMono - 1);
    const missed = at === undefined || at - op.sentMono > CHURN.timeoutMs;
    if (op.action === "put") {
      putRttMs.push(op.rttMs);
      if (missed) putMissed++;
      else putMs.push(at - op.sentMono);
    } else if (missed) delMissed++;
    else delMs.push(at - op.sentMono);
  }
  const sent = report.ops.map((op) => op.sentMono);
  const first = Math.min(...sent);
  const lastSent = Math.max(...sent);
  const inWindow = cpu.filter((s) => s.mono >= first && s.mono <= lastSent);
  const c0 = inWindow[0];
  const c1 = inWindow.at(-1);
  return {
    putMs,
    delMs,
    putMissed,
    delMissed,
    failed,
    putRttMs,
    achievedRate: report.ops.length / ((lastSent - first) / 1_000),
    lagMaxMs: report.lagMaxMs,
    agentCpuMsPerS:
      c0 !== undefined && c1 !== undefined && c1.mono > c0.mono
        ? (c1.ms - c0.ms) / ((c1.mono - c0.mono) / 1_000)
        : Number.NaN,
    peerRoutes: need(watch, "a prepared peer set").present.size,
    monitorOverruns: events.overruns,
  };
}

async function ready(label: string): Promise<ReadyResult> {
  const a = need(agent, "an agent");
  const listener = need(notify, "NOTIFY_SOCKET");
  await resetHost();
  listener.discard();
  const notified = listener.nextReady();
  a.spawn(label);
  const t0 = a.spawnedAt;
  try {
    // weft's /readyz is polled every 1 ms from the start, in parallel with the wait for READY=1.
    const [notifyAt, readyzAt] = await a.untilExit(
      Promise.all([
        capped(notified, READY_TIMEOUT_MS),
        args.side === "weft"
          ? pollReadyz(`http://127.0.0.1:${HEALTHZ_PORT}/readyz`, t0 + READY_TIMEOUT_MS)
          : Promise.resolve(undefined),
      ]),
    );
    if (notifyAt === undefined) throw new Error(`no READY=1 within ${READY_TIMEOUT_MS} ms`);
    return { notifyMs: notifyAt - t0, readyzMs: readyzAt === undefined ? undefined : readyzAt - t0 };
  } finally {
    await a.stop();
  }
}

async function floorRun(mode: FloorMode, capMs: number): Promise<FloorResult> {
  const file = need(batchFiles.get(mode), `the ${mode} batch file`);
  const w = need(watch, "a prepared peer set");
  await resetHost();
  const done = w.allPresent();
  const t0 = performance.now();
  const proc = Bun.spawn(["ip", "-batch", file.path], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), capMs);
  const exitCode = await proc.exited;
  const t1 = performance.now();
  clearTimeout(timer);
  const stderr = (await new Response(proc.stderr).text()).trim().split("\n").slice(0, 3).join(" | ");
  const monitorAt = await capped(done, 10_000);
  await w.relist();
  return {
    ms: proc.signalCode === "SIGKILL" ? undefined : t1 - t0,
    exitCode,
    stderr,
    monitorMs: monitorAt === undefined ? undefined : monitorAt - t0,
    counted: w.present.size,
    commands: file.lines,
  };
}

function handle(cmd: Command): Promise<unknown> {
  switch (cmd.op) {
    case "prepare":
      return prepare(cmd.n);
    case "sync":
      return sync(cmd.label, cmd.capMs, cmd.keep);
    case "idle":
      return idle(cmd.seconds);
    case "churn":
      return churn();
    case "ready":
      return ready(cmd.label);
    case "floor":
      return floorRun(cmd.mode, cmd.capMs);
    case "stop":
      return (agent?.stop() ?? Promise.resolve()).then(() => ({}));
  }
}

// --- main loop -------------------------------------------------------------------------------------

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (line.trim() === "") continue;
  let reply: Reply<unknown>;
  try {
    reply = { ok: true, result: await handle(JSON.parse(line) as Command) };
  } catch (err) {
    reply = { ok: false, error: err instanceof Error ? err.message : String(err) };
    log(`command ${line} failed: ${reply.error}`);
  }
  process.stdout.write(`${JSON.stringify(reply)}\n`);
}
await agent?.stop();
notify?.close();
await watch?.close();
await nl.close();
process.exit(0);
