/**
 * The desired kernel entries for a set of leases, kept up to date one lease at a time: a store event
 * costs one `update()`, not a pass over every lease.
 *
 * Why: backends answer for one lease (`peer()`); the agent's tables want whole desired maps keyed the
 * way the kernel keys them (routes by destination, ARP entries by IP, FDB entries by MAC). Each entry
 * remembers the lease that asked for it, so when two leases ask for the same key (two hosts cloned
 * with one VTEP MAC) removing one lease never removes what the other still asks for.
 */

import type { Lease } from "../lease/lease.ts";
import type { FdbEntry } from "../netlink/netlink.ts";
import type { Neigh, Route } from "../netlink/types.ts";
import type { PeerContext, PeerEntries, PeerOutcome, SkippedPeer } from "./backend.ts";

/** Desired entries whose value changed in one update; `undefined`: no longer wanted. */
export interface PeerChanges {
  readonly routes: Map<string, Route | undefined>;
  readonly neighs: Map<string, Neigh | undefined>;
  readonly fdb: Map<string, FdbEntry | undefined>;
}

/** One kind of entry: the desired value per kernel key and the lease key that asked for it. */
class Owned<V> {
  readonly values = new Map<string, V>();
  readonly #owner = new Map<string, string>();

  set(key: string, value: V, owner: string, changes: Map<string, V | undefined>): void {
    this.values.set(key, value);
    this.#owner.set(key, owner);
    changes.set(key, value);
  }

  release(key: string, owner: string, changes: Map<string, V | undefined>): void {
    if (this.#owner.get(key) !== owner) return;
    this.values.delete(key);
    this.#owner.delete(key);
    if (!changes.has(key)) changes.set(key, undefined);
  }
}

export const neighKey = (n: Neigh): string => n.ip ?? "";
export const fdbKey = (f: FdbEntry): string => f.mac;

export class PeerTable {
  readonly #peer: (lease: Lease, ctx: PeerContext) => PeerOutcome;
  readonly #ctx: PeerContext;
  readonly #routes = new Owned<Route>();
  readonly #neighs = new Owned<Neigh>();
  readonly #fdb = new Owned<FdbEntry>();
  readonly #skipped = new Map<string, SkippedPeer>();
  /** What each lease key contributed, so an update can take it back. */
  readonly #byKey = new Map<string, PeerEntries>();
  /** The lease object each key was last updated with. */
  readonly #leases = new Map<string, Lease>();

  constructor(
    peer: (lease: Lease, ctx: PeerContext) => PeerOutcome,
    ctx: PeerContext,
    leases: Iterable<Lease> = [],
  ) {
    this.#peer = peer;
    this.#ctx = ctx;
    for (const lease of leases) this.update(lease.key, lease);
  }

  /** Desired routes keyed by destination (`10.5.1.0/24`). */
  get routes(): ReadonlyMap<string, Route> {
    return this.#routes.values;
  }

  /** Desired ARP entries keyed by IP. */
  get neighs(): ReadonlyMap<string, Neigh> {
    return this.#neighs.values;
  }

  /** Desired FDB entries keyed by MAC. */
  get fdb(): ReadonlyMap<string, FdbEntry> {
    return this.#fdb.values;
  }

  /** Peers that get nothing, keyed by lease key. */
  get skipped(): ReadonlyMap<string, SkippedPeer> {
    return this.#skipped;
  }

  /**
   * Brings the table to `leases` (a whole new set, e.g. after a resync) by updating only the keys
   * whose lease object differs from the one the table holds, or that are gone; `onChange` gets each
   * update's changes. Returns how many keys changed. The lease watcher hands out the same object for
   * an unchanged entry, so a resync of 20,000 unchanged leases costs a pass over the keys, not a
   * rebuild of every entry downstream.
   */
  sync(leases: ReadonlyMap<string, Lease>, onChange: (key: string, changes: PeerChanges) => void): number {
    let changed = 0;
    for (const [key, lease] of leases) {
      if (this.#leases.get(key) === lease) continue;
      onChange(key, this.update(key, lease));
      changed += 1;
    }
    for (const key of [...this.#leases.keys()]) {
      if (leases.has(key)) continue;
      onChange(key, this.update(key, undefined));
      changed += 1;
    }
    return changed;
  }

  /** Sets what lease `key` asks for (`undefined`: the lease is gone); returns what changed. */
  update(key: string, lease: Lease | undefined): PeerChanges {
    if (lease === undefined) this.#leases.delete(key);
    else this.#leases.set(key, lease);
    const changes: PeerChanges = { routes: new Map(), neighs: new Map(), fdb: new Map() };
    const old = this.#byKey.get(key);
    if (old !== undefined) {
      for (const r of old.routes) this.#routes.release(r.dst, key, changes.routes);
      for (const n of old.neighs) this.#neighs.release(neighKey(n), key, changes.neighs);
      for (const f of old.fdb) this.#fdb.release(fdbKey(f), key, changes.fdb);
      this.#byKey.delete(key);
    }
    this.#skipped.delete(key);
    const wanted = lease === undefined ? undefined : this.#peer(lease, this.#ctx);
    if (wanted?.kind === "entries") {
      const { entries } = wanted;
      for (const n of entries.neighs) this.#neighs.set(neighKey(n), n, key, changes.neighs);
      for (const f of entries.fdb) this.#fdb.set(fdbKey(f), f, key, changes.fdb);
      for (const r of entries.routes) this.#routes.set(r.dst, r, key, changes.routes);
      this.#byKey.set(key, entries);
    } else if (wanted?.kind === "skipped") {
      this.#skipped.set(key, wanted.skipped);
    }
    return changes;
  }
}
