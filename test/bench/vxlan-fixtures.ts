/**
 * Shared data of the vxlan benchmark (test/bench/vxlan.bench.ts, its in-namespace driver
 * test/bench/vxlan-inside.ts and its report test/bench/vxlan-report.ts): what one driver run is asked
 * to do and the shape of what it prints.
 */
import type { AgentKind, BackendType } from "./agent-fixtures.ts";
import type { EntryKind } from "./peer-entry-watch.ts";

/** The vxlan device for VNI 1. */
export const VXLAN_DEVICE = "flannel.1";

/** What is deleted in a repair sample: one entry of a kind, or the device (set down, or deleted). */
export type RepairKind = EntryKind | "link-down" | "link-delete";

/** One peer count and how many measured start runs it gets. */
export interface SyncSize {
  readonly n: number;
  readonly runs: number;
}

export interface RepairPlan {
  /** Samples per entry kind (route, ARP, FDB). */
  readonly entrySamples: number;
  /** Samples of link down and of link delete (0: none). */
  readonly linkSamples: number;
  readonly entryTimeoutMs: number;
  readonly linkTimeoutMs: number;
  /**
   * One route, one ARP and one FDB entry of three different peers deleted at the same moment in each
   * round (for an agent that is not expected to repair: the timeouts then run side by side).
   */
  readonly concurrent: boolean;
}

export interface VxlanInsideArgs {
  /** "weft vxlan", "flanneld vxlan"…: names the driver in its progress lines and log files. */
  readonly label: string;
  readonly kind: AgentKind;
  readonly backend: BackendType;
  /** The agent's argv; the driver adds NOTIFY_SOCKET to its environment. */
  readonly command: readonly string[];
  readonly notifySocket: string;
  /** This host's namespace name and address on the segment. */
  readonly ns: string;
  readonly address: string;
  readonly prefix: string;
  readonly subnetFile: string;
  readonly logDir: string;
  /** Every agent pid is appended here, so the outer script can kill what a crashed driver left. */
  readonly pidFile: string;
  /** `readlink /proc/self/ns/net` of the outer script: the driver must not run there. */
  readonly outerNetns: string;
  /** Peer counts in increasing order; the store grows from one to the next. */
  readonly sizes: readonly SyncSize[];
  /** One warm-up start (not measured) before the first size's runs. */
  readonly warmup: boolean;
  /** A start that has not converged after this long is stopped and reported as "> cap". */
  readonly capMs: number;
  /** Repairs measured with the first size's last agent, when given. */
  readonly repairs?: RepairPlan | undefined;
}

/** One start of the agent with every entry of the previous run removed. */
export interface SyncRun {
  readonly warmup: boolean;
  /** Start → every route, ARP and FDB entry in the kernel, ms; undefined when the cap was reached. */
  readonly ms: number | undefined;
  /** Start → the N-th entry of each kind seen, ms (undefined when it never got there). */
  readonly kindMs: Partial<Record<EntryKind, number>>;
  /** Start → READY=1 on NOTIFY_SOCKET, ms, when it came before the end of the run. */
  readonly notifyMs: number | undefined;
  /** Entries the monitor counted when the run ended. */
  readonly reached: Record<EntryKind, number>;
  /** `ip route show`, `ip neigh show dev flannel.1`, `bridge fdb show dev flannel.1` counts at the end. */
  readonly counted: Record<EntryKind, number>;
}

export interface SizeResult {
  readonly n: number;
  /** Writing the config (first size) and the new leases, ms. */
  readonly prewriteMs: number;
  readonly runs: SyncRun[];
}

export interface RepairSeries {
  readonly kind: RepairKind;
  /** Delete sent → the monitor sees the entry (or the device with all its entries) back, ms. */
  readonly samplesMs: number[];
  readonly missed: number;
  readonly timeoutMs: number;
}

/** The result the driver prints as one JSON line. */
export interface VxlanInsideResult {
  readonly label: string;
  readonly kind: AgentKind;
  readonly backend: BackendType;
  /** The start cap this agent ran with, ms. */
  readonly capMs: number;
  /** Set when the driver stopped early; what it measured until then is kept. */
  error?: string;
  readonly sizes: SizeResult[];
  readonly repairs: RepairSeries[];
  /** Netlink monitor overruns (each forces a re-list). */
  monitorResyncs: number;
}
