/**
 * The measured side of test/bench/store-events.bench.ts, run as its own process so that its CPU time
 * and RSS are the agent's alone: one store driver (`STORE`, `ENDPOINT`) and the agent's lease watcher
 * (`LeaseWatcher.run`: one list of `<prefix>/subnets/`, then the watch), reporting over IPC
 *   - `{type:"synced"}` once the first list is folded in (with RSS and the time it took),
 *   - `{type:"change", key, publicIP, at}` for every single-key change the watcher hands its consumer
 *     (`at`: wall-clock ms, `performance.timeOrigin + performance.now()`, comparable across processes),
 *   - `{type:"usage"}` (CPU microseconds, RSS) when asked with `{type:"usage"}`; RSS and the JS heap
 *     in use after a full garbage collection when asked with `{type:"gc"}`.
 * `{type:"stop"}` ends it. Not a benchmark of its own (no `.bench.ts`).
 */

import { systemClock } from "../../src/clock.ts";
import { LeaseWatcher } from "../../src/lease/watcher.ts";
import { silentLogger } from "../../src/log.ts";
import { Metrics } from "../../src/metrics.ts";
import { openStore } from "../../stores/index.ts";
import { NETWORK, SUBNET_LEN, SUBNETS } from "./store-leases.ts";

const name = process.env.STORE ?? "";
const endpoint = process.env.ENDPOINT ?? "";
const send = (message: Record<string, unknown>) => process.send?.(message);
const wall = () => performance.timeOrigin + performance.now();

const store = openStore(name, { endpoints: [endpoint] });
const controller = new AbortController();
let synced = false;
const started = performance.now();
const watcher = new LeaseWatcher({
  store,
  prefix: SUBNETS,
  network: NETWORK,
  subnetLen: SUBNET_LEN,
  log: silentLogger,
  metrics: new Metrics(),
  clock: systemClock,
  onChange: (leases, key) => {
    if (key !== undefined) {
      send({ type: "change", key, publicIP: leases.get(key)?.publicIP ?? null, at: wall() });
      return;
    }
    if (!synced) {
      synced = true;
      send({
        type: "synced",
        leases: leases.size,
        syncMs: performance.now() - started,
        rss: process.memoryUsage().rss,
      });
    } else send({ type: "resync", leases: leases.size });
  },
});
const running = watcher.run(controller.signal);

process.on("message", async (message: { type?: string }) => {
  if (message.type === "usage") {
    const cpu = process.cpuUsage();
    send({ type: "usage", cpuMicros: cpu.user + cpu.system, rss: process.memoryUsage().rss });
  } else if (message.type === "gc") {
    Bun.gc(true);
    const memory = process.memoryUsage();
    send({ type: "usage", cpuMicros: 0, rss: memory.rss, heapUsed: memory.heapUsed });
  } else if (message.type === "stop") {
    controller.abort();
    await running;
    await store.close();
    process.exit(0);
  }
});
