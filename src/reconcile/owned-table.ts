/**
 * One kind of kernel object that weft owns (routes, ARP entries, FDB entries), reconciled felix-style.
 *
 * Why: every kind needs the same discipline — setters change only memory; `apply()` dumps the kernel
 * when its picture is stale, deletes what is no longer desired (deletes first, so a replaced key never
 * collides), then writes what is missing or different, in batches, collecting failures per key and
 * retrying once after a fresh dump. Nothing is deleted before `allowSweep()` (the first full store
 * list), so a restart never removes a working entry. The kind-specific parts — how to list only the
 * entries weft owns, how to write and delete them, what "equal" means — come in as `OwnedKind`.
 */
import { type Delta, DeltaTracker } from "./delta-tracker.ts";

/** One object a batch could not apply. */
export interface KindFailure<V> {
  readonly item: V;
  readonly errno: number;
  readonly message: string;
}

/** How one kind of object is read, written and compared. */
export interface OwnedKind<V> {
  /** Lists the objects weft owns (and only those: the sweep deletes whatever this returns and nobody wants). */
  list(): Promise<readonly V[]>;
  replace(items: readonly V[]): Promise<readonly KindFailure<V>[]>;
  remove(items: readonly V[]): Promise<readonly KindFailure<V>[]>;
  key(item: V): string;
  equal(a: V, b: V): boolean;
  /** errno values of a delete that mean "already gone" (ESRCH for routes, ENOENT for neighbours). */
  readonly goneErrnos: readonly number[];
}

export interface OwnedFailure {
  readonly key: string;
  readonly op: "replace" | "delete";
  /** The kernel's errno (ENODEV 19: the device is gone). */
  readonly errno: number;
  readonly message: string;
}

export interface OwnedApplyResult {
  readonly replaced: number;
  readonly deleted: number;
  /** Keys that still failed after the retry. */
  readonly failures: readonly OwnedFailure[];
}

export class OwnedTable<V> {
  readonly #kind: OwnedKind<V>;
  readonly #entries: DeltaTracker<string, V>;
  #stale = true;
  #sweep = false;

  constructor(kind: OwnedKind<V>) {
    this.#kind = kind;
    this.#entries = new DeltaTracker<string, V>(kind.equal);
  }

  /** Replaces the desired objects. Touches only memory. */
  setDesired(entries: ReadonlyMap<string, V>): void {
    this.#entries.setDesired(entries);
  }

  /** Changes one desired object (undefined: no longer wanted). Touches only memory. */
  setDesiredEntry(key: string, value: V | undefined): void {
    this.#entries.setDesiredEntry(key, value);
  }

  /** Permits deleting owned objects that are not desired; call once the first full store list is in. */
  allowSweep(): void {
    this.#sweep = true;
  }

  /** Forces a kernel dump before the next apply (after a netlink overrun, or periodically). */
  queueResync(): void {
    this.#stale = true;
  }

  get desired(): ReadonlyMap<string, V> {
    return this.#entries.desired;
  }

  /**
   * A kernel event for one object. `owned`: the object carries weft's marker. Any change to a key weft
   * owns or wants means the kernel no longer matches our picture: forget or record it, so the next
   * apply rewrites it. Returns true when a desired object is now missing or different.
   */
  noteKernelChange(item: V, deleted: boolean, owned: boolean): boolean {
    const key = this.#kind.key(item);
    const wanted = this.#entries.desired.get(key);
    if (!owned && wanted === undefined) return false;
    if (deleted || !owned) this.#entries.forgetActual(key);
    else this.#entries.recordActual(key, item);
    return wanted === undefined ? false : deleted || !this.#kind.equal(wanted, item);
  }

  /** The pending difference (after a dump when the kernel picture is stale); changes nothing. */
  async plan(): Promise<Delta<string, V>> {
    if (this.#stale) await this.#dump();
    return this.#filtered();
  }

  async apply(): Promise<OwnedApplyResult> {
    if (this.#stale) await this.#dump();
    let result = await this.#applyOnce();
    if (result.failures.length > 0) {
      await this.#dump();
      const retry = await this.#applyOnce();
      result = {
        replaced: result.replaced + retry.replaced,
        deleted: result.deleted + retry.deleted,
        failures: retry.failures,
      };
    }
    return result;
  }

  #filtered(): Delta<string, V> {
    const delta = this.#entries.delta();
    return this.#sweep ? delta : { upserts: delta.upserts, deletes: [] };
  }

  async #dump(): Promise<void> {
    const items = await this.#kind.list();
    this.#entries.setActual(items.map((v) => [this.#kind.key(v), v] as const));
    this.#stale = false;
  }

  /** Deletes first, then writes; the deletes of a kind always precede its writes. */
  async #applyOnce(): Promise<OwnedApplyResult> {
    const { deletes, upserts } = this.#filtered();
    const removed = await this.deleteOnly(deletes);
    const written = await this.writeOnly(upserts);
    return {
      replaced: written.replaced,
      deleted: removed.deleted,
      failures: [...removed.failures, ...written.failures],
    };
  }

  /** The deletes of a delta; exposed so a set of tables can order deletes before all writes. */
  async deleteOnly(deletes: ReadonlyArray<readonly [string, V]>): Promise<OwnedApplyResult> {
    if (deletes.length === 0) return { replaced: 0, deleted: 0, failures: [] };
    const kind = this.#kind;
    const outcome = await kind.remove(deletes.map(([, v]) => v));
    const failed = new Set<string>();
    const failures: OwnedFailure[] = [];
    for (const f of outcome) {
      if (kind.goneErrnos.includes(f.errno)) continue;
      failed.add(kind.key(f.item));
      failures.push({ key: kind.key(f.item), op: "delete", errno: f.errno, message: f.message });
    }
    let deleted = 0;
    for (const [key] of deletes) {
      if (failed.has(key)) continue;
      this.#entries.forgetActual(key);
      deleted += 1;
    }
    return { replaced: 0, deleted, failures };
  }

  /** The writes of a delta. */
  async writeOnly(upserts: ReadonlyArray<readonly [string, V]>): Promise<OwnedApplyResult> {
    if (upserts.length === 0) return { replaced: 0, deleted: 0, failures: [] };
    const kind = this.#kind;
    const outcome = await kind.replace(upserts.map(([, v]) => v));
    const failed = new Set(outcome.map((f) => kind.key(f.item)));
    const failures = outcome.map((f) => ({
      key: kind.key(f.item),
      op: "replace" as const,
      errno: f.errno,
      message: f.message,
    }));
    let replaced = 0;
    for (const [key, value] of upserts) {
      if (failed.has(key)) continue;
      this.#entries.recordActual(key, value);
      replaced += 1;
    }
    return { replaced, deleted: 0, failures };
  }

  /** The pending delta without a dump (the caller dumped or knows the picture is fresh). */
  pending(): Delta<string, V> {
    return this.#filtered();
  }

  /** Dumps when stale; used by a set of tables before it orders the deltas of several kinds. */
  async refresh(force = false): Promise<void> {
    if (force || this.#stale) await this.#dump();
  }
}
