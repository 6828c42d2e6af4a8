/**
 * The in-namespace half of test/bench/vxlan.bench.ts: started by it with `ip netns exec <host> bun
 * test/bench/vxlan-inside.ts '<json>'` (`VxlanInsideArgs`), it measures one agent on one backend on
 * that host and prints one JSON line (`VxlanInsideResult`) on stdout; progress goes to stderr.
 *
 * Everything runs inside the host namespace on one clock (`performance.now()`): the agent is spawned
 * from here (its pid is the agent's) with NOTIFY_SOCKET bound here, leases are written from here to
 * etcd over the segment, and one netlink monitor (test/bench/peer-entry-watch.ts) timestamps every
 * route, neighbour and link change. It refuses to run in the namespace the benchmark started in.
 *
 * Per size: the new leases are written, then each start run resets the host to "never ran an agent"
 * (agent stopped, flannel.1 deleted, peer routes deleted, own lease and subnet file removed; firewall
 * rules stay) and times the agent's start until every route, ARP and FDB entry is in the kernel, with
 * `ip route show` / `ip neigh show dev flannel.1` / `bridge fdb show dev flannel.1` counted at the end.
 * After the first size's runs, the repairs (when asked) run against the agent still running.
 */
import { appendFileSync, closeSync, openSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { Channel } from "../../src/netlink/channel.ts";
import { encodeLinkSet } from "../../src/netlink/codec-link.ts";
import { AF, RTPROT } from "../../src/netlink/constants.ts";
import { Netlink, RTPROT_WEFT } from "../../src/netlink/netlink.ts";
import { NetlinkSocket } from "../../src/netlink/socket.ts";
import {
  ETCD_ENDPOINT,
  EtcdHttp,
  type Lease,
  networkConfig,
  peerLease,
  writeLeases,
} from "./agent-fixtures.ts";
import { NotifyListener } from "./agent-probes.ts";
import { type EntryKind, PeerEntryWatch } from "./peer-entry-watch.ts";
import {
  type RepairKind,
  type RepairSeries,
  type SizeResult,
  type SyncRun,
  VXLAN_DEVICE,
  type VxlanInsideArgs,
  type VxlanInsideResult,
} from "./vxlan-fixtures.ts";

const STOP_TIMEOUT_MS = 10_000;
/** How long a converged start may still take to send READY=1 (it is reported, not waited for). */
const READY_GRACE_MS = 2_000;

const args = JSON.parse(process.argv[2] ?? "{}") as VxlanInsideArgs;
const log = (line: string) => process.stderr.write(`  ${args.label}: ${line}\n`);

if (readlinkSync("/proc/self/ns/net") === args.outerNetns) {
  console.error("vxlan-inside: refusing to run in the benchmark's own network namespace");
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
const device = args.backend === "vxlan" ? VXLAN_DEVICE : undefined;
/** The entry kinds of the backend: routes only on host-gw. */
const kinds: readonly EntryKind[] = device === undefined ? ["route"] : ["route", "arp", "fdb"];
const etcd = new EtcdHttp(ETCD_ENDPOINT);
const subnetsPrefix = `${args.prefix}/subnets/`;
const nl = Netlink.open();
const notify = NotifyListener.bind(args.notifySocket);

// --- the agent -------------------------------------------------------------------------------------

function spawnAgent(label: string): Subprocess {
  const path = join(args.logDir, `${args.label.replace(/\W+/g, "-")}-${label}.log`);
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

/** `work`, or a rejection saying the agent exited before it was done. */
function untilExit<T>(proc: Subprocess, work: Promise<T>): Promise<T> {
  const died = proc.exited.then((code) => {
    throw new Error(`${args.label} exited with ${code} during the run; its log ends:\n${logTail()}`);
  });
  died.catch(() => undefined);
  return Promise.race([work, died]);
}

// --- the host --------------------------------------------------------------------------------------

/** Back to "a node that never ran an agent", except firewall rules a previous run left. */
async function resetHost(watch: PeerEntryWatch): Promise<void> {
  await stopAgent();
  if (device !== undefined) {
    const link = await nl.linkByName(device);
    if (link !== undefined) await nl.linkDelete(link.index);
  }
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
  await watch.relist();
  const left = watch.counts();
  if (left.route + left.arp + left.fdb !== 0)
    throw new Error(`entries left after the reset: ${JSON.stringify(left)}`);
}

async function lines(command: string[]): Promise<string[][]> {
  const proc = Bun.spawn(command, { stdout: "pipe", stderr: "ignore" });
  const text = await new Response(proc.stdout).text();
  await proc.exited;
  return text
    .split("\n")
    .filter(Boolean)
    .map((line) => line.trim().split(/\s+/));
}

/** The peers' entries as iproute2 lists them (the cross-check of what the monitor counted). */
async function countKernel(peers: readonly Lease[]): Promise<Record<EntryKind, number>> {
  const routeGw = new Map(peers.map((p) => [p.dst, p.gateway]));
  // `<dst> via <gw> dev … [onlink]`
  const routes = (await lines(["ip", "route", "show", "proto", String(protocol)])).filter(
    (w) => w[1] === "via" && w[0] !== undefined && routeGw.get(w[0]) === w[2],
  ).length;
  if (device === undefined) return { route: routes, arp: 0, fdb: 0 };
  const arpMac = new Map(peers.map((p) => [p.gateway, p.vtepMac]));
  const fdbDst = new Map(peers.map((p) => [p.vtepMac ?? "", p.publicIP]));
  // `<ip> lladdr <mac> PERMANENT`
  const arp = (await lines(["ip", "neigh", "show", "dev", device])).filter(
    (w) => w[1] === "lladdr" && w[0] !== undefined && arpMac.get(w[0]) === w[2] && w.includes("PERMANENT"),
  ).length;
  // `<mac> dst <ip> self permanent`
  const fdb = (await lines(["bridge", "fdb", "show", "dev", device])).filter(
    (w) => w[1] === "dst" && w[0] !== undefined && fdbDst.get(w[0]) === w[2],
  ).length;
  return { route: routes, arp, fdb };
}

// --- start runs ------------------------------------------------------------------------------------

async function syncRun(watch: PeerEntryWatch, label: string, warmup: boolean): Promise<SyncRun> {
  await resetHost(watch);
  notify.discard();
  const kindAt: Partial<Record<EntryKind, number>> = {};
  const unsubscribe = watch.onChange((at) => {
    for (const kind of kinds) if (kindAt[kind] === undefined && watch.full(kind)) kindAt[kind] = at;
  });
  let notifiedAt: number | undefined;
  const ready = notify.nextReady().then((at) => {
    notifiedAt = at;
  });
  const done = watch.whenComplete(args.capMs);
  const t0 = performance.now();
  const proc = spawnAgent(label);
  agent = proc;
  const at = await untilExit(proc, done);
  unsubscribe();
  // weft says READY=1 after its first full apply, so just after the last entry: give it a moment.
  if (at !== undefined && notifiedAt === undefined) await Promise.race([ready, Bun.sleep(READY_GRACE_MS)]);
  const reached = watch.counts();
  const counted = await countKernel(leasesOf(watch.peers));
  const since = (v: number | undefined) => (v === undefined ? undefined : v - t0);
  return {
    warmup,
    ms: since(at),
    kindMs: Object.fromEntries(
      kinds.filter((k) => kindAt[k] !== undefined).map((k) => [k, since(kindAt[k])]),
    ),
    notifyMs: since(notifiedAt),
    reached,
    counted,
  };
}

const allLeases: Lease[] = [];
function leasesOf(n: number): Lease[] {
  for (let i = allLeases.length; i < n; i++) allLeases.push(peerLease(i, args.backend));
  return allLeases.slice(0, n);
}

function describe(run: SyncRun): string {
  const ms = (v: number | undefined) => (v === undefined ? "-" : v.toFixed(1));
  const end = run.ms === undefined ? `> ${args.capMs / 1000} s (stopped)` : `${ms(run.ms)} ms`;
  return (
    `${end}; routes ${ms(run.kindMs.route)}, ARP ${ms(run.kindMs.arp)}, FDB ${ms(run.kindMs.fdb)}, READY=1 ${ms(run.notifyMs)}; ` +
    `monitor ${run.reached.route}/${run.reached.arp}/${run.reached.fdb}, ip/bridge ${run.counted.route}/${run.counted.arp}/${run.counted.fdb}`
  );
}

// --- repairs ---------------------------------------------------------------------------------------

/** `ip link set dev #<index> down`, which weft's Netlink has no method for. */
async function linkSetDown(index: number): Promise<void> {
  const channel = new Channel(NetlinkSocket.open({ extendedAck: true }));
  try {
    await channel.request(`ip link set dev #${index} down`, (w, seq) =>
      encodeLinkSet(w, seq, index, { up: false }),
    );
  } finally {
    await channel.close();
  }
}

function present(watch: PeerEntryWatch, kind: EntryKind, p: Lease): boolean {
  if (kind === "route") return watch.routes.present.has(p.dst);
  if (kind === "arp") return watch.arp.has(p.gateway);
  return watch.fdb.has(p.vtepMac ?? "");
}

/** Deletes one entry of `p` and times until the monitor sees it written again; undefined on timeout. */
async function entrySample(
  watch: PeerEntryWatch,
  kind: EntryKind,
  p: Lease,
  timeoutMs: number,
): Promise<number | undefined> {
  const index = watch.device?.index ?? 0;
  const mac = p.vtepMac ?? "";
  const back =
    kind === "route"
      ? watch.routes.waitRoute(p.dst, "new", timeoutMs)
      : watch.waitEntry(kind, kind === "arp" ? p.gateway : mac, timeoutMs);
  const t0 = performance.now();
  const { failures } =
    kind === "route"
      ? await nl.routeDelete([{ dst: p.dst, gateway: p.gateway, protocol }])
      : kind === "arp"
        ? await nl.neighDelete([{ index, family: AF.INET, ip: p.gateway, state: 0 }])
        : await nl.fdbDelete([{ index, mac, dst: p.publicIP }]);
  if (failures.length > 0) throw new Error(`${kind} delete failed: ${failures[0]?.message}`);
  const at = await back;
  return at === undefined ? undefined : at - t0;
}

/** Sets the device down or deletes it; times until it is up with every entry back. */
async function linkSample(
  watch: PeerEntryWatch,
  how: "link-down" | "link-delete",
  timeoutMs: number,
): Promise<number | undefined> {
  const index = watch.device?.index;
  if (index === undefined) throw new Error(`${device} is not there before a ${how} sample`);
  const t0 = performance.now();
  if (how === "link-down") await linkSetDown(index);
  else await nl.linkDelete(index);
  // What the kernel removed without telling: read it back, then wait for the agent.
  await watch.relist();
  const at = await watch.whenComplete(timeoutMs);
  return at === undefined ? undefined : at - t0;
}

async function repairs(watch: PeerEntryWatch, peers: readonly Lease[]): Promise<RepairSeries[]> {
  const plan = args.repairs;
  if (plan === undefined) return [];
  const series = new Map<RepairKind, { samplesMs: number[]; missed: number; timeoutMs: number }>();
  const seriesOf = (kind: RepairKind, timeoutMs: number) => {
    let s = series.get(kind);
    if (s === undefined) {
      s = { samplesMs: [], missed: 0, timeoutMs };
      series.set(kind, s);
    }
    return s;
  };
  const record = (kind: RepairKind, timeoutMs: number, ms: number | undefined) => {
    const s = seriesOf(kind, timeoutMs);
    if (ms === undefined) s.missed++;
    else s.samplesMs.push(ms);
  };
  if (plan.concurrent) {
    // Three different peers per round, one entry kind each, deleted together; never the same peer twice.
    for (let round = 0; round < plan.entrySamples; round++) {
      const picks = kinds.map((kind, j) => {
        const p = peers[(round * kinds.length + j) * 13 + 5];
        if (p === undefined || !present(watch, kind, p))
          throw new Error(`round ${round + 1}: the ${kind} entry to delete is not in the kernel`);
        return { kind, p };
      });
      const results = await Promise.all(
        picks.map(({ kind, p }) => entrySample(watch, kind, p, plan.entryTimeoutMs)),
      );
      for (const [j, ms] of results.entries()) record(picks[j]?.kind ?? "route", plan.entryTimeoutMs, ms);
      const shown = results.map((r) => (r === undefined ? "not back" : `${r.toFixed(1)} ms`));
      log(`repair round ${round + 1}/${plan.entrySamples} (route, ARP, FDB): ${shown.join(", ")}`);
    }
  } else {
    for (const [offset, kind] of kinds.entries()) {
      for (let k = 0; k < plan.entrySamples; k++) {
        const p = peers[(k * 37 + offset * 11) % peers.length];
        if (p === undefined) continue;
        if (!watch.complete() && (await watch.whenComplete(plan.entryTimeoutMs)) === undefined) {
          throw new Error(
            `entries still missing ${plan.entryTimeoutMs} ms after the previous ${kind} sample`,
          );
        }
        record(kind, plan.entryTimeoutMs, await entrySample(watch, kind, p, plan.entryTimeoutMs));
        await Bun.sleep(5 + Math.random() * 10);
      }
      log(`${kind} repairs done (${seriesOf(kind, plan.entryTimeoutMs).missed} missed)`);
    }
  }
  if (device !== undefined) {
    for (const how of ["link-down", "link-delete"] as const) {
      for (let k = 0; k < plan.linkSamples; k++) {
        if (!watch.complete() && (await watch.whenComplete(plan.linkTimeoutMs)) === undefined) {
          throw new Error(`entries still missing ${plan.linkTimeoutMs} ms before a ${how} sample`);
        }
        await Bun.sleep(50 + Math.random() * 50);
        record(how, plan.linkTimeoutMs, await linkSample(watch, how, plan.linkTimeoutMs));
      }
      if (plan.linkSamples > 0)
        log(`${how} repairs done (${seriesOf(how, plan.linkTimeoutMs).missed} missed)`);
    }
  }
  return [...series.entries()].map(([kind, s]) => ({ kind, ...s }));
}

// --- main ------------------------------------------------------------------------------------------

const result: VxlanInsideResult = {
  label: args.label,
  kind: args.kind,
  backend: args.backend,
  capMs: args.capMs,
  sizes: [],
  repairs: [],
  monitorResyncs: 0,
};
let watch: PeerEntryWatch | undefined;
try {
  let written = 0;
  for (const [sizeIndex, size] of args.sizes.entries()) {
    const t0 = performance.now();
    if (sizeIndex === 0) await etcd.put(`${args.prefix}/config`, networkConfig(args.backend));
    const peers = leasesOf(size.n);
    await writeLeases(etcd, subnetsPrefix, peers.slice(written));
    written = size.n;
    const sized: SizeResult = { n: size.n, prewriteMs: performance.now() - t0, runs: [] };
    result.sizes.push(sized);
    log(
      `wrote ${sizeIndex === 0 ? "the config and " : ""}leases up to ${size.n} in ${sized.prewriteMs.toFixed(0)} ms`,
    );
    if (watch !== undefined) {
      result.monitorResyncs += watch.resyncs;
      await watch.close();
    }
    watch = new PeerEntryWatch(nl, protocol, peers, device);
    const warmups = sizeIndex === 0 && args.warmup ? 1 : 0;
    for (let run = 0; run < warmups + size.runs; run++) {
      const warmup = run < warmups;
      const label = `${size.n}-${warmup ? "warmup" : `run${run - warmups + 1}`}`;
      const r = await syncRun(watch, label, warmup);
      sized.runs.push(r);
      log(`start ${label}: ${describe(r)}`);
      if (r.ms === undefined) break; // a capped start is not repeated
    }
    if (sizeIndex === 0 && args.repairs !== undefined) {
      if (agent === undefined || sized.runs.at(-1)?.ms === undefined) {
        log("repairs skipped: the last start did not converge");
      } else {
        await Bun.sleep(500); // let the last start settle
        result.repairs.push(...(await repairs(watch, peers)));
      }
    }
    await stopAgent();
  }
} catch (err) {
  result.error = err instanceof Error ? err.message : String(err);
} finally {
  await stopAgent();
  notify.close();
  if (watch !== undefined) {
    result.monitorResyncs += watch.resyncs;
    await watch.close();
  }
  await nl.close();
}
console.log(JSON.stringify(result));
