// LeaseWatcher.relist() and a store whose history went backwards (restarted empty, restored): the
// watch ends and the prefix is listed again; after a list or a resync from an older revision, lists
// only add leases for a grace time and the list at its end replaces them, so peers' routes stay while
// their agents re-create their leases.
import { expect, test } from "bun:test";
import type { Lease } from "../../../src/lease/lease.ts";
import { LeaseWatcher } from "../../../src/lease/watcher.ts";
import { createLogger } from "../../../src/log.ts";
import { Metrics } from "../../../src/metrics.ts";
import { parseCidr } from "../../../src/net/ipv4.ts";
import type { KeyValue, ListResult, WatchEvent } from "../../../stores/store.ts";
import { type ScriptedStore, scriptedStore } from "../fixtures/scripted-store.ts";
import { manualClock } from "../helpers.ts";

const PREFIX = "/coreos.com/network/subnets/";

function lease(third: number, revision: bigint): KeyValue {
  return {
    key: `${PREFIX}10.5.${third}.0-24`,
    value: JSON.stringify({ PublicIP: `172.17.42.${third}`, BackendType: "host-gw" }),
    revision,
    expires: true,
  };
}

const listed = (revision: bigint, ...thirds: number[]): ListResult => ({
  entries: thirds.map((t) => lease(t, revision)),
  revision,
});

/** Waits (bounded) until `check` holds, letting the watcher's promises run. */
async function until(what: string, check: () => boolean): Promise<void> {
  for (let i = 0; i < 1_000 && !check(); i++) await Bun.sleep(1);
  if (!check()) throw new Error(`never happened: ${what}`);
}

const GRACE_MS = 30_000;

/** A running watcher over `store`: the last published set (as sorted subnets) and the log lines. */
function start(store: ScriptedStore) {
  const stop = new AbortController();
  const clock = manualClock();
  const lines: string[] = [];
  let published = 0;
  let last: string[] = [];
  const watcher = new LeaseWatcher({
    store,
    prefix: PREFIX,
    network: parseCidr("10.5.0.0/16"),
    subnetLen: 24,
    log: createLogger({ write: (l) => lines.push(l) }),
    metrics: new Metrics(),
    clock,
    backwardsGraceMs: GRACE_MS,
    onChange: (leases: ReadonlyMap<string, Lease>) => {
      published++;
      last = [...leases.values()].map((l) => l.subnetText).sort();
    },
  });
  const done = watcher.run(stop.signal);
  return {
    watcher,
    clock,
    lines,
    published: () => published,
    leases: () => last,
    stop: async () => {
      stop.abort();
      await done;
    },
  };
}

test("lease watcher - relist() ends the watch and lists again; the new list replaces the set", async () => {
  const store = scriptedStore([listed(10n, 1, 2), listed(12n, 1, 3)]);
  const w = start(store);
  try {
    await until("the first watch", () => store.watchedFrom.length === 1);
    expect(w.leases()).toEqual(["10.5.1.0/24", "10.5.2.0/24"]);
    w.watcher.relist();
    await until("the second watch", () => store.watchedFrom.length === 2);
    expect(store.lists).toBe(2);
    // 10.5.2.0/24 is gone from the new list, 10.5.3.0/24 new in it; the watch goes on from its revision.
    expect(w.leases()).toEqual(["10.5.1.0/24", "10.5.3.0/24"]);
    expect(store.watchedFrom).toEqual([10n, 12n]);
    expect(w.watcher.revision).toBe(12n);
  } finally {
    await w.stop();
  }
});

test("lease watcher - after a list from an older revision, lists only add for the grace time; the list at its end replaces", async () => {
  // The store restarted empty: first only this host's re-created lease, then another, later all but one.
  const store = scriptedStore([listed(10n, 1, 2, 3), listed(2n, 1), listed(3n, 1, 2), listed(4n, 1, 2)]);
  const w = start(store);
  try {
    await until("the first watch", () => store.watchedFrom.length === 1);
    w.watcher.relist();
    await until("the second watch", () => store.watchedFrom.length === 2);
    expect(w.leases()).toEqual(["10.5.1.0/24", "10.5.2.0/24", "10.5.3.0/24"]);
    expect(w.lines.filter((l) => l.includes("revision went backwards"))).toHaveLength(1);
    // Another list right away (the agent's, once the store answers again): it only adds too.
    w.watcher.relist();
    await until("the third watch", () => store.watchedFrom.length === 3);
    expect(w.leases()).toEqual(["10.5.1.0/24", "10.5.2.0/24", "10.5.3.0/24"]);
    // At the end of the grace time the watcher lists by itself, and that list replaces.
    await w.clock.advance(GRACE_MS - 1);
    expect(store.lists).toBe(3);
    await w.clock.advance(1);
    await until("the fourth watch", () => store.watchedFrom.length === 4);
    expect(w.leases()).toEqual(["10.5.1.0/24", "10.5.2.0/24"]);
    expect(store.watchedFrom).toEqual([10n, 2n, 3n, 4n]);
  } finally {
    await w.stop();
  }
});

test("lease watcher - a resync from an older revision (a driver reconnected to an emptied server) keeps known leases, and so does the list right after it", async () => {
  const emptied: WatchEvent = { type: "resync", entries: [], revision: 1n, cause: "reconnect" };
  const store = scriptedStore([listed(10n, 1, 2), listed(1n), listed(5n, 1)], [emptied]);
  const w = start(store);
  try {
    await until("the resync", () => w.published() === 2);
    expect(w.leases()).toEqual(["10.5.1.0/24", "10.5.2.0/24"]);
    expect(w.watcher.revision).toBe(1n);
    // The agent lists as the store answers again: still the emptied store, at the same revision.
    w.watcher.relist();
    await until("the second watch", () => store.watchedFrom.length === 2);
    expect(w.leases()).toEqual(["10.5.1.0/24", "10.5.2.0/24"]);
    await w.clock.advance(GRACE_MS);
    await until("the third watch", () => store.watchedFrom.length === 3);
    expect(w.leases()).toEqual(["10.5.1.0/24"]);
  } finally {
    await w.stop();
  }
});

test("lease watcher - a resync from a newer revision replaces the set", async () => {
  const compacted: WatchEvent = {
    type: "resync",
    entries: [lease(2, 11n)],
    revision: 11n,
    cause: "compacted",
  };
  const store = scriptedStore(listed(10n, 1, 2), [compacted]);
  const w = start(store);
  try {
    await until("the resync", () => w.published() === 2);
    expect(w.leases()).toEqual(["10.5.2.0/24"]);
    expect(w.watcher.revision).toBe(11n);
  } finally {
    await w.stop();
  }
});

test("lease watcher - relist() while the first list is under way is not lost: it lists once more", async () => {
  const store = scriptedStore([listed(10n, 1), listed(11n, 1, 2)]);
  const w = start(store);
  try {
    // run() has sent its first list and waits for the answer.
    expect(store.lists).toBe(1);
    w.watcher.relist();
    await until("a second list", () => store.lists === 2 && store.watchedFrom.at(-1) === 11n);
    expect(w.leases()).toEqual(["10.5.1.0/24", "10.5.2.0/24"]);
  } finally {
    await w.stop();
  }
});
