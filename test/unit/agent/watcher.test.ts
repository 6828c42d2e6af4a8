// The lease watcher folds single puts and deletes in without revalidating every lease. Whatever the
// sequence of events (overlaps appearing and going away, mixed prefix lengths, garbage values), the set
// it publishes after each event must equal what a full validation of the store's contents gives.
import { expect, test } from "bun:test";
import { systemClock } from "../../../src/clock.ts";
import { type Lease, parseLease } from "../../../src/lease/lease.ts";
import { LeaseWatcher } from "../../../src/lease/watcher.ts";
import { createLogger } from "../../../src/log.ts";
import { Metrics } from "../../../src/metrics.ts";
import { parseCidr } from "../../../src/net/ipv4.ts";
import type { KeyValue, Store, WatchEvent } from "../../../stores/store.ts";
import { scriptedStore } from "../fixtures/scripted-store.ts";

const PREFIX = "/coreos.com/network/subnets/";
const network = parseCidr("10.0.0.0/8");
const quiet = createLogger({ write: () => undefined });

function watcher(store: Store, onChange: (leases: ReadonlyMap<string, Lease>, key?: string) => void) {
  return new LeaseWatcher({
    store,
    prefix: PREFIX,
    network,
    subnetLen: 24,
    log: quiet,
    metrics: new Metrics(),
    clock: systemClock,
    onChange,
  });
}

/** What a full validation of `entries` publishes: key → revision of each valid lease. */
async function fullValidation(entries: KeyValue[]): Promise<Map<string, bigint>> {
  let result = new Map<string, bigint>();
  const stop = new AbortController();
  const w = watcher(scriptedStore({ entries, revision: 1n }), (leases) => {
    result = new Map([...leases].map(([k, l]) => [k, l.revision]));
    stop.abort();
  });
  await w.run(stop.signal);
  return result;
}

/** A deterministic pseudo-random sequence (mulberry32), so a failure can be replayed. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Mostly /24s in 10.0.0.0/22, some of them also under a dual-stack key (the same IPv4 subnet, so
 * the two overlap), sometimes a /23 or /22 covering them, rarely garbage.
 */
function randomEntry(rand: () => number, revision: bigint): KeyValue {
  const roll = rand();
  const third = Math.floor(rand() * 4);
  const subnet =
    roll < 0.08
      ? `10.0.${2 * Math.floor(rand() * 2)}.0-23`
      : roll < 0.12
        ? "10.0.0.0-22"
        : roll < 0.3
          ? `10.0.${third}.0-24&fd00:0:0:${third}::-64`
          : `10.0.${third}.0-24`;
  const value =
    rand() < 0.06
      ? "{not json"
      : JSON.stringify({ PublicIP: `192.168.1.${1 + Math.floor(rand() * 200)}`, BackendType: "host-gw" });
  return { key: `${PREFIX}${subnet}`, value, revision, expires: true };
}

for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
  test(`watcher - incremental updates equal a full validation after every event (seed ${seed})`, async () => {
    const rand = random(seed);
    const raw = new Map<string, KeyValue>();
    const initial: KeyValue[] = [];
    for (let i = 0; i < 3; i++) {
      const kv = randomEntry(rand, BigInt(i + 1));
      raw.set(kv.key, kv);
    }
    initial.push(...raw.values());
    const events: WatchEvent[] = [];
    const expected: Map<string, bigint>[] = [];
    for (let i = 0; i < 300; i++) {
      const revision = BigInt(100 + i);
      const keys = [...raw.keys()];
      if (keys.length > 0 && rand() < 0.4) {
        const key = keys[Math.floor(rand() * keys.length)] as string;
        raw.delete(key);
        events.push({ type: "delete", key, revision, reason: "deleted" });
      } else {
        const kv = randomEntry(rand, revision);
        raw.set(kv.key, kv);
        events.push({ type: "put", kv });
      }
      expected.push(await fullValidation([...raw.values()]));
    }

    const seen: { leases: Map<string, bigint>; key: string | undefined }[] = [];
    const stop = new AbortController();
    const w = watcher(scriptedStore({ entries: initial, revision: 1n }, events), (leases, key) => {
      seen.push({ leases: new Map([...leases].map(([k, l]) => [k, l.revision])), key });
      if (seen.length === events.length + 1) stop.abort();
    });
    await w.run(stop.signal);

    expect(seen.length).toBe(events.length + 1);
    let incremental = 0;
    for (const [i, want] of expected.entries()) {
      const got = seen[i + 1];
      if (got?.key !== undefined) incremental++;
      if (
        got === undefined ||
        got.leases.size !== want.size ||
        [...want].some(([k, r]) => got.leases.get(k) !== r)
      ) {
        throw new Error(
          `after event ${i} (${JSON.stringify(events[i], (_, v) => (typeof v === "bigint" ? String(v) : v))}): got ${JSON.stringify([...(got?.leases ?? [])], (_, v) => (typeof v === "bigint" ? String(v) : v))}, want ${JSON.stringify([...want], (_, v) => (typeof v === "bigint" ? String(v) : v))}`,
        );
      }
    }
    // Most events take the O(1) path; the rest fell back to a full validation.
    expect(incremental).toBeGreaterThan(0);
  });
}

test("watcher - with one prefix length and no overlaps every put and delete is folded in alone", async () => {
  const initial = Array.from({ length: 50 }, (_, i) => ({
    key: `${PREFIX}10.1.${i}.0-24`,
    value: JSON.stringify({ PublicIP: `192.168.1.${i + 1}`, BackendType: "host-gw" }),
    revision: BigInt(i + 1),
    expires: true,
  }));
  const events: WatchEvent[] = [
    { type: "put", kv: { ...(initial[3] as KeyValue), revision: 100n } },
    { type: "delete", key: `${PREFIX}10.1.7.0-24`, revision: 101n, reason: "expired" },
    { type: "put", kv: { ...(initial[7] as KeyValue), revision: 102n } },
  ];
  const keys: (string | undefined)[] = [];
  const stop = new AbortController();
  const w = watcher(scriptedStore({ entries: initial, revision: 1n }, events), (leases, key) => {
    keys.push(key);
    if (keys.length === 4) {
      expect(leases.size).toBe(50);
      stop.abort();
    }
  });
  await w.run(stop.signal);
  expect(keys).toEqual([undefined, `${PREFIX}10.1.3.0-24`, `${PREFIX}10.1.7.0-24`, `${PREFIX}10.1.7.0-24`]);
});

test("watcher - the first fold reuses how the caller's list parsed, per key and revision", async () => {
  const kv: KeyValue = {
    key: `${PREFIX}10.1.1.0-24`,
    value: JSON.stringify({ PublicIP: "192.168.1.1", BackendType: "host-gw" }),
    revision: 5n,
    expires: true,
  };
  // A parse the watcher could not have produced from kv itself: it must come from the seed.
  const seeded = parseLease(
    { ...kv, value: JSON.stringify({ PublicIP: "192.168.9.9", BackendType: "host-gw" }) },
    { network, subnetLen: 24, subnets: PREFIX },
  );
  let seen: Lease | undefined;
  const stop = new AbortController();
  const w = watcher(scriptedStore({ entries: [], revision: 1n }), (leases) => {
    seen = leases.get(kv.key);
    stop.abort();
  });
  await w.run(stop.signal, { entries: [kv], revision: 5n }, new Map([[kv.key, seeded]]));
  expect(seen?.publicIP).toBe("192.168.9.9");
});
