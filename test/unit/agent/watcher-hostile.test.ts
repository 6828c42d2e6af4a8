// Hostile or broken lease keys (issue 12, items 1 and 4): a key covering the whole network, a nested
// key, a piece of a subnet, a value of a megabyte. None may displace an established lease; each is
// counted and warned about once per key and revision.
import { expect, test } from "bun:test";
import { systemClock } from "../../../src/clock.ts";
import type { Lease } from "../../../src/lease/lease.ts";
import { LeaseWatcher } from "../../../src/lease/watcher.ts";
import { createLogger } from "../../../src/log.ts";
import { Metrics } from "../../../src/metrics.ts";
import { parseCidr } from "../../../src/net/ipv4.ts";
import type { KeyValue, WatchEvent } from "../../../stores/store.ts";
import { scriptedStore } from "../fixtures/scripted-store.ts";

const PREFIX = "/coreos.com/network/subnets/";
const network = parseCidr("10.100.0.0/16");

const value = (ip: string) => JSON.stringify({ PublicIP: ip, BackendType: "host-gw" });
const put = (key: string, v: string, revision: bigint): WatchEvent => ({
  type: "put",
  kv: { key: `${PREFIX}${key}`, value: v, revision, expires: true },
});

/** Runs a watcher over `initial` then `events`; returns every published set and the warnings. */
async function run(initial: KeyValue[], events: WatchEvent[]) {
  const lines: string[] = [];
  const metrics = new Metrics();
  const seen: ReadonlyMap<string, Lease>[] = [];
  const stop = new AbortController();
  const store = scriptedStore({ entries: initial, revision: 10n }, events);
  const w = new LeaseWatcher({
    store,
    prefix: PREFIX,
    network,
    subnetLen: 24,
    log: createLogger({ write: (l) => lines.push(l) }),
    metrics,
    clock: systemClock,
    onChange: (leases) => {
      seen.push(new Map(leases));
      if (seen.length === events.length + 1) stop.abort();
    },
  });
  await w.run(stop.signal);
  return { seen, lines, metrics, valueLimits: store.valueLimits };
}

const established: KeyValue[] = [1, 2, 3].map((i) => ({
  key: `${PREFIX}10.100.${i}.0-24`,
  value: value(`172.17.42.${40 + i}`),
  revision: BigInt(i),
  expires: true,
}));

test("watcher - a covering, a nested or a partial key never displaces established leases", async () => {
  const { seen, lines, metrics } = await run(established, [
    // The whole Network, the reproduction: it used to win every overlap and drop all routes.
    put("10.100.0.0-16", value("172.17.42.99"), 20n),
    put("10.100.0.0-20", value("172.17.42.99"), 21n),
    // A nested key whose last segment names an established subnet, and a new one.
    put("0/10.100.2.0-24", value("172.17.42.99"), 22n),
    put("x/y/10.100.9.0-24", value("172.17.42.99"), 23n),
    // Half of an established subnet.
    put("10.100.3.128-25", value("172.17.42.99"), 24n),
    // The same key again at the same revision (a watch replay): no second warning.
    put("10.100.0.0-16", value("172.17.42.99"), 20n),
  ]);
  const want = established.map((kv) => kv.key);
  for (const leases of seen) expect([...leases.keys()].sort()).toEqual(want);
  for (const leases of seen)
    for (const lease of leases.values()) expect(lease.publicIP).not.toBe("172.17.42.99");
  expect(metrics.leasesRejected.get({ reason: "subnet-len" })).toBe(3);
  expect(metrics.leasesRejected.get({ reason: "key" })).toBe(2);
  expect(metrics.leasesRejected.get({ reason: "overlap" })).toBe(0);
  const warnings = lines.filter((l) => l.includes("ignoring invalid lease"));
  expect(warnings).toHaveLength(5);
  expect(warnings.filter((l) => l.includes("10.100.0.0-16"))).toHaveLength(1);
  expect(warnings.find((l) => l.includes("10.100.0.0-16"))).toContain("SubnetLen");
  expect(warnings.find((l) => l.includes("0/10.100.2.0-24"))).toContain("no further path segments");
});

test("watcher - the covering key present at the first list changes nothing either", async () => {
  const covering: KeyValue = {
    key: `${PREFIX}10.100.0.0-16`,
    value: value("172.17.42.99"),
    revision: 9n,
    expires: false,
  };
  const { seen } = await run([covering, ...established], []);
  expect([...(seen[0]?.keys() ?? [])].sort()).toEqual(established.map((kv) => kv.key));
});

test("watcher - two keys for one subnet: the key that sorts first wins, on every order of events", async () => {
  const plain = put("10.100.1.0-24", value("172.17.42.41"), 30n);
  const dual = put("10.100.1.0-24&fd00::-64", value("172.17.42.99"), 31n);
  for (const events of [
    [plain, dual],
    [dual, plain],
  ]) {
    const { seen, metrics } = await run([], events);
    const last = seen.at(-1);
    expect([...(last?.keys() ?? [])]).toEqual([`${PREFIX}10.100.1.0-24`]);
    expect(last?.get(`${PREFIX}10.100.1.0-24`)?.publicIP).toBe("172.17.42.41");
    expect(metrics.leasesRejected.get({ reason: "overlap" })).toBe(1);
  }
});

test("watcher - a value over 4 KiB is rejected unparsed and not kept; a later small value is used", async () => {
  const huge = `{"PublicIP":"172.17.42.99","BackendType":"host-gw","Pad":"${"x".repeat(1 << 20)}"}`;
  const parse = JSON.parse;
  const parsedLengths: number[] = [];
  JSON.parse = ((text: string, reviver?: Parameters<typeof JSON.parse>[1]) => {
    parsedLengths.push(text.length);
    return parse(text, reviver);
  }) as typeof JSON.parse;
  try {
    const { seen, lines, metrics } = await run(
      [{ key: `${PREFIX}10.100.7.0-24`, value: huge, revision: 5n, expires: true }, ...established],
      [
        put("10.100.8.0-24", huge, 40n),
        put("10.100.1.0-24", huge, 41n),
        put("10.100.8.0-24", value("172.17.42.48"), 42n),
      ],
    );
    expect(Math.max(...parsedLengths)).toBeLessThanOrEqual(4096);
    expect(metrics.leasesRejected.get({ reason: "size" })).toBe(3);
    expect(lines.filter((l) => l.includes("over the 4096-byte limit"))).toHaveLength(3);
    // The warning names the size, never the value.
    expect(lines.every((l) => l.length < 1_000)).toBe(true);
    // An established lease overwritten with a huge value is gone (its value is unusable) ...
    expect(seen.at(-2)?.has(`${PREFIX}10.100.1.0-24`)).toBe(false);
    // ... and a key that gets a small value again is used.
    expect(seen.at(-1)?.get(`${PREFIX}10.100.8.0-24`)?.publicIP).toBe("172.17.42.48");
  } finally {
    JSON.parse = parse;
  }
});

test("watcher - reads with a 4 KiB value limit; a value the store left out is rejected by its size", async () => {
  const omitted = (key: string, revision: bigint): KeyValue => ({
    key: `${PREFIX}${key}`,
    value: "",
    revision,
    expires: true,
    omittedBytes: 1 << 20,
  });
  const { seen, lines, metrics, valueLimits } = await run(
    [omitted("10.100.7.0-24", 5n), ...established],
    [{ type: "put", kv: omitted("10.100.2.0-24", 40n) }],
  );
  expect(valueLimits).toEqual(["list:4096", "watch:4096"]);
  expect(metrics.leasesRejected.get({ reason: "size" })).toBe(2);
  const warned = lines.filter((l) => l.includes("value is 1048576 bytes, over the 4096-byte limit"));
  expect(warned).toHaveLength(2);
  expect([...(seen.at(-1)?.keys() ?? [])].sort()).toEqual([
    `${PREFIX}10.100.1.0-24`,
    `${PREFIX}10.100.3.0-24`,
  ]);
});
