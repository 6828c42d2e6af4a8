// The store probe (src/agent/store-probe.ts) on a fake clock and a store whose reads follow a script:
// when it probes, which key it reads, what it reports and logs, and when it says the own lease is gone.
import { expect, test } from "bun:test";
import { StoreProbe } from "../../../src/agent/store-probe.ts";
import { createLogger } from "../../../src/log.ts";
import type { KeyValue, Store } from "../../../stores/store.ts";
import { fakeClock } from "../helpers.ts";

const CONFIG_KEY = "/p/config";
const OWN_KEY = "/p/subnets/10.5.1.0-24";

/** One read's outcome: the key is there, absent, or the store fails. */
type Read = "present" | "absent" | Error;

/**
 * A store whose `get`s answer `reads` in order and record the key asked for; the read after the last
 * one stops the probe (its loop never waits for real, so the script is what ends it).
 */
function scripted(reads: Read[], stop: AbortController): Store & { readonly keys: string[] } {
  const keys: string[] = [];
  const store = {
    keys,
    get: async (key: string): Promise<KeyValue | undefined> => {
      const read = reads.shift();
      if (read === undefined) {
        stop.abort();
        return undefined;
      }
      keys.push(key);
      if (read instanceof Error) throw read;
      return read === "present" ? { key, value: "{}", revision: 1n, expires: true } : undefined;
    },
  };
  return store as unknown as Store & { readonly keys: string[] };
}

function probe(reads: Read[], options: { ownKey?: () => string | undefined; intervalMs?: number } = {}) {
  const stop = new AbortController();
  const store = scripted(reads, stop);
  const clock = fakeClock();
  const lines: string[] = [];
  const changes: boolean[] = [];
  let missing = 0;
  const p = new StoreProbe({
    store,
    key: CONFIG_KEY,
    ownKey: options.ownKey ?? (() => undefined),
    onOwnMissing: () => missing++,
    intervalMs: options.intervalMs ?? 5_000,
    clock,
    log: createLogger({ write: (l) => lines.push(l) }),
    onChange: (connected) => changes.push(connected),
  });
  return {
    probe: p,
    store,
    clock,
    lines,
    changes,
    missing: () => missing,
    run: () => p.run(stop.signal),
  };
}

const down = () => new Error("connect ECONNREFUSED 127.0.0.1:2379");

test("store probe - one onChange and one log line per transition, never one per probe", async () => {
  const t = probe(["present", down(), down(), down(), "present", "present", down(), "present"]);
  expect(t.probe.connected).toBe(true);
  await t.run();
  expect(t.changes).toEqual([false, true, false, true]);
  expect(t.lines.filter((l) => l.includes("store unreachable"))).toHaveLength(2);
  expect(t.lines.filter((l) => l.includes("store reachable again"))).toHaveLength(2);
  expect(t.lines).toHaveLength(4);
  expect(t.probe.connected).toBe(true);
});

test("store probe - probes every interval while the store answers, once a second while it does not", async () => {
  const t = probe(["present", down(), down(), "present", "present"], { intervalMs: 5_000 });
  await t.run();
  // The wait before each probe: up, up (then down), down, down (then up), up, and the one ended.
  expect(t.clock.sleeps).toEqual([5_000, 5_000, 1_000, 1_000, 5_000, 5_000]);
  // How long it was down, on the injected clock: from the first failed probe to the answer.
  expect(t.lines.find((l) => l.includes("store reachable again"))).toContain("downMs=2000");
  // A shorter interval than a second is kept while down.
  const fast = probe([down(), down()], { intervalMs: 200 });
  await fast.run();
  expect(fast.clock.sleeps).toEqual([200, 200, 200]);
});

test("store probe - reads the config key while no lease is held, then the own lease key", async () => {
  // The lease is held from the first probe's answer on.
  let reads: string[] = [];
  const t = probe(["absent", "present", "present"], {
    ownKey: () => (reads.length > 0 ? OWN_KEY : undefined),
  });
  reads = t.store.keys;
  await t.run();
  expect(reads[0]).toBe(CONFIG_KEY);
  expect(reads.slice(1)).toEqual([OWN_KEY, OWN_KEY]);
  // A config key that is absent is not a missing lease, nor an unreachable store.
  expect(t.missing()).toBe(0);
  expect(t.changes).toEqual([]);
});

test("store probe - the own lease read back absent from a store that answers calls onOwnMissing; a failed read does not", async () => {
  const t = probe(["present", "absent", down(), "absent"], { ownKey: () => OWN_KEY });
  await t.run();
  expect(t.missing()).toBe(2);
  // Absent is an answer: the store counts as reachable (one outage, the failed read).
  expect(t.changes).toEqual([false, true]);
});

test("store probe - an abort while it waits ends run() without another read", async () => {
  const stop = new AbortController();
  let reads = 0;
  const store = {
    get: async () => {
      reads++;
      return undefined;
    },
  } as unknown as Store;
  const p = new StoreProbe({
    store,
    key: CONFIG_KEY,
    ownKey: () => undefined,
    onOwnMissing: () => undefined,
    intervalMs: 5_000,
    clock: {
      now: () => 0,
      sleep: async () => {
        stop.abort();
      },
    },
    log: createLogger({ write: () => undefined }),
    onChange: () => undefined,
  });
  await p.run(stop.signal);
  expect(reads).toBe(0);
});
