/**
 * The routes weft keeps in one kernel table, and the nexthop objects they go through.
 *
 * Why: routes must equal what the leases say, whatever happened in between — a restart, a missed
 * event, an operator's `ip route del`. The reconciling itself (desired vs actual, deletes first,
 * batches, nothing swept before the first full list) is `OwnedTable`'s and the ordering across kinds
 * `KernelTables`'; this file says what a route and a nexthop are to them.
 *
 * Ownership: a route or nexthop is weft's when it carries weft's protocol number (`proto 77` in
 * `ip route` and `ip nexthop`). A restarted agent recognises them by that marker alone. Only such
 * entries are ever deleted, and nothing before the lease watcher's first full list (`allowSweep`), so
 * a restart never removes a working route. A foreign route to a destination that a lease claims is
 * replaced (as flanneld does), which is also how routes left by flanneld are taken over.
 *
 * Nexthop objects: backends hand in routes with an inline gateway (`via`, `dev`). On kernels with
 * nexthop objects (≥ 5.3) each such route is programmed as a nexthop `id <n> via <gw> dev <dev> proto
 * 77` plus the route `<dst> nhid <n> proto 77`. The kernel hashes inline-gateway routes by device, so
 * adding N of them through one device costs O(N²) (5,394 ms for 20,000 routes here, against 435 ms
 * with nexthops). The id is the route's destination address as a 32-bit number (10.5.3.0 → 168100608):
 * the same after a restart, unique among leases, and a changed PublicIP is a nexthop replace that
 * moves the route with it. `ip route` shows the route as before, with `nhid <n>` added. An id another
 * program's nexthop already holds (found in a dump) makes that one route use an inline gateway; so
 * does a kernel without nexthop objects (`useInlineGateways`, detected once at start). Routes with
 * inline gateways left by flanneld or an older weft are replaced in place.
 */
import { tryParseIpv4 } from "../net/ipv4.ts";
import type { NetlinkHandle } from "../netlink/netlink.ts";
import type { Nexthop, Route } from "../netlink/types.ts";
import type { Delta } from "./delta-tracker.ts";
import { kindFailures, type OwnedKind, OwnedTable, type RefusedEntry } from "./owned-table.ts";

/** The part of the netlink handle a route table needs (the real one, or a fake in unit tests). */
export type RouteHandle = Pick<NetlinkHandle, "routeList" | "routeReplace" | "routeDelete">;
/** The nexthop part, absent from handles (and kernels) without nexthop objects. */
export type NexthopHandle = Pick<NetlinkHandle, "nexthopList" | "nexthopReplace" | "nexthopDelete">;

const ENOENT = 2;
const ESRCH = 3;

/**
 * Whether two routes are the same to weft. A route through a nexthop is its destination, nexthop id,
 * protocol and table; the gateway and device the kernel reports with it belong to the nexthop.
 */
export function routeEqual(a: Route, b: Route): boolean {
  if (a.dst !== b.dst || a.nhid !== b.nhid) return false;
  if ((a.protocol ?? 3) !== (b.protocol ?? 3) || (a.table ?? 254) !== (b.table ?? 254)) return false;
  return (
    a.nhid !== undefined ||
    (a.gateway === b.gateway && a.oif === b.oif && (a.onlink ?? false) === (b.onlink ?? false))
  );
}

export function nexthopEqual(a: Nexthop, b: Nexthop): boolean {
  return (
    a.id === b.id &&
    a.gateway === b.gateway &&
    a.oif === b.oif &&
    (a.protocol ?? 3) === (b.protocol ?? 3) &&
    (a.onlink ?? false) === (b.onlink ?? false)
  );
}

/** The nexthop id of a route to `dst`: its IPv4 address as a number; 0 (none) for anything else. */
export function nexthopIdOf(dst: string): number {
  const slash = dst.indexOf("/");
  const address = tryParseIpv4(slash < 0 ? dst : dst.slice(0, slash));
  return address.ok ? address.value : 0;
}

/**
 * Which `NexthopMode` to run with: asks the kernel once (`ip nexthop show`). `wanted`: the operator did
 * not turn nexthops off. `reason` says why routes use inline gateways on a kernel without them.
 */
export async function detectNexthops(
  handle: Pick<NexthopHandle, "nexthopList">,
  wanted: boolean,
): Promise<{ mode: NexthopMode; reason?: string }> {
  try {
    await handle.nexthopList();
    return { mode: wanted ? "on" : "off" };
  } catch (err) {
    return { mode: "unsupported", reason: err instanceof Error ? err.message : String(err) };
  }
}

/** Routes as an `OwnedKind`: keyed by destination, owned by protocol, listed from one table. */
export function routeKind(handle: RouteHandle, protocol: number, table: number): OwnedKind<Route> {
  const item = (f: { readonly route: Route }) => f.route;
  return {
    async list() {
      const { items } = await handle.routeList({ table, protocol });
      return items.filter((r) => r.protocol === protocol);
    },
    replace: async (routes) => kindFailures((await handle.routeReplace(routes)).failures, item),
    remove: async (routes) => kindFailures((await handle.routeDelete(routes)).failures, item),
    key: (r) => r.dst,
    equal: routeEqual,
    goneErrnos: [ESRCH],
  };
}

/**
 * Nexthop objects as an `OwnedKind`, keyed by id. `foreign` receives, with every dump, the ids that
 * nexthops of other owners (another protocol, groups, blackholes) hold.
 */
export function nexthopKind(
  handle: NexthopHandle,
  protocol: number,
  foreign: (ids: ReadonlySet<number>) => void,
): OwnedKind<Nexthop> {
  const item = (f: { readonly nexthop: Nexthop }) => f.nexthop;
  return {
    async list() {
      const { items } = await handle.nexthopList();
      const owned: Nexthop[] = [];
      const others = new Set<number>();
      for (const nh of items) {
        if (nh.protocol === protocol && nh.group !== true && nh.blackhole !== true) owned.push(nh);
        else others.add(nh.id);
      }
      foreign(others);
      return owned;
    },
    replace: async (nexthops) => kindFailures((await handle.nexthopReplace(nexthops)).failures, item),
    remove: async (nexthops) => kindFailures((await handle.nexthopDelete(nexthops)).failures, item),
    key: (nh) => String(nh.id),
    equal: nexthopEqual,
    goneErrnos: [ENOENT],
  };
}

function hasNexthops<H extends Partial<NexthopHandle>>(handle: H): handle is H & NexthopHandle {
  return (
    typeof handle.nexthopList === "function" &&
    typeof handle.nexthopReplace === "function" &&
    typeof handle.nexthopDelete === "function"
  );
}

/**
 * How routes are programmed: "on" through nexthop objects; "off" with inline gateways, sweeping
 * nexthops an earlier run left (`--route-nexthops=false`); "unsupported": inline gateways, and the
 * kernel has no nexthop objects to look at. "on" and "off" need a handle with the nexthop calls.
 */
export type NexthopMode = "on" | "off" | "unsupported";

export interface RouteTableOptions {
  readonly protocol: number;
  readonly table?: number;
  /** "unsupported" when omitted. */
  readonly nexthops?: NexthopMode | undefined;
}

export class RouteTable {
  readonly #protocol: number;
  readonly #table: number;
  readonly #owned: OwnedTable<Route>;
  #nexthops: OwnedTable<Nexthop> | undefined;
  /** Whether routes go through nexthops (else the nexthop table, if any, only sweeps). */
  #use: boolean;
  /** The routes as the backends asked for them (inline gateways), by destination. */
  readonly #wanted = new Map<string, Route>();
  /** Which desired destination a nexthop id belongs to (the first one claiming it). */
  readonly #dstById = new Map<number, string>();
  /** Ids that other owners' nexthops hold, from the last dump. */
  #foreign: ReadonlySet<number> = new Set();
  /** Nexthop refusals as route refusals, the same object while the nexthop's refusal is the same. */
  readonly #asRoute = new WeakMap<RefusedEntry, RefusedEntry>();

  constructor(handle: RouteHandle & Partial<NexthopHandle>, options: RouteTableOptions) {
    this.#protocol = options.protocol;
    this.#table = options.table ?? 254;
    this.#owned = new OwnedTable(routeKind(handle, this.#protocol, this.#table));
    const mode = options.nexthops ?? "unsupported";
    this.#use = mode === "on";
    if (mode !== "unsupported") {
      if (!hasNexthops(handle))
        throw new TypeError("RouteTable: nexthops asked for, but the handle has no nexthop calls");
      this.#nexthops = new OwnedTable(nexthopKind(handle, this.#protocol, (ids) => this.#noteForeign(ids)));
    }
  }

  /** The routes as programmed (with `nhid` when through nexthops), for a set of tables to order. */
  get owned(): OwnedTable<Route> {
    return this.#owned;
  }

  /** The nexthop objects; undefined when routes use inline gateways. */
  get nexthops(): OwnedTable<Nexthop> | undefined {
    return this.#nexthops;
  }

  /** Whether routes are programmed through nexthop objects. */
  get usesNexthops(): boolean {
    return this.#use;
  }

  /** From now on every route uses an inline gateway: the kernel turned out to have no nexthop objects. */
  useInlineGateways(): void {
    this.#use = false;
    this.#nexthops = undefined;
    for (const [dst, route] of this.#wanted) this.#owned.setDesiredEntry(dst, route);
  }

  /** Replaces the desired routes. Touches only memory. */
  setDesired(routes: ReadonlyMap<string, Route>): void {
    this.#wanted.clear();
    this.#dstById.clear();
    const programmed = new Map<string, Route>();
    const nexthops = new Map<string, Nexthop>();
    for (const [dst, route] of routes) {
      this.#wanted.set(dst, route);
      const nh = this.#nexthopFor(dst, route);
      programmed.set(dst, nh === undefined ? route : this.#throughNexthop(route, nh.id));
      if (nh !== undefined) nexthops.set(String(nh.id), nh);
    }
    this.#owned.setDesired(programmed);
    this.#nexthops?.setDesired(nexthops);
  }

  /** Changes one desired route (undefined: no longer wanted). Touches only memory. */
  setDesiredRoute(dst: string, route: Route | undefined): void {
    if (route === undefined) {
      this.#wanted.delete(dst);
      const id = nexthopIdOf(dst);
      if (this.#dstById.get(id) === dst) {
        this.#dstById.delete(id);
        this.#nexthops?.setDesiredEntry(String(id), undefined);
      }
      this.#owned.setDesiredEntry(dst, undefined);
      return;
    }
    this.#wanted.set(dst, route);
    this.#program(dst, route);
  }

  /** Permits deleting owned entries that are not desired; call once the first full store list is in. */
  allowSweep(): void {
    this.#owned.allowSweep();
    this.#nexthops?.allowSweep();
  }

  /** Forces a kernel dump before the next apply (after a netlink overrun, or periodically). */
  queueResync(): void {
    this.#owned.queueResync();
    this.#nexthops?.queueResync();
  }

  /**
   * A route event from the netlink monitor. Returns true when the event concerns weft (the caller
   * should schedule an apply): a route weft wants is now missing or different.
   */
  noteKernelChange(route: Route, deleted: boolean): boolean {
    if ((route.table ?? 254) !== this.#table) return false;
    return this.#owned.noteKernelChange(route, deleted, route.protocol === this.#protocol);
  }

  /**
   * A nexthop event from the netlink monitor. A deleted nexthop took the routes using it along, with
   * no RTM_DELROUTE: the route through it is forgotten too. True when something weft wants is gone
   * or different.
   */
  noteNexthop(nh: Nexthop, deleted: boolean): boolean {
    const table = this.#nexthops;
    if (table === undefined) return false;
    const owned = nh.protocol === this.#protocol && nh.group !== true && nh.blackhole !== true;
    let changed = table.noteKernelChange(nh, deleted, owned);
    const dst = this.#dstById.get(nh.id);
    if (deleted && dst !== undefined) {
      const gone: Route = { dst, nhid: nh.id, protocol: this.#protocol, table: this.#table };
      changed = this.#owned.noteKernelChange(gone, true, true) || changed;
    }
    return changed;
  }

  /** The routes as the backends asked for them (inline gateways), by destination. */
  get desired(): ReadonlyMap<string, Route> {
    return this.#wanted;
  }

  /** The pending difference of routes and nexthops (after a dump when stale); changes nothing. */
  async plan(): Promise<{ routes: Delta<string, Route>; nexthops: Delta<string, Nexthop> }> {
    const nexthops = (await this.#nexthops?.plan()) ?? { upserts: [], deletes: [] };
    return { routes: await this.#owned.plan(), nexthops };
  }

  /**
   * Whether a route may be written now: a route through a nexthop waits until the kernel holds that
   * nexthop as desired (a refused or failed nexthop holds its route back instead of failing it too).
   */
  ready(route: Route): boolean {
    return route.nhid === undefined || this.#nexthops?.inSync(String(route.nhid)) === true;
  }

  /** Refused nexthops, told as refusals of their routes (an operator knows routes, not ids). */
  refusedNexthops(): RefusedEntry[] {
    const out: RefusedEntry[] = [];
    for (const entry of this.#nexthops?.refused() ?? []) {
      let mapped = this.#asRoute.get(entry);
      if (mapped === undefined) {
        const dst = this.#dstById.get(Number(entry.key)) ?? `nhid ${entry.key}`;
        mapped = { ...entry, key: dst };
        this.#asRoute.set(entry, mapped);
      }
      out.push(mapped);
    }
    return out;
  }

  #program(dst: string, route: Route): void {
    const nh = this.#nexthopFor(dst, route);
    if (nh === undefined) {
      const id = nexthopIdOf(dst);
      if (this.#dstById.get(id) === dst) this.#nexthops?.setDesiredEntry(String(id), undefined);
      this.#owned.setDesiredEntry(dst, route);
      return;
    }
    this.#nexthops?.setDesiredEntry(String(nh.id), nh);
    this.#owned.setDesiredEntry(dst, this.#throughNexthop(route, nh.id));
  }

  /** The nexthop a route goes through, or undefined when it keeps an inline gateway. */
  #nexthopFor(dst: string, route: Route): Nexthop | undefined {
    const id = nexthopIdOf(dst);
    if (id === 0) return undefined;
    const claimed = this.#dstById.get(id);
    if (claimed === undefined) this.#dstById.set(id, dst);
    else if (claimed !== dst) return undefined;
    if (!this.#use || this.#nexthops === undefined || this.#foreign.has(id)) return undefined;
    if (route.gateway === undefined || route.oif === undefined || route.nhid !== undefined) return undefined;
    return {
      id,
      gateway: route.gateway,
      oif: route.oif,
      protocol: this.#protocol,
      ...(route.onlink === true ? { onlink: true } : {}),
    };
  }

  #throughNexthop(route: Route, id: number): Route {
    const { gateway: _g, oif: _o, onlink: _l, ...rest } = route;
    return { ...rest, nhid: id };
  }

  /** A dump's foreign ids: routes whose id changed hands are programmed again. */
  #noteForeign(ids: ReadonlySet<number>): void {
    const before = this.#foreign;
    this.#foreign = ids;
    for (const id of new Set([...before, ...ids])) {
      if (before.has(id) === ids.has(id)) continue;
      const dst = this.#dstById.get(id);
      const route = dst === undefined ? undefined : this.#wanted.get(dst);
      if (dst !== undefined && route !== undefined) this.#program(dst, route);
    }
  }
}
