/**
 * One clock for two processes: the churn writer (test/bench/scale-churn.ts) stamps each store request
 * and the driver (test/bench/scale-inside.ts) stamps each route event; `performance.now()` and Bun's
 * `process.hrtime` both start at their own process's start, so both sides read CLOCK_MONOTONIC
 * (clock_gettime through bun:ffi), which is the same for every process on the machine.
 */
import { dlopen, FFIType, ptr } from "bun:ffi";

const CLOCK_MONOTONIC = 1;

const libc = dlopen("libc.so.6", {
  clock_gettime: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
});

// A module-scope buffer big enough not to be one of the small typed arrays the GC may move; ptr() is
// taken right before each call.
const scratch = new BigInt64Array(512);

/** CLOCK_MONOTONIC in ms (since boot, with µs resolution to spare). */
export function monotonicMs(): number {
  if (libc.symbols.clock_gettime(CLOCK_MONOTONIC, ptr(scratch)) !== 0) {
    throw new Error("clock_gettime(CLOCK_MONOTONIC) failed");
  }
  return Number(scratch[0] ?? 0n) * 1_000 + Number(scratch[1] ?? 0n) / 1e6;
}

/**
 * `monotonicMs() - performance.now()` for this process: add it to a `performance.now()` reading to get
 * the monotonic clock. The smallest of a few paired readings (the one least stretched by a preemption).
 */
export function performanceOffsetMs(): number {
  let best = Number.POSITIVE_INFINITY;
  let offset = 0;
  for (let i = 0; i < 20; i++) {
    const before = performance.now();
    const mono = monotonicMs();
    const after = performance.now();
    if (after - before < best) {
      best = after - before;
      offset = mono - (before + after) / 2;
    }
  }
  return offset;
}
