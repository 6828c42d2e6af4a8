/**
 * The coalescing apply loop and the busy tracker behind the systemd watchdog.
 *
 * Why: the agent is level-triggered. Any trigger (a lease change, a netlink drift event, the periodic
 * resync) only marks the state dirty and wakes one loop, which runs one apply for however many
 * triggers came in meanwhile. A failed apply is retried with backoff (100 ms doubling to 10 s); a
 * partial one (only entries the kernel refuses as they are remain) runs again after `slowRetryMs`,
 * the slow end of that backoff, or at the next trigger; a timer forces a full kernel re-read now and
 * then, in case an event was missed without an overrun.
 */
import type { Clock } from "../clock.ts";

/**
 * How an apply went: everything applied; everything that can be applied applied (some entries are
 * refused by the kernel as they are: retry them slowly); or failed (retry soon, with backoff).
 */
export type ApplyOutcome = "done" | "partial" | "failed";

/** The slow end of the retry backoff: how often refused entries are tried again. */
export const SLOW_RETRY_MS = 10_000;

export interface ApplyLoopOptions {
  readonly clock: Clock;
  /** How often to force a full re-read of the kernel when nothing happens. */
  readonly resyncMs: number;
  /** Whether an apply can run now (e.g. the lease is held and the leases are listed). */
  readonly canApply: () => boolean;
  /** One apply. */
  readonly apply: () => Promise<ApplyOutcome>;
  /** How long to wait after a partial apply before the next (SLOW_RETRY_MS when absent). */
  readonly slowRetryMs?: number;
  /** Called when the resync timer fires, before the apply it triggers. */
  readonly onResyncTimer: () => void;
}

export class ApplyLoop {
  readonly #o: ApplyLoopOptions;
  #dirty = false;
  #wake: (() => void) | undefined;

  constructor(options: ApplyLoopOptions) {
    this.#o = options;
  }

  /** Marks the state dirty and wakes the loop. Cheap; call it for every trigger. */
  kick(): void {
    this.#dirty = true;
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async run(signal: AbortSignal): Promise<void> {
    const { clock } = this.#o;
    let backoff = 100;
    let partial = false;
    const slowMs = this.#o.slowRetryMs ?? SLOW_RETRY_MS;
    while (!signal.aborted) {
      if (!this.#dirty) {
        const slow = partial && slowMs < this.#o.resyncMs;
        const woke = await Promise.race([
          new Promise<boolean>((resolve) => {
            this.#wake = () => resolve(true);
          }),
          clock.sleep(slow ? slowMs : this.#o.resyncMs, signal).then(() => false),
        ]);
        this.#wake = undefined;
        if (signal.aborted) return;
        if (!woke && !slow) this.#o.onResyncTimer();
      }
      this.#dirty = false;
      if (!this.#o.canApply()) continue;
      const outcome = await this.#o.apply();
      partial = outcome === "partial";
      if (outcome !== "failed") {
        backoff = 100;
        continue;
      }
      await clock.sleep(backoff, signal);
      backoff = Math.min(backoff * 2, 10_000);
      this.#dirty = true;
    }
  }
}

/** Tracks the applies running now, so a hung one can be noticed (and the watchdog withheld). */
export class BusyTracker {
  readonly #running = new Set<{ readonly started: number }>();

  /** How long the oldest apply still running has been at it, in ms; 0 when none runs. */
  busyMs(): number {
    let oldest = Number.POSITIVE_INFINITY;
    for (const { started } of this.#running) oldest = Math.min(oldest, started);
    return oldest === Number.POSITIVE_INFINITY ? 0 : performance.now() - oldest;
  }

  async track<T>(work: () => Promise<T>): Promise<T> {
    const entry = { started: performance.now() };
    this.#running.add(entry);
    try {
      return await work();
    } finally {
      this.#running.delete(entry);
    }
  }
}
