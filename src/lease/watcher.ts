/**
 * The lease watcher: one list of `<prefix>/subnets/`, then one watch from that revision, folded into
 * the current set of valid leases (own lease included). Resync snapshots replace the set (mark and
 * sweep). Consumers get the whole set on every change — level-triggered, so a missed or coalesced
 * event can never leave them with a partial picture.
 *
 * Invalid entries (garbage JSON, a PublicIP that is no IP, a subnet outside the network or overlapping
 * another) are dropped with one warning per key and revision and counted in a metric; they never stop
 * the watch or reach the kernel.
 */

import { isStoreError } from "../../stores/errors.ts";
import type { KeyValue, ListResult, Revision, Store } from "../../stores/store.ts";
import type { Clock } from "../clock.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import { cidrsOverlap, type Ipv4Cidr } from "../net/ipv4.ts";
import { type Lease, type LeaseParse, parseLease } from "./lease.ts";

export interface LeaseWatcherOptions {
  readonly store: Store;
  /** `<prefix>/subnets/`. */
  readonly prefix: string;
  readonly network: Ipv4Cidr;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly clock: Clock;
  /** Called after every change with the full set of valid leases, keyed by store key. */
  readonly onChange: (leases: ReadonlyMap<string, Lease>) => void;
}

export class LeaseWatcher {
  readonly #o: LeaseWatcherOptions;
  /** Every entry under the prefix as last seen, valid or not. */
  readonly #raw = new Map<string, KeyValue>();
  #leases: ReadonlyMap<string, Lease> = new Map();
  readonly #parsed = new Map<string, { revision: Revision; result: LeaseParse }>();
  readonly #warned = new Set<string>();
  #synced = false;
  #revision: Revision = 0n;

  constructor(options: LeaseWatcherOptions) {
    this.#o = options;
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
   * for the first list, and the watch from its revision brings every change since.
   */
  async run(signal: AbortSignal, initial?: ListResult): Promise<void> {
    let backoff = 100;
    let snapshot = initial;
    while (!signal.aborted) {
      try {
        const revision = snapshot === undefined ? await this.#list() : this.#fold(snapshot);
        snapshot = undefined;
        backoff = 100;
        await this.#watch(revision, signal);
      } catch (err) {
        if (signal.aborted) return;
        const code = isStoreError(err) ? err.code : "UNKNOWN";
        this.#o.metrics.storeErrors.inc({ op: "watch", code });
        this.#o.log.warn("lease watch failed; listing again", { error: err, retryMs: backoff });
        await this.#o.clock.sleep(backoff, signal);
        backoff = Math.min(backoff * 2, 5_000);
      }
    }
  }

  async #list(): Promise<Revision> {
    return this.#fold(await this.#o.store.list(this.#o.prefix));
  }

  #fold({ entries, revision }: ListResult): Revision {
    this.#raw.clear();
    for (const kv of entries) this.#raw.set(kv.key, kv);
    this.#synced = true;
    this.#revision = revision;
    this.#publish();
    return revision;
  }

  async #watch(after: Revision, signal: AbortSignal): Promise<void> {
    for await (const event of this.#o.store.watch(this.#o.prefix, { afterRevision: after, signal })) {
      if (event.type === "put") {
        this.#raw.set(event.kv.key, event.kv);
        this.#revision = event.kv.revision;
      } else if (event.type === "delete") {
        this.#raw.delete(event.key);
        this.#revision = event.revision;
      } else {
        this.#revision = event.revision;
        this.#o.metrics.watchResyncs.inc({ cause: event.cause });
        this.#o.log.info("lease watch resynced", { cause: event.cause, leases: event.entries.length });
        this.#raw.clear();
        for (const kv of event.entries) this.#raw.set(kv.key, kv);
      }
      this.#publish();
    }
  }

  #publish(): void {
    this.#leases = this.#validate();
    this.#o.onChange(this.#leases);
  }

  /**
   * Parses every raw entry (cached per key and revision, so an event costs one JSON.parse) and drops
   * overlaps: sorted by start address, an entry that starts inside an accepted one is rejected.
   */
  #validate(): Map<string, Lease> {
    const candidates: Lease[] = [];
    for (const kv of this.#raw.values()) {
      const cached = this.#parsed.get(kv.key);
      const parsed =
        cached !== undefined && cached.revision === kv.revision
          ? cached.result
          : parseLease(kv, this.#o.network);
      this.#parsed.set(kv.key, { revision: kv.revision, result: parsed });
      if (parsed.ok) candidates.push(parsed.lease);
      else this.#reject(kv, parsed.rule, parsed.reason);
    }
    for (const key of this.#parsed.keys()) if (!this.#raw.has(key)) this.#parsed.delete(key);
    candidates.sort(
      (x, y) =>
        x.subnet.ip - y.subnet.ip || x.subnet.prefixLen - y.subnet.prefixLen || (x.key < y.key ? -1 : 1),
    );
    const valid = new Map<string, Lease>();
    let last: Lease | undefined;
    for (const lease of candidates) {
      if (last !== undefined && cidrsOverlap(last.subnet, lease.subnet)) {
        this.#reject(
          this.#raw.get(lease.key) as KeyValue,
          "overlap",
          `subnet ${lease.subnetText} overlaps ${last.subnetText} (${last.key})`,
        );
        continue;
      }
      last = lease;
      valid.set(lease.key, lease);
    }
    return valid;
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
