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
