/**
 * The kernel view of test/bench/vxlan-inside.ts: one netlink monitor (weft's `Monitor`, groups route,
 * neigh and link, so the events come in the kernel's order) that keeps, for the peers of one run,
 * which routes (through PeerRouteWatch), permanent ARP entries and FDB entries are in the kernel, and
 * whether the vxlan device is there and up. An ARP or FDB entry counts only when it sits on the
 * current device with the lease's VtepMAC (and, for FDB, the lease's PublicIP as dst).
 *
 * What the kernel removes without a notification is modelled here: a device that goes down loses its
 * IPv4 routes, a device that goes away loses its routes and every ARP and FDB entry. A monitor overrun
 * or an explicit `relist()` re-reads everything, replaying events that arrived during the dumps.
 */

import { AF, NUD } from "../../src/netlink/constants.ts";
import { Monitor, type NetlinkEvent } from "../../src/netlink/monitor.ts";
import type { Netlink } from "../../src/netlink/netlink.ts";
import type { Link, Neigh } from "../../src/netlink/types.ts";
import type { Lease } from "./agent-fixtures.ts";
import { PeerRouteWatch } from "./agent-route-watch.ts";

export type EntryKind = "route" | "arp" | "fdb";

interface Waiter {
  readonly kind: "arp" | "fdb";
  readonly key: string;
  resolve(at: number): void;
}

/** The device as the monitor last saw it. */
interface Device {
  readonly index: number;
  readonly up: boolean;
}

export class PeerEntryWatch {
  readonly routes: PeerRouteWatch;
  /** Peer gateways (`<subnet>.0`) whose permanent ARP entry with the peer's VtepMAC is on the device. */
  readonly arp = new Set<string>();
  /** Peer VtepMACs whose FDB entry with dst = the peer's PublicIP is on the device. */
  readonly fdb = new Set<string>();
  readonly #nl: Netlink;
  readonly #deviceName: string | undefined;
  /** gateway → VtepMAC. */
  readonly #arpExpected = new Map<string, string>();
  /** VtepMAC → PublicIP. */
  readonly #fdbExpected = new Map<string, string>();
  readonly #monitor: Monitor;
  readonly #waiters = new Set<Waiter>();
  readonly #listeners = new Set<(at: number) => void>();
  #device: Device | undefined;
  #duringRelist: NetlinkEvent[] | undefined;
  #resyncs = 0;

  /**
   * Watches the entries `leases` ask for; `deviceName` is the vxlan device (`flannel.1`), undefined
   * on host-gw, where only routes count.
   */
  constructor(nl: Netlink, protocol: number, leases: readonly Lease[], deviceName: string | undefined) {
    this.#nl = nl;
    this.#deviceName = deviceName;
    this.routes = new PeerRouteWatch(nl, protocol, new Map(leases.map((l) => [l.dst, l.gateway])), {
      ownMonitor: false,
    });
    if (deviceName !== undefined) {
      for (const l of leases) {
        if (l.vtepMac === undefined) continue;
        this.#arpExpected.set(l.gateway, l.vtepMac);
        this.#fdbExpected.set(l.vtepMac, l.publicIP);
      }
    }
    this.routes.onChange((at) => this.#changed(at));
    this.#monitor = Monitor.open((event) => this.#onEvent(event), {
      groups: deviceName === undefined ? ["route"] : ["route", "neigh", "link"],
    });
  }

  /** Monitor overruns seen (each forced a re-list). */
  get resyncs(): number {
    return this.#resyncs + this.routes.resyncs;
  }

  get device(): Device | undefined {
    return this.#device;
  }

  /** Peers in this run. */
  get peers(): number {
    return this.routes.expectedCount;
  }

  /** Entries of each kind present now. */
  counts(): Record<EntryKind, number> {
    return { route: this.routes.present.size, arp: this.arp.size, fdb: this.fdb.size };
  }

  /** Every kind at its full count (the device up on vxlan). */
  complete(): boolean {
    const n = this.peers;
    if (this.routes.present.size !== n) return false;
    if (this.#deviceName === undefined) return true;
    return this.#device?.up === true && this.arp.size === this.#arpExpected.size && this.fdb.size === n;
  }

  /** Whether the kind is at its full count (ARP and FDB are always full on host-gw). */
  full(kind: EntryKind): boolean {
    if (kind === "route") return this.routes.present.size === this.peers;
    if (kind === "arp") return this.arp.size === this.#arpExpected.size;
    return this.fdb.size === this.#fdbExpected.size;
  }

  /** Calls `listener` with the time of every change; returns the unsubscribe function. */
  onChange(listener: (at: number) => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /** Resolves with the time `complete()` first held from now on, or undefined after `timeoutMs`. */
  whenComplete(timeoutMs: number): Promise<number | undefined> {
    return new Promise((resolve) => {
      const check = (at: number) => {
        if (!this.complete()) return;
        finish(at);
      };
      const finish = (at: number | undefined) => {
        clearTimeout(timer);
        unsubscribe();
        resolve(at);
      };
      const timer = setTimeout(() => finish(undefined), timeoutMs);
      const unsubscribe = this.onChange(check);
      check(performance.now());
    });
  }

  /** Resolves with the time the monitor saw the entry (ARP: gateway, FDB: VtepMAC) written as expected. */
  waitEntry(kind: "arp" | "fdb", key: string, timeoutMs: number): Promise<number | undefined> {
    return new Promise((resolve) => {
      const waiter: Waiter = {
        kind,
        key,
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

  /** Re-reads the device, its ARP and FDB entries and the routes; events during the dumps are replayed. */
  async relist(): Promise<void> {
    const routes = this.routes.relist();
    if (this.#deviceName !== undefined) {
      const replay: NetlinkEvent[] = [];
      this.#duringRelist = replay;
      try {
        const link = await this.#nl.linkByName(this.#deviceName);
        this.#device = link === undefined ? undefined : { index: link.index, up: link.up };
        this.arp.clear();
        this.fdb.clear();
        if (link !== undefined) {
          const [neighs, fdb] = await Promise.all([
            this.#nl.neighList({ index: link.index }),
            this.#nl.fdbList({ index: link.index }),
          ]);
          for (const n of [...neighs.items, ...fdb.items]) this.#applyNeigh(n, "new");
        }
      } finally {
        this.#duringRelist = undefined;
      }
      for (const event of replay) this.#apply(event);
    }
    await routes;
    this.#changed(performance.now());
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
    if (event.type === "route") {
      this.routes.handle(event);
      return;
    }
    if (event.type === "neigh" && event.action === "new") {
      for (const w of this.#waiters) {
        if (this.#matches(event.neigh, w.kind, w.key)) {
          this.#waiters.delete(w);
          w.resolve(at);
        }
      }
    }
    this.#duringRelist?.push(event);
    if (this.#apply(event)) this.#changed(at);
  }

  /** Applies a link or neighbour event; true when it changed what this watch counts. */
  #apply(event: NetlinkEvent): boolean {
    if (event.type === "link") return this.#applyLink(event.link, event.action);
    if (event.type === "neigh") return this.#applyNeigh(event.neigh, event.action);
    return false;
  }

  #applyLink(link: Link, action: "new" | "del"): boolean {
    if (link.name !== this.#deviceName && link.index !== this.#device?.index) return false;
    const before = this.#device;
    if (action === "del" || link.name !== this.#deviceName) {
      if (before === undefined || before.index !== link.index) return false;
      this.#device = undefined;
      this.#dropEverything();
      return true;
    }
    if (before !== undefined && before.index !== link.index) this.#dropEverything();
    this.#device = { index: link.index, up: link.up };
    if (before?.up === true && !link.up) this.routes.dropAll();
    return true;
  }

  #dropEverything(): void {
    this.arp.clear();
    this.fdb.clear();
    this.routes.dropAll();
  }

  #applyNeigh(n: Neigh, action: "new" | "del"): boolean {
    if (this.#device === undefined || n.index !== this.#device.index) return false;
    if (n.family === AF.INET && n.ip !== undefined && this.#arpExpected.has(n.ip)) {
      if (action === "new" && this.#matches(n, "arp", n.ip)) this.arp.add(n.ip);
      else this.arp.delete(n.ip);
      return true;
    }
    if (n.family === AF.BRIDGE && n.mac !== undefined && this.#fdbExpected.has(n.mac)) {
      if (action === "new" && this.#matches(n, "fdb", n.mac)) this.fdb.add(n.mac);
      else this.fdb.delete(n.mac);
      return true;
    }
    return false;
  }

  /** Whether `n` is the expected entry `key` of `kind` on the current device. */
  #matches(n: Neigh, kind: "arp" | "fdb", key: string): boolean {
    if (this.#device === undefined || n.index !== this.#device.index) return false;
    if (kind === "arp") {
      return (
        n.family === AF.INET &&
        n.ip === key &&
        n.mac === this.#arpExpected.get(key) &&
        (n.state & NUD.PERMANENT) !== 0
      );
    }
    return n.family === AF.BRIDGE && n.mac === key && n.ip === this.#fdbExpected.get(key);
  }

  #changed(at: number): void {
    for (const listener of this.#listeners) listener(at);
  }
}
