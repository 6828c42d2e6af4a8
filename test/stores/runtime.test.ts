import { describe, expect, test } from "bun:test";
import { isStoreError, StoreErrorCode } from "../../stores/errors.ts";
import { storeDrivers } from "../../stores/index.ts";
import { Backoff, type StoreClock, StoreLifecycle } from "../../stores/runtime.ts";
import { storeNames } from "../../stores/store.ts";

/** A clock that records what it was asked to wait and returns at once. */
function recordingClock(): StoreClock & { readonly waits: number[] } {
  const waits: number[] = [];
  return { waits, now: () => 0, sleep: async (ms) => void waits.push(ms) };
}

describe("store runtime", () => {
  test("store runtime - a backoff waits on the injected clock, doubling up to its cap with jitter", async () => {
    const clock = recordingClock();
    const backoff = new Backoff(100, 400, clock);
    for (let i = 0; i < 4; i++) await backoff.wait();
    backoff.reset();
    await backoff.wait();
    const [a, b, c, d, e] = clock.waits as [number, number, number, number, number];
    expect(a).toBeGreaterThanOrEqual(50);
    expect(a).toBeLessThanOrEqual(100);
    expect(b).toBeGreaterThanOrEqual(100);
    expect(c).toBeGreaterThanOrEqual(200);
    expect(d).toBeLessThanOrEqual(400);
    expect(d).toBeGreaterThanOrEqual(200);
    expect(e).toBeLessThanOrEqual(100);
  });

  test("store runtime - close aborts once, runs release once and waits for tracked producers", async () => {
    const life = new StoreLifecycle("etcd", recordingClock());
    let releases = 0;
    let finished = false;
    life.track(
      new Promise<void>((resolve) =>
        life.signal.addEventListener("abort", () =>
          setTimeout(() => {
            finished = true;
            resolve();
          }, 5),
        ),
      ),
    );
    life.assertOpen();
    await Promise.all([life.close(() => releases++), life.close(() => releases++)]);
    expect(releases).toBe(1);
    expect(finished).toBe(true);
    expect(life.closed).toBe(true);
    expect(() => life.assertOpen()).toThrow(/etcd/);
  });

  test("store runtime - a watch asked for after close fails with ClosedError", async () => {
    const life = new StoreLifecycle("consul");
    await life.close();
    const read = async () => {
      for await (const _ of life.closedWatch<string>()) return;
    };
    const err = await read().catch((e: unknown) => e);
    expect(isStoreError(err, StoreErrorCode.Closed)).toBe(true);
  });

  test("store runtime - every store name has a driver that declares itself under that name", () => {
    for (const name of storeNames) {
      const driver = storeDrivers[name];
      expect(driver.name).toBe(name);
      // etcd drivers fall back on --etcd-endpoints; every other driver names its own default.
      expect(driver.defaultEndpoint === undefined).toBe(driver.endpoints === "etcd-urls");
    }
  });
});
