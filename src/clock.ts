import { systemStoreClock } from "../stores/runtime.ts";

/**
 * Time, injected so unit tests run on a fake clock and the agent on the real one. The stores' clock
 * (`StoreClock`, stores/runtime.ts) has the same shape, so one clock serves both.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Resolves after `ms` or when `signal` aborts (without throwing). */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** `Date.now` and timers: the one real `sleep`, shared with the stores. */
export const systemClock: Clock = systemStoreClock;
