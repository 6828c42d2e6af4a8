// A re-acquired lease whose subnet.env cannot be written: the agent logs it as one line and goes on
// (routes and firewall rules follow the lease, readiness comes back); nothing is left unhandled.
import { afterEach, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
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
import { EXTERNAL, fakeFirewall, unitWiring, until } from "./unit-agent.ts";

const PREFIX = "/coreos.com/network";
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

test("agent - a subnet.env write failing after a re-acquire is logged and the agent keeps running", async () => {
  const dir = mkdtempSync(join(tmpdir(), "weft-reacquire-"));
  dirs.push(dir);
  const store = openStore("sqlite", { endpoints: [join(dir, "weft.db")] });
  const config = parseNetworkConfig(
    JSON.stringify({ Network: "10.5.0.0/16", SubnetLen: 24, Backend: { Type: "host-gw" } }),
  ).config;
  const ok = async (routes: readonly Route[]): Promise<BatchResult> => ({
    applied: routes.length,
    failures: [],
  });
  const netlink = {
    routeList: async () => ({ items: [], interrupted: false }),
    linkList: async () => ({ items: [], interrupted: false }),
    routeReplace: ok,
    routeDelete: ok,
  } as unknown as NetlinkHandle;
  const specs: string[] = [];
  const firewall = fakeFirewall((subnet) => specs.push(subnet));
  const lines: string[] = [];
  const subnetFile = join(dir, "run", "subnet.env");
  const agent = new Agent({
    store,
    storeName: "sqlite",
    prefix: PREFIX,
    config,
    external: EXTERNAL,
    wiring: unitWiring(config, netlink, firewall),
    subnetFile,
    ipMasq: false,
    ttlSeconds: 3600,
    renewMarginSeconds: 600,
    firewallResyncSeconds: 60,
    log: createLogger({ format: "json", write: (l) => lines.push(l) }),
    metrics: new Metrics(),
    clock: systemClock,
  });
  const stop = new AbortController();
  const running = agent.run(stop.signal);
  try {
    await until("readiness", () => agent.readiness().ready, 15_000);
    const own = (await store.list(`${PREFIX}/subnets/`)).entries[0];
    if (own === undefined) throw new Error("no own lease in the store");
    // subnet.env becomes unwritable: a non-empty directory in its place (root writes through modes).
    rmSync(subnetFile);
    mkdirSync(subnetFile);
    writeFileSync(join(subnetFile, "keep"), "");
    const specsBefore = specs.length;
    await store.delete(own.key);
    await until(
      "the failed write to be logged",
      () => lines.some((l) => l.includes("could not write the subnet file")),
      15_000,
    );
    const line = JSON.parse(lines.find((l) => l.includes("could not write the subnet file")) ?? "{}");
    expect(line.level).toBe("error");
    expect(line.path).toBe(subnetFile);
    expect(line.subnet).toMatch(/^10\.5\.\d+\.0\/24$/);
    expect(String(line.error)).toContain(subnetFile);
    // The lease is held again and its rules and routes follow it despite the file.
    await until("readiness after the re-acquire", () => agent.readiness().ready, 15_000);
    await until("the firewall spec for the re-acquired lease", () => specs.length > specsBefore, 15_000);
    expect((await store.get(own.key))?.value).toContain('"PublicIP":"192.0.2.1"');
  } finally {
    stop.abort();
    await running;
    await store.close();
  }
}, 30_000);
