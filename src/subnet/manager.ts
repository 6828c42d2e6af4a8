/**
 * The subnet manager: acquires this host's lease, renews it before expiry, and gets it back when it
 * is lost — where flanneld exits (0, or 1 on a lost create race), weft retries.
 *
 * - Acquire: one list, flanneld's choice (reuse by PublicIP, then the subnet.env subnet if free, then a
 *   random free one among the first 100), then an atomic create (or a compare-and-swap when reusing).
 *   A lost race, a conflict or an unreachable store is retried with backoff, never fatal.
 * - Reservations (keys without TTL) stay reservations: they are never renewed or given a TTL.
 * - Renew: at `expiry − margin`; a failure is retried every minute; a lease found gone is re-acquired,
 *   preferring the same subnet when it is still free, and renewal goes on with the new lease.
 * - Republish: a new PublicIP (the external interface was re-addressed) is written into the held
 *   lease by compare-and-swap, under the same key.
 */

import { isStoreError, StoreErrorCode } from "../../stores/errors.ts";
import type { KeyValue, ListResult, Revision, Store } from "../../stores/store.ts";
import type { Clock } from "../clock.ts";
import type { NetworkConfig } from "../config/network-config.ts";
import { isWeftError, WeftErrorCode } from "../errors.ts";
import {
  encodeLeaseValue,
  LEASE_READ,
  type Lease,
  type LeaseAttrs,
  type LeaseParse,
  leaseKey,
  leaseRules,
  parseLease,
  parseLeaseKey,
  subnetsPrefix,
  withoutLargeValue,
} from "../lease/lease.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import { formatCidr, type Ipv4Cidr } from "../net/ipv4.ts";
import { type AllocateInput, allocateSubnet, cryptoRandomInt, type LeaseView } from "./allocate.ts";

/** This host's lease as last written. */
export interface OwnLease {
  readonly key: string;
  readonly subnet: Ipv4Cidr;
  readonly revision: Revision;
  /** False for a reservation. */
  readonly expires: boolean;
  /** Wall-clock ms of expiry, when the lease expires. */
  readonly expiresAt?: number | undefined;
}

export interface SubnetManagerOptions {
  readonly store: Store;
  /** The flannel prefix, `/coreos.com/network`. */
  readonly prefix: string;
  readonly config: NetworkConfig;
  /** What this host publishes; a function when it is known only later (the vxlan VTEP MAC). */
  readonly attrs: LeaseAttrs | (() => LeaseAttrs);
  readonly ttlSeconds: number;
  readonly renewMarginSeconds: number;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly clock: Clock;
  readonly randomInt?: (exclusiveMax: number) => number;
}

const RETRY_MS = 60_000;

export class SubnetManager {
  readonly #o: SubnetManagerOptions;
  #lease: OwnLease | undefined;
  /** The PublicIP in the lease value we last wrote (what the watcher must see under our key). */
  #publishedIP: string | undefined;
  /** Aborted (and replaced) whenever `#lease` changes: wakes `keep()` from its sleep. */
  #leaseChanged = new AbortController();
  #listed: ListResult | undefined;
  /** How each key of `#listed` parsed, so the watcher need not parse them again. */
  #listedParses = new Map<string, LeaseParse>();

  constructor(options: SubnetManagerOptions) {
    this.#o = options;
  }

  get lease(): OwnLease | undefined {
    return this.#lease;
  }

  /** The lease list the last acquisition was based on (the watcher starts from it). */
  get listed(): ListResult | undefined {
    return this.#listed;
  }

  /** How the leases of `listed` parsed, by key (entries whose key is no subnet of the network are absent). */
  get listedParses(): ReadonlyMap<string, LeaseParse> {
    return this.#listedParses;
  }

  /** Acquires a lease, retrying until it succeeds or `signal` aborts (then resolves undefined). */
  async acquire(signal: AbortSignal, previous?: Ipv4Cidr): Promise<OwnLease | undefined> {
    let backoff = 200;
    for (let attempt = 1; !signal.aborted; attempt++) {
      try {
        const lease = await this.#tryAcquire(previous);
        if (lease !== undefined) {
          this.#setLease(lease);
          this.#publishMetrics();
          return lease;
        }
        this.#o.log.info("lost a subnet race; trying again", { attempt });
        backoff = 50 + Math.floor(Math.random() * 100);
      } catch (err) {
        const exhausted = isWeftError(err, WeftErrorCode.SubnetExhausted);
        const code = isStoreError(err) ? err.code : isWeftError(err) ? err.code : "UNKNOWN";
        this.#o.metrics.storeErrors.inc({ op: "acquire", code });
        this.#o.log.error(
          exhausted ? "no free subnet; waiting for a lease to expire" : "could not acquire a lease",
          {
            error: err,
            retryMs: backoff,
          },
        );
        if (exhausted) backoff = 30_000;
      }
      await this.#o.clock.sleep(backoff, signal);
      backoff = Math.min(backoff * 2, 10_000);
    }
    return undefined;
  }

  /** One attempt. Resolves undefined when another writer won a race (retry at once). */
  async #tryAcquire(previous: Ipv4Cidr | undefined): Promise<OwnLease | undefined> {
    const { store, config } = this.#o;
    const attrs = this.#attrs();
    const listed = await store.list(subnetsPrefix(this.#o.prefix), LEASE_READ);
    const { entries } = listed;
    const views = leaseViews(entries, config, this.#o.prefix);
    // Kept for the watcher: values over the size limit are dropped here, unread (their parse says so).
    this.#listed = { revision: listed.revision, entries: entries.map(withoutLargeValue) };
    this.#listedParses = new Map(views.map((v) => [v.kv.key, v.parsed]));
    const input: AllocateInput = {
      config,
      leases: views.map((v) => v.view),
      publicIp: attrs.publicIP,
      previousSubnet: previous,
      randomInt: this.#o.randomInt ?? cryptoRandomInt,
    };
    const choice = allocateSubnet(input);
    for (const note of choice.notes) this.#o.log.info(note);
    const value = encodeLeaseValue(attrs);
    const key = leaseKey(this.#o.prefix, choice.subnet);
    try {
      let lease: OwnLease | undefined;
      if (choice.rule === "reuse-own-lease") {
        const current = views.find((v) => v.kv.key === key)?.kv;
        if (current === undefined) return undefined;
        const written =
          !current.expires && current.value === value
            ? current
            : await store.update(key, value, {
                expectRevision: current.revision,
                ...(current.expires ? { ttlSeconds: this.#o.ttlSeconds } : {}),
              });
        lease = this.#acquired(written, choice.subnet, choice.rule);
      } else {
        const created = await store.create(key, value, { ttlSeconds: this.#o.ttlSeconds });
        lease = this.#acquired(created, choice.subnet, choice.rule);
      }
      this.#publishedIP = attrs.publicIP;
      await this.#dropIncompatible(views, choice.incompatibleOwnLeases);
      return lease;
    } catch (err) {
      if (isStoreError(err, StoreErrorCode.KeyExists) || isStoreError(err, StoreErrorCode.Conflict))
        return undefined;
      throw err;
    }
  }

  /**
   * Deletes leases with our PublicIP that no longer fit the network config (flanneld deletes them
   * too), once the new lease is held; a reservation (no TTL) is someone's decision and only reported.
   * A failed delete is logged, never fatal: the lease then expires on its own.
   */
  async #dropIncompatible(views: readonly { kv: KeyValue; view: LeaseView }[], stale: readonly LeaseView[]) {
    for (const old of stale) {
      const kv = views.find((v) => v.view === old)?.kv;
      if (kv === undefined) continue;
      const fields = { key: kv.key, subnet: formatCidr(old.subnet) };
      if (!kv.expires) {
        this.#o.log.warn(
          "a reservation with our PublicIP does not fit the network config; left as it is",
          fields,
        );
        continue;
      }
      try {
        await this.#o.store.delete(kv.key, { expectRevision: kv.revision });
        this.#o.log.info("deleted our old lease: it does not fit the network config", fields);
      } catch (err) {
        this.#o.log.warn("could not delete our old lease that does not fit the network config", {
          ...fields,
          error: err,
        });
      }
    }
  }

  #acquired(kv: KeyValue, subnet: Ipv4Cidr, rule: string): OwnLease {
    this.#o.metrics.leaseAcquisitions.inc({ rule });
    const lease: OwnLease = {
      key: kv.key,
      subnet,
      revision: kv.revision,
      expires: kv.expires,
      expiresAt: kv.expires ? this.#o.clock.now() + (kv.ttlSeconds ?? this.#o.ttlSeconds) * 1000 : undefined,
    };
    this.#o.log.info("acquired subnet lease", {
      subnet: formatCidr(subnet),
      rule,
      key: kv.key,
      reservation: !kv.expires,
    });
    return lease;
  }

  /**
   * Keeps the lease: renews it at `expiry − margin` until `signal` aborts. When it is found gone,
   * calls `onLost` and re-acquires (same subnet when free), then `onAcquired` with the new lease.
   * Never returns before `signal` aborts: while a recovery (its own or the watcher's) re-acquires,
   * it waits for the new lease and renews that one; any change of the lease wakes it.
   */
  async keep(signal: AbortSignal, onLost: () => void, onAcquired: (lease: OwnLease) => void): Promise<void> {
    while (!signal.aborted) {
      const lease = this.#lease;
      const wake = AbortSignal.any([signal, this.#leaseChanged.signal]);
      // No lease while a recovery re-acquires; a reservation is never renewed.
      if (lease === undefined || !lease.expires) {
        await this.#o.clock.sleep(RETRY_MS * 60, wake);
        continue;
      }
      const due = (lease.expiresAt ?? 0) - this.#o.renewMarginSeconds * 1000 - this.#o.clock.now();
      if (due > 0) await this.#o.clock.sleep(due, wake);
      if (signal.aborted || this.#lease !== lease) continue;
      try {
        const kv = await this.#o.store.renew(lease.key);
        // A recovery that started meanwhile owns the lease now; its result is renewed next round.
        if (this.#lease !== lease) continue;
        this.#setLease({
          ...lease,
          revision: kv.revision,
          expiresAt: this.#o.clock.now() + (kv.ttlSeconds ?? this.#o.ttlSeconds) * 1000,
        });
        this.#o.metrics.leaseRenewals.inc({ result: "ok" });
        this.#publishMetrics();
        this.#o.log.info("renewed subnet lease", { subnet: formatCidr(lease.subnet) });
      } catch (err) {
        if (isStoreError(err, StoreErrorCode.KeyNotFound)) {
          if (this.#lease === lease) await this.recover(signal, onLost, onAcquired);
          continue;
        }
        this.#o.metrics.leaseRenewals.inc({ result: "error" });
        this.#o.log.error("could not renew the lease; trying again in 1 min", { error: err });
        await this.#o.clock.sleep(RETRY_MS, wake);
      }
    }
  }

  /** Sets the current lease and wakes a sleeping `keep()`, which then follows the new one. */
  #setLease(lease: OwnLease | undefined): void {
    this.#lease = lease;
    const changed = this.#leaseChanged;
    this.#leaseChanged = new AbortController();
    changed.abort();
  }

  /**
   * Checks the watcher's view of the leases (as of `seenRevision`): if our lease is gone or now names
   * another host, the lease was lost. Returns true when it was (the caller then runs `recover`).
   */
  lost(leases: ReadonlyMap<string, Lease>, seenRevision: Revision): boolean {
    const lease = this.#lease;
    // A view older than our own write cannot show our lease yet.
    if (lease === undefined || seenRevision < lease.revision) return false;
    const seen = leases.get(lease.key);
    return seen === undefined || seen.publicIP !== (this.#publishedIP ?? this.#attrs().publicIP);
  }

  /**
   * Writes the held lease again when what this host publishes changed (a new PublicIP or VTEP MAC
   * after the external interface changed): a compare-and-swap of the own key, the TTL restarted; a
   * reservation stays one. Resolves true when it wrote. A lease found gone is left to `keep()` and the
   * watcher, whose recovery publishes the new value anyway.
   */
  async republish(): Promise<boolean> {
    for (let attempt = 1; attempt <= 3; attempt++) {
      const lease = this.#lease;
      if (lease === undefined) return false;
      const attrs = this.#attrs();
      const value = encodeLeaseValue(attrs);
      const current = await this.#o.store.get(lease.key);
      if (current === undefined) return false;
      if (current.value === value) {
        this.#publishedIP = attrs.publicIP;
        return false;
      }
      try {
        const kv = await this.#o.store.update(lease.key, value, {
          expectRevision: current.revision,
          ...(current.expires ? { ttlSeconds: this.#o.ttlSeconds } : {}),
        });
        this.#publishedIP = attrs.publicIP;
        if (this.#lease === lease)
          this.#setLease({
            ...lease,
            revision: kv.revision,
            expiresAt: kv.expires
              ? this.#o.clock.now() + (kv.ttlSeconds ?? this.#o.ttlSeconds) * 1000
              : lease.expiresAt,
          });
        this.#publishMetrics();
        this.#o.log.info("published the subnet lease again", {
          subnet: formatCidr(lease.subnet),
          key: lease.key,
          publicIP: attrs.publicIP,
        });
        return true;
      } catch (err) {
        if (!isStoreError(err, StoreErrorCode.Conflict)) throw err;
      }
    }
    return false;
  }

  /** Re-acquires after a loss, preferring the subnet we had. */
  async recover(
    signal: AbortSignal,
    onLost: () => void,
    onAcquired: (lease: OwnLease) => void,
  ): Promise<void> {
    const old = this.#lease;
    if (old === undefined) return;
    this.#setLease(undefined);
    this.#publishMetrics();
    this.#o.log.error("lost the subnet lease; acquiring it again", {
      subnet: formatCidr(old.subnet),
      key: old.key,
    });
    onLost();
    const lease = await this.acquire(signal, old.subnet);
    if (lease !== undefined) onAcquired(lease);
  }

  #attrs(): LeaseAttrs {
    const { attrs } = this.#o;
    return typeof attrs === "function" ? attrs() : attrs;
  }

  #publishMetrics(): void {
    const lease = this.#lease;
    this.#o.metrics.leaseHeld.set(lease === undefined ? 0 : 1);
    this.#o.metrics.leaseExpiry.set(lease?.expiresAt === undefined ? 0 : Math.floor(lease.expiresAt / 1000));
  }
}

/**
 * Every entry whose key can hold a lease (`parseLeaseKey`: one segment under `<prefix>/subnets/`, a
 * subnet of SubnetLen inside the network) counts as taken, even with a garbage value: creating that
 * key would fail anyway. A key rejected for itself — nested, of another length (one covering many
 * subnets, such as the whole Network), outside the network — never holds a lease and is never
 * routed, so it takes no space: one bad key cannot make subnets look taken.
 */
export function leaseViews(
  entries: readonly KeyValue[],
  config: NetworkConfig,
  prefix: string,
): { kv: KeyValue; view: LeaseView; parsed: LeaseParse }[] {
  const out: { kv: KeyValue; view: LeaseView; parsed: LeaseParse }[] = [];
  const rules = leaseRules(config, prefix);
  for (const kv of entries) {
    const key = parseLeaseKey(kv.key, rules);
    if (!key.ok) continue;
    const parsed = parseLease(kv, rules);
    out.push({
      kv,
      view: { subnet: key.subnet, publicIp: parsed.ok ? parsed.lease.publicIP : "", expires: kv.expires },
      parsed,
    });
  }
  return out;
}
