import { describe, expect, test } from "bun:test";
import { isStoreError, StoreErrorCode } from "../../stores/errors.ts";
import { storeDrivers } from "../../stores/index.ts";
import { Backoff, repeat, StoreLifecycle } from "../../stores/runtime.ts";
import { storeNames } from "../../stores/store.ts";
import { FakeClock } from "./fixtures/fake-clock.ts";

/** A clock that records what it was asked to wait and returns at once. */
const recordingClock = () => new FakeClock({ auto: true });

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

  test("store runtime - repeat ticks once per interval of the injected clock, never overlapping, until aborted", async () => {
    const clock = new FakeClock();
    const stop = new AbortController();
    const at: number[] = [];
    let release: () => void = () => undefined;
    const loop = repeat(clock, 100, stop.signal, async () => {
      at.push(clock.now());
      if (at.length === 2) await new Promise<void>((resolve) => (release = resolve));
    });
    const t0 = clock.now();
    await clock.advance(99);
    expect(at).toEqual([]);
    await clock.advance(1);
    expect(at).toEqual([t0 + 100]);
    await clock.advance(100); // the second tick starts and does not finish
    await clock.advance(500);
    expect(at).toEqual([t0 + 100, t0 + 200]);
    release(); // the next wait starts only now: 100 ms after the slow tick returned
    await clock.advance(99);
    expect(at.length).toBe(2);
    await clock.advance(1);
    expect(at).toEqual([t0 + 100, t0 + 200, t0 + 800]);
    stop.abort();
    await loop;
    expect(clock.pending).toBe(0);
  });

  test("store runtime - every driver declares its capabilities; an unopened store reports exactly those", async () => {
    for (const name of storeNames) {
      const driver = storeDrivers[name];
      const store = driver.open({ endpoints: [name === "sqlite" ? ":memory:" : "http://127.0.0.1:9"] });
      try {
        expect(store.capabilities).toEqual(driver.capabilities);
        expect(driver.capabilities.minTtlSeconds).toBeGreaterThanOrEqual(1);
        for (const key of driver.learnedOnConnect) expect(Object.keys(driver.capabilities)).toContain(key);
      } finally {
        await store.close();
      }
    }
    // Only SQLite is confined to one machine; only NATS learns an ability from its server.
    expect(storeNames.filter((n) => !storeDrivers[n].capabilities.multiHost)).toEqual(["sqlite"]);
    expect(storeNames.filter((n) => storeDrivers[n].learnedOnConnect.length > 0)).toEqual(["nats"]);
    expect(storeDrivers.nats.learnedOnConnect).toEqual(["serverTtl"]);
    expect(storeDrivers.nats.capabilities.serverTtl).toBe(false);
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
