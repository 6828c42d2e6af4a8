// The subnet manager's list next to hostile lease keys (issue 12, items 1 and 4), on a real SQLite store.
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { systemClock } from "../../../src/clock.ts";
import { parseNetworkConfig } from "../../../src/config/network-config.ts";
import { silentLogger } from "../../../src/log.ts";
import { Metrics } from "../../../src/metrics.ts";
import { formatCidr, parseCidr } from "../../../src/net/ipv4.ts";
import { allocateSubnet, freeSubnets } from "../../../src/subnet/allocate.ts";
import { leaseViews, SubnetManager } from "../../../src/subnet/manager.ts";
import { openStore } from "../../../stores/index.ts";
import type { KeyValue, ListOptions } from "../../../stores/store.ts";

const { config } = parseNetworkConfig(
  '{"Network":"10.5.0.0/16","SubnetLen":24,"Backend":{"Type":"host-gw"}}',
);
const dir = mkdtempSync(join(tmpdir(), "weft-mgr-hostile-"));
afterEach(() => rmSync(dir, { recursive: true, force: true }));

test("subnet manager - a value over 4 KiB in the list is not kept, and its parse says why", async () => {
  const store = openStore("sqlite", { endpoints: [join(dir, "weft.db")] });
  try {
    const big = `{"PublicIP":"172.16.0.1","BackendType":"host-gw","Pad":"${"x".repeat(1 << 20)}"}`;
    await store.create("/coreos.com/network/subnets/10.5.7.0-24", big);
    // Same PublicIP as this host under a key of another length: no reuse, no route.
    await store.create("/coreos.com/network/subnets/10.5.0.0-16", '{"PublicIP":"172.16.0.2"}');
    const listOptions: (ListOptions | undefined)[] = [];
    const recording = new Proxy(store, {
      get(target, name) {
        if (name === "list")
          return (prefix: string, options?: ListOptions) => {
            listOptions.push(options);
            return target.list(prefix, options);
          };
        const member = Reflect.get(target, name, target);
        return typeof member === "function" ? member.bind(target) : member;
      },
    });
    const manager = new SubnetManager({
      store: recording,
      prefix: "/coreos.com/network",
      config,
      attrs: { publicIP: "172.16.0.2", backendType: "host-gw" },
      ttlSeconds: 3600,
      renewMarginSeconds: 60,
      log: silentLogger,
      metrics: new Metrics(),
      clock: systemClock,
    });
    const lease = await manager.acquire(new AbortController().signal);
    expect(lease?.subnet.prefixLen).toBe(24);
    // Allocation still treats the oversized key's subnet as taken (creating it would fail).
    expect(lease?.key).not.toBe("/coreos.com/network/subnets/10.5.7.0-24");
    const kept = manager.listed?.entries.find((kv) => kv.key.endsWith("10.5.7.0-24"));
    expect(kept?.value).toBe("");
    // Left in the store: the list asked for at most 4 KiB per value, and the store said how long it is.
    expect(listOptions.map((o) => o?.maxValueBytes)).toEqual([4096]);
    expect(kept?.omittedBytes).toBe(Buffer.byteLength(big));
    const parsed = manager.listedParses.get("/coreos.com/network/subnets/10.5.7.0-24");
    expect(parsed?.ok === false && parsed.rule).toBe("size");
    const covering = manager.listedParses.get("/coreos.com/network/subnets/10.5.0.0-16");
    expect(covering?.ok ?? "absent").not.toBe(true);
  } finally {
    await store.close();
  }
});

test("subnet manager - keys that cannot hold a lease take no space; a key of SubnetLen does, whatever its value", () => {
  const kv = (name: string, value = '{"PublicIP":"172.16.0.9","BackendType":"host-gw"}'): KeyValue => ({
    key: `/coreos.com/network/subnets/${name}`,
    value,
    revision: 1n,
    expires: true,
  });
  const entries = [
    // The whole Network, and two halves covering all of it: the lease parser rejects all three.
    kv("10.5.0.0-16"),
    kv("10.5.0.0-17"),
    kv("10.5.128.0-17"),
    // Nested, a piece of a subnet, outside the Network, the default route.
    kv("0/10.5.3.0-24"),
    kv("10.5.4.128-25"),
    kv("10.6.0.0-24"),
    kv("0.0.0.0-0"),
    // A lease key of SubnetLen: a garbage value still holds the key (creating it would fail).
    kv("10.5.7.0-24", "not json"),
    kv("10.5.8.0-24"),
  ];
  const views = leaseViews(entries, config, "/coreos.com/network");
  expect(views.map((v) => v.kv.key.slice("/coreos.com/network/subnets/".length))).toEqual([
    "10.5.7.0-24",
    "10.5.8.0-24",
  ]);
  const leases = views.map((v) => v.view);
  const range = { subnetLen: 24, subnetMin: config.subnetMin, subnetMax: config.subnetMax };
  // The covering halves used to make every subnet look taken: SUBNET_EXHAUSTED for every new host.
  const free = freeSubnets(range, leases, 300).map((ip) => formatCidr({ ip, prefixLen: 24 }));
  expect(free).toHaveLength(253);
  expect(free).toContain("10.5.3.0/24");
  expect(free).toContain("10.5.4.0/24");
  expect(free).not.toContain("10.5.7.0/24");
  expect(free).not.toContain("10.5.8.0/24");
  // And the previous subnet under a nested or covering key is taken back.
  const choice = allocateSubnet({
    config: range,
    leases,
    publicIp: "172.16.0.1",
    previousSubnet: parseCidr("10.5.3.0/24"),
    randomInt: () => 0,
  });
  expect(choice.rule).toBe("previous-subnet");
  expect(formatCidr(choice.subnet)).toBe("10.5.3.0/24");
});
