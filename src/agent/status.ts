/**
 * What the agent tells people: the `/status` document (`weft status`) and the once-per-change log
 * lines for peers that get no entries.
 */

import type { SkippedPeer } from "../backend/backend.ts";
import type { PeerTable } from "../backend/peer-table.ts";
import type { Readiness, StatusSource } from "../http/server.ts";
import type { Lease } from "../lease/lease.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import { formatCidr } from "../net/ipv4.ts";
import type { KernelApplyResult, KernelRefusal } from "../reconcile/kernel-tables.ts";
import type { OwnLease } from "../subnet/manager.ts";
import type { AgentOptions } from "./agent.ts";

export interface LastApply {
  readonly at: string;
  /** No failures (entries the kernel refuses as they are do not count: see `refused`). */
  readonly ok: boolean;
  readonly replaced: number;
  readonly deleted: number;
  readonly durationMs: number;
  readonly errors: readonly string[];
  /** Entries the kernel refuses as they are, retried every 10 s. */
  readonly refused: readonly string[];
}

/** The `lastApply` of `/status` for one apply of the kernel tables. */
export function lastApplyOf(
  result: KernelApplyResult,
  refused: readonly KernelRefusal[],
  durationMs: number,
  now: number,
): LastApply {
  return {
    at: new Date(now).toISOString(),
    ok: result.failures.length === 0,
    replaced: result.replaced,
    deleted: result.deleted,
    durationMs: Math.round(durationMs * 1000) / 1000,
    errors: result.failures.map((f) => `${f.op} ${f.kind} ${f.key}: ${f.message}`),
    refused: refused.map(({ kind, entry }) => `${entry.op} ${kind} ${entry.key}: ${entry.message}`),
  };
}

export interface StatusInput {
  readonly options: Pick<AgentOptions, "storeName" | "prefix" | "config" | "external">;
  readonly lease: OwnLease | undefined;
  readonly leases: ReadonlyMap<string, Lease>;
  readonly table: PeerTable | undefined;
  readonly backend: {
    type: string;
    device: number | undefined;
    deviceName: string | undefined;
    data: unknown;
    mtu: number;
  };
  readonly lastApply: LastApply | undefined;
  readonly ready: Readiness;
}

export function statusOf(input: StatusInput): unknown {
  const { options, lease, table } = input;
  const peers = [...input.leases.values()]
    .filter((l) => l.key !== lease?.key)
    .sort((a, b) => a.subnet.ip - b.subnet.ip);
  const routes = table?.routes;
  const devices = new Map<number, string>([[options.external.ext.index, options.external.ext.name]]);
  if (input.backend.device !== undefined && input.backend.deviceName !== undefined)
    devices.set(input.backend.device, input.backend.deviceName);
  const via = (subnet: string) => {
    const r = routes?.get(subnet);
    return r === undefined
      ? null
      : `${r.gateway ?? "?"} dev ${devices.get(r.oif ?? -1) ?? `#${r.oif ?? "?"}`}`;
  };
  return {
    store: options.storeName,
    prefix: options.prefix,
    backend: input.backend.type,
    backendData: input.backend.data ?? null,
    device: input.backend.deviceName ?? null,
    mtu: input.backend.mtu,
    network: formatCidr(options.config.network),
    externalInterface: options.external.ext.name,
    publicIP: options.external.publicIP,
    lease:
      lease === undefined
        ? null
        : {
            subnet: formatCidr(lease.subnet),
            key: lease.key,
            reservation: !lease.expires,
            expiresAt: lease.expiresAt === undefined ? null : new Date(lease.expiresAt).toISOString(),
          },
    peers: peers.map((p) => ({
      subnet: p.subnetText,
      publicIP: p.publicIP,
      backend: p.backendType,
      route: routes?.has(p.subnetText) ?? false,
      via: via(p.subnetText),
      skipped: table?.skipped.get(p.key)?.detail ?? null,
    })),
    routes: routes?.size ?? 0,
    neighbours: table?.neighs.size ?? 0,
    fdbEntries: table?.fdb.size ?? 0,
    lastApply: input.lastApply ?? null,
    ready: input.ready,
  };
}

/**
 * Logs each skipped peer once per lease revision and reason; forgets peers that are no longer skipped.
 * A lease refused for what it claims (a network of the external interface) is also counted in
 * `weft_leases_rejected_total`, once per revision like the log line.
 */
export class SkipReporter {
  readonly #log: Logger;
  readonly #metrics: Metrics | undefined;
  /** `revision:reason` by lease key. */
  readonly #reported = new Map<string, string>();

  constructor(log: Logger, metrics?: Metrics) {
    this.#log = log;
    this.#metrics = metrics;
  }

  reportAll(skipped: ReadonlyMap<string, SkippedPeer>): void {
    for (const key of this.#reported.keys()) if (!skipped.has(key)) this.#reported.delete(key);
    for (const [key, s] of skipped) this.report(key, s);
  }

  report(key: string, skipped: SkippedPeer | undefined): void {
    if (skipped === undefined) {
      this.#reported.delete(key);
      return;
    }
    const { lease, reason, detail } = skipped;
    const id = `${lease.revision}:${reason}`;
    if (this.#reported.get(key) === id) return;
    this.#reported.set(key, id);
    const fields = { subnet: lease.subnetText, peer: lease.publicIP, reason: detail };
    if (reason === "unreachable") this.#log.warn("peer gets no route: not directly reachable", fields);
    else if (reason === "overlaps-link") {
      this.#metrics?.leasesRejected.inc({ reason });
      this.#log.warn("ignoring invalid lease: it claims a network of the external interface", {
        key: lease.key,
        ...fields,
      });
    } else if (reason === "backend-data")
      this.#log.warn("peer gets no route: its lease's BackendData is unusable", fields);
    else this.#log.info("peer gets no route", fields);
  }
}

/**
 * What the health endpoints answer from process start: why the agent is not running yet (waiting for
 * the config, an invalid config, the store unreachable) until `attach()` hands over to the agent.
 */
export class AgentSource implements StatusSource {
  #agent: StatusSource | undefined;
  #waiting = "starting";

  /** Sets why there is no agent yet. */
  waiting(reason: string): void {
    this.#waiting = reason;
  }

  attach(agent: StatusSource): void {
    this.#agent = agent;
  }

  readiness(): Readiness {
    return this.#agent?.readiness() ?? { ready: false, reason: this.#waiting };
  }

  status(): unknown {
    return this.#agent?.status() ?? { ready: this.readiness() };
  }
}
