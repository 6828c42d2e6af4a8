/**
 * The routes weft keeps in one kernel table.
 *
 * Why: routes must equal what the leases say, whatever happened in between — a restart, a missed
 * event, an operator's `ip route del`. The table holds desired routes (from the backend) and the
 * routes the kernel was last seen to hold; `apply()` dumps the kernel when its picture is stale,
 * deletes what is no longer desired, then replaces what is missing or different, in batches, collecting
 * failures per destination and retrying once after a fresh dump.
 *
 * Ownership: a route is weft's when it carries weft's route protocol number (`proto 77` in
 * `ip route`). A restarted agent recognises its routes by that marker alone. Only such routes are ever
 * deleted, and nothing is deleted before the lease watcher's first full list (`allowSweep`), so a
 * restart never removes a working route. A foreign route to a destination that a lease claims is
 * replaced (as flanneld does), which is also how routes left by flanneld are taken over.
 */
import type { NetlinkHandle } from "../netlink/netlink.ts";
import type { Route } from "../netlink/types.ts";
import { type Delta, DeltaTracker } from "./delta-tracker.ts";

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

export class RouteTable {
  readonly #handle: RouteHandle;
  readonly #protocol: number;
  readonly #table: number;
  readonly #routes = new DeltaTracker<string, Route>(routeEqual);
  #stale = true;
  #sweep = false;

  constructor(handle: RouteHandle, options: { protocol: number; table?: number }) {
    this.#handle = handle;
    this.#protocol = options.protocol;
    this.#table = options.table ?? 254;
  }

  /** Replaces the desired routes. Touches only memory. */
  setDesired(routes: ReadonlyMap<string, Route>): void {
    this.#routes.setDesired(routes);
  }

  /** Changes one desired route (undefined: no longer wanted). Touches only memory. */
  setDesiredRoute(dst: string, route: Route | undefined): void {
    this.#routes.setDesiredEntry(dst, route);
  }

  /** Permits deleting owned routes that are not desired; call once the first full store list is in. */
  allowSweep(): void {
    this.#sweep = true;
  }

  /** Forces a kernel dump before the next apply (after a netlink overrun, or periodically). */
  queueResync(): void {
    this.#stale = true;
  }

  /**
   * A route event from the netlink monitor. Any change to a destination weft owns or wants means the
   * kernel no longer matches our picture of it: forget that entry so the next apply rewrites it.
   * Returns true when the event concerns weft (the caller should schedule an apply).
   */
  noteKernelChange(route: Route, deleted: boolean): boolean {
    if ((route.table ?? 254) !== this.#table) return false;
    const ours = route.protocol === this.#protocol;
    const wanted = this.#routes.desired.get(route.dst);
    if (!ours && wanted === undefined) return false;
    if (deleted || !ours) this.#routes.forgetActual(route.dst);
    else this.#routes.recordActual(route.dst, route);
    return wanted === undefined ? false : !routeEqual(wanted, route) || deleted;
  }

  get desired(): ReadonlyMap<string, Route> {
    return this.#routes.desired;
  }

  /** The pending difference (after a dump when the kernel picture is stale); changes nothing. */
  async plan(): Promise<Delta<string, Route>> {
    if (this.#stale) await this.#dump();
    return this.#filtered();
  }

  async apply(): Promise<RouteApplyResult> {
    if (this.#stale) await this.#dump();
    let result = await this.#applyOnce();
    if (result.failures.length > 0) {
      await this.#dump();
      const retry = await this.#applyOnce();
      result = {
        replaced: result.replaced + retry.replaced,
        deleted: result.deleted + retry.deleted,
        failures: retry.failures,
      };
    }
    return result;
  }

  #filtered(): Delta<string, Route> {
    const delta = this.#routes.delta();
    return this.#sweep ? delta : { upserts: delta.upserts, deletes: [] };
  }

  async #dump(): Promise<void> {
    const { items } = await this.#handle.routeList({ table: this.#table, protocol: this.#protocol });
    this.#routes.setActual(
      items.filter((r) => r.protocol === this.#protocol).map((r) => [r.dst, r] as const),
    );
    this.#stale = false;
  }

  async #applyOnce(): Promise<RouteApplyResult> {
    const { upserts, deletes } = this.#filtered();
    const failures: RouteFailure[] = [];
    let deleted = 0;
    let replaced = 0;
    if (deletes.length > 0) {
      const outcome = await this.#handle.routeDelete(deletes.map(([, r]) => r));
      const failed = new Set(outcome.failures.map((f) => f.route.dst));
      for (const f of outcome.failures) {
        // ESRCH: already gone, which is what we wanted.
        if (f.errno === 3) failed.delete(f.route.dst);
        else failures.push({ dst: f.route.dst, op: "delete", message: f.message });
      }
      for (const [dst] of deletes) {
        if (!failed.has(dst)) {
          this.#routes.forgetActual(dst);
          deleted += 1;
        }
      }
    }
    if (upserts.length > 0) {
      const outcome = await this.#handle.routeReplace(upserts.map(([, r]) => r));
      const failed = new Set(outcome.failures.map((f) => f.route.dst));
      for (const f of outcome.failures)
        failures.push({ dst: f.route.dst, op: "replace", message: f.message });
      for (const [dst, route] of upserts) {
        if (!failed.has(dst)) {
          this.#routes.recordActual(dst, route);
          replaced += 1;
        }
      }
    }
    return { replaced, deleted, failures };
  }
}
