/**
 * One kind of kernel object that weft owns (routes, ARP entries, FDB entries), reconciled felix-style.
 *
 * Why: every kind needs the same discipline — setters change only memory; an apply (`KernelTables`,
 * which orders the kinds) dumps the kernel when its picture is stale, deletes what is no longer desired
 * (deletes first, so a replaced key never collides), then writes what is missing or different, in
 * batches, collecting failures per key and retrying once after a fresh dump. Nothing is deleted before `allowSweep()` (the first full store
 * list), so a restart never removes a working entry. The kind-specific parts — how to list only the
 * entries weft owns, how to write and delete them, what "equal" means — come in as `OwnedKind`.
 *
 * An entry the kernel refuses as it is (a gateway that is a broadcast address: EINVAL) is remembered
 * with the value it was refused for. Applies leave it out until the caller asks to retry refused
 * entries (the agent does every 10 s) or its desired value changes, so one bad lease costs neither a
 * kernel dump per apply nor a log line per retry, and does not count as a failed apply.
 */
import { type Delta, DeltaTracker } from "./delta-tracker.ts";

/** One object a batch could not apply. */
export interface KindFailure<V> {
  readonly item: V;
  readonly errno: number;
  readonly message: string;
}

/** A batch's failures as `KindFailure`s, `item` naming the object each one is about. */
export function kindFailures<F extends { readonly errno: number; readonly message: string }, V>(
  failures: readonly F[],
  item: (failure: F) => V,
): KindFailure<V>[] {
  return failures.map((f) => ({ item: item(f), errno: f.errno, message: f.message }));
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

/**
 * errno values with which the kernel refuses an entry for what it is — the same write fails again until
 * the entry changes: EEXIST, EINVAL, ERANGE, EOPNOTSUPP, EAFNOSUPPORT, EADDRNOTAVAIL, ENETUNREACH,
 * EHOSTUNREACH. Anything else (ENOBUFS, ENOMEM, EBUSY, ENODEV, ENETDOWN, EPERM…) is about the moment or
 * the host, not the entry, and is retried with backoff as a failed apply.
 */
export const REFUSAL_ERRNOS: readonly number[] = [17, 22, 34, 95, 97, 99, 101, 113];

/** A desired entry the kernel refused; the same object while the entry and the refusal stay the same. */
export type RefusedEntry = OwnedFailure;

/** What one step (the deletes or the writes of a kind) did. */
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
  /** Refused entries by key, with the desired value they were refused for. */
  readonly #refused = new Map<string, { readonly value: V; readonly entry: RefusedEntry }>();

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

  /** The desired entries the kernel refused as they are now desired; forgets the rest. */
  refused(): RefusedEntry[] {
    const out: RefusedEntry[] = [];
    for (const [key, { value, entry }] of this.#refused) {
      const wanted = this.#entries.desired.get(key);
      if (wanted === undefined || !this.#kind.equal(wanted, value)) this.#refused.delete(key);
      else out.push(entry);
    }
    return out;
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

  /** Whether the kernel holds the entry as it is desired (as far as the last dump and events tell). */
  inSync(key: string): boolean {
    const wanted = this.#entries.desired.get(key);
    const actual = this.#entries.actual.get(key);
    return wanted !== undefined && actual !== undefined && this.#kind.equal(wanted, actual);
  }

  /** The pending difference (after a dump when the kernel picture is stale); changes nothing. */
  async plan(): Promise<Delta<string, V>> {
    if (this.#stale) await this.#dump();
    return this.#filtered();
  }

  #filtered(includeRefused = true): Delta<string, V> {
    const delta = this.#entries.delta();
    let upserts = delta.upserts;
    if (!includeRefused && this.#refused.size > 0) {
      upserts = upserts.filter(([key, value]) => {
        const refused = this.#refused.get(key);
        return refused === undefined || !this.#kind.equal(refused.value, value);
      });
    }
    return { upserts, deletes: this.#sweep ? delta.deletes : [] };
  }

  async #dump(): Promise<void> {
    const items = await this.#kind.list();
    this.#entries.setActual(items.map((v) => [this.#kind.key(v), v] as const));
    this.#stale = false;
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
    for (const failure of failures) this.#noteRefusal(failure);
    let replaced = 0;
    for (const [key, value] of upserts) {
      if (failed.has(key)) continue;
      this.#entries.recordActual(key, value);
      this.#refused.delete(key);
      replaced += 1;
    }
    return { replaced, deleted: 0, failures };
  }

  /** Remembers a refused write with the value it was refused for (the same record while unchanged). */
  #noteRefusal(failure: OwnedFailure): void {
    const value = this.#entries.desired.get(failure.key);
    if (value === undefined || !REFUSAL_ERRNOS.includes(failure.errno)) {
      this.#refused.delete(failure.key);
      return;
    }
    const known = this.#refused.get(failure.key);
    const same =
      known !== undefined &&
      this.#kind.equal(known.value, value) &&
      known.entry.errno === failure.errno &&
      known.entry.message === failure.message;
    if (!same) this.#refused.set(failure.key, { value, entry: failure });
  }

  /**
   * The pending delta without a dump (the caller dumped or knows the picture is fresh). Without
   * `includeRefused`, entries the kernel refused as they are still desired are left out.
   */
  pending(includeRefused = true): Delta<string, V> {
    return this.#filtered(includeRefused);
  }

  /** Dumps when stale; used by a set of tables before it orders the deltas of several kinds. */
  async refresh(force = false): Promise<void> {
    if (force || this.#stale) await this.#dump();
  }
}
