/**
 * The lease watcher: one list of `<prefix>/subnets/`, then one watch from that revision, folded into
 * the current set of valid leases (own lease included). Lists and resync snapshots replace the set
 * (mark and sweep), except one from a history that went backwards (see `#fold`). Consumers get the
 * whole set on every change — level-triggered, so a missed or coalesced event can never leave them
 * with a partial picture — plus the one key that changed, when only one did, so they can update in
 * O(1) instead of recomputing from the whole set.
 *
 * A single put or delete is folded in without revalidating every lease when it cannot change which
 * leases win an overlap: all leases share one prefix length before and after (then two leases overlap
 * only when their subnets are equal) and neither the old nor the new subnet of the key is claimed by
 * another key.
 * Anything else (mixed prefix lengths, an overlap appearing or going away) revalidates the whole set,
 * which gives the same answer by construction.
 *
 * Invalid entries (garbage JSON, a PublicIP that is no IP, a subnet outside the network or not of the
 * config's SubnetLen, a key nested deeper than `<prefix>/subnets/<key>`, a second key for a subnet
 * another key already claims) are dropped with one warning per key and revision and counted in a
 * metric; they never stop the watch or reach the kernel. A value over 4 KiB is dropped before it is
 * parsed, and only its key and revision are kept.
 */

import { isStoreError } from "../../stores/errors.ts";
import type { KeyValue, ListResult, Revision, Store } from "../../stores/store.ts";
import type { Clock } from "../clock.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import { cidrsOverlap, type Ipv4Cidr } from "../net/ipv4.ts";
import {
  LEASE_READ,
  type Lease,
  type LeaseParse,
  type LeaseRules,
  oversized,
  oversizedRejection,
  parseLease,
  withoutLargeValue,
} from "./lease.ts";

/**
 * After the store's history went backwards (restarted empty, restored from a backup), how long lists
 * and resyncs only add leases: each agent finds its own lease gone at its next store probe (every 5 s,
 * every second while the store was down) and re-creates it meanwhile. The list at the end of it
 * replaces the set, so leases nobody re-created go then.
 */
export const BACKWARDS_GRACE_MS = 30_000;

export interface LeaseWatcherOptions {
  readonly store: Store;
  /** `<prefix>/subnets/`. */
  readonly prefix: string;
  readonly network: Ipv4Cidr;
  /** The config's SubnetLen: leases of any other length are rejected (see `parseLease`). */
  readonly subnetLen: number;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly clock: Clock;
  /**
   * Called after every change with the full set of valid leases, keyed by store key, and the one key
   * whose lease changed (added, replaced or removed), or undefined when the whole set may differ.
   */
  readonly onChange: (leases: ReadonlyMap<string, Lease>, changedKey: string | undefined) => void;
  /** See `BACKWARDS_GRACE_MS` (the default). */
  readonly backwardsGraceMs?: number;
}

export class LeaseWatcher {
  readonly #o: LeaseWatcherOptions;
  /** Every entry under the prefix as last seen, valid or not. */
  readonly #raw = new Map<string, KeyValue>();
  #leases = new Map<string, Lease>();
  readonly #parsed = new Map<string, { revision: Revision; result: LeaseParse }>();
  /** Keys of the leases that parsed, by subnet (`10.5.1.0/24`): more than one key is an overlap. */
  readonly #bySubnet = new Map<string, Set<string>>();
  /** How many parsed leases have each prefix length. */
  readonly #lengths = new Map<number, number>();
  readonly #warned = new Set<string>();
  /** Keys whose value was over the size limit (kept in `#raw` without it), with their rejection. */
  readonly #tooLarge = new Map<string, { revision: Revision; result: LeaseParse }>();
  #synced = false;
  #revision: Revision = 0n;
  #restart: AbortController | undefined;
  #signal: AbortSignal | undefined;
  /** Until then (clock ms) lists and resyncs only add: the store's history went backwards. */
  #addOnlyUntil = Number.NEGATIVE_INFINITY;
  readonly #rules: LeaseRules;

  constructor(options: LeaseWatcherOptions) {
    this.#o = options;
    this.#rules = { network: options.network, subnetLen: options.subnetLen, subnets: options.prefix };
  }

  /** The valid leases as of the last change. */
  get leases(): ReadonlyMap<string, Lease> {
    return this.#leases;
  }

  /** True once the first full list has been folded in: only then may anything be swept. */
  get synced(): boolean {
    return this.#synced;
  }

  /** The store revision the current set reflects. */
  get revision(): Revision {
    return this.#revision;
  }

  /**
   * Lists, then watches until `signal` aborts. Store outages are retried; it never returns early.
   * `initial` is a list of the same prefix the caller just made (the subnet manager's): it stands in
   * for the first list, and the watch from its revision brings every change since. `parsed` holds
   * how its entries parsed, when the caller already did that.
   */
  async run(
    signal: AbortSignal,
    initial?: ListResult,
    parsed?: ReadonlyMap<string, LeaseParse>,
  ): Promise<void> {
    for (const kv of initial?.entries ?? []) {
      const result = parsed?.get(kv.key);
      if (result !== undefined) this.#parsed.set(kv.key, { revision: kv.revision, result });
    }
    this.#signal = signal;
    let backoff = 100;
    let snapshot = initial;
    while (!signal.aborted) {
      const restart = new AbortController();
      this.#restart = restart;
      try {
        const revision = snapshot === undefined ? await this.#list() : this.#fold(snapshot);
        snapshot = undefined;
        backoff = 100;
        await this.#watch(revision, AbortSignal.any([signal, restart.signal]));
      } catch (err) {
        if (signal.aborted) return;
        if (restart.signal.aborted) continue;
        const code = isStoreError(err) ? err.code : "UNKNOWN";
        this.#o.metrics.storeErrors.inc({ op: "watch", code });
        this.#o.log.warn("lease watch failed; listing again", { error: err, retryMs: backoff });
        await this.#o.clock.sleep(backoff, signal);
        backoff = Math.min(backoff * 2, 5_000);
      }
    }
  }

  /**
   * Ends the current watch and lists again: for a store whose history went backwards (restored or
   * restarted empty), where a watch from the old revision would wait for revisions that never come.
   */
  relist(): void {
    this.#restart?.abort();
  }

  async #list(): Promise<Revision> {
    return this.#fold(await this.#o.store.list(this.#o.prefix, LEASE_READ));
  }

  #fold({ entries, revision }: ListResult): Revision {
    // A store whose history went backwards (restarted empty, restored from a backup) lists fewer leases
    // than exist while their agents re-create them: lists and resyncs only add for a while (a driver's
    // resync and the agent's list can both come from the emptied store), then one list replaces.
    if (this.#synced && revision < this.#revision) this.#wentBackwards(revision);
    if (this.#o.clock.now() >= this.#addOnlyUntil) this.#clear();
    for (const kv of entries) this.#admit(kv);
    this.#synced = true;
    this.#revision = revision;
    this.#publishAll();
    return revision;
  }

  /** Starts (or extends) the time lists only add, and lists again at its end. */
  #wentBackwards(revision: Revision): void {
    const { clock, log } = this.#o;
    const graceMs = this.#o.backwardsGraceMs ?? BACKWARDS_GRACE_MS;
    this.#addOnlyUntil = clock.now() + graceMs;
    log.warn(
      "the store's revision went backwards (emptied or restored?); keeping known leases while their agents re-create them",
      { revision: String(revision), seen: String(this.#revision), forMs: graceMs },
    );
    const signal = this.#signal;
    if (signal === undefined) return;
    void clock.sleep(graceMs, signal).then(() => {
      // Only the latest of these lists (an earlier one finds the time extended).
      if (!signal.aborted && clock.now() >= this.#addOnlyUntil) this.relist();
    });
  }

  async #watch(after: Revision, signal: AbortSignal): Promise<void> {
    // Neither TTLs of peers' leases nor why a lease went away matter here: no lookups per event.
    const options = { ...LEASE_READ, afterRevision: after, signal, details: false };
    for await (const event of this.#o.store.watch(this.#o.prefix, options)) {
      if (event.type === "put") {
        this.#admit(event.kv);
        this.#revision = event.kv.revision;
        this.#publishOne(event.kv.key);
      } else if (event.type === "delete") {
        this.#raw.delete(event.key);
        this.#tooLarge.delete(event.key);
        this.#revision = event.revision;
        this.#publishOne(event.key);
      } else {
        this.#o.metrics.watchResyncs.inc({ cause: event.cause });
        this.#o.log.info("lease watch resynced", { cause: event.cause, leases: event.entries.length });
        // A driver that reconnects to an emptied server resyncs to its (lower) revision: same rule as a list.
        this.#fold(event);
      }
    }
  }

  /** Keeps an entry; one over the size limit only as its key and revision, rejected unread. */
  #admit(kv: KeyValue): void {
    if (!oversized(kv)) {
      this.#tooLarge.delete(kv.key);
      this.#raw.set(kv.key, kv);
      return;
    }
    this.#tooLarge.set(kv.key, { revision: kv.revision, result: oversizedRejection(kv) });
    this.#raw.set(kv.key, withoutLargeValue(kv));
  }

  #clear(): void {
    this.#raw.clear();
    this.#tooLarge.clear();
  }

  #publishAll(): void {
    this.#leases = this.#validate();
    this.#o.onChange(this.#leases, undefined);
  }

  /** Folds in the change of one key (see the top of this file for when that falls back to all). */
  #publishOne(key: string): void {
    // With mixed prefix lengths a lease can hide a smaller one; its change may bring that one back.
    const uniformBefore = this.#lengths.size <= 1;
    const before = this.#parsed.get(key)?.result;
    const kv = this.#raw.get(key);
    const after = kv === undefined ? undefined : this.#parse(kv);
    if (kv === undefined) this.#parsed.delete(key);
    const old = before?.ok === true ? before.lease : undefined;
    const now = after?.ok === true ? after.lease : undefined;
    if (old !== undefined) this.#unindex(old);
    if (now !== undefined) this.#index(now);
    const clear =
      uniformBefore &&
      this.#lengths.size <= 1 &&
      (old === undefined || !this.#bySubnet.has(old.subnetText) || old.subnetText === now?.subnetText) &&
      (now === undefined || this.#bySubnet.get(now.subnetText)?.size === 1);
    if (!clear) {
      this.#publishAll();
      return;
    }
    if (now === undefined) this.#leases.delete(key);
    else this.#leases.set(key, now);
    this.#o.onChange(this.#leases, key);
  }

  /** Parses one entry, cached per key and revision; an unusable one is warned about once. */
  #parse(kv: KeyValue): LeaseParse {
    const cached = this.#parsed.get(kv.key);
    const big = this.#tooLarge.get(kv.key);
    const parsed =
      big !== undefined && big.revision === kv.revision
        ? big.result
        : cached !== undefined && cached.revision === kv.revision
          ? cached.result
          : parseLease(kv, this.#rules);
    this.#parsed.set(kv.key, { revision: kv.revision, result: parsed });
    if (!parsed.ok) this.#reject(kv, parsed.rule, parsed.reason);
    return parsed;
  }

  #index(lease: Lease): void {
    const keys = this.#bySubnet.get(lease.subnetText);
    if (keys === undefined) this.#bySubnet.set(lease.subnetText, new Set([lease.key]));
    else keys.add(lease.key);
    const len = lease.subnet.prefixLen;
    this.#lengths.set(len, (this.#lengths.get(len) ?? 0) + 1);
  }

  #unindex(lease: Lease): void {
    const keys = this.#bySubnet.get(lease.subnetText);
    keys?.delete(lease.key);
    if (keys?.size === 0) this.#bySubnet.delete(lease.subnetText);
    const len = lease.subnet.prefixLen;
    const count = (this.#lengths.get(len) ?? 0) - 1;
    if (count > 0) this.#lengths.set(len, count);
    else this.#lengths.delete(len);
  }

  /**
   * Parses every raw entry (cached per key and revision, so an event costs one JSON.parse) and drops
   * overlaps (with every lease of one length, two keys for the same subnet): see `withoutOverlaps`.
   */
  #validate(): Map<string, Lease> {
    const candidates: Lease[] = [];
    this.#bySubnet.clear();
    this.#lengths.clear();
    for (const kv of this.#raw.values()) {
      const parsed = this.#parse(kv);
      if (!parsed.ok) continue;
      candidates.push(parsed.lease);
      this.#index(parsed.lease);
    }
    for (const key of this.#parsed.keys()) if (!this.#raw.has(key)) this.#parsed.delete(key);
    return withoutOverlaps(candidates, (lease, winner) =>
      this.#reject(
        this.#raw.get(lease.key) as KeyValue,
        "overlap",
        `subnet ${lease.subnetText} overlaps ${winner.subnetText} (${winner.key})`,
      ),
    );
  }

  #reject(kv: KeyValue, rule: string, reason: string): void {
    const id = `${kv.key}@${kv.revision}`;
    if (this.#warned.has(id)) return;
    if (this.#warned.size > 10_000) this.#warned.clear();
    this.#warned.add(id);
    this.#o.metrics.leasesRejected.inc({ reason: rule });
    this.#o.log.warn("ignoring invalid lease", { key: kv.key, reason });
  }
}

/**
 * The leases that win overlaps: sorted by start address (then prefix length, then key), a lease that
 * overlaps the last accepted one is rejected (`onReject` names the winner). `parseLease` admits only
 * leases of the config's SubnetLen, so an overlap is two keys for one subnet (`10.5.3.0-24` and the
 * dual-stack `10.5.3.0-24&fd00::-64`): the key that sorts first wins, the same on every host — the
 * IPv4-only key weft and flanneld write sorts before any dual-stack form of it. The watcher and
 * `weft plan` both use this, so a plan routes exactly the leases a running agent would.
 */
export function withoutOverlaps(
  candidates: Lease[],
  onReject: (lease: Lease, winner: Lease) => void = () => undefined,
): Map<string, Lease> {
  candidates.sort(
    (x, y) =>
      x.subnet.ip - y.subnet.ip || x.subnet.prefixLen - y.subnet.prefixLen || (x.key < y.key ? -1 : 1),
  );
  const valid = new Map<string, Lease>();
  let last: Lease | undefined;
  for (const lease of candidates) {
    if (last !== undefined && cidrsOverlap(last.subnet, lease.subnet)) {
      onReject(lease, last);
      continue;
    }
    last = lease;
    valid.set(lease.key, lease);
  }
  return valid;
}
