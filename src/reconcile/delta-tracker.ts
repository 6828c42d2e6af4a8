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
  }

  /** Replaces the whole actual set, e.g. after a kernel dump. */
  setActual(entries: Iterable<readonly [K, V]>): void {
    this.#actual.clear();
    for (const [k, v] of entries) this.#actual.set(k, v);
  }

  /** Records that the kernel now holds `value` under `key` (after a successful write or an event). */
  recordActual(key: K, value: V): void {
    this.#actual.set(key, value);
  }

  /** Records that the kernel no longer holds `key`. */
  forgetActual(key: K): void {
    this.#actual.delete(key);
  }

  /** The pending difference. */
  delta(): Delta<K, V> {
    const upserts: Array<readonly [K, V]> = [];
    const deletes: Array<readonly [K, V]> = [];
    for (const [k, want] of this.#desired) {
      const have = this.#actual.get(k);
      if (have === undefined || !this.#equal(have, want)) upserts.push([k, want]);
    }
    for (const [k, have] of this.#actual) if (!this.#desired.has(k)) deletes.push([k, have]);
    return { upserts, deletes };
  }

  /** True when the kernel matches the desired state. */
  inSync(): boolean {
    const { upserts, deletes } = this.delta();
    return upserts.length === 0 && deletes.length === 0;
  }
}
