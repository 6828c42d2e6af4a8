/**
 * The data-plane part of test/bench/vxlan.bench.ts: iperf3 between two "containers" (network
 * namespaces behind a docker0 bridge per host, made by `addContainer` of src/demo/demo.ts from the
 * host's subnet.env) on two hosts running weft, over host-gw and over vxlan, and between two host
 * namespaces directly over the segment.
 *
 * One host pair per backend, each with its own etcd prefix holding only the pair's own leases. The
 * iperf3 server binds the destination's address inside its namespace (`-B`, `-1`: one test, then it
 * exits); the client runs in the source namespace for `IPERF_SECONDS` with JSON output. The paths take
 * turns, round by round, so that a slow moment of the machine does not land on one path only.
 */
import { appendFileSync, closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Subprocess } from "bun";
import { addContainer } from "../../src/demo/demo.ts";
import type { Host, Netns, Segment } from "../../src/netns/netns.ts";
import { ETCD_ENDPOINT, networkConfig } from "./agent-fixtures.ts";

export const IPERF_SECONDS = 5;
const IPERF_PORT = 5201;
const CONVERGE_TIMEOUT_MS = 30_000;

export type PathKind = "direct" | "host-gw" | "vxlan";

export interface PathResult {
  readonly path: PathKind;
  /** "172.17.42.44 → 172.17.42.45" */
  readonly endpoints: string;
  /** MTU of the sending interface. */
  readonly mtu: number;
  /** Receiver-side throughput of each run, Gbit/s. */
  readonly gbps: number[];
  /** TCP retransmits the sender counted in each run. */
  readonly retransmits: number[];
  /** Runs that failed, with why. */
  readonly errors: string[];
}

export interface ThroughputOptions {
  readonly segment: Segment;
  /** Two hosts for host-gw, two for vxlan. */
  readonly hostGw: readonly [Host, Host];
  readonly vxlan: readonly [Host, Host];
  /** weft's argv up to the shared flags. */
  readonly weftArgv: readonly string[];
  readonly dir: string;
  /** Agent pids are appended here for the outer cleanup. */
  readonly pidFile: string;
  /** Every process started here is added, so a Ctrl-C cleanup can kill it. */
  readonly track: (proc: Subprocess) => void;
  readonly rounds: number;
  readonly log: (line: string) => void;
}

interface Endpoint {
  readonly ns: Netns;
  readonly ip: string;
  readonly mtu: number;
}

async function etcdPut(segment: Segment, key: string, value: string): Promise<void> {
  await segment.lan.exec(["etcdctl", `--endpoints=${ETCD_ENDPOINT}`, "put", key, value]);
}

function spawnWeft(o: ThroughputOptions, host: Host, prefix: string, name: string): string {
  const subnetFile = join(o.dir, name, "subnet.env");
  const logPath = join(o.dir, `${name}.log`);
  const fd = openSync(logPath, "a");
  try {
    const proc = Bun.spawn(
      [
        "ip",
        "netns",
        "exec",
        host.ns.name,
        ...o.weftArgv,
        `--etcd-endpoints=${ETCD_ENDPOINT}`,
        `--etcd-prefix=${prefix}`,
        "--iface=eth0",
        `--subnet-file=${subnetFile}`,
        // Two agents run at once: each its own control socket, never the machine's /run/weft.
        `--control-socket=${join(dirname(subnetFile), "weft.sock")}`,
      ],
      { stdin: "ignore", stdout: fd, stderr: fd },
    );
    // `ip netns exec` execs the agent: this pid is the agent's.
    appendFileSync(o.pidFile, `${proc.pid}\n`);
    o.track(proc);
  } finally {
    closeSync(fd);
  }
  return subnetFile;
}

/** Polls until both hosts have a weft route to each other's subnet and wrote subnet.env. */
async function converged(pair: readonly [Host, Host], files: readonly string[], what: string): Promise<void> {
  const deadline = performance.now() + CONVERGE_TIMEOUT_MS;
  while (performance.now() < deadline) {
    let ok = files.every((f) => existsSync(f));
    for (const host of pair) {
      if (!ok) break;
      const routes = (await host.ns.ip("route", "show", "proto", "77")).stdout
        .trim()
        .split("\n")
        .filter(Boolean);
      ok = routes.length === 1;
    }
    if (ok) return;
    await Bun.sleep(100);
  }
  throw new Error(`${what}: the two agents did not route to each other within ${CONVERGE_TIMEOUT_MS} ms`);
}

function mtuOf(subnetFile: string): number {
  return Number(/^FLANNEL_MTU=(\d+)$/m.exec(readFileSync(subnetFile, "utf8"))?.[1] ?? "1500");
}

/** Two weft agents on `pair` with `backend`, and a container behind each; the two containers. */
async function containerPair(
  o: ThroughputOptions,
  backend: "host-gw" | "vxlan",
  pair: readonly [Host, Host],
  firstIndex: number,
): Promise<[Endpoint, Endpoint]> {
  const prefix = `/weft-bench/iperf-${backend}/network`;
  await etcdPut(o.segment, `${prefix}/config`, networkConfig(backend));
  const files = pair.map((host, i) => spawnWeft(o, host, prefix, `iperf-${backend}-${i + 1}`));
  await converged(pair, files, backend);
  const out: Endpoint[] = [];
  for (const [i, host] of pair.entries()) {
    const file = files[i] ?? "";
    const container = await addContainer(host.ns, file, firstIndex + i);
    out.push({ ns: container.ns, ip: container.ip, mtu: mtuOf(file) });
  }
  const [a, b] = out;
  if (a === undefined || b === undefined) throw new Error("addContainer returned no container");
  const ping = await a.ns.exec(["ping", "-c", "1", "-W", "2", b.ip], { allowFailure: true });
  if (ping.code !== 0)
    throw new Error(`${backend}: ping ${a.ip} → ${b.ip} failed: ${ping.stdout}${ping.stderr}`);
  o.log(`${backend}: containers ${a.ip} (MTU ${a.mtu}) → ${b.ip} ping ok`);
  return [a, b];
}

/** One iperf3 run from `from` to `to`; Gbit/s at the receiver and the sender's retransmits. */
async function iperf(
  o: ThroughputOptions,
  from: Endpoint,
  to: Endpoint,
): Promise<{ gbps: number; retransmits: number }> {
  const server = to.ns.spawn(["iperf3", "-s", "-1", "-B", to.ip, "-p", String(IPERF_PORT)]);
  o.track(server);
  try {
    const deadline = performance.now() + 5_000;
    for (;;) {
      const ss = await to.ns.exec(["ss", "-Hltn", `sport = :${IPERF_PORT}`], { allowFailure: true });
      if (ss.stdout.trim() !== "") break;
      if (performance.now() > deadline) throw new Error(`iperf3 -s did not listen on ${to.ip}:${IPERF_PORT}`);
      await Bun.sleep(20);
    }
    const client = Bun.spawn(
      [
        "ip",
        "netns",
        "exec",
        from.ns.name,
        "iperf3",
        "-c",
        to.ip,
        "-p",
        String(IPERF_PORT),
        "-t",
        String(IPERF_SECONDS),
        "-J",
      ],
      { stdin: "ignore", stdout: "pipe", stderr: "pipe" },
    );
    o.track(client);
    const timer = setTimeout(() => client.kill("SIGKILL"), (IPERF_SECONDS + 15) * 1000);
    const [stdout, code] = await Promise.all([new Response(client.stdout).text(), client.exited]);
    clearTimeout(timer);
    const report = JSON.parse(stdout || "{}") as {
      error?: string;
      end?: { sum_received?: { bits_per_second?: number }; sum_sent?: { retransmits?: number } };
    };
    const bps = report.end?.sum_received?.bits_per_second;
    if (code !== 0 || bps === undefined)
      throw new Error(`iperf3 -c ${to.ip} exited ${code}: ${report.error ?? stdout.slice(-300)}`);
    return { gbps: bps / 1e9, retransmits: report.end?.sum_sent?.retransmits ?? 0 };
  } finally {
    server.kill("SIGKILL");
    await server.exited;
  }
}

export async function measureThroughput(o: ThroughputOptions): Promise<PathResult[]> {
  const [gwA, gwB] = o.hostGw;
  const direct: [Endpoint, Endpoint] = [
    { ns: gwA.ns, ip: gwA.address, mtu: 1500 },
    { ns: gwB.ns, ip: gwB.address, mtu: 1500 },
  ];
  const paths: Array<{ path: PathKind; ends: [Endpoint, Endpoint] }> = [
    { path: "direct", ends: direct },
    { path: "host-gw", ends: await containerPair(o, "host-gw", o.hostGw, 1) },
    { path: "vxlan", ends: await containerPair(o, "vxlan", o.vxlan, 3) },
  ];
  const results: PathResult[] = paths.map(({ path, ends: [a, b] }) => ({
    path,
    endpoints: `${a.ip} → ${b.ip}`,
    mtu: a.mtu,
    gbps: [],
    retransmits: [],
    errors: [],
  }));
  for (let round = 1; round <= o.rounds; round++) {
    for (const [i, { path, ends }] of paths.entries()) {
      const r = results[i];
      if (r === undefined) continue;
      try {
        const run = await iperf(o, ends[0], ends[1]);
        r.gbps.push(run.gbps);
        r.retransmits.push(run.retransmits);
        o.log(`iperf3 round ${round} ${path}: ${run.gbps.toFixed(2)} Gbit/s, ${run.retransmits} retransmits`);
      } catch (err) {
        r.errors.push(err instanceof Error ? err.message : String(err));
        o.log(`iperf3 round ${round} ${path}: FAILED ${r.errors.at(-1)}`);
      }
    }
  }
  return results;
}
