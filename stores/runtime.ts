/**
 * The plumbing every driver shares, so drivers keep only their protocol: the clock they wait on, capped
 * backoff, and the lifecycle (close once, reject calls after `close()`, wait for the watches they
 * started). stores/ imports nothing from src/, so the clock is declared here; src/clock.ts's `Clock`
 * has the same shape and can be passed as it is.
 */
import { ClosedError } from "./errors.ts";
import { EventQueue } from "./event-queue.ts";

/** How one `StoreClock.sleep` waits. */
export interface SleepOptions {
  /**
   * Housekeeping (an expiry sweep, a session's end): the wait alone does not keep the process alive.
   * The system clock unrefs its timer; a fake clock may ignore it.
   */
  readonly unref?: boolean | undefined;
}

/** Time as a driver sees it, injected so tests can run drivers on a fake clock. */
export interface StoreClock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Resolves after `ms` or when `signal` aborts (without throwing). */
  sleep(ms: number, signal?: AbortSignal, options?: SleepOptions): Promise<void>;
}

/** The real clock: `Date.now` and timers. */
export const systemStoreClock: StoreClock = {
  now: () => Date.now(),
  sleep: (ms, signal, options) =>
    new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      const onAbort = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      }, ms);
      if (options?.unref === true) timer.unref();
      signal?.addEventListener("abort", onAbort, { once: true });
    }),
};

/**
 * The drivers' one timer loop: waits `ms` on `clock`, calls `tick`, and again, until `signal` aborts.
 * The next wait starts when the tick has returned, so a slow tick delays the next one but ticks never
 * overlap or pile up. `ms` is read before every wait. `tick` must not throw. Resolves once aborted.
 */
export async function repeat(
  clock: StoreClock,
  ms: number | (() => number),
  signal: AbortSignal,
  tick: () => void | Promise<void>,
  options?: SleepOptions,
): Promise<void> {
  while (!signal.aborted) {
    await clock.sleep(typeof ms === "number" ? ms : ms(), signal, options);
    if (signal.aborted) return;
    await tick();
  }
}

/** Seams every driver accepts next to its `StoreOptions`. */
export interface StoreRuntimeOptions {
  /** The clock the driver waits on (default: the system clock). */
  readonly clock?: StoreClock | undefined;
  /**
   * HTTP stores: answers up to this many bytes are read as text even under a value limit (default
   * `TEXT_BODY_BYTES` in http.ts); tests pass 0 to send every answer through its streaming reader.
   */
  readonly textBodyBytes?: number | undefined;
}

/** Capped exponential backoff with jitter, for reconnect loops, waiting on a `StoreClock`. */
export class Backoff {
  readonly #initialMs: number;
  readonly #maxMs: number;
  readonly #clock: StoreClock;
  #next: number;

  constructor(initialMs = 100, maxMs = 5_000, clock: StoreClock = systemStoreClock) {
    this.#initialMs = initialMs;
    this.#maxMs = maxMs;
    this.#clock = clock;
    this.#next = initialMs;
  }

  /** The delay to wait now; each call doubles the next one up to the cap. */
  delay(): number {
    const base = this.#next;
    this.#next = Math.min(this.#maxMs, this.#next * 2);
    return base / 2 + Math.random() * (base / 2);
  }

  /** Waits `delay()` on the clock, or less when `signal` aborts (without throwing). */
  wait(signal?: AbortSignal): Promise<void> {
    return this.#clock.sleep(this.delay(), signal);
  }

  reset(): void {
    this.#next = this.#initialMs;
  }
}

/**
 * A store's lifecycle: one `AbortSignal` that every request and watch of the store follows, aborted
 * once by `close()`; the watch producers it tracks, which `close()` waits for; and the store's clock.
 */
export class StoreLifecycle {
  readonly #closer = new AbortController();
  readonly #tracked = new Set<Promise<unknown>>();
  readonly #store: string;
  readonly clock: StoreClock;

  /** `store` is the name `ClosedError` reports. */
  constructor(store: string, clock: StoreClock = systemStoreClock) {
    this.#store = store;
    this.clock = clock;
  }

  /** Aborts when the store closes. */
  get signal(): AbortSignal {
    return this.#closer.signal;
  }

  get closed(): boolean {
    return this.#closer.signal.aborted;
  }

  /** Throws `ClosedError` once the store is closed. */
  assertOpen(): void {
    if (this.closed) throw new ClosedError(this.#store);
  }

  /** A watch to return after close: it fails with `ClosedError` on the first read. */
  closedWatch<T>(): EventQueue<T> {
    const queue = new EventQueue<T>();
    queue.fail(new ClosedError(this.#store));
    return queue;
  }

  /** Keeps `producer` until it settles, so `close()` can wait for it. */
  track(producer: Promise<unknown>): void {
    this.#tracked.add(producer);
    void producer.finally(() => this.#tracked.delete(producer));
  }

  /** A backoff that waits on the store's clock. */
  backoff(initialMs?: number, maxMs?: number): Backoff {
    return new Backoff(initialMs, maxMs, this.clock);
  }

  /** Waits `ms` on the store's clock, or less when `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return this.clock.sleep(ms, signal);
  }

  /**
   * Closes the store: the first call aborts `signal` and runs `release` (timers, caches); every call
   * then waits for the tracked producers to settle.
   */
  async close(release?: () => void): Promise<void> {
    if (!this.#closer.signal.aborted) {
      this.#closer.abort();
      release?.();
    }
    await Promise.allSettled([...this.#tracked]);
  }
}

/** Waits `ms` on the system clock, or less when `signal` aborts (without throwing). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return systemStoreClock.sleep(ms, signal);
}
