/**
 * Desired versus actual state of one kind of kernel object, keyed by K.
 *
 * Why: the agent is level-triggered. Setters only change memory (what the leases say should exist, and
 * what the kernel was last seen to hold); the difference is the plan, and only `apply()` of the owning
 * table touches the kernel. Restarts, missed events and outside changes all reduce to "recompute the
 * difference", never to replaying a log of edits.
 */
export interface Delta<K, V> {
  /** Objects to create or replace: desired and missing, or different from what the kernel holds. */
  readonly upserts: ReadonlyArray<readonly [K, V]>;
  /** Objects to remove: held by the kernel (and ours) but no longer desired. */
  readonly deletes: ReadonlyArray<readonly [K, V]>;
}

export class DeltaTracker<K, V> {
  readonly #desired = new Map<K, V>();
  readonly #actual = new Map<K, V>();
  readonly #equal: (a: V, b: V) => boolean;
  /**
   * Keys that may differ: every key whose desired or actual entry changed since `delta()` last found
   * it in sync. Undefined after a bulk replacement, when every key must be compared. It keeps a
   * single change cheap: `delta()` then looks at that key, not at every route.
   */
  #suspect: Set<K> | undefined;

  constructor(equal: (a: V, b: V) => boolean) {
    this.#equal = equal;
  }

  get desired(): ReadonlyMap<K, V> {
    return this.#desired;
  }

  get actual(): ReadonlyMap<K, V> {
    return this.#actual;
  }

  /** Replaces the whole desired set. */
  setDesired(entries: Iterable<readonly [K, V]>): void {
    this.#desired.clear();
    for (const [k, v] of entries) this.#desired.set(k, v);
    this.#suspect = undefined;
  }

  /** Sets (or, with undefined, removes) one desired entry. */
  setDesiredEntry(key: K, value: V | undefined): void {
    if (value === undefined) this.#desired.delete(key);
    else this.#desired.set(key, value);
    this.#suspect?.add(key);
  }

  /** Replaces the whole actual set, e.g. after a kernel dump. */
  setActual(entries: Iterable<readonly [K, V]>): void {
    this.#actual.clear();
    for (const [k, v] of entries) this.#actual.set(k, v);
    this.#suspect = undefined;
  }

  /** Records that the kernel now holds `value` under `key` (after a successful write or an event). */
  recordActual(key: K, value: V): void {
    this.#actual.set(key, value);
    this.#suspect?.add(key);
  }

  /** Records that the kernel no longer holds `key`. */
  forgetActual(key: K): void {
    this.#actual.delete(key);
    this.#suspect?.add(key);
  }

  /** The pending difference: after a bulk replacement over every key, else over the changed ones. */
  delta(): Delta<K, V> {
    const upserts: Array<readonly [K, V]> = [];
    const deletes: Array<readonly [K, V]> = [];
    const differing = new Set<K>();
    const compare = (k: K) => {
      const want = this.#desired.get(k);
      const have = this.#actual.get(k);
      if (want !== undefined && (have === undefined || !this.#equal(have, want))) upserts.push([k, want]);
      else if (want === undefined && have !== undefined) deletes.push([k, have]);
      else return;
      differing.add(k);
    };
    if (this.#suspect === undefined) {
      // forEach, not for…of: no [key, value] array per entry on this path over every route.
      this.#desired.forEach((_, k) => {
        compare(k);
      });
      this.#actual.forEach((_, k) => {
        if (!this.#desired.has(k)) compare(k);
      });
    } else {
      for (const k of this.#suspect) compare(k);
    }
    this.#suspect = differing;
    return { upserts, deletes };
  }

  /** True when the kernel matches the desired state. */
  inSync(): boolean {
    const { upserts, deletes } = this.delta();
    return upserts.length === 0 && deletes.length === 0;
  }
}
