import { expect, test } from "bun:test";
import type { BatchResult, RouteFilter } from "../../../src/netlink/netlink.ts";
import type { Route } from "../../../src/netlink/types.ts";
import { type RouteHandle, RouteTable } from "../../../src/reconcile/route-table.ts";

/** An in-memory kernel table with failure injection. */
class FakeKernel implements RouteHandle {
  readonly routes = new Map<string, Route>();
  readonly calls: string[] = [];
  failNext: { dst: string; errno: number } | undefined;

  async routeList(filter: RouteFilter = {}) {
    this.calls.push("list");
    const items = [...this.routes.values()].filter(
      (r) => filter.protocol === undefined || r.protocol === filter.protocol,
    );
    return { items, interrupted: false };
  }
  async routeReplace(routes: readonly Route[]): Promise<BatchResult> {
    this.calls.push(`replace ${routes.length}`);
    return this.#each(routes, (r) => this.routes.set(r.dst, r));
  }
  async routeDelete(routes: readonly Route[]): Promise<BatchResult> {
    this.calls.push(`delete ${routes.length}`);
    return this.#each(routes, (r) => {
      if (!this.routes.delete(r.dst)) throw Object.assign(new Error("No such process"), { errno: 3 });
    });
  }
  #each(routes: readonly Route[], op: (r: Route) => void): BatchResult {
    const failures = [];
    let applied = 0;
    for (const route of routes) {
      if (this.failNext?.dst === route.dst) {
        failures.push({
          route,
          errno: this.failNext.errno,
          errnoName: "ENETUNREACH",
          message: "Network is unreachable",
        });
        this.failNext = undefined;
        continue;
      }
      try {
        op(route);
        applied += 1;
      } catch (err) {
        failures.push({
          route,
          errno: (err as { errno: number }).errno,
          errnoName: "ESRCH",
          message: String(err),
        });
      }
    }
    return { applied, failures };
  }
}

const route = (dst: string, gateway: string, protocol = 77): Route => ({
  dst,
  gateway,
  oif: 2,
  protocol,
  table: 254,
});
const desired = (...routes: Route[]) => new Map(routes.map((r) => [r.dst, r]));

test("route table - apply installs the desired routes in one batch and a second apply changes nothing", async () => {
  const kernel = new FakeKernel();
  const table = new RouteTable(kernel, { protocol: 77 });
  table.setDesired(desired(route("10.5.1.0/24", "172.17.0.2"), route("10.5.2.0/24", "172.17.0.3")));
  expect(await table.apply()).toEqual({ replaced: 2, deleted: 0, failures: [] });
  expect(kernel.calls).toEqual(["list", "replace 2"]);
  expect(await table.apply()).toEqual({ replaced: 0, deleted: 0, failures: [] });
  expect(kernel.calls).toEqual(["list", "replace 2"]);
});

test("route table - nothing is swept before allowSweep, and foreign routes are never deleted", async () => {
  const kernel = new FakeKernel();
  kernel.routes.set("10.5.9.0/24", route("10.5.9.0/24", "172.17.0.9"));
  kernel.routes.set("10.99.0.0/16", route("10.99.0.0/16", "172.17.0.1", 4));
  const table = new RouteTable(kernel, { protocol: 77 });
  table.setDesired(desired(route("10.5.1.0/24", "172.17.0.2")));
  await table.apply();
  expect([...kernel.routes.keys()].sort()).toEqual(["10.5.1.0/24", "10.5.9.0/24", "10.99.0.0/16"]);
  table.allowSweep();
  expect((await table.plan()).deletes.map(([dst]) => dst)).toEqual(["10.5.9.0/24"]);
  expect(await table.apply()).toEqual({ replaced: 0, deleted: 1, failures: [] });
  expect([...kernel.routes.keys()].sort()).toEqual(["10.5.1.0/24", "10.99.0.0/16"]);
});

test("route table - a route deleted behind our back is noticed from the event and put back", async () => {
  const kernel = new FakeKernel();
  const table = new RouteTable(kernel, { protocol: 77 });
  table.setDesired(desired(route("10.5.1.0/24", "172.17.0.2")));
  await table.apply();
  const gone = kernel.routes.get("10.5.1.0/24") as Route;
  kernel.routes.delete("10.5.1.0/24");
  expect(table.noteKernelChange(gone, true)).toBe(true);
  expect(table.noteKernelChange(route("10.200.0.0/16", "1.1.1.1", 4), true)).toBe(false);
  expect(await table.apply()).toEqual({ replaced: 1, deleted: 0, failures: [] });
  expect(kernel.routes.get("10.5.1.0/24")?.gateway).toBe("172.17.0.2");
});

test("route table - a foreign route to a leased subnet is replaced by ours (takeover from flanneld)", async () => {
  const kernel = new FakeKernel();
  kernel.routes.set("10.5.1.0/24", route("10.5.1.0/24", "172.17.0.2", 3));
  const table = new RouteTable(kernel, { protocol: 77 });
  table.setDesired(desired(route("10.5.1.0/24", "172.17.0.2")));
  await table.apply();
  expect(kernel.routes.get("10.5.1.0/24")?.protocol).toBe(77);
});

test("route table - a per-route failure is retried once after a fresh dump", async () => {
  const kernel = new FakeKernel();
  const table = new RouteTable(kernel, { protocol: 77 });
  table.setDesired(desired(route("10.5.1.0/24", "172.17.0.2"), route("10.5.2.0/24", "172.17.0.3")));
  kernel.failNext = { dst: "10.5.2.0/24", errno: 101 };
  const result = await table.apply();
  expect(result.failures).toEqual([]);
  expect(result.replaced).toBe(2);
  expect(kernel.calls).toEqual(["list", "replace 2", "list", "replace 1"]);
});
