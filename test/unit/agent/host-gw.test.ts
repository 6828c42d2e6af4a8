import { expect, test } from "bun:test";
import { hostGwRoutes } from "../../../src/backend/host-gw.ts";
import { type Lease, parseLease } from "../../../src/lease/lease.ts";
import { parseCidr } from "../../../src/net/ipv4.ts";

const network = parseCidr("192.168.0.0/16");
function lease(subnet: string, publicIP: string, backendType = "host-gw"): Lease {
  const parsed = parseLease(
    {
      key: `/p/subnets/${subnet.replace("/", "-")}`,
      value: JSON.stringify({ PublicIP: publicIP, BackendType: backendType }),
      revision: 1n,
      expires: true,
    },
    { network: network, subnetLen: undefined, subnets: "/p/subnets/" },
  );
  if (!parsed.ok) throw new Error(parsed.reason);
  return parsed.lease;
}
const ext = { index: 2, name: "eth0", mtu: 1500, addresses: [parseCidr("172.17.42.41/16", "keep")] };

test("host-gw - one route via each directly reachable peer, marked with weft's protocol", () => {
  const state = hostGwRoutes({
    leases: [
      lease("192.168.1.192/26", "172.17.42.41"),
      lease("192.168.2.0/26", "172.17.42.42"),
      lease("192.168.3.64/26", "172.17.42.43"),
    ],
    ownSubnet: parseCidr("192.168.1.192/26"),
    ext,
    protocol: 77,
  });
  expect([...state.routes.values()]).toEqual([
    { dst: "192.168.2.0/26", gateway: "172.17.42.42", oif: 2, protocol: 77, table: 254 },
    { dst: "192.168.3.64/26", gateway: "172.17.42.43", oif: 2, protocol: 77, table: 254 },
  ]);
  expect(state.skipped).toEqual([]);
});

test("host-gw - peers off-link, of another backend, or overlapping our subnet get no route and are reported", () => {
  const state = hostGwRoutes({
    leases: [
      lease("192.168.2.0/26", "10.9.9.9"),
      lease("192.168.3.0/26", "172.17.42.44", "vxlan"),
      lease("192.168.1.0/24", "172.17.42.45"),
    ],
    ownSubnet: parseCidr("192.168.1.192/26"),
    ext,
    protocol: 77,
  });
  expect(state.routes.size).toBe(0);
  expect(state.skipped.map((s) => [s.lease.subnetText, s.reason])).toEqual([
    ["192.168.2.0/26", "unreachable"],
    ["192.168.3.0/26", "backend"],
    ["192.168.1.0/24", "overlaps-own"],
  ]);
});

test("peer table - sync with a whole new lease set updates only the leases that are new objects or gone", async () => {
  const { HostGwBackend } = await import("../../../src/backend/host-gw.ts");
  const { PeerTable } = await import("../../../src/backend/peer-table.ts");
  const backend = new HostGwBackend(ext, {} as never);
  const ctx = { ownSubnet: parseCidr("192.168.1.192/26"), ext, protocol: 77 };
  const a = lease("192.168.2.0/26", "172.17.42.42");
  const b = lease("192.168.3.64/26", "172.17.42.43");
  const c = lease("192.168.4.0/26", "172.17.42.44");
  const table = new PeerTable((l, x) => backend.peer(l, x), ctx, [a, b, c]);
  const moved = lease("192.168.3.64/26", "172.17.42.53");
  const seen: string[] = [];
  const count = table.sync(
    new Map([
      [a.key, a],
      [moved.key, moved],
    ]),
    (key, changes) =>
      seen.push(`${key} ${[...changes.routes.values()].map((r) => r?.gateway ?? "gone").join(",")}`),
  );
  expect(count).toBe(2);
  expect(seen.sort()).toEqual([`${b.key} 172.17.42.53`, `${c.key} gone`]);
  expect([...table.routes.values()].map((r) => `${r.dst} ${r.gateway}`).sort()).toEqual([
    "192.168.2.0/26 172.17.42.42",
    "192.168.3.64/26 172.17.42.53",
  ]);
  // The same objects again: nothing to do.
  expect(
    table.sync(
      new Map([
        [a.key, a],
        [moved.key, moved],
      ]),
      () => seen.push("again"),
    ),
  ).toBe(0);
});
