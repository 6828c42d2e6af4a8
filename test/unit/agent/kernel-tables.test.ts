import { expect, test } from "bun:test";
import { PeerTable } from "../../../src/backend/peer-table.ts";
import { VxlanBackend } from "../../../src/backend/vxlan.ts";
import { parseLease } from "../../../src/lease/lease.ts";
import { parseCidr } from "../../../src/net/ipv4.ts";
import type { Neigh } from "../../../src/netlink/types.ts";
import { KernelTables } from "../../../src/reconcile/kernel-tables.ts";
import { FakeLinks } from "../backend/fake-links.ts";
import { FakeKernel } from "../fixtures/fake-kernel.ts";

const network = parseCidr("10.5.0.0/16");
const ext = { index: 2, name: "eth0", mtu: 1500, addresses: [parseCidr("172.17.42.41/24", "keep")] };

async function setup() {
  const links = new FakeLinks();
  const config = {
    type: "vxlan" as const,
    vni: 1,
    port: 0,
    gbp: false,
    learning: false,
    directRouting: false,
    mtu: undefined,
  };
  const backend = new VxlanBackend({ config, ext, local: "172.17.42.41", network, handle: links });
  await backend.ensureDevice(undefined);
  const kernel = new FakeKernel();
  const tables = new KernelTables(kernel, {
    protocol: 77,
    network,
    deviceIndex: () => backend.deviceIndex(),
  });
  const ctx = { ownSubnet: parseCidr("10.5.1.0/24"), ext, protocol: 77 };
  const lease = (subnet: string, ip: string, mac: string) => {
    const parsed = parseLease(
      {
        key: `/p/subnets/${subnet.replace("/", "-")}`,
        value: JSON.stringify({ PublicIP: ip, BackendType: "vxlan", BackendData: { VNI: 1, VtepMAC: mac } }),
        revision: 1n,
        expires: true,
      },
      { network: network, subnetLen: undefined, subnets: "/p/subnets/" },
    );
    if (!parsed.ok) throw new Error(parsed.reason);
    return parsed.lease;
  };
  const table = new PeerTable((l, c) => backend.peer(l, c), ctx);
  return { backend, kernel, tables, table, lease, index: backend.deviceIndex() ?? 0 };
}

test("kernel tables - writes go neighbour, FDB, route; deletes route, FDB, neighbour, all before any write", async () => {
  const { kernel, tables, table, lease } = await setup();
  const a = lease("10.5.2.0/24", "172.17.42.42", "02:00:00:00:00:02");
  table.update(a.key, a);
  tables.setDesired(table);
  tables.allowSweep();
  expect(await tables.apply()).toEqual({ replaced: 3, deleted: 0, failures: [] });
  expect(kernel.calls).toEqual([
    "neigh replace 10.5.2.0",
    "fdb replace 02:00:00:00:00:02",
    "route replace 10.5.2.0/24",
  ]);
  kernel.calls.length = 0;
  // The peer leaves and another joins in the same apply.
  const b = lease("10.5.3.0/24", "172.17.42.43", "02:00:00:00:00:03");
  tables.setDesiredChanges(table.update(a.key, undefined));
  tables.setDesiredChanges(table.update(b.key, b));
  expect((await tables.apply()).deleted).toBe(3);
  expect(kernel.calls).toEqual([
    "route del 10.5.2.0/24",
    "fdb del 02:00:00:00:00:02",
    "neigh del 10.5.2.0",
    "neigh replace 10.5.3.0",
    "fdb replace 02:00:00:00:00:03",
    "route replace 10.5.3.0/24",
  ]);
});

test("kernel tables - nothing is swept before allowSweep, and foreign neighbours and FDB entries never are", async () => {
  const { kernel, tables, table, index } = await setup();
  // Stale entries of weft (a departed peer) and foreign ones on the same device.
  await kernel.neighReplace([
    { index, family: 2, ip: "10.5.9.0", mac: "02:00:00:00:00:09", state: 0x80 },
    { index, family: 2, ip: "192.0.2.50", mac: "02:00:00:00:00:50", state: 0x80 },
    { index, family: 2, ip: "10.5.8.7", mac: "02:00:00:00:00:87", state: 0x02 },
  ]);
  await kernel.fdbReplace([
    { index, mac: "02:00:00:00:00:09", dst: "172.17.42.49" },
    { index, mac: "00:00:00:00:00:00", dst: "172.17.42.99" },
  ]);
  await kernel.routeReplace([
    { dst: "10.5.9.0/24", gateway: "10.5.9.0", oif: index, onlink: true, protocol: 77, table: 254 },
  ]);
  kernel.calls.length = 0;
  tables.setDesired(table);
  expect(await tables.apply()).toEqual({ replaced: 0, deleted: 0, failures: [] });
  tables.allowSweep();
  await tables.apply();
  expect(kernel.calls).toEqual(["route del 10.5.9.0/24", "fdb del 02:00:00:00:00:09", "neigh del 10.5.9.0"]);
  expect([...kernel.neighs.values()].map((n) => n.ip ?? n.mac).sort()).toEqual([
    "10.5.8.7",
    "172.17.42.99",
    "192.0.2.50",
  ]);
});

test("kernel tables - a deleted neighbour or FDB entry reported by the monitor is rewritten; a foreign one is ignored", async () => {
  const { kernel, tables, table, lease, index } = await setup();
  const a = lease("10.5.2.0/24", "172.17.42.42", "02:00:00:00:00:02");
  table.update(a.key, a);
  tables.setDesired(table);
  tables.allowSweep();
  await tables.apply();
  kernel.calls.length = 0;
  const neigh = [...kernel.neighs.values()].find((n) => n.family === 2) as Neigh;
  const fdb = [...kernel.neighs.values()].find((n) => n.family === 7) as Neigh;
  expect(tables.noteNeigh({ index, family: 2, ip: "192.0.2.50", state: 0x80 }, true)).toBe(false);
  expect(tables.noteNeigh({ ...neigh, index: index + 1 }, true)).toBe(false);
  await kernel.neighDelete([neigh]);
  await kernel.fdbDelete([{ index, mac: fdb.mac ?? "", dst: fdb.ip ?? "" }]);
  kernel.calls.length = 0;
  expect(tables.noteNeigh(neigh, true)).toBe(true);
  expect(tables.noteNeigh(fdb, true)).toBe(true);
  // Our own write echoed back is no drift.
  expect(tables.noteNeigh({ ...neigh }, false)).toBe(false);
  await kernel.neighDelete([neigh]);
  kernel.calls.length = 0;
  tables.noteNeigh(neigh, true);
  await tables.apply();
  expect(kernel.calls).toEqual(["neigh replace 10.5.2.0", "fdb replace 02:00:00:00:00:02"]);
});
