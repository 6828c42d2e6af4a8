/**
 * Shared data of the agent benchmark (test/bench/agent.bench.ts and its in-namespace driver
 * test/bench/agent-inside.ts): addresses, the network config, the synthetic leases, etcd v3 access
 * through its JSON gateway, and the shape of the results the driver prints.
 */

/** etcd runs in the segment's bridge namespace on this address (as in test/e2e/cluster.ts). */
export const STORE_IP = "172.17.42.1";
export const ETCD_ENDPOINT = `http://${STORE_IP}:2379`;
/** The segment is a /16: every peer PublicIP below is inside the host's connected prefix. */
export const SEGMENT_PREFIX_LEN = 16;
/** /readyz port inside each host namespace (127.0.0.1, so nothing outside the namespace sees it). */
export const HEALTHZ_PORT = 9810;

/** Leases already in the store when the agent starts. */
export const PEERS = 1_000;
/** Joins (and then leaves) in the store-event scenario. */
export const JOINS = 200;
/** The memory phase reads the agent's /proc/<pid>/status this long after its spawn. */
export const MEMORY_AGE_MS = 60_000;

/** What a run measures (WEFT_BENCH_PHASES); "start" always runs, the others need a started agent. */
export const PHASES = ["start", "events", "repairs", "memory"] as const;
export type Phase = (typeof PHASES)[number];

/** The backends the benchmarks run; a lease carries its name in BackendType. */
export type BackendType = "host-gw" | "vxlan";

/** Network 10.128.0.0/9 in /24s holds 32,768 subnets; the agent's own lease lands in 10.128.x.0. */
export function networkConfig(backend: BackendType): string {
  return JSON.stringify({ Network: "10.128.0.0/9", SubnetLen: 24, Backend: { Type: backend } });
}

/** The host-gw config of test/bench/agent.bench.ts. */
export const NETWORK_CONFIG = networkConfig("host-gw");

/** flanneld's lease TTL; every synthetic lease carries an etcd lease of this length, as flanneld's do. */
export const LEASE_TTL_SECONDS = 86_400;

export type AgentKind = "weft" | "flanneld";

export interface Lease {
  /** Kernel route destination, "10.129.0.0/24". */
  readonly dst: string;
  /** Store key suffix, "10.129.0.0-24". */
  readonly keyName: string;
  readonly publicIP: string;
  /** The gateway of the peer's route: its PublicIP on host-gw, `<subnet>.0` (onlink) on vxlan. */
  readonly gateway: string;
  /** BackendData.VtepMAC of a vxlan lease: the MAC of its ARP entry and the key of its FDB entry. */
  readonly vtepMac?: string;
  /** flanneld's JSON for the lease. */
  readonly value: string;
}

function lease(subnet: string, publicIP: string, backend: BackendType, n: number): Lease {
  const base = { dst: `${subnet}/24`, keyName: `${subnet}-24`, publicIP };
  if (backend === "host-gw") {
    const value = JSON.stringify({ PublicIP: publicIP, PublicIPv6: null, BackendType: "host-gw" });
    return { ...base, gateway: publicIP, value };
  }
  const vtepMac = peerMac(n);
  const value = JSON.stringify({
    PublicIP: publicIP,
    PublicIPv6: null,
    BackendType: "vxlan",
    BackendData: { VNI: 1, VtepMAC: vtepMac },
  });
  return { ...base, gateway: subnet, vtepMac, value };
}

/** A distinct locally administered unicast MAC per peer: 02:77:00:<n as three bytes>. */
function peerMac(n: number): string {
  const bytes = [0x02, 0x77, 0, (n >> 16) & 255, (n >> 8) & 255, n & 255];
  return bytes.map((b) => b.toString(16).padStart(2, "0")).join(":");
}

/**
 * Peer i (0-based): subnet 10.129.0.0/24 upward, PublicIP 172.17.100.1 upward (250 per /24, so
 * 5,000 peers end at 172.17.119.250); a vxlan lease gets VtepMAC 02:77:00:… numbered from i.
 */
export function peerLease(i: number, backend: BackendType = "host-gw"): Lease {
  const subnet = `10.${129 + (i >> 8)}.${i & 255}.0`;
  return lease(subnet, `172.17.${100 + Math.floor(i / 250)}.${1 + (i % 250)}`, backend, i);
}

/** Joining node j (0-based): subnets 10.200.j.0/24, PublicIPs 172.17.110.(j+1). */
export function joinLease(j: number): Lease {
  return lease(`10.200.${j}.0`, `172.17.110.${1 + j}`, "host-gw", j);
}

/** The agent's memory from /proc/<pid>/status (kB there, KiB here: the kernel's "kB" is 1024 bytes). */
export interface MemoryReading {
  /** Time since the agent's spawn when /proc was read, ms. */
  readonly ageMs: number;
  /** /proc/<pid>/comm of the process read, to show it is the agent itself. */
  readonly comm: string;
  readonly vmRssKiB: number;
  readonly anonKiB: number;
  readonly fileKiB: number;
  readonly shmemKiB: number;
  readonly hwmKiB: number;
  /** Peer routes (of the 1,000) in the kernel at that moment. */
  readonly peerRoutes: number;
}

/** The result the in-namespace driver prints as one JSON line. */
export interface InsideResult {
  readonly kind: AgentKind;
  /** Set when the agent could not be measured; the text says why. */
  readonly error?: string;
  /** Writing the config and the 1,000 leases (grants + txn batches), ms. */
  readonly prewriteMs: number;
  /** Start → /readyz 200, ms; the first entry is the warm-up run. */
  readonly readyMs: number[];
  /** Start → READY=1 received on NOTIFY_SOCKET, ms; the first entry is the warm-up run. */
  readonly notifyMs: number[];
  /** Start → the 1,000th peer route seen by the monitor, ms; first entry is the warm-up run. */
  readonly routesMs: number[];
  /** `ip route show proto …` line count for the peer subnets at the end of each run. */
  readonly routesCounted: number[];
  /** Store put (lease already granted) → RTM_NEWROUTE for the subnet, ms. */
  readonly joinMs: number[];
  /** Store delete → RTM_DELROUTE for the subnet, ms. */
  readonly leaveMs: number[];
  /** Round trip of the put itself (the store's share of joinMs), ms. */
  readonly putRttMs: number[];
  /** Route deleted by netlink request → RTM_NEWROUTE for the same subnet again, ms. */
  readonly repairMs: number[];
  readonly joinMissed: number;
  readonly leaveMissed: number;
  readonly repairMissed: number;
  /** Timeout per repair sample, ms. */
  readonly repairTimeoutMs: number;
  /** Netlink monitor overruns seen (each forces a re-list). */
  readonly monitorResyncs: number;
  /** Read at MEMORY_AGE_MS after the last start, when the memory phase ran. */
  readonly memory?: MemoryReading;
}

/** A result with no samples yet. */
export function emptyResult(kind: AgentKind, repairTimeoutMs: number): InsideResult {
  return {
    kind,
    prewriteMs: Number.NaN,
    readyMs: [],
    notifyMs: [],
    routesMs: [],
    routesCounted: [],
    joinMs: [],
    leaveMs: [],
    putRttMs: [],
    repairMs: [],
    joinMissed: 0,
    leaveMissed: 0,
    repairMissed: 0,
    repairTimeoutMs,
    monitorResyncs: 0,
  };
}

/** etcd v3 through its gRPC-JSON gateway (keys and values base64). */
export class EtcdHttp {
  constructor(readonly endpoint: string) {}

  async #call<T>(path: string, body: unknown): Promise<T> {
    const res = await fetch(`${this.endpoint}${path}`, {
      method: "POST",
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`etcd ${path}: HTTP ${res.status} ${text}`);
    return JSON.parse(text) as T;
  }

  async grant(ttlSeconds: number): Promise<string> {
    const { ID } = await this.#call<{ ID: string }>("/v3/lease/grant", { TTL: ttlSeconds });
    return ID;
  }

  async put(key: string, value: string, lease?: string): Promise<void> {
    await this.#call("/v3/kv/put", { key: b64(key), value: b64(value), ...(lease ? { lease } : {}) });
  }

  /** Up to etcd's --max-txn-ops (128) puts in one transaction. */
  async putMany(items: readonly { key: string; value: string; lease?: string }[]): Promise<void> {
    await this.#call("/v3/kv/txn", {
      success: items.map((i) => ({
        requestPut: { key: b64(i.key), value: b64(i.value), ...(i.lease ? { lease: i.lease } : {}) },
      })),
    });
  }

  async del(key: string): Promise<number> {
    const { deleted } = await this.#call<{ deleted?: string }>("/v3/kv/deleterange", { key: b64(key) });
    return Number(deleted ?? "0");
  }

  /** Every key/value under the prefix. */
  async list(prefix: string): Promise<{ key: string; value: string }[]> {
    const { kvs = [] } = await this.#call<{ kvs?: { key: string; value?: string }[] }>("/v3/kv/range", {
      key: b64(prefix),
      range_end: b64(prefixEnd(prefix)),
    });
    return kvs.map((kv) => ({ key: unb64(kv.key), value: unb64(kv.value ?? "") }));
  }
}

/**
 * Writes leases under `subnetsPrefix` as flanneld does, each key with its own etcd lease of
 * LEASE_TTL_SECONDS: grants 50 at a time, puts in transactions of 100. Checks that the store then
 * lists every key written.
 */
export async function writeLeases(
  etcd: EtcdHttp,
  subnetsPrefix: string,
  leases: readonly Lease[],
): Promise<void> {
  const leaseIds: string[] = [];
  for (let start = 0; start < leases.length; start += 50) {
    const n = Math.min(50, leases.length - start);
    leaseIds.push(...(await Promise.all(Array.from({ length: n }, () => etcd.grant(LEASE_TTL_SECONDS)))));
  }
  for (let start = 0; start < leases.length; start += 100) {
    await etcd.putMany(
      leases.slice(start, start + 100).map((p, k) => ({
        key: `${subnetsPrefix}${p.keyName}`,
        value: p.value,
        lease: leaseIds[start + k] ?? "",
      })),
    );
  }
  const listed = new Set((await etcd.list(subnetsPrefix)).map((kv) => kv.key));
  const lost = leases.filter((p) => !listed.has(`${subnetsPrefix}${p.keyName}`)).length;
  if (lost > 0)
    throw new Error(`wrote ${leases.length} leases, the store lists ${leases.length - lost} of them`);
}

function b64(s: string): string {
  return Buffer.from(s).toString("base64");
}

function unb64(s: string): string {
  return Buffer.from(s, "base64").toString();
}

function prefixEnd(prefix: string): string {
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}
