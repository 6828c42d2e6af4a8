/**
 * The agent: one host's control loop. Flow runs one way:
 *
 *   config ─► subnet manager (lease) ─► subnet.env, firewall
 *   lease watcher ─► host-gw backend (pure) ─► route table (desired) ─► apply loop ─► kernel
 *   netlink monitor (drift) ─────────────────────────────────────────────┘
 *
 * Everything kernel-facing is level-triggered: any trigger (lease change, drift event, periodic resync)
 * just marks the state dirty, and one coalescing loop applies the difference. Shutdown leaves routes,
 * rules and the lease in place, so containers keep working across restarts and upgrades.
 */

import type { Store } from "../../stores/store.ts";
import { HostGwTable } from "../backend/host-gw.ts";
import type { Clock } from "../clock.ts";
import type { NetworkConfig } from "../config/network-config.ts";
import type { Firewall } from "../firewall/firewall.ts";
import type { Readiness, StatusSource } from "../http/server.ts";
import type { Lease } from "../lease/lease.ts";
import { subnetsPrefix } from "../lease/lease.ts";
import { LeaseWatcher } from "../lease/watcher.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import { formatCidr, type Ipv4Cidr } from "../net/ipv4.ts";
import { type NetlinkHandle, RTPROT_WEFT } from "../netlink/netlink.ts";
import type { Route } from "../netlink/types.ts";
import { RouteTable } from "../reconcile/route-table.ts";
import { type OwnLease, SubnetManager } from "../subnet/manager.ts";
import { readSubnetEnv, writeSubnetEnv } from "../subnet/subnet-env.ts";
import type { ExternalChoice } from "./ext-iface.ts";

/** Kernel change notifications (the netlink monitor, or a fake). */
export interface KernelEvents {
  /** Registers the handlers; returns a function that unsubscribes. */
  subscribe(handlers: {
    route(route: Route, deleted: boolean): void;
    /** Links or addresses changed, or events were lost: the whole picture must be re-read. */
    resync(reason: string): void;
  }): () => void;
}

export interface AgentOptions {
  readonly store: Store;
  readonly storeName: string;
  readonly prefix: string;
  readonly config: NetworkConfig;
  readonly external: ExternalChoice;
  readonly netlink: NetlinkHandle;
  readonly firewall: Firewall;
  readonly events?: KernelEvents | undefined;
  readonly subnetFile: string;
  readonly ipMasq: boolean;
  /** `--iptables-forward-rules`: install the FORWARD accept rules for the network. */
  readonly forwardRules: boolean;
  readonly ttlSeconds: number;
  readonly renewMarginSeconds: number;
  readonly firewallResyncSeconds: number;
  readonly routeResyncSeconds?: number;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly clock: Clock;
  /** Called after each route or firewall apply, so callers can follow readiness() and summary(). */
  readonly onChange?: (() => void) | undefined;
}

interface LastApply {
  readonly at: string;
  readonly ok: boolean;
  readonly replaced: number;
  readonly deleted: number;
  readonly durationMs: number;
  readonly errors: readonly string[];
}

export class Agent implements StatusSource {
  readonly #o: AgentOptions;
  readonly #manager: SubnetManager;
  readonly #routes: RouteTable;
  readonly #watcher: LeaseWatcher;
  /** Desired routes for the current leases; rebuilt when the own subnet changes. */
  #table: HostGwTable | undefined;
  /** The own lease key `#table` was built for. */
  #tableFor: string | undefined;
  #dirty = false;
  #wake: (() => void) | undefined;
  #firstApplyOk = false;
  #firewallOk = false;
  #lastApply: LastApply | undefined;
  #recovering = false;
  /** Skipped peers already logged (`revision:reason` by lease key), so each is reported once. */
  readonly #reported = new Map<string, string>();
  #signal: AbortSignal = new AbortController().signal;
  /** The route and firewall applies running now, with their start (performance.now()). */
  readonly #running = new Set<{ readonly started: number }>();

  constructor(options: AgentOptions) {
    this.#o = options;
    const attrs = { publicIP: options.external.publicIP, backendType: "host-gw" };
    this.#manager = new SubnetManager({
      store: options.store,
      prefix: options.prefix,
      config: options.config,
      attrs,
      ttlSeconds: options.ttlSeconds,
      renewMarginSeconds: options.renewMarginSeconds,
      log: options.log,
      metrics: options.metrics,
      clock: options.clock,
    });
    this.#routes = new RouteTable(options.netlink, { protocol: RTPROT_WEFT });
    this.#watcher = new LeaseWatcher({
      store: options.store,
      prefix: subnetsPrefix(options.prefix),
      network: options.config.network,
      log: options.log,
      metrics: options.metrics,
      clock: options.clock,
      onChange: (leases, changedKey) => this.#leasesChanged(leases, changedKey),
    });
  }

  /** Runs until `signal` aborts. Resolves when every loop has stopped; leaves the kernel as it is. */
  async run(signal: AbortSignal): Promise<void> {
    this.#signal = signal;
    const { log } = this.#o;
    const lease = await this.#manager.acquire(signal, await this.#previousSubnet());
    if (lease === undefined) return;
    await this.#publishLease(lease);
    // The first firewall transaction runs alongside the first route apply; readiness waits for both.
    const firstFirewall = this.#applyFirewall("apply");
    const unsubscribe = this.#o.events?.subscribe({
      route: (route, deleted) => {
        if (this.#routes.noteKernelChange(route, deleted)) {
          this.#o.metrics.driftRepairs.inc({ kind: "route" });
          log.info("kernel route changed outside weft; repairing", { dst: route.dst, deleted });
          this.#kick();
        }
      },
      resync: (reason) => {
        log.info("re-reading kernel routes", { reason });
        this.#routes.queueResync();
        this.#kick();
      },
    });
    try {
      await Promise.all([
        firstFirewall,
        this.#watcher.run(signal, this.#manager.listed, this.#manager.listedParses),
        this.#applyLoop(signal),
        this.#firewallLoop(signal),
        this.#manager.keep(
          signal,
          () => this.#leaseLost(),
          (l) => void this.#leaseAcquired(l),
        ),
      ]);
    } finally {
      unsubscribe?.();
    }
  }

  /**
   * How long the oldest route or firewall apply still running has been at it, in ms; 0 when none
   * runs. The systemd watchdog is withheld when this grows past its interval (a hung netlink request
   * or iptables-restore), so systemd restarts the agent, which keeps routes and lease in place.
   */
  busyMs(): number {
    let oldest = Number.POSITIVE_INFINITY;
    for (const { started } of this.#running) oldest = Math.min(oldest, started);
    return oldest === Number.POSITIVE_INFINITY ? 0 : performance.now() - oldest;
  }

  async #tracked<T>(work: () => Promise<T>): Promise<T> {
    const entry = { started: performance.now() };
    this.#running.add(entry);
    try {
      return await work();
    } finally {
      this.#running.delete(entry);
    }
  }

  readiness(): Readiness {
    if (this.#manager.lease === undefined) return { ready: false, reason: "no subnet lease held" };
    if (!this.#watcher.synced) return { ready: false, reason: "leases not listed yet" };
    if (!this.#firewallOk) return { ready: false, reason: "firewall rules not applied yet" };
    if (!this.#firstApplyOk) return { ready: false, reason: "routes not applied yet" };
    return { ready: true, reason: "" };
  }

  /** The own subnet and peer/route counts (the systemd STATUS= line). */
  summary(): { subnet: string | undefined; peers: number; routes: number } {
    const lease = this.#manager.lease;
    const leases = this.#watcher.leases;
    const own = lease !== undefined && leases.has(lease.key) ? 1 : 0;
    return {
      subnet: lease === undefined ? undefined : formatCidr(lease.subnet),
      peers: leases.size - own,
      routes: this.#table?.routes.size ?? 0,
    };
  }

  status(): unknown {
    const lease = this.#manager.lease;
    const peers = [...this.#watcher.leases.values()]
      .filter((l) => l.key !== lease?.key)
      .sort((a, b) => a.subnet.ip - b.subnet.ip);
    const routes = this.#table?.routes;
    return {
      store: this.#o.storeName,
      prefix: this.#o.prefix,
      backend: "host-gw",
      network: formatCidr(this.#o.config.network),
      externalInterface: this.#o.external.ext.name,
      publicIP: this.#o.external.publicIP,
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
        skipped: this.#table?.skipped.get(p.key)?.detail ?? null,
      })),
      routes: routes?.size ?? 0,
      lastApply: this.#lastApply ?? null,
      ready: this.readiness(),
    };
  }

  /**
   * The subnet the last subnet.env names (flanneld PR #752): when this host's lease is gone (it expired
   * while the host was down, or was deleted) that subnet is taken again if still free, so docker's
   * --bip and the running containers stay valid. A file that cannot be used is reported and ignored.
   */
  async #previousSubnet(): Promise<Ipv4Cidr | undefined> {
    const previous = await readSubnetEnv(this.#o.subnetFile);
    for (const issue of previous?.ignored ?? []) {
      this.#o.log.warn("ignoring part of the previous subnet file", {
        path: this.#o.subnetFile,
        ...(issue.key === undefined ? {} : { key: issue.key }),
        reason: issue.reason,
      });
    }
    return previous?.subnet;
  }

  /** A (re-)acquired lease: subnet.env, then the firewall rules and routes for it. */
  async #leaseAcquired(lease: OwnLease): Promise<void> {
    await this.#publishLease(lease);
    await this.#applyFirewall("apply");
  }

  /** Writes subnet.env and sets the firewall rules and routes the lease asks for (memory only). */
  async #publishLease(lease: OwnLease): Promise<void> {
    const { config, log } = this.#o;
    await writeSubnetEnv(this.#o.subnetFile, {
      network: config.network,
      subnet: lease.subnet,
      mtu: this.#o.external.ext.mtu,
      ipMasq: this.#o.ipMasq,
    });
    log.info("wrote subnet file", { path: this.#o.subnetFile, subnet: formatCidr(lease.subnet) });
    this.#o.firewall.setSpec({
      network: formatCidr(config.network),
      subnet: formatCidr(lease.subnet),
      ipMasq: this.#o.ipMasq,
      forwardRules: this.#o.forwardRules,
    });
    this.#recompute();
  }

  #leaseLost(): void {
    this.#o.metrics.ready.set(0);
  }

  #leasesChanged(leases: ReadonlyMap<string, Lease>, changedKey: string | undefined): void {
    this.#o.metrics.peers.set(Math.max(0, leases.size - 1));
    if (this.#watcher.synced && !this.#recovering && this.#manager.lost(leases, this.#watcher.revision)) {
      this.#recovering = true;
      void this.#manager
        .recover(
          this.#signal,
          () => this.#leaseLost(),
          (l) => void this.#leaseAcquired(l),
        )
        .finally(() => {
          this.#recovering = false;
        });
    }
    if (changedKey === undefined) this.#recompute();
    else this.#recomputeOne(changedKey);
  }

  /** Rebuilds the desired routes from every lease (start, a new own subnet, a resync). */
  #recompute(): void {
    const lease = this.#manager.lease;
    if (lease === undefined) return;
    const ctx = { ownSubnet: lease.subnet, ext: this.#o.external.ext, protocol: RTPROT_WEFT };
    const table = new HostGwTable(ctx, this.#watcher.leases.values());
    this.#table = table;
    this.#tableFor = lease.key;
    for (const key of this.#reported.keys()) if (!table.skipped.has(key)) this.#reported.delete(key);
    for (const key of table.skipped.keys()) this.#reportSkipped(key);
    this.#routes.setDesired(table.routes);
    this.#desiredChanged();
  }

  /** Updates the desired routes for one changed lease: O(1) per store event. */
  #recomputeOne(key: string): void {
    const table = this.#table;
    if (table === undefined || this.#tableFor !== this.#manager.lease?.key) {
      this.#recompute();
      return;
    }
    for (const [dst, route] of table.update(key, this.#watcher.leases.get(key))) {
      this.#routes.setDesiredRoute(dst, route);
    }
    this.#reportSkipped(key);
    this.#desiredChanged();
  }

  #reportSkipped(key: string): void {
    const skipped = this.#table?.skipped.get(key);
    if (skipped === undefined) {
      this.#reported.delete(key);
      return;
    }
    const { lease, reason, detail } = skipped;
    const id = `${lease.revision}:${reason}`;
    if (this.#reported.get(key) === id) return;
    this.#reported.set(key, id);
    const fields = { subnet: lease.subnetText, peer: lease.publicIP, reason: detail };
    if (reason === "unreachable") this.#o.log.warn("peer gets no route: not directly reachable", fields);
    else this.#o.log.info("peer gets no route", fields);
  }

  #desiredChanged(): void {
    let unreachable = 0;
    for (const s of this.#table?.skipped.values() ?? []) if (s.reason === "unreachable") unreachable++;
    this.#o.metrics.peersUnreachable.set(unreachable);
    if (this.#watcher.synced) this.#routes.allowSweep();
    this.#kick();
  }

  #kick(): void {
    this.#dirty = true;
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async #applyLoop(signal: AbortSignal): Promise<void> {
    const resyncMs = (this.#o.routeResyncSeconds ?? 60) * 1000;
    let backoff = 100;
    while (!signal.aborted) {
      if (!this.#dirty) {
        const woke = await Promise.race([
          new Promise<boolean>((resolve) => {
            this.#wake = () => resolve(true);
          }),
          this.#o.clock.sleep(resyncMs, signal).then(() => false),
        ]);
        this.#wake = undefined;
        if (signal.aborted) return;
        if (!woke) this.#routes.queueResync();
      }
      this.#dirty = false;
      if (this.#manager.lease === undefined || !this.#watcher.synced) continue;
      const ok = await this.#applyRoutes();
      if (ok) {
        backoff = 100;
        continue;
      }
      await this.#o.clock.sleep(backoff, signal);
      backoff = Math.min(backoff * 2, 10_000);
      this.#dirty = true;
    }
  }

  async #applyRoutes(): Promise<boolean> {
    const { metrics, log } = this.#o;
    const started = performance.now();
    try {
      const result = await this.#tracked(() => this.#routes.apply());
      const durationMs = performance.now() - started;
      metrics.applySeconds.observe(durationMs / 1000);
      metrics.routes.set(this.#routes.desired.size);
      const ok = result.failures.length === 0;
      metrics.applies.inc({ result: ok ? "ok" : "error" });
      this.#lastApply = {
        at: new Date(this.#o.clock.now()).toISOString(),
        ok,
        replaced: result.replaced,
        deleted: result.deleted,
        durationMs: Math.round(durationMs * 1000) / 1000,
        errors: result.failures.map((f) => `${f.op} ${f.dst}: ${f.message}`),
      };
      if (result.replaced + result.deleted > 0 || !ok) {
        log.info("applied routes", {
          replaced: result.replaced,
          deleted: result.deleted,
          failed: result.failures.length,
          ms: durationMs.toFixed(2),
        });
      }
      for (const f of result.failures)
        log.warn("route change failed", { dst: f.dst, op: f.op, error: f.message });
      if (ok && !this.#firstApplyOk) {
        this.#firstApplyOk = true;
        log.info("first full apply done", { routes: this.#routes.desired.size });
      }
      this.#updateReady();
      return ok;
    } catch (err) {
      metrics.applies.inc({ result: "error" });
      log.error("route apply failed", { error: err });
      return false;
    }
  }

  async #firewallLoop(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.#o.clock.sleep(this.#o.firewallResyncSeconds * 1000, signal);
      if (signal.aborted) return;
      if (this.#manager.lease !== undefined) await this.#applyFirewall("ensure");
    }
  }

  async #applyFirewall(how: "apply" | "ensure"): Promise<void> {
    try {
      const { firewall } = this.#o;
      const result = await this.#tracked(() => (how === "apply" ? firewall.apply() : firewall.ensure()));
      this.#o.metrics.firewallApplies.inc({ result: result.changed ? "changed" : "unchanged" });
      if (result.changed)
        this.#o.log.info(how === "apply" ? "installed firewall rules" : "repaired firewall rules", {
          changes: result.lines.length,
        });
      for (const f of result.findings) this.#o.log.warn("firewall finding", { finding: f });
      this.#firewallOk = true;
    } catch (err) {
      this.#o.metrics.firewallApplies.inc({ result: "error" });
      this.#o.log.error("firewall apply failed", { error: err });
    }
    this.#updateReady();
  }

  #updateReady(): void {
    this.#o.metrics.ready.set(this.readiness().ready ? 1 : 0);
    this.#o.onChange?.();
  }
}
