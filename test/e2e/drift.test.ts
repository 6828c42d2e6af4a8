// Drift repair: the kernel tells weft (netlink monitor) when one of its routes disappears. The deadline
// here (10 s) is far below the agent's periodic full resync (60 s), so only the monitor can pass it.
import { afterAll, beforeAll, expect } from "bun:test";
import { netnsUsable, testNetns } from "../harness/netns.ts";
import { type Cluster, eventually, startMesh } from "./cluster.ts";

let cluster: Cluster;
beforeAll(async () => {
  if (!netnsUsable) return;
  cluster = await startMesh("sqlite", 3);
}, 60_000);
afterAll(async () => {
  await cluster?.stop();
}, 60_000);

testNetns(
  "drift - `ip route del` of a weft route is repaired from the netlink event; a foreign route stays",
  async () => {
    const ns = cluster.host(0).ns;
    await ns.ip("route", "add", "10.77.0.0/16", "via", "172.17.42.42", "proto", "static");
    const before = await cluster.routes(0);
    const victim = (before[0] ?? "").split(" ")[0] ?? "";
    await ns.ip("route", "del", victim);
    await eventually(
      "the deleted route to come back",
      async () => (await cluster.routes(0)).join("\n") === before.join("\n"),
      10_000,
    );
    const all = (await ns.ip("route", "show")).stdout;
    expect(all).toContain("10.77.0.0/16 via 172.17.42.42 dev eth0 proto static");
    expect(cluster.agents.get(0)?.log()).toContain("kernel route changed outside weft; repairing");
  },
  30_000,
);

testNetns(
  "drift - a weft route replaced with another gateway is put back",
  async () => {
    const ns = cluster.host(1).ns;
    const before = await cluster.routes(1);
    const victim = (before[0] ?? "").split(" ")[0] ?? "";
    await ns.ip("route", "replace", victim, "via", "172.17.42.43", "proto", "static");
    await eventually(
      "weft's route to come back",
      async () => (await cluster.routes(1)).join("\n") === before.join("\n"),
      10_000,
    );
    await eventually(
      "the repair to be logged",
      () => cluster.agents.get(1)?.log().includes("kernel route changed outside weft") === true,
      5_000,
    );
  },
  30_000,
);
