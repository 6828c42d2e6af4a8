/**
 * The kernel view of test/bench/agent-inside.ts: a netlink route monitor (weft's `Monitor`) on the
 * driver's namespace that timestamps every route change of the agent's protocol and keeps the set of
 * peer routes in the kernel.
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
  readonly #monitor: Monitor;
  #onPresentChange: ((at: number) => void) | undefined;
  #resyncs = 0;

  constructor(nl: Netlink, protocol: number, expected: ReadonlyMap<string, string>) {
    this.#nl = nl;
    this.#protocol = protocol;
    this.#expected = expected;
    this.#monitor = Monitor.open((event) => this.#onEvent(event), { groups: ["route"] });
  }

  /** Netlink monitor overruns seen (each forced a re-list). */
  get resyncs(): number {
    return this.#resyncs;
  }

  /** Rebuilds `present` from a route dump. */
  async relist(): Promise<void> {
    const { items } = await this.#nl.routeList({ protocol: this.#protocol });
    this.present.clear();
    for (const r of items) {
      if (r.gateway !== undefined && this.#expected.get(r.dst) === r.gateway) this.present.add(r.dst);
    }
    this.#onPresentChange?.(performance.now());
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
      this.#onPresentChange = (at) => {
        if (this.present.size === this.#expected.size) {
          this.#onPresentChange = undefined;
          resolve(at);
        }
      };
      this.#onPresentChange(performance.now());
    });
  }

  close(): Promise<void> {
    return this.#monitor.close();
  }

  #onEvent(event: NetlinkEvent): void {
    const at = performance.now();
    if (event.type === "resync") {
      this.#resyncs++;
      void this.relist();
      return;
    }
    if (event.type !== "route" || event.route.protocol !== this.#protocol) return;
    const { route, action } = event;
    for (const w of this.#waiters) {
      if (w.dst === route.dst && w.action === action) {
        this.#waiters.delete(w);
        w.resolve(at);
      }
    }
    const gateway = this.#expected.get(route.dst);
    if (gateway === undefined) return;
    if (action === "new" && route.gateway === gateway) this.present.add(route.dst);
    else this.present.delete(route.dst);
    this.#onPresentChange?.(at);
  }
}
