/**
 * Drift the netlink monitor reports (an entry of weft's deleted or changed by someone else), logged as
 * one line per kind of entry per apply, not one per entry: a device set down flushes thousands of
 * neighbours at once, and the log must stay readable (the metric counts every one).
 */
import type { Logger } from "../log.ts";

export type DriftKind = "route" | "nexthop" | "neigh" | "fdb";

const NAMES: Readonly<Record<DriftKind, { what: string; field: string }>> = {
  route: { what: "route", field: "dst" },
  nexthop: { what: "nexthop", field: "nexthop" },
  neigh: { what: "neighbour", field: "entry" },
  fdb: { what: "FDB entry", field: "mac" },
};

export class DriftLog {
  readonly #seen = new Map<DriftKind, { first: string; deleted: boolean; count: number }>();

  note(kind: DriftKind, what: string, deleted: boolean): void {
    const seen = this.#seen.get(kind);
    if (seen === undefined) this.#seen.set(kind, { first: what, deleted, count: 1 });
    else seen.count += 1;
  }

  /** Logs what was noted since the last flush, one line per kind, and forgets it. */
  flush(log: Logger): void {
    for (const [kind, seen] of this.#seen) {
      const { what, field } = NAMES[kind];
      log.info(`kernel ${what} changed outside weft; repairing`, {
        [field]: seen.first,
        deleted: seen.deleted,
        ...(seen.count > 1 ? { count: seen.count } : {}),
      });
    }
    this.#seen.clear();
  }
}
