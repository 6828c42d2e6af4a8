// Shared test helpers: capture the WeftError a call throws, so tests can assert on code and message;
// a fake clock for loops that wait on the injected `Clock`.
import { expect } from "bun:test";
import type { Clock } from "../../src/clock.ts";
import { WeftError } from "../../src/errors.ts";

/** The WeftError `fn` throws; fails the test when it throws nothing or something else. */
export function thrown(fn: () => unknown): WeftError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(WeftError);
  return caught as WeftError;
}

/**
 * A clock that never waits: `sleep(ms)` moves `now()` on by `ms` at once (also when aborted) and
 * records `ms` in `sleeps`, so a test reads how long a loop asked to wait without spending it.
 */
export function fakeClock(start = 0): Clock & { readonly sleeps: number[] } {
  let now = start;
  const sleeps: number[] = [];
  return {
    sleeps,
    now: () => now,
    sleep: async (ms) => {
      sleeps.push(ms);
      now += ms;
    },
  };
}

/**
 * A clock whose time moves only by `advance(ms)`: a sleep resolves once time reaches its end, or at
 * once when its signal aborts. For loops that run alongside the test instead of being driven by it.
 */
export function manualClock(start = 0): Clock & { advance(ms: number): Promise<void> } {
  let now = start;
  let sleepers: { at: number; wake: () => void }[] = [];
  return {
    now: () => now,
    sleep: (ms, signal) =>
      new Promise<void>((resolve) => {
        if (signal?.aborted) return resolve();
        const sleeper = {
          at: now + ms,
          wake: () => {
            sleepers = sleepers.filter((s) => s !== sleeper);
            resolve();
          },
        };
        signal?.addEventListener("abort", sleeper.wake, { once: true });
        sleepers.push(sleeper);
      }),
    /** Moves time on and wakes the sleeps that end by then; lets what they started run. */
    advance: async (ms) => {
      now += ms;
      for (const s of sleepers.filter((s) => s.at <= now)) s.wake();
      for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
    },
  };
}
