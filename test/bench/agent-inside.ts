/**
 * The in-namespace half of test/bench/agent.bench.ts: started by it with `ip netns exec <host> bun
 * test/bench/agent-inside.ts '<json>'`, it measures one agent (weft or flanneld) on that host and
 * prints one JSON line (`InsideResult`) on stdout; progress goes to stderr.
 *
 * Everything here runs inside the host namespace, on one clock (`performance.now()`): the agent is
 * spawned from here, /readyz is polled from here, store writes go from here to etcd over the segment,
 * and a netlink route monitor (weft's `Monitor`) on this namespace timestamps every route change. It
 * refuses to run in the namespace the benchmark was started in.
 */
import { appendFileSync, closeSync, openSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { RTPROT } from "../../src/netlink/constants.ts";
import { Monitor } from "../../src/netlink/monitor.ts";
import { Netlink, RTPROT_WEFT } from "../../src/netlink/netlink.ts";
import {
  type AgentKind,
  ETCD_ENDPOINT,
  EtcdHttp,
  HEALTHZ_PORT,
  type InsideResult,
  JOINS,
  joinLease,
  LEASE_TTL_SECONDS,
  NETWORK_CONFIG,
  PEERS,
  peerLease,
} from "./agent-fixtures.ts";

export interface InsideArgs {
  readonly kind: AgentKind;
  /** The agent's argv; the driver adds nothing. */
  readonly command: readonly string[];
  /** This host's namespace name (for `ip -n`) and address on the segment. */
  readonly ns: string;
  readonly address: string;
  readonly prefix: string;
  readonly subnetFile: string;
  readonly logDir: string;
  /** Every agent pid is appended here, so the outer script can kill what a crashed driver left. */
  readonly pidFile: string;
  /** `readlink /proc/self/ns/net` of the outer script: this driver must not run there. */
  readonly outerNetns: string;
  /** Measured start runs (one warm-up run comes first). */
  readonly runs: number;
  readonly repairs: number;
  readonly repairTimeoutMs: number;
  /** flanneld's repair comes from a 10 s loop: wait a random 0..this ms before each delete. */
  readonly repairPhaseMs: number;
}

const READY_TIMEOUT_MS = 60_000;
const EVENT_TIMEOUT_MS = 5_000;
const STOP_TIMEOUT_MS = 10_000;

const args = JSON.parse(process.argv[2] ?? "{}") as InsideArgs;
const log = (line: string) => process.stderr.write(`  ${args.kind}: ${line}\n`);

if (readlinkSync("/proc/self/ns/net") === args.outerNetns) {
  console.error("agent-inside: refusing to run in the benchmark's own network namespace");
  process.exit(2);
}

let agent: Subprocess | undefined;
let agentLog = "";
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    agent?.kill("SIGKILL");
    process.exit(130);
  });
}

const protocol = args.kind === "weft" ? RTPROT_WEFT : RTPROT.BOOT;
const etcd = new EtcdHttp(ETCD_ENDPOINT);
const peers = Array.from({ length: PEERS }, (_, i) => peerLease(i));
const expected = new Map(peers.map((p) => [p.dst, p.publicIP]));
const subnetsPrefix = `${args.prefix}/subnets/`;

// --- kernel view: a netlink route monitor on this namespace --------------------------------------

const nl = Netlink.open();
/** Peer subnets whose route (right gateway, the agent's protocol) is in the kernel now. */
const present = new Set<string>();
interface Waiter {
  readonly dst: string;
  readonly action: "new" | "del";
  resolve(at: number): void;
}
const waiters = new Set<Waiter>();
let onPresentChange: ((at: number) => void) | undefined;
let monitorResyncs = 0;

async function relist(): Promise<void> {
  const { items } = await nl.routeList({ protocol });
  present.clear();
  for (const r of items) if (r.gateway !== undefined && expected.get(r.dst) === r.gateway) present.add(r.dst);
  onPresentChange?.(performance.now());
}

const monitor = Monitor.open(
  (event) => {
    const at = performance.now();
    if (event.type === "resync") {
      monitorResyncs++;
      void relist();
      return;
    }
    if (event.type !== "route" || event.route.protocol !== protocol) return;
    const { route, action } = event;
    for (const w of waiters) {
      if (w.dst === route.dst && w.action === action) {
        waiters.delete(w);
        w.resolve(at);
      }
    }
    const gateway = expected.get(route.dst);
    if (gateway === undefined) return;
    if (action === "new" && route.gateway === gateway) present.add(route.dst);
    else present.delete(route.dst);
    onPresentChange?.(at);
  },
  { groups: ["route"] },
);

/** Resolves with the time the monitor saw `action` for `dst`, or undefined after `timeoutMs`. */
function waitRoute(dst: string, action: "new" | "del", timeoutMs: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const waiter: Waiter = {
      dst,
      action,
      resolve: (at) => {
        clearTimeout(timer);
        resolve(at);
      },
    };
    const timer = setTimeout(() => {
      waiters.delete(waiter);
      resolve(undefined);
    }, timeoutMs);
    waiters.add(waiter);
  });
}

/** Resolves with the time the 1,000th peer route appeared. */
function allPeersPresent(): Promise<number> {
  return new Promise((resolve) => {
    onPresentChange = (at) => {
      if (present.size === PEERS) {
        onPresentChange = undefined;
        resolve(at);
      }
    };
    onPresentChange(performance.now());
  });
}

// --- the agent -------------------------------------------------------------------------------------

function spawnAgent(label: string): Subprocess {
  const path = join(args.logDir, `${args.kind}-${label}.log`);
  agentLog = path;
  appendFileSync(path, `# bench: spawned at ${new Date().toISOString()}\n`);
  const fd = openSync(path, "a");
  try {
    const proc = Bun.spawn([...args.command], { stdin: "ignore", stdout: fd, stderr: fd });
    appendFileSync(args.pidFile, `${proc.pid}\n`);
    return proc;
  } finally {
    closeSync(fd);
  }
}

function logTail(): string {
  try {
    return readFileSync(agentLog, "utf8").trim().split("\n").slice(-15).join("\n");
  } catch {
    return "(no log)";
  }
}

async function stopAgent(): Promise<void> {
  const proc = agent;
  if (proc === undefined) return;
  agent = undefined;
  proc.kill("SIGTERM");
  const stopped = await Promise.race([
    proc.exited.then(() => true),
    Bun.sleep(STOP_TIMEOUT_MS).then(() => false),
  ]);
  if (!stopped) {
    proc.kill("SIGKILL");
    await proc.exited;
  }
}

/** Rejects when the agent exits: nothing it was expected to do will happen any more. */
function exitWatch(proc: Subprocess): Promise<never> {
  return proc.exited.then((code) => {
    throw new Error(`${args.kind} exited with ${code} during the run; its log ends:\n${logTail()}`);
  });
}

async function pollReady(proc: Subprocess, deadline: number): Promise<number> {
  const url = `http://127.0.0.1:${HEALTHZ_PORT}/readyz`;
  let next = performance.now();
  while (performance.now() < deadline) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`${args.kind} exited`);
    const ok = await fetch(url, { signal: AbortSignal.timeout(1_000) }).then(
      async (res) => {
        await res.arrayBuffer();
        return res.status === 200;
      },
      () => false,
    );
    if (ok) return performance.now();
    next += 5;
    const wait = next - performance.now();
    if (wait > 0) await Bun.sleep(wait);
    else next = performance.now();
  }
  throw new Error(`/readyz did not answer 200 within ${READY_TIMEOUT_MS} ms; log ends:\n${logTail()}`);
}

function timeout<T>(ms: number, what: string): Promise<T> {
  return Bun.sleep(ms).then(() => {
    throw new Error(`timed out after ${ms} ms waiting for ${what}; log ends:\n${logTail()}`);
  });
}

/** Back to "a node that never ran an agent", except firewall rules a previous run left. */
async function resetHost(): Promise<void> {
  await stopAgent();
  const { items } = await nl.routeList({ protocol });
  const ours = items.filter((r) => r.dst.startsWith("10.") && Number(r.dst.split(".")[1]) >= 128); // 10.128.0.0/9
  if (ours.length > 0) {
    const { failures } = await nl.routeDelete(ours.map((r) => ({ dst: r.dst, protocol })));
    if (failures.length > 0) throw new Error(`could not flush routes: ${failures[0]?.message}`);
  }
  for (const kv of await etcd.list(subnetsPrefix)) {
    const attrs = JSON.parse(kv.value) as { PublicIP?: string };
    if (attrs.PublicIP === args.address) await etcd.del(kv.key);
  }
  rmSync(args.subnetFile, { force: true });
  await relist();
  if (present.size !== 0) throw new Error(`${present.size} peer routes left after the flush`);
}

async function countRoutes(): Promise<number> {
  const proc = Bun.spawn(["ip", "-n", args.ns, "route", "show", "proto", String(protocol)], {
    stdout: "pipe",
    stderr: "ignore",
  });
  const text = await new Response(proc.stdout).text();
  await proc.exited;
  return text.split("\n").filter((line) => expected.has(line.split(" ")[0] ?? "")).length;
}

// --- scenarios -------------------------------------------------------------------------------------

async function prewrite(): Promise<number> {
  const t0 = performance.now();
  await etcd.put(`${args.prefix}/config`, NETWORK_CONFIG);
  const leaseIds: string[] = [];
  for (let start = 0; start < PEERS; start += 50) {
    const n = Math.min(50, PEERS - start);
    leaseIds.push(...(await Promise.all(Array.from({ length: n }, () => etcd.grant(LEASE_TTL_SECONDS)))));
  }
  for (let start = 0; start < PEERS; start += 100) {
    await etcd.putMany(
      peers.slice(start, start + 100).map((p, k) => ({
        key: `${subnetsPrefix}${p.keyName}`,
        value: p.value,
        lease: leaseIds[start + k] ?? "",
      })),
    );
  }
  const written = (await etcd.list(subnetsPrefix)).length;
  if (written !== PEERS) throw new Error(`wrote ${PEERS} leases, the store lists ${written}`);
  return performance.now() - t0;
}

async function startRun(label: string): Promise<{ ready: number; routes: number; counted: number }> {
  await resetHost();
  const routesDone = allPeersPresent();
  const t0 = performance.now();
  const proc = spawnAgent(label);
  agent = proc;
  const deadline = t0 + READY_TIMEOUT_MS;
  const died = exitWatch(proc);
  died.catch(() => undefined);
  const [readyAt, routesAt] = await Promise.race([
    Promise.all([
      pollReady(proc, deadline),
      Promise.race([routesDone, timeout<number>(READY_TIMEOUT_MS, `all ${PEERS} routes`)]),
    ]),
    died,
  ]);
  const counted = await countRoutes();
  return { ready: readyAt - t0, routes: routesAt - t0, counted };
}

async function joinsAndLeaves(result: Mutable<InsideResult>): Promise<void> {
  const joins = Array.from({ length: JOINS }, (_, j) => joinLease(j));
  for (const l of joins) {
    const leaseId = await etcd.grant(LEASE_TTL_SECONDS);
    const seen = waitRoute(l.dst, "new", EVENT_TIMEOUT_MS);
    const t0 = performance.now();
    await etcd.put(`${subnetsPrefix}${l.keyName}`, l.value, leaseId);
    result.putRttMs.push(performance.now() - t0);
    const at = await seen;
    if (at === undefined) result.joinMissed++;
    else result.joinMs.push(at - t0);
    await Bun.sleep(2 + Math.random() * 4);
  }
  for (const l of joins) {
    const seen = waitRoute(l.dst, "del", EVENT_TIMEOUT_MS);
    const t0 = performance.now();
    await etcd.del(`${subnetsPrefix}${l.keyName}`);
    const at = await seen;
    if (at === undefined) result.leaveMissed++;
    else result.leaveMs.push(at - t0);
    await Bun.sleep(2 + Math.random() * 4);
  }
}

async function repairs(result: Mutable<InsideResult>): Promise<void> {
  for (let k = 0; k < args.repairs; k++) {
    const p = peers[(k * 37) % PEERS];
    if (p === undefined) continue;
    if (!present.has(p.dst)) {
      // A previous sample timed out and the route has not come back yet: give it the timeout again.
      if ((await waitRoute(p.dst, "new", args.repairTimeoutMs)) === undefined) continue;
    }
    if (args.repairPhaseMs > 0) await Bun.sleep(Math.random() * args.repairPhaseMs);
    const back = waitRoute(p.dst, "new", args.repairTimeoutMs);
    const t0 = performance.now();
    const { failures } = await nl.routeDelete([{ dst: p.dst, gateway: p.publicIP, protocol }]);
    if (failures.length > 0) throw new Error(`route delete failed: ${failures[0]?.message}`);
    const at = await back;
    if (at === undefined) result.repairMissed++;
    else result.repairMs.push(at - t0);
    if (args.repairs > 10 && k % 50 === 49) log(`repair ${k + 1}/${args.repairs}`);
    await Bun.sleep(5 + Math.random() * 10);
  }
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

const result: Mutable<InsideResult> = {
  kind: args.kind,
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
  repairTimeoutMs: args.repairTimeoutMs,
  monitorResyncs: 0,
};

try {
  result.prewriteMs = await prewrite();
  log(`wrote the config and ${PEERS} leases in ${result.prewriteMs.toFixed(0)} ms`);
  for (let run = 0; run <= args.runs; run++) {
    const label = run === 0 ? "warmup" : `run${run}`;
    const r = await startRun(label);
    result.readyMs.push(r.ready);
    result.routesMs.push(r.routes);
    result.routesCounted.push(r.counted);
    log(
      `start ${label}: ready ${r.ready.toFixed(1)} ms, ${PEERS} routes ${r.routes.toFixed(1)} ms, ip route counts ${r.counted}`,
    );
  }
  await Bun.sleep(500); // let the last start settle before timing single events
  await joinsAndLeaves(result);
  log(`joins/leaves done (${result.joinMissed + result.leaveMissed} missed)`);
  await repairs(result);
  log(`repairs done (${result.repairMissed} missed)`);
} catch (err) {
  result.error = err instanceof Error ? err.message : String(err);
} finally {
  await stopAgent();
  await monitor.close();
  await nl.close();
}
result.monitorResyncs = monitorResyncs;
console.log(JSON.stringify(result));
