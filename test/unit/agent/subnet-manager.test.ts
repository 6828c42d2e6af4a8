// The subnet manager against a real (embedded SQLite) store.
import { afterEach, beforeEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { systemClock } from "../../../src/clock.ts";
import { parseNetworkConfig } from "../../../src/config/network-config.ts";
import { createLogger, silentLogger } from "../../../src/log.ts";
import { Metrics } from "../../../src/metrics.ts";
import { formatCidr, parseCidr } from "../../../src/net/ipv4.ts";
import { SubnetManager } from "../../../src/subnet/manager.ts";
import { openStore } from "../../../stores/index.ts";
import type { Store } from "../../../stores/store.ts";

const { config } = parseNetworkConfig(
  '{"Network":"10.5.0.0/16","SubnetLen":24,"Backend":{"Type":"host-gw"}}',
);
let dir: string;
let stores: Store[];
const open = () => {
  const s = openStore("sqlite", { endpoints: [join(dir, "weft.db")] });
  stores.push(s);
  return s;
};
const manager = (store: Store, publicIP: string, random?: (n: number) => number) =>
  new SubnetManager({
    store,
    prefix: "/coreos.com/network",
    config,
    attrs: { publicIP, backendType: "host-gw" },
    ttlSeconds: 3600,
    renewMarginSeconds: 60,
    log: silentLogger,
    metrics: new Metrics(),
    clock: systemClock,
    ...(random === undefined ? {} : { randomInt: random }),
  });

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "weft-mgr-"));
  stores = [];
});
afterEach(async () => {
  await Promise.all(stores.map((s) => s.close()));
  rmSync(dir, { recursive: true, force: true });
});

test("subnet manager - 20 hosts acquiring at once get 20 distinct subnets (lost races are retried)", async () => {
  const signal = new AbortController().signal;
  // Every host draws the same candidate first, so most of them lose the create race at least once.
  const leases = await Promise.all(
    Array.from({ length: 20 }, (_, i) => manager(open(), `172.16.0.${i + 1}`, () => 0).acquire(signal)),
  );
  const subnets = leases.map((l) => (l === undefined ? "none" : formatCidr(l.subnet)));
  expect(new Set(subnets).size).toBe(20);
  expect(subnets).not.toContain("none");
  expect((await open().list("/coreos.com/network/subnets/")).entries.length).toBe(20);
});

test("subnet manager - a restarted host gets its own lease back by PublicIP", async () => {
  const signal = new AbortController().signal;
  const first = await manager(open(), "172.16.0.7").acquire(signal);
  const again = await manager(open(), "172.16.0.7").acquire(signal);
  expect(again?.key).toBe(first?.key as string);
});

test("subnet manager - a reservation (key without TTL) is reused and stays a reservation", async () => {
  const store = open();
  const key = "/coreos.com/network/subnets/10.5.77.0-24";
  await store.create(key, '{"PublicIP":"172.16.0.9","PublicIPv6":null,"BackendType":"host-gw"}');
  const lease = await manager(open(), "172.16.0.9").acquire(new AbortController().signal);
  expect(lease?.key).toBe(key);
  expect(lease?.expires).toBe(false);
  expect((await store.get(key))?.expires).toBe(false);
});

test("subnet manager - a lost lease is re-acquired with the same subnet when it is still free", async () => {
  const store = open();
  const m = manager(store, "172.16.0.3");
  const signal = new AbortController().signal;
  const lease = await m.acquire(signal);
  if (lease === undefined) throw new Error("no lease");
  await open().delete(lease.key);
  let lost = 0;
  let again: string | undefined;
  await m.recover(
    signal,
    () => lost++,
    (l) => {
      again = formatCidr(l.subnet);
    },
  );
  expect(lost).toBe(1);
  expect(again).toBe(formatCidr(lease.subnet));
  expect((await store.get(lease.key))?.value).toContain('"PublicIP":"172.16.0.3"');
});

test("subnet manager - the subnet.env subnet is reused only when free", async () => {
  const signal = new AbortController().signal;
  const previous = parseCidr("10.5.200.0/24");
  const lease = await manager(open(), "172.16.0.4").acquire(signal, previous);
  expect(lease === undefined ? "" : formatCidr(lease.subnet)).toBe("10.5.200.0/24");
  const other = await manager(open(), "172.16.0.5").acquire(signal, previous);
  expect(other === undefined ? "" : formatCidr(other.subnet)).not.toBe("10.5.200.0/24");
});

test("subnet manager - garbage keys outside the network or covering all of it do not block allocation", async () => {
  const store = open();
  await store.create("/coreos.com/network/subnets/0.0.0.0-0", '{"PublicIP":"172.16.9.9"}');
  await store.create("/coreos.com/network/subnets/10.5.0.0-16", '{"PublicIP":"172.16.9.9"}');
  await store.create("/coreos.com/network/subnets/10.6.0.0-24", "garbage");
  await store.create("/coreos.com/network/subnets/10.5.1.0-24", "garbage inside the network");
  const lease = await manager(open(), "172.16.0.8", () => 0).acquire(new AbortController().signal);
  expect(lease === undefined ? "" : formatCidr(lease.subnet)).toBe("10.5.2.0/24");
});

test("subnet manager - our lease that no longer fits the config is deleted once the new one is held; a reservation stays", async () => {
  const store = open();
  // Leases from before the config said SubnetMin 10.5.100.0: one with a TTL, one reservation.
  const old = "/coreos.com/network/subnets/10.5.3.0-24";
  const reserved = "/coreos.com/network/subnets/10.5.4.0-24";
  const value = '{"PublicIP":"172.16.0.5","PublicIPv6":null,"BackendType":"host-gw"}';
  await store.create(old, value, { ttlSeconds: 3600 });
  await store.create(reserved, value);
  const { config: narrowed } = parseNetworkConfig(
    '{"Network":"10.5.0.0/16","SubnetLen":24,"SubnetMin":"10.5.100.0","Backend":{"Type":"host-gw"}}',
  );
  const lines: string[] = [];
  const m = new SubnetManager({
    store,
    prefix: "/coreos.com/network",
    config: narrowed,
    attrs: { publicIP: "172.16.0.5", backendType: "host-gw" },
    ttlSeconds: 3600,
    renewMarginSeconds: 60,
    log: createLogger({ write: (l) => lines.push(l) }),
    metrics: new Metrics(),
    clock: systemClock,
  });
  const lease = await m.acquire(new AbortController().signal);
  expect(lease?.subnet.ip).toBeGreaterThanOrEqual(parseCidr("10.5.100.0/24").ip);
  expect(await store.get(old)).toBeUndefined();
  expect((await store.get(reserved))?.value).toBe(value);
  expect(lines.some((l) => l.includes("deleted our old lease") && l.includes("10.5.3.0/24"))).toBe(true);
  expect(lines.some((l) => l.includes("reservation with our PublicIP") && l.includes("10.5.4.0/24"))).toBe(
    true,
  );
});
