// sd_notify from a real agent in a network namespace on SQLite: the test listens on a unix datagram
// socket (a filesystem path: abstract sockets are per network namespace) passed as NOTIFY_SOCKET.
import { afterAll, beforeAll, expect } from "bun:test";
import { join } from "node:path";
import { UnixDatagramSocket } from "../../src/systemd/unix-dgram.ts";
import { netnsUsable, testNetns } from "../harness/netns.ts";
import { Cluster, eventually, SEED_000_CONFIG } from "./cluster.ts";

/** install.sh's TimeoutStopSec=10: what systemd gives the agent to stop before it kills it. */
const STOP_TIMEOUT_MS = 10_000;
let cluster: Cluster;
beforeAll(async () => {
  if (!netnsUsable) return;
  cluster = await Cluster.start({ store: "sqlite", hosts: 2 });
}, 60_000);
afterAll(async () => {
  await cluster?.stop();
}, 60_000);

function listen(name: string): { path: string; messages: string[]; poll: () => void; close: () => void } {
  const path = join(cluster.dir, name);
  const socket = UnixDatagramSocket.open();
  socket.bind(path);
  const messages: string[] = [];
  const poll = () => {
    for (let d = socket.tryRecv(); d !== undefined; d = socket.tryRecv())
      messages.push(new TextDecoder().decode(d));
  };
  return { path, messages, poll, close: () => socket.close() };
}

testNetns(
  "systemd - READY=1 only once ready, STATUS names the subnet, SIGTERM sends STOPPING=1 and exits 0 keeping routes",
  async () => {
    const rx = listen("notify.sock");
    try {
      // No network config yet (whichever case ran before): the agent waits and must not claim readiness.
      await cluster.del(`${cluster.prefix}/config`);
      const agent = cluster.startAgent(0, [], { NOTIFY_SOCKET: rx.path });
      // systemctl status shows why it is not ready yet.
      const waiting = `STATUS=waiting for the network config at ${cluster.prefix}/config (weft config set < net-conf.json)`;
      await eventually("the waiting STATUS= line", () => {
        rx.poll();
        return rx.messages.includes(waiting);
      });
      // The log arrives through a pipe, the STATUS line through the notify socket: either may come first.
      await eventually("the waiting log line", () => agent.log().includes("waiting for the network config"));
      expect(rx.messages.filter((m) => m === "READY=1")).toEqual([]);

      await cluster.writeConfig(SEED_000_CONFIG);
      cluster.startAgent(1);
      await eventually("READY=1", () => {
        rx.poll();
        return rx.messages.includes("READY=1");
      });
      // READY=1 follows the first route apply: the lease file is written by then.
      const subnet = cluster.subnetEnv(0).FLANNEL_SUBNET ?? "";
      expect(subnet).not.toBe("");
      await eventually("a STATUS= line with one peer and its route", async () => {
        rx.poll();
        return rx.messages.some((m) => /^STATUS=subnet [0-9./]+, 1 peer, 1 route$/.test(m));
      });
      expect(rx.messages.some((m) => m.startsWith("STATUS=subnet "))).toBe(true);
      await eventually("the route to the peer", async () => (await cluster.routes(0)).length === 1);
      const routesBefore = await cluster.routes(0);

      const started = performance.now();
      agent.proc.kill("SIGTERM");
      const code = await agent.proc.exited;
      const elapsed = performance.now() - started;
      console.log(`systemd e2e: SIGTERM to exit ${elapsed.toFixed(0)} ms`);
      expect(code).toBe(0);
      // The agent exits in milliseconds (its own cap is 1.5 s); the bound is the unit's TimeoutStopSec,
      // after which systemd would SIGKILL it, so a loaded machine does not fail this case.
      expect(elapsed).toBeLessThan(STOP_TIMEOUT_MS);
      rx.poll();
      expect(rx.messages).toContain("STOPPING=1");
      expect(rx.messages.filter((m) => m === "READY=1").length).toBe(1);
      expect(rx.messages.indexOf("READY=1")).toBeLessThan(rx.messages.indexOf("STOPPING=1"));
      expect(await cluster.routes(0)).toEqual(routesBefore);
      cluster.agents.delete(0);
      expect(await cluster.stopAgent(1)).toBe(0);
    } finally {
      rx.close();
    }
  },
  40_000,
);

testNetns(
  "systemd - WATCHDOG_USEC=400000 brings WATCHDOG=1 repeatedly once ready",
  async () => {
    const rx = listen("watchdog.sock");
    try {
      await cluster.writeConfig(SEED_000_CONFIG);
      cluster.startAgent(0, [], { NOTIFY_SOCKET: rx.path, WATCHDOG_USEC: "400000" });
      await eventually("READY=1", () => {
        rx.poll();
        return rx.messages.includes("READY=1");
      });
      // Every 200 ms while healthy: two more after READY=1 (waited for, not counted in a fixed window).
      const from = rx.messages.length;
      await eventually("two WATCHDOG=1 after READY=1", () => {
        rx.poll();
        return rx.messages.slice(from).filter((m) => m === "WATCHDOG=1").length >= 2;
      });
      expect(await cluster.stopAgent(0)).toBe(0);
    } finally {
      rx.close();
    }
  },
  40_000,
);
