/**
 * The routes weft keeps in one kernel table.
 *
 * Why: routes must equal what the leases say, whatever happened in between — a restart, a missed
 * event, an operator's `ip route del`. The reconciling itself (desired vs actual, deletes first,
 * batches, one retry after a fresh dump) is `OwnedTable`'s; this file says what a route is to it.
 *
 * Ownership: a route is weft's when it carries weft's route protocol number (`proto 77` in
 * `ip route`). A restarted agent recognises its routes by that marker alone. Only such routes are ever
 * deleted, and nothing is deleted before the lease watcher's first full list (`allowSweep`), so a
 * restart never removes a working route. A foreign route to a destination that a lease claims is
 * replaced (as flanneld does), which is also how routes left by flanneld are taken over.
 *
 * Backends hand in routes with an inline gateway (`via`, `dev`); how they are programmed is this
 * table's business, so nexthop objects can replace inline gateways here without touching a backend.
 */
import type { NetlinkHandle } from "../netlink/netlink.ts";
import type { Route } from "../netlink/types.ts";
import type { Delta } from "./delta-tracker.ts";
import { type OwnedApplyResult, type OwnedKind, OwnedTable } from "./owned-table.ts";

/** The part of the netlink handle a route table needs (the real one, or a fake in unit tests). */
export type RouteHandle = Pick<NetlinkHandle, "routeList" | "routeReplace" | "routeDelete">;

export interface RouteFailure {
  readonly dst: string;
  readonly op: "replace" | "delete";
  readonly message: string;
}

export interface RouteApplyResult {
  readonly replaced: number;
  readonly deleted: number;
  /** Destinations that still failed after the retry. */
  readonly failures: readonly RouteFailure[];
}

const ESRCH = 3;

export function routeEqual(a: Route, b: Route): boolean {
  return (
    a.dst === b.dst &&
    a.gateway === b.gateway &&
    a.oif === b.oif &&
    (a.protocol ?? 3) === (b.protocol ?? 3) &&
    (a.table ?? 254) === (b.table ?? 254) &&
    (a.onlink ?? false) === (b.onlink ?? false)
  );
}

/** Routes as an `OwnedKind`: keyed by destination, owned by protocol, listed from one table. */
export function routeKind(handle: RouteHandle, protocol: number, table: number): OwnedKind<Route> {
  const failures = (out: Awaited<ReturnType<RouteHandle["routeReplace"]>>) =>
    out.failures.map((f) => ({ item: f.route, errno: f.errno, message: f.message }));
  return {
    async list() {
      const { items } = await handle.routeList({ table, protocol });
      return items.filter((r) => r.protocol === protocol);
    },
    replace: async (routes) => failures(await handle.routeReplace(routes)),
    remove: async (routes) => failures(await handle.routeDelete(routes)),
    key: (r) => r.dst,
    equal: routeEqual,
    goneErrnos: [ESRCH],
  };
}

function byDst(result: OwnedApplyResult): RouteApplyResult {
  return {
    replaced: result.replaced,
    deleted: result.deleted,
    failures: result.failures.map((f) => ({ dst: f.key, op: f.op, message: f.message })),
  };
}

export class RouteTable {
  readonly #protocol: number;
  readonly #table: number;
  readonly #owned: OwnedTable<Route>;

  constructor(handle: RouteHandle, options: { protocol: number; table?: number }) {
    this.#protocol = options.protocol;
    this.#table = options.table ?? 254;
    this.#owned = new OwnedTable(routeKind(handle, this.#protocol, this.#table));
  }

  /** The generic table underneath, for a set of tables that orders several kinds' deletes and writes. */
  get owned(): OwnedTable<Route> {
    return this.#owned;
  }

  /** Replaces the desired routes. Touches only memory. */
  setDesired(routes: ReadonlyMap<string, Route>): void {
    this.#owned.setDesired(routes);
  }

  /** Changes one desired route (undefined: no longer wanted). Touches only memory. */
  setDesiredRoute(dst: string, route: Route | undefined): void {
    this.#owned.setDesiredEntry(dst, route);
  }

  /** Permits deleting owned routes that are not desired; call once the first full store list is in. */
  allowSweep(): void {
    this.#owned.allowSweep();
  }

  /** Forces a kernel dump before the next apply (after a netlink overrun, or periodically). */
  queueResync(): void {
    this.#owned.queueResync();
  }

  /**
   * A route event from the netlink monitor. Returns true when the event concerns weft (the caller
   * should schedule an apply): a route weft wants is now missing or different.
   */
  noteKernelChange(route: Route, deleted: boolean): boolean {
    if ((route.table ?? 254) !== this.#table) return false;
    return this.#owned.noteKernelChange(route, deleted, route.protocol === this.#protocol);
  }

  get desired(): ReadonlyMap<string, Route> {
    return this.#owned.desired;
  }

  /** The pending difference (after a dump when the kernel picture is stale); changes nothing. */
  plan(): Promise<Delta<string, Route>> {
    return this.#owned.plan();
  }

  async apply(): Promise<RouteApplyResult> {
    return byDst(await this.#owned.apply());
  }
}
