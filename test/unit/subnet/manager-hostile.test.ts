// The subnet manager's list next to hostile lease keys (issue 12, items 1 and 4), on a real SQLite store.
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { systemClock } from "../../../src/clock.ts";
import { parseNetworkConfig } from "../../../src/config/network-config.ts";
import { silentLogger } from "../../../src/log.ts";
import { Metrics } from "../../../src/metrics.ts";
import { SubnetManager } from "../../../src/subnet/manager.ts";
import { openStore } from "../../../stores/index.ts";

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
    const manager = new SubnetManager({
      store,
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
    const parsed = manager.listedParses.get("/coreos.com/network/subnets/10.5.7.0-24");
    expect(parsed?.ok === false && parsed.rule).toBe("size");
    const covering = manager.listedParses.get("/coreos.com/network/subnets/10.5.0.0-16");
    expect(covering?.ok ?? "absent").not.toBe(true);
  } finally {
    await store.close();
  }
});
