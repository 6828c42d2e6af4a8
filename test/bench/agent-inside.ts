/**
 * The in-namespace half of test/bench/agent.bench.ts: started by it with `ip netns exec <host> bun
 * test/bench/agent-inside.ts '<json>'`, it measures one agent (weft or flanneld) on that host and
 * prints one JSON line (`InsideResult`) on stdout; progress goes to stderr.
 *
 * Everything here runs inside the host namespace, on one clock (`performance.now()`): the agent is
 * spawned from here (directly, so its pid is the agent's) with NOTIFY_SOCKET set to a datagram socket
 * bound here, /readyz is polled from here, store writes go from here to etcd over the segment, a
 * netlink route monitor (weft's `Monitor`) on this namespace timestamps every route change, and the
 * agent's /proc/<pid>/status is read from here. It refuses to run in the namespace the benchmark was
 * started in.
 */
import { appendFileSync, closeSync, openSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { RTPROT } from "../../src/netlink/constants.ts";
import { Netlink, RTPROT_WEFT } from "../../src/netlink/netlink.ts";
import {
  type AgentKind,
  ETCD_ENDPOINT,
  EtcdHttp,
  emptyResult,
  HEALTHZ_PORT,
  type InsideResult,
  JOINS,
  joinLease,
  LEASE_TTL_SECONDS,
  type MemoryReading,
  NETWORK_CONFIG,
  PEERS,
  type Phase,
  peerLease,
  writeLeases,
} from "./agent-fixtures.ts";
import { NotifyListener, readProcMemory } from "./agent-probes.ts";
import { PeerRouteWatch } from "./agent-route-watch.ts";

export interface InsideArgs {
  readonly kind: AgentKind;
  /** The agent's argv; the driver adds nothing (its environment gets NOTIFY_SOCKET). */
  readonly command: readonly string[];
  /** Path of the datagram socket the driver binds and passes as NOTIFY_SOCKET. */
  readonly notifySocket: string;
  /** What to measure after the start runs (which always happen). */
  readonly phases: readonly Phase[];
  /** The memory phase reads /proc this long after the last agent's spawn, ms. */
  readonly memoryAgeMs: number;
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
/** `performance.now()` just before `agent` was spawned. */
let agentSpawnedAt = Number.NaN;
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

const nl = Netlink.open();
const routes = new PeerRouteWatch(nl, protocol, expected);
const notify = NotifyListener.bind(args.notifySocket);

// --- the agent -------------------------------------------------------------------------------------

function spawnAgent(label: string): Subprocess {
  const path = join(args.logDir, `${args.kind}-${label}.log`);
  agentLog = path;
  appendFileSync(path, `# bench: spawned at ${new Date().toISOString()}\n`);
  const fd = openSync(path, "a");
  try {
    const proc = Bun.spawn([...args.command], {
      stdin: "ignore",
      stdout: fd,
      stderr: fd,
      env: { ...process.env, NOTIFY_SOCKET: args.notifySocket },
    });
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
    next += 1;
    const wait = next - performance.now();
    if (wait > 0) await Bun.sleep(wait);
    else next = performance.now();
  }
  throw new Error(`/readyz did not answer 200 within ${READY_TIMEOUT_MS} ms; log ends:\n${logTail()}`);
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
  await routes.relist();
  if (routes.present.size !== 0) throw new Error(`${routes.present.size} peer routes left after the flush`);
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
  await writeLeases(etcd, subnetsPrefix, peers);
  return performance.now() - t0;
}

interface StartTimes {
  readonly ready: number;
  readonly notify: number;
  readonly routes: number;
  readonly counted: number;
}

async function startRun(label: string): Promise<StartTimes> {
  await resetHost();
  notify.discard();
  const routesDone = routes.allPresent();
  const notified = notify.nextReady();
  const t0 = performance.now();
  const proc = spawnAgent(label);
  agent = proc;
  agentSpawnedAt = t0;
  const deadline = t0 + READY_TIMEOUT_MS;
  const [readyAt, notifyAt, routesAt] = await untilExit(
    proc,
    Promise.all([
      pollReady(proc, deadline),
      withTimeout(notified, "READY=1 on NOTIFY_SOCKET"),
      withTimeout(routesDone, `all ${PEERS} routes`),
    ]),
  );
  const counted = await countRoutes();
  return { ready: readyAt - t0, notify: notifyAt - t0, routes: routesAt - t0, counted };
}

/** `promise`, or a rejection after READY_TIMEOUT_MS naming `what`; the timer ends with the race. */
function withTimeout<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(
        new Error(`timed out after ${READY_TIMEOUT_MS} ms waiting for ${what}; log ends:\n${logTail()}`),
      );
    }, READY_TIMEOUT_MS);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/** `work`, or a rejection saying the agent exited before it was done. */
function untilExit<T>(proc: Subprocess, work: Promise<T>): Promise<T> {
  const died = exitWatch(proc);
  died.catch(() => undefined);
  return Promise.race([work, died]);
}

/** The running agent's memory once `args.memoryAgeMs` have passed since its spawn. */
async function memoryAtAge(): Promise<MemoryReading> {
  const proc = agent;
  if (proc === undefined) throw new Error("no agent is running for the memory phase");
  const wait = agentSpawnedAt + args.memoryAgeMs - performance.now();
  if (wait > 0) await untilExit(proc, Bun.sleep(wait));
  const ageMs = performance.now() - agentSpawnedAt;
  const peerRoutes = routes.present.size;
  return { ageMs, peerRoutes, ...readProcMemory(proc.pid, args.command[0] ?? "") };
}

async function joinsAndLeaves(result: Mutable<InsideResult>): Promise<void> {
  const joins = Array.from({ length: JOINS }, (_, j) => joinLease(j));
  for (const l of joins) {
    const leaseId = await etcd.grant(LEASE_TTL_SECONDS);
    const seen = routes.waitRoute(l.dst, "new", EVENT_TIMEOUT_MS);
    const t0 = performance.now();
    await etcd.put(`${subnetsPrefix}${l.keyName}`, l.value, leaseId);
    result.putRttMs.push(performance.now() - t0);
    const at = await seen;
    if (at === undefined) result.joinMissed++;
    else result.joinMs.push(at - t0);
    await Bun.sleep(2 + Math.random() * 4);
  }
  for (const l of joins) {
    const seen = routes.waitRoute(l.dst, "del", EVENT_TIMEOUT_MS);
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
    if (!routes.present.has(p.dst)) {
      // A previous sample timed out and the route has not come back yet: give it the timeout again.
      if ((await routes.waitRoute(p.dst, "new", args.repairTimeoutMs)) === undefined) continue;
    }
    if (args.repairPhaseMs > 0) await Bun.sleep(Math.random() * args.repairPhaseMs);
    const back = routes.waitRoute(p.dst, "new", args.repairTimeoutMs);
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

const result: Mutable<InsideResult> = emptyResult(args.kind, args.repairTimeoutMs);
const runs = (phase: Phase) => args.phases.includes(phase);

try {
  result.prewriteMs = await prewrite();
  log(`wrote the config and ${PEERS} leases in ${result.prewriteMs.toFixed(0)} ms`);
  for (let run = 0; run <= args.runs; run++) {
    const label = run === 0 ? "warmup" : `run${run}`;
    const r = await startRun(label);
    result.readyMs.push(r.ready);
    result.notifyMs.push(r.notify);
    result.routesMs.push(r.routes);
    result.routesCounted.push(r.counted);
    log(
      `start ${label}: ready ${r.ready.toFixed(1)} ms, READY=1 ${r.notify.toFixed(1)} ms, ${PEERS} routes ${r.routes.toFixed(1)} ms, ip route counts ${r.counted}`,
    );
  }
  if (runs("events") || runs("repairs")) await Bun.sleep(500); // let the last start settle
  if (runs("events")) {
    await joinsAndLeaves(result);
    log(`joins/leaves done (${result.joinMissed + result.leaveMissed} missed)`);
  }
  if (runs("repairs")) {
    await repairs(result);
    log(`repairs done (${result.repairMissed} missed)`);
  }
  if (runs("memory")) {
    result.memory = await memoryAtAge();
    log(
      `memory at ${(result.memory.ageMs / 1000).toFixed(1)} s: VmRSS ${result.memory.vmRssKiB} kB, ${result.memory.peerRoutes} peer routes, status "${notify.lastStatus}"`,
    );
  }
} catch (err) {
  result.error = err instanceof Error ? err.message : String(err);
} finally {
  await stopAgent();
  notify.close();
  await routes.close();
  await nl.close();
}
result.monitorResyncs = routes.resyncs;
console.log(JSON.stringify(result));
