/**
 * Every kind of kernel entry the agent keeps for its peers — routes, and on vxlan the ARP and FDB
 * entries — applied as one step.
 *
 * Why one step: the kinds depend on each other. A vxlan route's gateway must resolve through its ARP
 * entry, and that entry's MAC through the FDB, and a route through a nexthop object needs the nexthop,
 * so writes go ARP → FDB → nexthop → route (flanneld's order, with nexthops before their routes) and
 * deletes the other way round, route first; a route whose nexthop failed or was refused waits for it
 * instead of failing too; all deletes come before all writes, so an entry that
 * moved (a peer's new VtepMAC) never collides with its old self. Failures are collected per entry,
 * and the whole step is retried once after a fresh dump of every kind. Entries the kernel refused
 * as they are (`REFUSAL_ERRNOS`) are left out of later applies unless `retryRefused` is asked for;
 * they are reported apart from failures (`refused()`), since retrying them sooner changes nothing.
 */
import type { PeerChanges, PeerTable } from "../backend/peer-table.ts";
import type { Ipv4Cidr } from "../net/ipv4.ts";
import { AF } from "../netlink/constants.ts";
import type { FdbEntry } from "../netlink/netlink.ts";
import type { Neigh, Nexthop, Route } from "../netlink/types.ts";
import type { Delta } from "./delta-tracker.ts";
import { fdbFromNeigh, fdbKind, type NeighHandle, neighKind, ownedFdb, ownedNeigh } from "./neigh-table.ts";
import type { OwnedApplyResult, OwnedFailure, OwnedTable, RefusedEntry } from "./owned-table.ts";
import { REFUSAL_ERRNOS, OwnedTable as Table } from "./owned-table.ts";
import { type NexthopHandle, type NexthopMode, type RouteHandle, RouteTable } from "./route-table.ts";

export type EntryKind = "route" | "nexthop" | "neigh" | "fdb";

export interface KernelFailure extends OwnedFailure {
  readonly kind: EntryKind;
}

export interface KernelApplyResult {
  readonly replaced: number;
  readonly deleted: number;
  /** Entries that failed for a reason a retry may cure (not refusals: see `refused()`). */
  readonly failures: readonly KernelFailure[];
}

/** A desired entry the kernel refuses; the same object while the entry and the refusal stay the same. */
export interface KernelRefusal {
  readonly kind: EntryKind;
  readonly entry: RefusedEntry;
}

export interface KernelPlan {
  readonly routes: Delta<string, Route>;
  /** Empty when routes use inline gateways. */
  readonly nexthops: Delta<string, Nexthop>;
  readonly neighs: Delta<string, Neigh>;
  readonly fdb: Delta<string, FdbEntry>;
}

export interface KernelTablesOptions {
  readonly protocol: number;
  readonly network: Ipv4Cidr;
  /** The vxlan device whose ARP and FDB entries are weft's; undefined when the backend has none. */
  readonly deviceIndex: () => number | undefined;
  /** How routes are programmed ("unsupported", inline gateways only, when omitted). */
  readonly nexthops?: NexthopMode | undefined;
}

export class KernelTables {
  readonly routes: RouteTable;
  readonly neighs: OwnedTable<Neigh>;
  readonly fdb: OwnedTable<FdbEntry>;
  readonly #o: KernelTablesOptions;

  constructor(handle: RouteHandle & Partial<NexthopHandle> & NeighHandle, options: KernelTablesOptions) {
    this.#o = options;
    this.routes = new RouteTable(handle, { protocol: options.protocol, nexthops: options.nexthops });
    this.neighs = new Table(neighKind(handle, options.deviceIndex, options.network));
    this.fdb = new Table(fdbKind(handle, options.deviceIndex));
  }

  /** Replaces every desired entry with what `table` holds. Touches only memory. */
  setDesired(table: PeerTable): void {
    this.routes.setDesired(table.routes);
    this.neighs.setDesired(table.neighs);
    this.fdb.setDesired(table.fdb);
  }

  /** Applies one lease's changes to the desired entries. Touches only memory. */
  setDesiredChanges(changes: PeerChanges): void {
    for (const [dst, route] of changes.routes) this.routes.setDesiredRoute(dst, route);
    for (const [ip, neigh] of changes.neighs) this.neighs.setDesiredEntry(ip, neigh);
    for (const [mac, entry] of changes.fdb) this.fdb.setDesiredEntry(mac, entry);
  }

  allowSweep(): void {
    this.routes.allowSweep();
    this.neighs.allowSweep();
    this.fdb.allowSweep();
  }

  queueResync(): void {
    this.routes.queueResync();
    this.neighs.queueResync();
    this.fdb.queueResync();
  }

  /** A route event; true when a desired route is now missing or different. */
  noteRoute(route: Route, deleted: boolean): boolean {
    return this.routes.noteKernelChange(route, deleted);
  }

  /** A nexthop event; true when a desired nexthop, or the route through it, is now missing or different. */
  noteNexthop(nexthop: Nexthop, deleted: boolean): boolean {
    return this.routes.noteNexthop(nexthop, deleted);
  }

  /** A neighbour event (ARP or FDB); true when a desired entry is now missing or different. */
  noteNeigh(neigh: Neigh, deleted: boolean): boolean {
    const index = this.#o.deviceIndex();
    if (index === undefined || neigh.index !== index) return false;
    if (neigh.family === AF.BRIDGE) {
      return this.fdb.noteKernelChange(fdbFromNeigh(neigh), deleted, ownedFdb(neigh, index));
    }
    if (neigh.family !== AF.INET) return false;
    return this.neighs.noteKernelChange(neigh, deleted, ownedNeigh(neigh, index, this.#o.network));
  }

  /** Desired entries of every kind. */
  get size(): { routes: number; nexthops: number; neighs: number; fdb: number } {
    return {
      routes: this.routes.desired.size,
      nexthops: this.routes.nexthops?.desired.size ?? 0,
      neighs: this.neighs.desired.size,
      fdb: this.fdb.desired.size,
    };
  }

  /** The pending difference of every kind; changes nothing in the kernel. */
  async plan(): Promise<KernelPlan> {
    const { routes, nexthops } = await this.routes.plan();
    return { routes, nexthops, neighs: await this.neighs.plan(), fdb: await this.fdb.plan() };
  }

  /**
   * Writes what is missing or different and deletes what is no longer desired; any failure makes one
   * more pass after a fresh dump, refused entries included. `retryRefused`: the first pass tries the
   * entries the kernel refused before, too.
   */
  async apply(options: { retryRefused?: boolean } = {}): Promise<KernelApplyResult> {
    let result = await this.#applyOnce(false, options.retryRefused ?? true);
    if (result.failures.length > 0) {
      const retry = await this.#applyOnce(true, true);
      result = {
        replaced: result.replaced + retry.replaced,
        deleted: result.deleted + retry.deleted,
        failures: retry.failures,
      };
    }
    return { ...result, failures: result.failures.filter((f) => !REFUSAL_ERRNOS.includes(f.errno)) };
  }

  /** The desired entries of every kind that the kernel refuses as they are now desired. */
  refused(): KernelRefusal[] {
    const out: KernelRefusal[] = [];
    for (const entry of this.routes.owned.refused()) out.push({ kind: "route", entry });
    for (const entry of this.routes.refusedNexthops()) out.push({ kind: "route", entry });
    for (const entry of this.neighs.refused()) out.push({ kind: "neigh", entry });
    for (const entry of this.fdb.refused()) out.push({ kind: "fdb", entry });
    return out;
  }

  async #applyOnce(fresh: boolean, includeRefused: boolean): Promise<KernelApplyResult> {
    const routes = this.routes.owned;
    const nexthops = this.routes.nexthops;
    await Promise.all([
      routes.refresh(fresh),
      nexthops?.refresh(fresh),
      this.neighs.refresh(fresh),
      this.fdb.refresh(fresh),
    ]);
    const r = routes.pending(includeRefused);
    const h = nexthops?.pending(includeRefused);
    const n = this.neighs.pending(includeRefused);
    const f = this.fdb.pending(includeRefused);
    const steps: Array<[EntryKind, OwnedApplyResult]> = [];
    steps.push(["route", await routes.deleteOnly(r.deletes)]);
    if (nexthops !== undefined && h !== undefined)
      steps.push(["nexthop", await nexthops.deleteOnly(h.deletes)]);
    steps.push(["fdb", await this.fdb.deleteOnly(f.deletes)]);
    steps.push(["neigh", await this.neighs.deleteOnly(n.deletes)]);
    steps.push(["neigh", await this.neighs.writeOnly(n.upserts)]);
    steps.push(["fdb", await this.fdb.writeOnly(f.upserts)]);
    if (nexthops !== undefined && h !== undefined)
      steps.push(["nexthop", await nexthops.writeOnly(h.upserts)]);
    steps.push(["route", await routes.writeOnly(r.upserts.filter(([, route]) => this.routes.ready(route)))]);
    let replaced = 0;
    let deleted = 0;
    const failures: KernelFailure[] = [];
    for (const [kind, step] of steps) {
      replaced += step.replaced;
      deleted += step.deleted;
      for (const failure of step.failures) failures.push({ kind, ...failure });
    }
    return { replaced, deleted, failures };
  }
}
