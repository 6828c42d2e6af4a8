// Routes as KernelTables programs them for a backend without a device (host-gw): with inline gateways,
// and through nexthop objects (issue 13).
import { expect, test } from "bun:test";
import type { PeerTable } from "../../../src/backend/peer-table.ts";
import type { Route } from "../../../src/netlink/types.ts";
import { KernelTables } from "../../../src/reconcile/kernel-tables.ts";
import { type NexthopMode, nexthopIdOf } from "../../../src/reconcile/route-table.ts";
import { FakeKernel } from "../fixtures/fake-kernel.ts";

const route = (dst: string, gateway: string, protocol = 77): Route => ({
  dst,
  gateway,
  oif: 2,
  protocol,
  table: 254,
});
const peers = (...routes: Route[]) =>
  ({
    routes: new Map(routes.map((r) => [r.dst, r])),
    neighs: new Map(),
    fdb: new Map(),
  }) as unknown as PeerTable;

function setup(nexthops: NexthopMode = "unsupported") {
  const kernel = new FakeKernel();
  const tables = new KernelTables(kernel, {
    protocol: 77,
    network: { ip: 0, prefixLen: 0 },
    deviceIndex: () => undefined,
    nexthops,
  });
  return { kernel, tables };
}

const ID_1 = nexthopIdOf("10.5.1.0/24");
const ID_2 = nexthopIdOf("10.5.2.0/24");

test("route table - a nexthop id is the destination address as a number; none for what is not IPv4", () => {
  expect(ID_1).toBe(0x0a050100);
  expect(nexthopIdOf("192.168.200.0/26")).toBe(0xc0a8c800);
  expect(nexthopIdOf("fd00::/64")).toBe(0);
  expect(nexthopIdOf("10.5.1/24")).toBe(0);
  expect(nexthopIdOf("10.5.1.256/24")).toBe(0);
});

test("route table - inline: apply installs the desired routes in one batch and a second apply changes nothing", async () => {
  const { kernel, tables } = setup();
  tables.setDesired(peers(route("10.5.1.0/24", "172.17.0.2"), route("10.5.2.0/24", "172.17.0.3")));
  expect(await tables.apply()).toEqual({ replaced: 2, deleted: 0, failures: [] });
  expect(kernel.calls).toEqual(["route replace 10.5.1.0/24", "route replace 10.5.2.0/24"]);
  expect(kernel.dumps).toEqual(["routes"]);
  expect(await tables.apply()).toEqual({ replaced: 0, deleted: 0, failures: [] });
  expect(kernel.calls).toHaveLength(2);
  expect(kernel.dumps).toHaveLength(1);
  expect(kernel.routes.get("10.5.1.0/24")?.nhid).toBeUndefined();
});

test("route table - inline: nothing is swept before allowSweep, and foreign routes are never deleted", async () => {
  const { kernel, tables } = setup();
  kernel.routes.set("10.5.9.0/24", route("10.5.9.0/24", "172.17.0.9"));
  kernel.routes.set("10.99.0.0/16", route("10.99.0.0/16", "172.17.0.1", 4));
  tables.setDesired(peers(route("10.5.1.0/24", "172.17.0.2")));
  await tables.apply();
  expect([...kernel.routes.keys()].sort()).toEqual(["10.5.1.0/24", "10.5.9.0/24", "10.99.0.0/16"]);
  tables.allowSweep();
  expect((await tables.plan()).routes.deletes.map(([dst]) => dst)).toEqual(["10.5.9.0/24"]);
  expect(await tables.apply()).toEqual({ replaced: 0, deleted: 1, failures: [] });
  expect([...kernel.routes.keys()].sort()).toEqual(["10.5.1.0/24", "10.99.0.0/16"]);
});

test("route table - inline: a route deleted behind our back is noticed from the event and put back", async () => {
  const { kernel, tables } = setup();
  tables.setDesired(peers(route("10.5.1.0/24", "172.17.0.2")));
  await tables.apply();
  const gone = kernel.routes.get("10.5.1.0/24") as Route;
  kernel.routes.delete("10.5.1.0/24");
  expect(tables.noteRoute(gone, true)).toBe(true);
  expect(tables.noteRoute(route("10.200.0.0/16", "1.1.1.1", 4), true)).toBe(false);
  expect(await tables.apply()).toEqual({ replaced: 1, deleted: 0, failures: [] });
  expect(kernel.routes.get("10.5.1.0/24")?.gateway).toBe("172.17.0.2");
});

test("route table - inline: a foreign route to a leased subnet is replaced by ours (takeover from flanneld)", async () => {
  const { kernel, tables } = setup();
  kernel.routes.set("10.5.1.0/24", route("10.5.1.0/24", "172.17.0.2", 3));
  tables.setDesired(peers(route("10.5.1.0/24", "172.17.0.2")));
  await tables.apply();
  expect(kernel.routes.get("10.5.1.0/24")?.protocol).toBe(77);
});

test("route table - a per-route failure is retried once after a fresh dump", async () => {
  const { kernel, tables } = setup();
  tables.setDesired(peers(route("10.5.1.0/24", "172.17.0.2"), route("10.5.2.0/24", "172.17.0.3")));
  kernel.failNext = { key: "10.5.2.0/24", errno: 105 };
  const result = await tables.apply();
  expect(result).toEqual({ replaced: 2, deleted: 0, failures: [] });
  expect(kernel.calls).toEqual([
    "route replace 10.5.1.0/24",
    "route replace 10.5.2.0/24",
    "route replace 10.5.2.0/24",
  ]);
  expect(kernel.dumps).toEqual(["routes", "routes"]);
});

test("route table - nexthops: one nexthop per route, written before it; a second apply changes nothing", async () => {
  const { kernel, tables } = setup("on");
  tables.setDesired(peers(route("10.5.1.0/24", "172.17.0.2"), route("10.5.2.0/24", "172.17.0.3")));
  expect(await tables.apply()).toEqual({ replaced: 4, deleted: 0, failures: [] });
  expect(kernel.dumps).toEqual(["routes", "nexthops"]);
  expect(kernel.calls).toEqual([
    `nexthop replace ${ID_1}`,
    `nexthop replace ${ID_2}`,
    "route replace 10.5.1.0/24",
    "route replace 10.5.2.0/24",
  ]);
  expect(kernel.nexthops.get(ID_1)).toEqual({ id: ID_1, gateway: "172.17.0.2", oif: 2, protocol: 77 });
  expect(kernel.routes.get("10.5.1.0/24")).toEqual({
    dst: "10.5.1.0/24",
    nhid: ID_1,
    protocol: 77,
    table: 254,
  });
  // The backends' routes stay as they were asked for (status shows `via`).
  expect(tables.routes.desired.get("10.5.1.0/24")?.gateway).toBe("172.17.0.2");
  tables.queueResync();
  expect(await tables.apply()).toEqual({ replaced: 0, deleted: 0, failures: [] });
});

test("route table - nexthops: a new gateway replaces the nexthop only; the route keeps its nhid", async () => {
  const { kernel, tables } = setup("on");
  tables.setDesired(peers(route("10.5.1.0/24", "172.17.0.2")));
  await tables.apply();
  kernel.calls.length = 0;
  tables.routes.setDesiredRoute("10.5.1.0/24", route("10.5.1.0/24", "172.17.0.9"));
  expect(await tables.apply()).toEqual({ replaced: 1, deleted: 0, failures: [] });
  expect(kernel.calls).toEqual([`nexthop replace ${ID_1}`]);
  expect(kernel.nexthops.get(ID_1)?.gateway).toBe("172.17.0.9");
});

test("route table - nexthops: a nexthop deleted behind our back took its route; both come back", async () => {
  const { kernel, tables } = setup("on");
  tables.setDesired(peers(route("10.5.1.0/24", "172.17.0.2"), route("10.5.2.0/24", "172.17.0.3")));
  tables.allowSweep();
  await tables.apply();
  const nh = kernel.nexthops.get(ID_1);
  if (nh === undefined) throw new Error("no nexthop");
  kernel.deleteNexthop(ID_1);
  expect(kernel.routes.has("10.5.1.0/24")).toBe(false);
  kernel.calls.length = 0;
  expect(tables.noteNexthop(nh, true)).toBe(true);
  // Someone else's nexthop going away is nothing to weft.
  expect(tables.noteNexthop({ id: 7, gateway: "172.17.0.7", oif: 2, protocol: 4 }, true)).toBe(false);
  expect(await tables.apply()).toEqual({ replaced: 2, deleted: 0, failures: [] });
  expect(kernel.calls).toEqual([`nexthop replace ${ID_1}`, "route replace 10.5.1.0/24"]);
  expect(kernel.routes.get("10.5.1.0/24")?.nhid).toBe(ID_1);
});

test("route table - nexthops: routes with inline gateways (flanneld's, an older weft's) are replaced in place", async () => {
  const { kernel, tables } = setup("on");
  kernel.routes.set("10.5.1.0/24", route("10.5.1.0/24", "172.17.0.2", 3));
  kernel.routes.set("10.5.2.0/24", route("10.5.2.0/24", "172.17.0.3", 77));
  tables.setDesired(peers(route("10.5.1.0/24", "172.17.0.2"), route("10.5.2.0/24", "172.17.0.3")));
  tables.allowSweep();
  await tables.apply();
  expect(kernel.calls.filter((c) => c.includes(" del "))).toEqual([]);
  expect(kernel.routes.get("10.5.1.0/24")).toEqual({
    dst: "10.5.1.0/24",
    nhid: ID_1,
    protocol: 77,
    table: 254,
  });
  expect(kernel.routes.get("10.5.2.0/24")?.nhid).toBe(ID_2);
});

test("route table - nexthops: weft's stale nexthops are swept after their routes; another owner's never", async () => {
  const { kernel, tables } = setup("on");
  kernel.nexthops.set(ID_2, { id: ID_2, gateway: "172.17.0.3", oif: 2, protocol: 77 });
  kernel.routes.set("10.5.2.0/24", { dst: "10.5.2.0/24", nhid: ID_2, protocol: 77, table: 254 });
  kernel.nexthops.set(5, { id: 5, gateway: "172.17.0.5", oif: 2, protocol: 4 });
  tables.setDesired(peers(route("10.5.1.0/24", "172.17.0.2")));
  await tables.apply();
  expect(kernel.nexthops.has(ID_2)).toBe(true);
  tables.allowSweep();
  kernel.calls.length = 0;
  expect((await tables.apply()).deleted).toBe(2);
  expect(kernel.calls).toEqual(["route del 10.5.2.0/24", `nexthop del ${ID_2}`]);
  expect([...kernel.nexthops.keys()].sort()).toEqual([5, ID_1].sort());
});

test("route table - nexthops: an id another owner's nexthop holds makes that one route use an inline gateway", async () => {
  const { kernel, tables } = setup("on");
  kernel.nexthops.set(ID_1, { id: ID_1, gateway: "192.0.2.1", oif: 9, protocol: 186 });
  tables.setDesired(peers(route("10.5.1.0/24", "172.17.0.2"), route("10.5.2.0/24", "172.17.0.3")));
  tables.allowSweep();
  await tables.apply();
  expect(kernel.nexthops.get(ID_1)).toEqual({ id: ID_1, gateway: "192.0.2.1", oif: 9, protocol: 186 });
  expect(kernel.routes.get("10.5.1.0/24")).toEqual(route("10.5.1.0/24", "172.17.0.2"));
  expect(kernel.routes.get("10.5.2.0/24")?.nhid).toBe(ID_2);
  // Once the other owner's nexthop is gone, the route moves onto a nexthop of its own.
  kernel.nexthops.delete(ID_1);
  tables.queueResync();
  await tables.apply();
  expect(kernel.routes.get("10.5.1.0/24")?.nhid).toBe(ID_1);
  expect(kernel.nexthops.get(ID_1)?.protocol).toBe(77);
});

test("route table - nexthops: a refused nexthop holds its route back, is told as a route refusal, and goes in once fixed", async () => {
  const { kernel, tables } = setup("on");
  kernel.refuseGateways.add("172.17.255.255");
  tables.setDesired(peers(route("10.5.1.0/24", "172.17.255.255"), route("10.5.2.0/24", "172.17.0.3")));
  tables.allowSweep();
  expect(await tables.apply()).toEqual({ replaced: 2, deleted: 0, failures: [] });
  expect(kernel.routes.has("10.5.1.0/24")).toBe(false);
  expect(kernel.calls.filter((c) => c === "route replace 10.5.1.0/24")).toEqual([]);
  const refused = tables.refused();
  expect(refused).toHaveLength(1);
  expect(refused[0]?.kind).toBe("route");
  expect(refused[0]?.entry.key).toBe("10.5.1.0/24");
  expect(refused[0]?.entry.message).toContain("invalid gateway");
  // The same object while nothing changed: the refusal log reports it once.
  expect(tables.refused()[0]?.entry).toBe(refused[0]?.entry as never);
  kernel.calls.length = 0;
  expect(await tables.apply({ retryRefused: false })).toEqual({ replaced: 0, deleted: 0, failures: [] });
  expect(kernel.calls).toEqual([]);
  // The lease is fixed: the next apply writes both, without waiting for the refused-entry retry.
  tables.routes.setDesiredRoute("10.5.1.0/24", route("10.5.1.0/24", "172.17.0.2"));
  expect(await tables.apply({ retryRefused: false })).toEqual({ replaced: 2, deleted: 0, failures: [] });
  expect(kernel.routes.get("10.5.1.0/24")?.nhid).toBe(ID_1);
  expect(tables.refused()).toEqual([]);
});

test("route table - nexthops off: routes use inline gateways and nexthops an earlier run left are swept", async () => {
  const { kernel, tables } = setup("off");
  kernel.nexthops.set(ID_1, { id: ID_1, gateway: "172.17.0.2", oif: 2, protocol: 77 });
  kernel.routes.set("10.5.1.0/24", { dst: "10.5.1.0/24", nhid: ID_1, protocol: 77, table: 254 });
  tables.setDesired(peers(route("10.5.1.0/24", "172.17.0.2")));
  tables.allowSweep();
  await tables.apply();
  expect(kernel.routes.get("10.5.1.0/24")).toEqual(route("10.5.1.0/24", "172.17.0.2"));
  expect(kernel.nexthops.size).toBe(0);
  expect(kernel.calls.filter((c) => c.startsWith("route del"))).toEqual([]);
});

test("route table - useInlineGateways moves every route off nexthops (a kernel without them)", async () => {
  const { kernel, tables } = setup("on");
  kernel.nexthopSupport = false;
  tables.setDesired(peers(route("10.5.1.0/24", "172.17.0.2")));
  await expect(tables.apply()).rejects.toThrow("Operation not supported");
  tables.routes.useInlineGateways();
  expect(tables.routes.usesNexthops).toBe(false);
  expect(await tables.apply()).toEqual({ replaced: 1, deleted: 0, failures: [] });
  expect(kernel.routes.get("10.5.1.0/24")).toEqual(route("10.5.1.0/24", "172.17.0.2"));
});

test("route table - detectNexthops: on, off as asked, unsupported with the kernel's reason", async () => {
  const { detectNexthops } = await import("../../../src/reconcile/route-table.ts");
  const kernel = new FakeKernel();
  expect(await detectNexthops(kernel, true)).toEqual({ mode: "on" });
  expect(await detectNexthops(kernel, false)).toEqual({ mode: "off" });
  kernel.nexthopSupport = false;
  expect(await detectNexthops(kernel, true)).toEqual({
    mode: "unsupported",
    reason: "Operation not supported",
  });
  expect(await detectNexthops(kernel, false)).toEqual({
    mode: "unsupported",
    reason: "Operation not supported",
  });
});
