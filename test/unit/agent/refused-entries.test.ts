// Entries the kernel refuses as they are (issue 12, item 2): reported apart from failures, left out of
// later applies until a retry is asked for or the entry changes, and forgotten once it goes in.
import { expect, test } from "bun:test";
import type { PeerTable } from "../../../src/backend/peer-table.ts";
import type { BatchResult } from "../../../src/netlink/netlink.ts";
import type { Route } from "../../../src/netlink/types.ts";
import { KernelTables } from "../../../src/reconcile/kernel-tables.ts";

/** A kernel that refuses routes via `refuse` with `errno`; every route written is logged. */
class Kernel {
  readonly routes = new Map<string, Route>();
  readonly writes: string[] = [];
  refuse = "172.17.255.255";
  errno = 22;
  async routeList() {
    return { items: [...this.routes.values()], interrupted: false };
  }
  async routeReplace(routes: readonly Route[]): Promise<BatchResult> {
    const failures = [];
    for (const r of routes) {
      this.writes.push(r.dst);
      if (r.gateway === this.refuse)
        failures.push({
          route: r,
          errno: this.errno,
          errnoName: "E",
          message: "Nexthop has invalid gateway",
        });
      else this.routes.set(r.dst, r);
    }
    return { applied: routes.length - failures.length, failures };
  }
  async routeDelete(routes: readonly Route[]): Promise<BatchResult> {
    for (const r of routes) this.routes.delete(r.dst);
    return { applied: routes.length, failures: [] };
  }
  neighList = async () => ({ items: [], interrupted: false });
  fdbList = async () => ({ items: [], interrupted: false });
}

const route = (dst: string, gateway: string): Route => ({ dst, gateway, oif: 2, protocol: 77, table: 254 });
const desired = (...routes: Route[]) =>
  ({
    routes: new Map(routes.map((r) => [r.dst, r])),
    neighs: new Map(),
    fdb: new Map(),
  }) as unknown as PeerTable;

function setup() {
  const kernel = new Kernel();
  const tables = new KernelTables(kernel as never, {
    protocol: 77,
    network: { ip: 0, prefixLen: 0 },
    deviceIndex: () => undefined,
  });
  return { kernel, tables };
}

test("kernel tables - a refused route is no failure, is not written again until a retry, and goes in once fixed", async () => {
  const { kernel, tables } = setup();
  tables.setDesired(desired(route("10.5.1.0/24", "172.17.42.42"), route("10.5.2.0/24", "172.17.255.255")));
  const first = await tables.apply();
  expect(first.failures).toEqual([]);
  expect(first.replaced).toBe(1);
  // Tried twice: once, and once more after a fresh dump.
  expect(kernel.writes.filter((d) => d === "10.5.2.0/24")).toHaveLength(2);
  const refused = tables.refused();
  expect(refused.map((r) => `${r.kind} ${r.entry.key} ${r.entry.errno}`)).toEqual(["route 10.5.2.0/24 22"]);

  // Later applies leave it out: no write, no dump-and-retry.
  kernel.writes.length = 0;
  tables.queueResync();
  expect((await tables.apply({ retryRefused: false })).failures).toEqual([]);
  expect(kernel.writes).toEqual([]);
  // The same refusal is the same object: reported once.
  expect(tables.refused()[0]?.entry).toBe(refused[0]?.entry);

  // The slow retry writes it again.
  expect((await tables.apply({ retryRefused: true })).failures).toEqual([]);
  expect(kernel.writes.filter((d) => d === "10.5.2.0/24")).toHaveLength(2);

  // A changed entry is tried at once, and once in, it is no longer refused.
  kernel.writes.length = 0;
  tables.setDesired(desired(route("10.5.1.0/24", "172.17.42.42"), route("10.5.2.0/24", "172.17.42.43")));
  expect((await tables.apply({ retryRefused: false })).replaced).toBe(1);
  expect(kernel.writes).toEqual(["10.5.2.0/24"]);
  expect(tables.refused()).toEqual([]);
});

test("kernel tables - a failure that is about the moment (ENOBUFS) stays a failure, retried at every apply", async () => {
  const { kernel, tables } = setup();
  kernel.errno = 105;
  tables.setDesired(desired(route("10.5.2.0/24", "172.17.255.255")));
  expect((await tables.apply({ retryRefused: false })).failures.map((f) => f.errno)).toEqual([105]);
  expect(tables.refused()).toEqual([]);
  kernel.writes.length = 0;
  await tables.apply({ retryRefused: false });
  expect(kernel.writes).toHaveLength(2);
});
