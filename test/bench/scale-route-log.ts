/**
 * The churn part's view of the kernel (test/bench/scale-inside.ts): a netlink monitor on the route and
 * nexthop groups that logs, per destination, when a route of one protocol appeared and when it went
 * away, on CLOCK_MONOTONIC. A route through a nexthop object also goes away, without an RTM_DELROUTE,
 * when its nexthop is deleted: the RTM_DELNEXTHOP counts as the delete of every route that used it.
 */
import { Monitor } from "../../src/netlink/monitor.ts";
import { performanceOffsetMs } from "./scale-clock.ts";

export class RouteEventLog {
  /** dst → when the monitor saw it added and removed (CLOCK_MONOTONIC ms). */
  readonly #seen = new Map<string, { new: number[]; del: number[] }>();
  /** nexthop id → the destinations routed through it. */
  readonly #byNexthop = new Map<number, Set<string>>();
  readonly #monitor: Monitor;
  readonly #offset = performanceOffsetMs();
  #overruns = 0;

  constructor(protocol: number) {
    this.#monitor = Monitor.open(
      (event) => {
        const at = performance.now() + this.#offset;
        if (event.type === "resync") this.#overruns++;
        else if (event.type === "route" && event.route.protocol === protocol) {
          const { dst, nhid } = event.route;
          this.#push(dst, event.action, at);
          if (nhid === undefined) return;
          if (event.action === "new") {
            const dsts = this.#byNexthop.get(nhid) ?? new Set<string>();
            dsts.add(dst);
            this.#byNexthop.set(nhid, dsts);
          } else this.#byNexthop.get(nhid)?.delete(dst);
        } else if (event.type === "nexthop" && event.action === "del") {
          for (const dst of this.#byNexthop.get(event.nexthop.id) ?? []) this.#push(dst, "del", at);
          this.#byNexthop.delete(event.nexthop.id);
        }
      },
      { groups: ["route", "nexthop"] },
    );
  }

  /** Monitor overruns (events lost: what they were about counts as missed). */
  get overruns(): number {
    return this.#overruns;
  }

  /** The first time at or after `since` the monitor saw `dst` added ("new") or removed ("del"). */
  first(dst: string, action: "new" | "del", since: number): number | undefined {
    return this.#seen.get(dst)?.[action].find((t) => t >= since);
  }

  close(): Promise<void> {
    return this.#monitor.close();
  }

  #push(dst: string, action: "new" | "del", at: number): void {
    let entry = this.#seen.get(dst);
    if (entry === undefined) {
      entry = { new: [], del: [] };
      this.#seen.set(dst, entry);
    }
    entry[action].push(at);
  }
}
