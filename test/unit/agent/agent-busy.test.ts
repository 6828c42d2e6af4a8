// Agent.busyMs(): what the systemd watchdog checks. A route apply that hangs must show up as a
// growing busy time (so WATCHDOG=1 is withheld and systemd restarts the agent), and a finished one as 0.
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent } from "../../../src/agent/agent.ts";
import { systemClock } from "../../../src/clock.ts";
import { parseNetworkConfig } from "../../../src/config/network-config.ts";
import { createLogger } from "../../../src/log.ts";
import { Metrics } from "../../../src/metrics.ts";
import type { BatchResult, NetlinkHandle } from "../../../src/netlink/netlink.ts";
import type { Route } from "../../../src/netlink/types.ts";
import { openStore } from "../../../stores/index.ts";
import { EXTERNAL, unitWiring, until } from "./unit-agent.ts";

const PREFIX = "/coreos.com/network";
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

test("agent - busyMs grows while a route apply hangs and is 0 once it finished", async () => {
  const dir = mkdtempSync(join(tmpdir(), "weft-busy-"));
  dirs.push(dir);
  const store = openStore("sqlite", { endpoints: [join(dir, "weft.db")] });
  await store.create(
    `${PREFIX}/config`,
    JSON.stringify({ Network: "10.5.0.0/16", SubnetLen: 24, Backend: { Type: "host-gw" } }),
  );
  await store.create(
    `${PREFIX}/subnets/10.5.9.0-24`,
    JSON.stringify({ PublicIP: "192.0.2.9", PublicIPv6: null, BackendType: "host-gw" }),
    { ttlSeconds: 3600 },
  );

  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  const replaced: Route[] = [];
  // A host-gw agent only uses the route calls of the netlink handle, and lists links once (vxlan leftovers).
  const netlink = {
    routeList: async () => ({ items: [], interrupted: false }),
    linkList: async () => ({ items: [], interrupted: false }),
    routeReplace: async (routes: readonly Route[]): Promise<BatchResult> => {
      await gate;
      replaced.push(...routes);
      return { applied: routes.length, failures: [] };
    },
    routeDelete: async (routes: readonly Route[]): Promise<BatchResult> => ({
      applied: routes.length,
      failures: [],
    }),
  } as unknown as NetlinkHandle;

  const config = parseNetworkConfig((await store.get(`${PREFIX}/config`))?.value ?? "").config;
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
    firewallResyncSeconds: 60,
    log: createLogger({ write: () => undefined }),
    metrics: new Metrics(),
    clock: systemClock,
  });
  expect(agent.busyMs()).toBe(0);
  const stop = new AbortController();
  const running = agent.run(stop.signal);
  try {
    await until("the route apply to start", () => agent.busyMs() > 0);
    await Bun.sleep(60);
    expect(agent.busyMs()).toBeGreaterThanOrEqual(50);
    expect(agent.readiness()).toEqual({ ready: false, reason: "routes not applied yet" });

    release();
    await until("readiness", () => agent.readiness().ready);
    expect(agent.busyMs()).toBe(0);
    expect(replaced.map((r) => `${r.dst} via ${r.gateway}`)).toEqual(["10.5.9.0/24 via 192.0.2.9"]);
  } finally {
    release();
    stop.abort();
    await running;
    await store.close();
  }
}, 30_000);
