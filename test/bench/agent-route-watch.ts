/**
 * The kernel view of test/bench/agent-inside.ts: a netlink route monitor (weft's `Monitor`) on the
 * driver's namespace that timestamps every route change of the agent's protocol and keeps the set of
 * peer routes in the kernel. test/bench/peer-entry-watch.ts feeds it from its own monitor instead
 * (`ownMonitor: false`), so that route, neighbour and link events arrive in the kernel's order.
 */
import { Monitor, type NetlinkEvent } from "../../src/netlink/monitor.ts";
import type { Netlink } from "../../src/netlink/netlink.ts";

interface Waiter {
  readonly dst: string;
  readonly action: "new" | "del";
  resolve(at: number): void;
}

export class PeerRouteWatch {
  /** Peer subnets whose route (right gateway, the agent's protocol) is in the kernel now. */
  readonly present = new Set<string>();
  readonly #nl: Netlink;
  readonly #protocol: number;
  /** Peer subnet → the gateway its route must have. */
  readonly #expected: ReadonlyMap<string, string>;
  readonly #waiters = new Set<Waiter>();
  readonly #monitor: Monitor | undefined;
  readonly #listeners = new Set<(at: number) => void>();
  /** What happened while a dump ran, replayed over the dump's picture (which may predate it). */
  #duringRelist: (NetlinkEvent | "drop")[] | undefined;
  #resyncs = 0;

  constructor(
    nl: Netlink,
    protocol: number,
    expected: ReadonlyMap<string, string>,
    options: { ownMonitor?: boolean } = {},
  ) {
    this.#nl = nl;
    this.#protocol = protocol;
    this.#expected = expected;
    if (options.ownMonitor !== false)
      this.#monitor = Monitor.open((event) => this.handle(event), { groups: ["route"] });
  }

  /** Netlink monitor overruns seen (each forced a re-list). */
  get resyncs(): number {
    return this.#resyncs;
  }

  /** How many peer routes are expected. */
  get expectedCount(): number {
    return this.#expected.size;
  }

  /**
   * Rebuilds `present` from a route dump. Events that arrive while the dump runs are applied again
   * on top of it, so a route added just after the dump's snapshot is not lost.
   */
  async relist(): Promise<void> {
    const replay: (NetlinkEvent | "drop")[] = [];
    this.#duringRelist = replay;
    try {
      const { items } = await this.#nl.routeList({ protocol: this.#protocol });
      this.present.clear();
      for (const r of items) {
        if (r.gateway !== undefined && this.#expected.get(r.dst) === r.gateway) this.present.add(r.dst);
      }
    } finally {
      this.#duringRelist = undefined;
    }
    for (const event of replay) {
      if (event === "drop") this.present.clear();
      else this.#apply(event);
    }
    this.#changed(performance.now());
  }

  /**
   * Forgets every peer route: the kernel removed them without a RTM_DELROUTE each, because their
   * device went down or away (what `fib_sync_down_dev` does for IPv4).
   */
  dropAll(): void {
    this.#duringRelist?.push("drop");
    this.present.clear();
    this.#changed(performance.now());
  }

  /** Calls `listener` with the time of every change of `present`; returns the unsubscribe function. */
  onChange(listener: (at: number) => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /** Resolves with the time the monitor saw `action` for `dst`, or undefined after `timeoutMs`. */
  waitRoute(dst: string, action: "new" | "del", timeoutMs: number): Promise<number | undefined> {
    return new Promise((resolve) => {
      const waiter: Waiter = {
        dst,
        action,
        resolve: (at) => {
          clearTimeout(timer);
          resolve(at);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        resolve(undefined);
      }, timeoutMs);
      this.#waiters.add(waiter);
    });
  }

  /** Resolves with the time every expected peer route was present. */
  allPresent(): Promise<number> {
    return new Promise((resolve) => {
      const check = (at: number) => {
        if (this.present.size !== this.#expected.size) return;
        unsubscribe();
        resolve(at);
      };
      const unsubscribe = this.onChange(check);
      check(performance.now());
    });
  }

  close(): Promise<void> {
    return this.#monitor?.close() ?? Promise.resolve();
  }

  /** One monitor event (called by the own monitor, or by whoever feeds this watch). */
  handle(event: NetlinkEvent): void {
    const at = performance.now();
    if (event.type === "resync") {
      this.#resyncs++;
      void this.relist();
      return;
    }
    if (event.type !== "route" || event.route.protocol !== this.#protocol) return;
    for (const w of this.#waiters) {
      if (w.dst === event.route.dst && w.action === event.action) {
        this.#waiters.delete(w);
        w.resolve(at);
      }
    }
    this.#duringRelist?.push(event);
    if (this.#apply(event)) this.#changed(at);
  }

  /** Applies a route event to `present`; true when it concerned a peer route. */
  #apply(event: NetlinkEvent): boolean {
    if (event.type !== "route") return false;
    const { route, action } = event;
    const gateway = this.#expected.get(route.dst);
    if (gateway === undefined) return false;
    if (action === "new" && route.gateway === gateway) this.present.add(route.dst);
    else this.present.delete(route.dst);
    return true;
  }

  #changed(at: number): void {
    for (const listener of this.#listeners) listener(at);
  }
}
