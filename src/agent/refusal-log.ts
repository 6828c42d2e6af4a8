/**
 * Entries the kernel refuses as they are (a host-gw route whose gateway is the segment's broadcast
 * address: EINVAL "Nexthop has invalid gateway"). One bad lease must neither keep the agent from
 * becoming ready nor fill the log: each refusal is logged once per entry and refusal (again only when
 * the entry or the kernel's answer changes), counted in a gauge, and tried again every SLOW_RETRY_MS —
 * the slow end of the apply backoff — in case what the kernel objected to has changed.
 */
import type { Clock } from "../clock.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import { SLOW_RETRY_MS } from "../reconcile/apply-loop.ts";
import type { EntryKind, KernelRefusal } from "../reconcile/kernel-tables.ts";
import type { RefusedEntry } from "../reconcile/owned-table.ts";

/** Refusals logged one by one per apply; the rest get one summary line (all are in /status). */
const LOGGED = 10;
const KINDS: readonly EntryKind[] = ["route", "neigh", "fdb"];

export class RefusalLog {
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #metrics: Metrics;
  /** The refusal last logged, by `<kind> <key>`. */
  readonly #reported = new Map<string, RefusedEntry>();
  #retryAt = 0;

  constructor(log: Logger, clock: Clock, metrics: Metrics) {
    this.#log = log;
    this.#clock = clock;
    this.#metrics = metrics;
  }

  /** Whether the next apply should try the refused entries again. */
  due(): boolean {
    return this.#clock.now() >= this.#retryAt;
  }

  /** The next apply tries the refused entries again (a link or address changed). */
  retryNow(): void {
    this.#retryAt = 0;
  }

  /** After an apply: logs new refusals, forgets the entries no longer refused, sets the next retry. */
  note(refused: readonly KernelRefusal[], tried: boolean): void {
    const current = new Set<string>();
    let logged = 0;
    let more = 0;
    for (const { kind, entry } of refused) {
      const id = `${kind} ${entry.key}`;
      current.add(id);
      if (this.#reported.get(id) === entry) continue;
      this.#reported.set(id, entry);
      if (logged++ < LOGGED)
        this.#log.warn(`the kernel refuses a ${kind}; it is retried every ${SLOW_RETRY_MS / 1000} s`, {
          entry: entry.key,
          op: entry.op,
          error: entry.message,
        });
      else more++;
    }
    if (more > 0) this.#log.warn("the kernel refuses more entries", { more, see: "weft status" });
    for (const id of this.#reported.keys()) if (!current.has(id)) this.#reported.delete(id);
    for (const kind of KINDS)
      this.#metrics.refused.set(refused.filter((r) => r.kind === kind).length, { kind });
    if (tried || refused.length === 0)
      this.#retryAt = refused.length === 0 ? 0 : this.#clock.now() + SLOW_RETRY_MS;
  }
}
