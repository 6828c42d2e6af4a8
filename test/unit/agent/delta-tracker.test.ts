// DeltaTracker.delta() compares only the keys that changed since it last found them in sync. Under
// any sequence of changes it must return what comparing every key returns.
import { expect, test } from "bun:test";
import { DeltaTracker } from "../../../src/reconcile/delta-tracker.ts";

/** The difference computed from scratch over every key. */
function reference(desired: Map<string, number>, actual: Map<string, number>) {
  const upserts = [...desired].filter(([k, v]) => actual.get(k) !== v).map(([k]) => k);
  const deletes = [...actual.keys()].filter((k) => !desired.has(k));
  return { upserts: upserts.sort(), deletes: deletes.sort() };
}

function keysOf(delta: {
  upserts: ReadonlyArray<readonly [string, number]>;
  deletes: ReadonlyArray<readonly [string, number]>;
}) {
  return { upserts: delta.upserts.map(([k]) => k).sort(), deletes: delta.deletes.map(([k]) => k).sort() };
}

test("delta tracker - the delta over changed keys equals the delta over every key, for 5,000 random steps", () => {
  // mulberry32: deterministic, so a failure can be replayed.
  let state = 7;
  const rand = (n: number) => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };
  const tracker = new DeltaTracker<string, number>((a, b) => a === b);
  const desired = new Map<string, number>();
  const actual = new Map<string, number>();
  for (let step = 0; step < 5_000; step++) {
    const key = `k${rand(40)}`;
    const value = rand(3);
    switch (rand(8)) {
      case 0:
        desired.delete(key);
        tracker.setDesiredEntry(key, undefined);
        break;
      case 1:
      case 2:
        desired.set(key, value);
        tracker.setDesiredEntry(key, value);
        break;
      case 3:
        actual.set(key, value);
        tracker.recordActual(key, value);
        break;
      case 4:
        actual.delete(key);
        tracker.forgetActual(key);
        break;
      case 5: {
        // What an apply does: write every difference it is shown, and record the result.
        for (const [k, v] of tracker.delta().upserts) {
          actual.set(k, v);
          tracker.recordActual(k, v);
        }
        break;
      }
      case 6:
        if (rand(20) === 0) {
          actual.clear();
          for (let i = 0; i < 10; i++) actual.set(`k${rand(40)}`, rand(3));
          tracker.setActual(actual);
        }
        break;
      default:
        if (rand(20) === 0) {
          desired.clear();
          for (let i = 0; i < 10; i++) desired.set(`k${rand(40)}`, rand(3));
          tracker.setDesired(desired);
        }
    }
    expect(keysOf(tracker.delta())).toEqual(reference(desired, actual));
  }
});
