/**
 * The NATS expiry sweeper's rounds on a fake clock, with a stub client that takes the lock and finds
 * nothing to sweep: one round per interval of the injected clock, none before, none after stop or
 * after the store's signal aborts.
 */
import { expect, test } from "bun:test";
import type { NatsClient } from "../../stores/nats/client.ts";
import { Sweeper } from "../../stores/nats/expiry.ts";
import { FakeClock } from "./fixtures/fake-clock.ts";

/** A client whose lock is always free and whose bucket is empty; counts the sweeps (snapshots). */
function emptyBucket() {
  let snapshots = 0;
  const client = {
    bucket: "b",
    read: async () => undefined,
    publish: async () => 1n,
    snapshot: async () => {
      snapshots += 1;
      return { records: [], revision: 1n };
    },
  } as unknown as NatsClient;
  return {
    client,
    get rounds() {
      return snapshots;
    },
  };
}

test("nats sweeper - a round per interval of the injected clock, none before it, none after stop", async () => {
  const clock = new FakeClock();
  const bucket = emptyBucket();
  const sweeper = new Sweeper({
    client: bucket.client,
    id: "me",
    logger: undefined,
    now: () => clock.now(),
    clock,
  });
  sweeper.start();
  sweeper.start(); // a second start changes nothing
  await clock.advance(999);
  expect(bucket.rounds).toBe(0);
  await clock.advance(1);
  expect(bucket.rounds).toBe(1);
  expect(sweeper.holding).toBe(true);
  await clock.advance(3_000);
  expect(bucket.rounds).toBe(4);
  expect(clock.waits).toEqual([1_000, 1_000, 1_000, 1_000, 1_000]);

  await sweeper.stop();
  expect(clock.pending).toBe(0);
  await clock.advance(10_000);
  expect(bucket.rounds).toBe(4);
});

test("nats sweeper - the store's signal ends the rounds, as close does", async () => {
  const clock = new FakeClock();
  const bucket = emptyBucket();
  const closing = new AbortController();
  const sweeper = new Sweeper({
    client: bucket.client,
    id: "me",
    logger: undefined,
    now: () => clock.now(),
    clock,
    signal: closing.signal,
    intervalMs: 250,
  });
  sweeper.start();
  await clock.advance(500);
  expect(bucket.rounds).toBe(2);
  closing.abort();
  await clock.advance(0);
  expect(clock.pending).toBe(0);
  await clock.advance(5_000);
  expect(bucket.rounds).toBe(2);
  await sweeper.stop();
});
