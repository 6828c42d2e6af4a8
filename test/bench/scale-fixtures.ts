/**
 * Shared data of the scale benchmark (test/bench/scale.bench.ts, its in-namespace driver
 * test/bench/scale-inside.ts, the churn writer test/bench/scale-churn.ts and the report): what the
 * outer script asks a driver to do, one command a line on the driver's stdin, and what the driver
 * answers, one JSON line each on its stdout.
 */
import type { AgentKind } from "./agent-fixtures.ts";
import type { ProcMemory } from "./agent-probes.ts";

/** What a run measures (WEFT_BENCH_PHASES). */
export const SCALE_PHASES = ["sync", "idle", "churn", "ready"] as const;
export type ScalePhase = (typeof SCALE_PHASES)[number];

/** Peer counts of the initial-sync part (WEFT_BENCH_SIZES narrows them). */
export const DEFAULT_SIZES = [1_000, 5_000, 20_000] as const;
/** Peer counts at which idle CPU and memory are read. */
export const IDLE_SIZES: readonly number[] = [5_000, 20_000];
/** Peer count of the churn part. */
export const CHURN_SIZE = 5_000;
/** Peer counts of the start → ready part. */
export const READY_SIZES: readonly number[] = [1_000, 5_000];

/** Measured sync rounds per side at `n` (after one warm-up per side at the first size). */
export const syncRounds = (n: number): number => (n >= 20_000 ? 3 : 5);
/** Every start (weft, flanneld) and every `ip -batch` is stopped after this long. */
export const CAP_MS = 120_000;
export const IDLE_SECONDS = 30;
export const READY_SAMPLES = 20;
/** Each agent gets this long to send READY=1 (and weft to answer /readyz 200) in the ready part. */
export const READY_TIMEOUT_MS = 60_000;

/** The churn writer's schedule: one operation every 1000/rate ms, puts and deletes alternating. */
export const CHURN = {
  /** Operations (puts + deletes) per second. */
  rate: 100,
  seconds: 60,
  /** Churn leases are peerLease(base + j): subnets 10.209.0.0/24 upward, outside the 20,000 peers. */
  base: 20_480,
  /** A churn lease is deleted this many operations after its put (100 = 1 s). */
  lagOps: 100,
  /** A put or delete not seen by the monitor within this long counts as missed. */
  timeoutMs: 5_000,
} as const;

/** The routes of the kernel floor carry weft's protocol number, as weft's own do. */
export const FLOOR_PROTOCOL = 77;

export type FloorMode = "inline" | "nexthop";

/** What the outer script passes to a driver (JSON in argv[2]). */
export interface DriverArgs {
  /** "floor": no agent, only `ip -batch` of the same routes; otherwise the agent measured there. */
  readonly side: AgentKind | "floor";
  /** The agent's argv (empty for the floor); the driver adds NOTIFY_SOCKET to its environment. */
  readonly command: readonly string[];
  readonly notifySocket: string;
  /** This host's namespace name and address on the segment. */
  readonly ns: string;
  readonly address: string;
  /** The agent's etcd prefix (`/weft-bench/<side>/network`). */
  readonly prefix: string;
  readonly subnetFile: string;
  /** Agent logs and the floor's batch files go here. */
  readonly logDir: string;
  /** Every agent pid is appended here, so the outer script can kill what a crashed driver left. */
  readonly pidFile: string;
  /** `readlink /proc/self/ns/net` of the outer script: the driver must not run there. */
  readonly outerNetns: string;
}

/** One request to a driver. */
export type Command =
  /** Write the config (first time) and the leases up to `n`; watch `n` peer routes from now on. */
  | { readonly op: "prepare"; readonly n: number }
  /** Reset the host, start the agent, wait for all peer routes (or the cap); `keep` leaves it running. */
  | { readonly op: "sync"; readonly label: string; readonly capMs: number; readonly keep: boolean }
  /** With the agent running: its CPU over `seconds`, then its memory. */
  | { readonly op: "idle"; readonly seconds: number }
  /** With the agent running: the churn writer against etcd, put → route and delete → route gone. */
  | { readonly op: "churn" }
  /** Reset the host, start the agent, time READY=1 (and weft's /readyz 200), stop it. */
  | { readonly op: "ready"; readonly label: string }
  /** Reset the floor host and time `ip -batch` of the current peers' routes. */
  | { readonly op: "floor"; readonly mode: FloorMode; readonly capMs: number }
  | { readonly op: "stop" };

export interface PrepareResult {
  readonly n: number;
  /** Writing the new leases (or the floor's batch files), ms. */
  readonly ms: number;
}

export interface SyncResult {
  /** Start → the N-th peer route seen by the monitor, ms; undefined when the cap was reached. */
  readonly ms: number | undefined;
  /** Peer routes the monitor counted when the run ended. */
  readonly reached: number;
  /** `ip route show proto …` lines for the peer subnets (with the right gateway) at the end. */
  readonly counted: number;
  /** Start → READY=1, when it arrived before the end of the run, ms. */
  readonly notifyMs: number | undefined;
  /** Netlink monitor overruns during the run (each forced a re-list). */
  readonly monitorResyncs: number;
}

export interface FloorResult {
  /** Spawn of `ip -batch` → its exit, ms; undefined when the cap was reached. */
  readonly ms: number | undefined;
  readonly exitCode: number | null;
  /** What `ip` printed on stderr (the first lines), "" when nothing. */
  readonly stderr: string;
  /** Spawn → the N-th peer route seen by the same kind of monitor as the agents' runs, ms. */
  readonly monitorMs: number | undefined;
  /** Peer routes in a dump after `ip` exited. */
  readonly counted: number;
  /** Lines in the batch file (N routes, or N nexthops + N routes). */
  readonly commands: number;
}

export interface IdleResult {
  readonly seconds: number;
  /** utime + stime of the agent over the window, ms of CPU per second. */
  readonly cpuMsPerS: number;
  /** Peer routes in the kernel at the end of the window. */
  readonly peerRoutes: number;
  readonly memory: ProcMemory & { readonly comm: string };
  /** Time since the agent's spawn when the memory was read, s. */
  readonly ageS: number;
}

export interface ChurnResult {
  /** Store put (the writer's clock just before the request) → RTM_NEWROUTE for the subnet, ms. */
  readonly putMs: number[];
  /** Store delete → RTM_DELROUTE for the subnet, ms. */
  readonly delMs: number[];
  readonly putMissed: number;
  readonly delMissed: number;
  /** Requests the store refused or that failed (they are neither timed nor missed). */
  readonly failed: number;
  /** The put requests' round trips (the store's share of putMs), ms. */
  readonly putRttMs: number[];
  /** Operations sent per second over the timed window (the schedule asks CHURN.rate). */
  readonly achievedRate: number;
  /** The writer's largest lag behind its schedule, ms. */
  readonly lagMaxMs: number;
  /** The agent's utime + stime during the window, ms of CPU per second. */
  readonly agentCpuMsPerS: number;
  /** Peer routes in the kernel after the window (the base N plus leases not yet deleted). */
  readonly peerRoutes: number;
  /** Overruns of the churn monitor (events lost; their operations count as missed). */
  readonly monitorOverruns: number;
}

export interface ReadyResult {
  /** Start → READY=1 on NOTIFY_SOCKET, ms. */
  readonly notifyMs: number | undefined;
  /** Start → /readyz 200 (weft only), ms. */
  readonly readyzMs: number | undefined;
}

/** What a driver answers to each command. */
export type Reply<T> =
  | { readonly ok: true; readonly result: T }
  | { readonly ok: false; readonly error: string };

/** One operation of the churn writer, as it reports it. */
export interface ChurnOp {
  readonly dst: string;
  readonly action: "put" | "delete";
  /** CLOCK_MONOTONIC just before the request, ms (test/bench/scale-clock.ts). */
  readonly sentMono: number;
  readonly rttMs: number;
  readonly error?: string;
}

/** What the churn writer is asked (JSON in argv[2]). */
export interface ChurnArgs {
  readonly endpoint: string;
  readonly subnetsPrefix: string;
}

/** What the churn writer prints as its last stdout line. */
export interface ChurnReport {
  readonly ops: ChurnOp[];
  /** Granting the etcd leases before the window, ms. */
  readonly grantMs: number;
  readonly windowMs: number;
  readonly lagMaxMs: number;
}
