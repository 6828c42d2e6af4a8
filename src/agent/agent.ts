/**
 * The agent: one host's conductor. Flow runs one way:
 *
 *   config ─► backend device (vxlan: flannel.<VNI>, its MAC) ─► subnet manager (lease) ─► subnet.env, firewall
 *   lease watcher ─► peer table (backend.peer(), pure) ─► kernel tables (desired) ─► apply loop ─► kernel
 *   netlink monitor (drift) ──────────────────────────────────────────┘
 *
 * The agent only connects these: what a lease means is the backend's (src/backend/), how the kernel is
 * made to match is the tables' and the apply loop's (src/reconcile/). Everything kernel-facing is
 * level-triggered: any trigger just marks the state dirty and one coalescing loop applies the
 * difference. Shutdown leaves routes, devices, rules and the lease in place, so containers keep
 * working across restarts and upgrades.
 */

import type { Store } from "../../stores/store.ts";
import { PeerTable } from "../backend/peer-table.ts";
import type { Clock } from "../clock.ts";
import type { NetworkConfig } from "../config/network-config.ts";
import type { Readiness, StatusSource } from "../http/server.ts";
import type { Lease } from "../lease/lease.ts";
import { subnetsPrefix } from "../lease/lease.ts";
import { LeaseWatcher } from "../lease/watcher.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import { cidrsOverlap, formatCidr, type Ipv4Cidr, networkOf } from "../net/ipv4.ts";
import { AF } from "../netlink/constants.ts";
import { RTPROT_WEFT } from "../netlink/netlink.ts";
import type { Neigh, Nexthop, Route } from "../netlink/types.ts";
import { ApplyLoop, type ApplyOutcome, BusyTracker } from "../reconcile/apply-loop.ts";
import { type OwnLease, SubnetManager } from "../subnet/manager.ts";
import { previousSubnet, writeSubnetEnv } from "../subnet/subnet-env.ts";
import { type DriftKind, DriftLog } from "./drift-log.ts";
import { type ExternalChange, ExternalFollower } from "./ext-follow.ts";
import type { ExternalChoice } from "./ext-iface.ts";
import { RefusalLog } from "./refusal-log.ts";
import { type LastApply, lastApplyOf, SkipReporter, statusOf } from "./status.ts";
import { StoreProbe } from "./store-probe.ts";
import type { Wiring } from "./wiring.ts";

/** Kernel change notifications (the netlink monitor, or a fake). */
export interface KernelEvents {
  /** Registers the handlers; returns a function that unsubscribes. */
  subscribe(handlers: {
    route(route: Route, deleted: boolean): void;
    /** ARP and FDB entries; only a vxlan agent subscribes to them. */
    neigh?(neigh: Neigh, deleted: boolean): void;
    /** Nexthop objects, when peer routes go through them. */
    nexthop?(nexthop: Nexthop, deleted: boolean): void;
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
  /**
   * Chooses the external interface again with the start's flags (src/agent/ext-follow.ts): run on
   * link and address changes so routes, the vxlan device and the lease follow a re-created or
   * re-addressed interface. Without it the start's choice stays.
   */
  readonly chooseExternal?: (() => Promise<ExternalChoice>) | undefined;
  /** Backend, firewall and kernel tables (src/agent/wiring.ts). */
  readonly wiring: Wiring;
  readonly events?: KernelEvents | undefined;
  readonly subnetFile: string;
  readonly ipMasq: boolean;
  readonly ttlSeconds: number;
  readonly renewMarginSeconds: number;
  readonly firewallResyncSeconds: number;
  readonly routeResyncSeconds?: number;
  /** How often the store's reachability is probed for /readyz (src/agent/store-probe.ts); default 5000. */
  readonly storeProbeMs?: number;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly clock: Clock;
  /** Called after each route or firewall apply, so callers can follow readiness() and summary(). */
  readonly onChange?: (() => void) | undefined;
}

/** Failed entries logged one by one per apply; the rest are counted (all of them are in /status). */
const FAILURES_LOGGED = 10;
const ENODEV = 19;

export class Agent implements StatusSource {
  readonly #o: AgentOptions;
  readonly #manager: SubnetManager;
  readonly #watcher: LeaseWatcher;
  readonly #loop: ApplyLoop;
  readonly #busy = new BusyTracker();
  readonly #skips: SkipReporter;
  /** Desired entries for the current leases; rebuilt when the own subnet or the device changes. */
  #table: PeerTable | undefined;
  /** The own lease key `#table` was built for. */
  #tableFor: string | undefined;
  /** The backend's device must be checked before the next apply (a link or address changed). */
  #deviceStale = true;
  #firstApplyOk = false;
  #firewallOk = false;
  #lastApply: LastApply | undefined;
  #recovering = false;
  #signal: AbortSignal = new AbortController().signal;
  /** Drift seen since the last apply, logged once per kind when the apply runs. */
  readonly #drifts = new DriftLog();
  /** The external interface as last chosen (the start's choice until a link or address changes). */
  readonly #ext: ExternalFollower;
  /** The lease still names an old PublicIP or VTEP MAC: written again on the next device check. */
  #republish = false;
  readonly #refusals: RefusalLog;
  readonly #probe: StoreProbe;

  constructor(options: AgentOptions) {
    this.#o = options;
    const { external, chooseExternal } = options;
    this.#ext = new ExternalFollower(external, chooseExternal ?? (async () => external), options.log);
    const { backend } = options.wiring;
    this.#manager = new SubnetManager({
      store: options.store,
      prefix: options.prefix,
      config: options.config,
      attrs: () => ({
        publicIP: this.#ext.current.publicIP,
        backendType: backend.type,
        backendData: backend.backendData(),
      }),
      ttlSeconds: options.ttlSeconds,
      renewMarginSeconds: options.renewMarginSeconds,
      log: options.log,
      metrics: options.metrics,
      clock: options.clock,
    });
    this.#watcher = new LeaseWatcher({
      store: options.store,
      prefix: subnetsPrefix(options.prefix),
      network: options.config.network,
      subnetLen: options.config.subnetLen,
      log: options.log,
      metrics: options.metrics,
      clock: options.clock,
      onChange: (leases, changedKey) => this.#leasesChanged(leases, changedKey),
    });
    this.#loop = new ApplyLoop({
      clock: options.clock,
      resyncMs: (options.routeResyncSeconds ?? 60) * 1000,
      canApply: () => this.#manager.lease !== undefined && this.#watcher.synced,
      apply: () => this.#applyKernel(),
      onResyncTimer: () => {
        this.#deviceStale = true;
        options.wiring.tables.queueResync();
      },
    });
    this.#skips = new SkipReporter(options.log, options.metrics);
    this.#refusals = new RefusalLog(options.log, options.clock, options.metrics);
    options.metrics.storeConnected.set(1);
    this.#probe = new StoreProbe({
      store: options.store,
      key: `${options.prefix}/config`,
      ownKey: () => this.#manager.lease?.key,
      onOwnMissing: () => this.#ownLeaseMissing(),
      intervalMs: options.storeProbeMs ?? 5_000,
      clock: options.clock,
      log: options.log,
      onChange: (connected) => {
        options.metrics.storeConnected.set(connected ? 1 : 0);
        // Back from an outage: list now, not after the driver's reconnect backoff (up to seconds).
        if (connected) this.#watcher.relist();
        this.#updateReady();
      },
    });
  }

  /** Runs until `signal` aborts. Resolves when every loop has stopped; leaves the kernel as it is. */
  async run(signal: AbortSignal): Promise<void> {
    this.#signal = signal;
    const { log, wiring } = this.#o;
    this.#warnNetworkOnLink();
    // The device comes first: its MAC goes into the lease (flanneld's order).
    await this.#ensureDevice(undefined);
    for (const name of await wiring.backend.removeForeign())
      log.info("removed a device the current backend does not use", {
        device: name,
        backend: wiring.backend.type,
      });
    const lease = await this.#manager.acquire(signal, await previousSubnet(this.#o.subnetFile, log));
    if (lease === undefined) return;
    await this.#publishLease(lease);
    // The first firewall transaction runs alongside the first route apply; readiness waits for both.
    const firstFirewall = this.#applyFirewall("apply");
    const unsubscribe = this.#o.events?.subscribe({
      route: (route, deleted) =>
        this.#drift("route", wiring.tables.noteRoute(route, deleted), route.dst, deleted),
      neigh: (neigh, deleted) =>
        neigh.family === AF.BRIDGE
          ? this.#drift("fdb", wiring.tables.noteNeigh(neigh, deleted), neigh.mac ?? "", deleted)
          : this.#drift("neigh", wiring.tables.noteNeigh(neigh, deleted), neigh.ip ?? "", deleted),
      nexthop: (nexthop, deleted) =>
        this.#drift("nexthop", wiring.tables.noteNexthop(nexthop, deleted), `id ${nexthop.id}`, deleted),
      resync: (reason) => {
        log.info("re-reading kernel state", { reason });
        this.#deviceStale = true;
        // A link or address change may be what the kernel objected to (a link down, an address gone).
        this.#refusals.retryNow();
        wiring.tables.queueResync();
        this.#loop.kick();
      },
    });
    try {
      await Promise.all([
        firstFirewall,
        this.#watcher.run(signal, this.#manager.listed, this.#manager.listedParses),
        this.#loop.run(signal),
        this.#firewallLoop(signal),
        this.#probe.run(signal),
        this.#manager.keep(
          signal,
          () => this.#leaseLost(),
          (l) => this.#leaseAcquired(l),
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
    return this.#busy.busyMs();
  }

  readiness(): Readiness {
    if (this.#manager.lease === undefined) return { ready: false, reason: "no subnet lease held" };
    if (!this.#watcher.synced) return { ready: false, reason: "leases not listed yet" };
    if (!this.#probe.connected)
      return { ready: false, reason: "store unreachable: leases not synced, routes kept as they were" };
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
    const { backend } = this.#o.wiring;
    return statusOf({
      options: { ...this.#o, external: this.#ext.current },
      lease: this.#manager.lease,
      leases: this.#watcher.leases,
      table: this.#table,
      backend: {
        type: backend.type,
        device: backend.deviceIndex(),
        deviceName: backend.deviceName,
        data: backend.backendData(),
        mtu: backend.mtu(),
      },
      lastApply: this.#lastApply,
      ready: this.readiness(),
    });
  }

  /** The Network overlapping a network of the external interface: every lease there gets no route. */
  #warnNetworkOnLink(): void {
    const { config, external, log } = this.#o;
    for (const address of external.ext.addresses) {
      if (!cidrsOverlap(address, config.network)) continue;
      log.warn(
        "the Network overlaps a network of the external interface: peer leases inside it get no route, so the connected route stays; choose a Network apart from the hosts' own networks",
        {
          network: formatCidr(config.network),
          iface: external.ext.name,
          ifaceNetwork: formatCidr(networkOf(address)),
        },
      );
    }
  }

  #drift(kind: DriftKind, concerns: boolean, what: string, deleted: boolean): void {
    if (!concerns) return;
    this.#o.metrics.driftRepairs.inc({ kind });
    this.#drifts.note(kind, what, deleted);
    this.#loop.kick();
  }

  /**
   * Links or addresses changed: chooses the external interface again; when it moved, the backend,
   * the desired entries (their `oif`) and then the device follow, and the lease and subnet.env are
   * written again in the background if what they say changed.
   */
  async #refreshDevice(): Promise<void> {
    const { backend } = this.#o.wiring;
    const mtu = backend.mtu();
    const change = await this.#ext.refresh();
    if (change !== undefined) {
      backend.setExternal(change.after.ext, change.after.ifaceIP);
      this.#recompute();
    }
    await this.#ensureDevice(this.#manager.lease?.subnet);
    if (change !== undefined) this.#externalMoved(change, mtu);
    if (this.#republish) {
      this.#republish = false;
      this.#manager.republish().catch((err: unknown) => {
        this.#republish = true;
        this.#o.log.error("could not publish the lease with the new interface's address; trying again", {
          error: err,
        });
      });
    }
  }

  #externalMoved(change: ExternalChange, mtuBefore: number): void {
    const { log, wiring } = this.#o;
    this.#republish = true;
    const { after } = change;
    if (wiring.backend.type === "host-gw" && after.publicIP !== after.ifaceIP)
      log.warn("host-gw: the PublicIP is no longer the interface's address; peers cannot route to it", {
        publicIP: after.publicIP,
        ifaceIP: after.ifaceIP,
      });
    const lease = this.#manager.lease;
    if (lease === undefined || wiring.backend.mtu() === mtuBefore) return;
    this.#writeSubnetFile(lease).catch((err: unknown) =>
      log.error("could not write the subnet file with the new MTU", { path: this.#o.subnetFile, error: err }),
    );
  }

  /** Creates or repairs the backend's device; a changed device means new desired entries. */
  async #ensureDevice(ownSubnet: Ipv4Cidr | undefined): Promise<void> {
    const { backend } = this.#o.wiring;
    const state = await backend.ensureDevice(ownSubnet);
    this.#deviceStale = false;
    for (const action of state.actions) {
      this.#o.log.info("backend device", { backend: backend.type, action });
      // After the first apply, any change to the device is a repair of someone else's change.
      if (this.#firstApplyOk) this.#o.metrics.driftRepairs.inc({ kind: "device" });
    }
    if (state.changed) this.#recompute();
  }

  /**
   * A re-acquired lease (from keep() or the watcher's recovery, detached): subnet.env, then the
   * firewall rules and routes for it. Never rejects: a subnet.env that cannot be written is logged
   * and the rules and routes follow the lease anyway.
   */
  #leaseAcquired(lease: OwnLease): void {
    const { log, subnetFile } = this.#o;
    const subnet = formatCidr(lease.subnet);
    const adopt = async () => {
      try {
        await this.#writeSubnetFile(lease);
      } catch (err) {
        log.error("could not write the subnet file for the re-acquired lease; routes and rules follow it", {
          path: subnetFile,
          subnet,
          error: err,
        });
      }
      this.#useLease(lease);
      await this.#applyFirewall("apply");
    };
    adopt().catch((err: unknown) =>
      log.error("could not take up the re-acquired lease", { subnet, error: err }),
    );
  }

  /** Writes subnet.env and sets the firewall rules and routes the lease asks for (memory only). */
  async #publishLease(lease: OwnLease): Promise<void> {
    await this.#writeSubnetFile(lease);
    this.#useLease(lease);
  }

  async #writeSubnetFile(lease: OwnLease): Promise<void> {
    const { config, log, wiring } = this.#o;
    await writeSubnetEnv(this.#o.subnetFile, {
      network: config.network,
      subnet: lease.subnet,
      mtu: wiring.backend.mtu(),
      ipMasq: this.#o.ipMasq,
    });
    log.info("wrote subnet file", {
      path: this.#o.subnetFile,
      subnet: formatCidr(lease.subnet),
      mtu: wiring.backend.mtu(),
    });
  }

  #useLease(lease: OwnLease): void {
    const { wiring } = this.#o;
    wiring.firewall.setSpec(wiring.firewallSpec(lease.subnet));
    this.#deviceStale = true;
    this.#recompute();
  }

  /** Re-acquires the lost lease (the same subnet while free); one recovery at a time. */
  async #recover(): Promise<void> {
    this.#recovering = true;
    try {
      await this.#manager.recover(
        this.#signal,
        () => this.#leaseLost(),
        (l) => this.#leaseAcquired(l),
      );
    } catch (err) {
      this.#o.log.error("lease recovery failed", { error: err });
    } finally {
      this.#recovering = false;
    }
  }

  /**
   * The store answers but the own lease is gone and no watch said so: the store lost its data. The
   * lease is re-created with the same subnet at once; the lease watch lists again after two probes.
   * When the store's revision went backwards that list only adds (the watcher's `BACKWARDS_GRACE_MS`):
   * peers' routes stay until the watcher's own list at the end of the grace, by when they re-created
   * their leases.
   */
  #ownLeaseMissing(): void {
    if (this.#recovering || this.#signal.aborted) return;
    this.#o.log.warn(
      "own lease missing from a store that answers (store emptied or restored?); re-creating it",
      {
        key: this.#manager.lease?.key,
      },
    );
    void this.#recover().then(async () => {
      await this.#o.clock.sleep(2 * (this.#o.storeProbeMs ?? 5_000), this.#signal);
      if (!this.#signal.aborted) this.#watcher.relist();
    });
  }

  #leaseLost(): void {
    this.#o.metrics.ready.set(0);
  }

  #leasesChanged(leases: ReadonlyMap<string, Lease>, changedKey: string | undefined): void {
    this.#o.metrics.peers.set(Math.max(0, leases.size - 1));
    if (this.#watcher.synced && !this.#recovering && this.#manager.lost(leases, this.#watcher.revision))
      void this.#recover();
    if (changedKey !== undefined) this.#recomputeOne(changedKey);
    else if (!this.#recomputeChanged(leases)) this.#recompute();
  }

  /** Rebuilds the desired entries from every lease (start, a new own subnet or device, a resync). */
  #recompute(): void {
    const lease = this.#manager.lease;
    if (lease === undefined) return;
    const { backend, tables } = this.#o.wiring;
    const ctx = { ownSubnet: lease.subnet, ext: this.#ext.current.ext, protocol: RTPROT_WEFT };
    const table = new PeerTable((l, c) => backend.peer(l, c), ctx, this.#watcher.leases.values());
    this.#table = table;
    this.#tableFor = lease.key;
    this.#skips.reportAll(table.skipped);
    tables.setDesired(table);
    this.#desiredChanged();
  }

  /** Updates the desired entries for one changed lease: O(1) per store event. */
  #recomputeOne(key: string): void {
    const table = this.#table;
    if (table === undefined || this.#tableFor !== this.#manager.lease?.key) {
      this.#recompute();
      return;
    }
    this.#o.wiring.tables.setDesiredChanges(table.update(key, this.#watcher.leases.get(key)));
    this.#skips.report(key, table.skipped.get(key));
    this.#desiredChanged();
  }

  /**
   * A whole new lease set (a list, a resync after a compaction): updates only the leases that differ
   * from the table's, so event handling does not stall behind a rebuild of every entry (at 20,000
   * peers a rebuild took 160 ms, test/bench/resync.bench.ts). False when the table must be rebuilt.
   */
  #recomputeChanged(leases: ReadonlyMap<string, Lease>): boolean {
    const table = this.#table;
    if (table === undefined || this.#tableFor !== this.#manager.lease?.key) return false;
    const { tables } = this.#o.wiring;
    table.sync(leases, (key, changes) => {
      tables.setDesiredChanges(changes);
      this.#skips.report(key, table.skipped.get(key));
    });
    this.#desiredChanged();
    return true;
  }

  #desiredChanged(): void {
    let unreachable = 0;
    for (const s of this.#table?.skipped.values() ?? []) if (s.reason === "unreachable") unreachable++;
    this.#o.metrics.peersUnreachable.set(unreachable);
    if (this.#watcher.synced) this.#o.wiring.tables.allowSweep();
    this.#loop.kick();
  }

  /**
   * One apply: the device first (when a link or address changed), then every kernel table. Entries
   * the kernel refuses as they are do not fail it (readiness means every entry that can be installed
   * is): they are logged once and tried again every 10 s (`RefusalLog`).
   */
  async #applyKernel(): Promise<ApplyOutcome> {
    const { metrics, log, wiring } = this.#o;
    const started = performance.now();
    const retryRefused = this.#refusals.due();
    try {
      this.#drifts.flush(log);
      const result = await this.#busy.track(async () => {
        if (this.#deviceStale) await this.#refreshDevice();
        const first = await wiring.tables.apply({ retryRefused });
        if (!first.failures.some((f) => f.errno === ENODEV)) return first;
        // The device went away under the apply (its flush events came before its removal): make it
        // again and apply once more, instead of reporting an error per entry.
        this.#deviceStale = true;
        await this.#refreshDevice();
        wiring.tables.queueResync();
        return wiring.tables.apply({ retryRefused });
      });
      const durationMs = performance.now() - started;
      metrics.applySeconds.observe(durationMs / 1000);
      metrics.routes.set(wiring.tables.routes.desired.size);
      const ok = result.failures.length === 0;
      const refused = wiring.tables.refused();
      this.#refusals.note(refused, retryRefused);
      metrics.applies.inc({ result: ok ? (refused.length === 0 ? "ok" : "partial") : "error" });
      this.#lastApply = lastApplyOf(result, refused, durationMs, this.#o.clock.now());
      if (result.replaced + result.deleted > 0 || !ok) {
        log.info("applied routes", {
          replaced: result.replaced,
          deleted: result.deleted,
          failed: result.failures.length,
          ms: durationMs.toFixed(2),
        });
      }
      for (const f of result.failures.slice(0, FAILURES_LOGGED))
        log.warn(`${f.kind} change failed`, { entry: f.key, op: f.op, error: f.message });
      if (result.failures.length > FAILURES_LOGGED)
        log.warn("more changes failed", {
          more: result.failures.length - FAILURES_LOGGED,
          see: "weft status",
        });
      if (ok && !this.#firstApplyOk) {
        this.#firstApplyOk = true;
        log.info("first full apply done", { routes: wiring.tables.routes.desired.size });
      }
      this.#updateReady();
      return ok ? (refused.length === 0 ? "done" : "partial") : "failed";
    } catch (err) {
      metrics.applies.inc({ result: "error" });
      log.error("route apply failed", { error: err });
      this.#deviceStale = true;
      return "failed";
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
      const { firewall } = this.#o.wiring;
      const started = performance.now();
      const result = await this.#busy.track(() => (how === "apply" ? firewall.apply() : firewall.ensure()));
      this.#o.metrics.firewallApplies.inc({ result: result.changed ? "changed" : "unchanged" });
      if (result.changed)
        this.#o.log.info(how === "apply" ? "installed firewall rules" : "repaired firewall rules", {
          changes: result.lines.length,
          ms: (performance.now() - started).toFixed(2),
        });
      for (const f of result.findings) this.#o.log.warn("firewall finding", { finding: f });
      if (!this.#firewallOk) await this.#takeOver();
      this.#firewallOk = true;
    } catch (err) {
      this.#o.metrics.firewallApplies.inc({ result: "error" });
      this.#o.log.error("firewall apply failed", { error: err });
    }
    this.#updateReady();
  }

  /** Once weft's rules are in: remove what the other firewall mode and flanneld left behind. */
  async #takeOver(): Promise<void> {
    const { removed, flanneld } = await this.#o.wiring.takeOver();
    if (removed.length > 0)
      this.#o.log.info("removed firewall rules weft replaces", { removed: removed.join("; ") });
    if (flanneld.length > 0)
      this.#o.log.warn(
        "flanneld runs on this host: its FLANNEL-* rules are left alone; stop and disable it",
        {
          pids: flanneld.join(","),
        },
      );
  }

  #updateReady(): void {
    this.#o.metrics.ready.set(this.readiness().ready ? 1 : 0);
    this.#o.onChange?.();
  }
}
