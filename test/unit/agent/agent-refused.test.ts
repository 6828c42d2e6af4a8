// A route the kernel refuses (issue 12, item 2): the agent still becomes ready, reports the refusal
// once, retries it at the slow end of the backoff (10 s), and installs it once the lease is fixed.
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent } from "../../../src/agent/agent.ts";
import { type Clock, systemClock } from "../../../src/clock.ts";
import { parseNetworkConfig } from "../../../src/config/network-config.ts";
import { createLogger } from "../../../src/log.ts";
import { Metrics } from "../../../src/metrics.ts";
import type { BatchResult, NetlinkHandle } from "../../../src/netlink/netlink.ts";
import type { Route } from "../../../src/netlink/types.ts";
import { openStore } from "../../../stores/index.ts";
import { EXTERNAL, unitWiring, until } from "./unit-agent.ts";

const PREFIX = "/coreos.com/network";
const BROADCAST = "192.0.2.255";
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}, 20_000);

/** Time 100× faster than the wall clock: the 10 s slow retry takes 100 ms. */
function fastClock(speed = 100): Clock {
  const start = Date.now();
  return {
    now: () => start + (Date.now() - start) * speed,
    sleep: (ms, signal) => systemClock.sleep(ms / speed, signal),
  };
}

test("agent - a route the kernel refuses does not block readiness, is logged once and retried every 10 s", async () => {
  const dir = mkdtempSync(join(tmpdir(), "weft-refused-"));
  dirs.push(dir);
  const store = openStore("sqlite", { endpoints: [join(dir, "weft.db")] });
  await store.create(
    `${PREFIX}/config`,
    JSON.stringify({ Network: "10.5.0.0/16", SubnetLen: 24, Backend: { Type: "host-gw" } }),
  );
  const value = (ip: string) => JSON.stringify({ PublicIP: ip, PublicIPv6: null, BackendType: "host-gw" });
  await store.create(`${PREFIX}/subnets/10.5.8.0-24`, value(BROADCAST), { ttlSeconds: 3600 });
  await store.create(`${PREFIX}/subnets/10.5.9.0-24`, value("192.0.2.9"), { ttlSeconds: 3600 });

  const kernel = new Map<string, Route>();
  const attempts = new Map<string, number>();
  // The kernel's answer to `ip route replace … via <broadcast>`: EINVAL "Nexthop has invalid gateway".
  const netlink = {
    routeList: async () => ({ items: [...kernel.values()], interrupted: false }),
    linkList: async () => ({ items: [], interrupted: false }),
    routeReplace: async (routes: readonly Route[]): Promise<BatchResult> => {
      const failures = [];
      for (const r of routes) {
        attempts.set(r.dst, (attempts.get(r.dst) ?? 0) + 1);
        if (r.gateway === BROADCAST)
          failures.push({ route: r, errno: 22, errnoName: "EINVAL", message: "Nexthop has invalid gateway" });
        else kernel.set(r.dst, r);
      }
      return { applied: routes.length - failures.length, failures };
    },
    routeDelete: async (routes: readonly Route[]): Promise<BatchResult> => {
      for (const r of routes) kernel.delete(r.dst);
      return { applied: routes.length, failures: [] };
    },
  } as unknown as NetlinkHandle;

  const config = parseNetworkConfig((await store.get(`${PREFIX}/config`))?.value ?? "").config;
  const lines: string[] = [];
  const metrics = new Metrics();
  const agent = new Agent({
    store,
    storeName: "sqlite",
    prefix: PREFIX,
    config,
    external: EXTERNAL,
    wiring: unitWiring(config, netlink),
    subnetFile: join(dir, "subnet.env"),
    ipMasq: false,
    ttlSeconds: 3600,
    renewMarginSeconds: 600,
    firewallResyncSeconds: 600,
    // The periodic full re-read stays out of the way of the slow retry being measured.
    routeResyncSeconds: 3600,
    log: createLogger({ write: (l) => lines.push(l) }),
    metrics,
    clock: fastClock(),
  });
  const stop = new AbortController();
  const running = agent.run(stop.signal);
  try {
    await until("readiness", () => agent.readiness().ready, 5_000);
    expect(kernel.has("10.5.9.0/24")).toBe(true);
    expect(kernel.has("10.5.8.0/24")).toBe(false);
    expect(metrics.refused.get({ kind: "route" })).toBe(1);
    expect(metrics.ready.get()).toBe(1);
    const status = agent.status() as { lastApply: { ok: boolean; refused: string[] } };
    expect(status.lastApply.ok).toBe(true);
    expect(status.lastApply.refused).toEqual(["replace route 10.5.8.0/24: Nexthop has invalid gateway"]);

    // About 80 s of agent time: the refused route is tried again every 10 s, not at every apply.
    const before = attempts.get("10.5.8.0/24") ?? 0;
    await Bun.sleep(800);
    const retries = (attempts.get("10.5.8.0/24") ?? 0) - before;
    // Each retry is one write and, after its failure, one more after a fresh dump.
    expect(retries).toBeGreaterThanOrEqual(2 * 4);
    expect(retries).toBeLessThanOrEqual(2 * 9);
    const refusedLines = lines.filter((l) => l.includes("the kernel refuses"));
    expect(refusedLines).toHaveLength(1);
    expect(refusedLines[0]).toContain("10.5.8.0/24");
    expect(lines.filter((l) => l.includes("change failed"))).toEqual([]);
    expect(agent.readiness().ready).toBe(true);

    // The lease fixed: the route goes in without waiting for the slow retry.
    const kv = await store.get(`${PREFIX}/subnets/10.5.8.0-24`);
    await store.update(`${PREFIX}/subnets/10.5.8.0-24`, value("192.0.2.8"), {
      expectRevision: kv?.revision ?? 0n,
      ttlSeconds: 3600,
    });
    await until("the fixed route", () => kernel.get("10.5.8.0/24")?.gateway === "192.0.2.8", 5_000);
    expect(metrics.refused.get({ kind: "route" })).toBe(0);
    expect((agent.status() as { lastApply: { refused: string[] } }).lastApply.refused).toEqual([]);
  } finally {
    stop.abort();
    await running;
    await store.close();
  }
}, 20_000);
