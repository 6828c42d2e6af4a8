import { expect, test } from "bun:test";
import type { PeerContext } from "../../../src/backend/backend.ts";
import { PeerTable } from "../../../src/backend/peer-table.ts";
import { parseVxlanData, VxlanBackend } from "../../../src/backend/vxlan.ts";
import { parseBackendConfig, type VxlanBackendConfig } from "../../../src/config/backend-config.ts";
import { encodeLeaseValue, type Lease, parseLease } from "../../../src/lease/lease.ts";
import { parseCidr } from "../../../src/net/ipv4.ts";
import { FakeLinks } from "./fake-links.ts";

const network = parseCidr("10.0.0.0/8");
const ext = { index: 2, name: "eth0", mtu: 1500, addresses: [parseCidr("172.17.42.41/24", "keep")] };
const ctx: PeerContext = { ownSubnet: parseCidr("10.10.0.0/20"), ext, protocol: 77 };

function lease(subnet: string, value: unknown): Lease {
  const parsed = parseLease(
    {
      key: `/p/subnets/${subnet.replace("/", "-")}`,
      value: JSON.stringify(value),
      revision: 1n,
      expires: true,
    },
    { network: network, subnetLen: undefined, subnets: "/p/subnets/" },
  );
  if (!parsed.ok) throw new Error(parsed.reason);
  return parsed.lease;
}
const vx = (ip: string, mac: string, vni = 1) => ({
  PublicIP: ip,
  PublicIPv6: null,
  BackendType: "vxlan",
  BackendData: { VNI: vni, VtepMAC: mac },
});

async function backend(config: Partial<VxlanBackendConfig> = {}) {
  const links = new FakeLinks();
  const b = new VxlanBackend({
    config: { ...(parseBackendConfig({ Type: "vxlan" }).backend as VxlanBackendConfig), ...config },
    ext,
    local: "172.17.42.41",
    network,
    handle: links,
  });
  await b.ensureDevice(undefined);
  return { b, links };
}

test("vxlan - a peer gets a permanent neighbour, an FDB entry and an onlink route, in flanneld's form", async () => {
  const { b, links } = await backend();
  const index = links.byName("flannel.1")?.index ?? 0;
  const out = b.peer(lease("10.13.48.0/20", vx("172.17.42.42", "9E:E7:65:F3:9D:31")), ctx);
  expect(out).toEqual({
    kind: "entries",
    entries: {
      neighs: [{ index, family: 2, ip: "10.13.48.0", mac: "9e:e7:65:f3:9d:31", state: 0x80 }],
      fdb: [{ index, mac: "9e:e7:65:f3:9d:31", dst: "172.17.42.42" }],
      routes: [
        { dst: "10.13.48.0/20", gateway: "10.13.48.0", oif: index, onlink: true, protocol: 77, table: 254 },
      ],
    },
  });
});

test("vxlan - own lease, overlaps, other backends, unusable VtepMACs and another VNI get nothing, with a reason", async () => {
  const { b } = await backend();
  expect(b.peer(lease("10.10.0.0/20", vx("172.17.42.41", "02:00:00:00:00:01")), ctx).kind).toBe("own");
  const reason = (l: Lease) => {
    const out = b.peer(l, ctx);
    return out.kind === "skipped" ? `${out.skipped.reason}: ${out.skipped.detail}` : out.kind;
  };
  expect(reason(lease("10.10.0.0/16", vx("172.17.42.9", "02:00:00:00:00:01")))).toStartWith("overlaps-own");
  expect(reason(lease("10.20.0.0/20", { PublicIP: "172.17.42.9", BackendType: "host-gw" }))).toBe(
    'backend: backend type "host-gw" is not vxlan',
  );
  for (const mac of ["ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00", "01:00:5e:00:00:01", "zz", 5]) {
    expect(reason(lease("10.20.0.0/20", vx("172.17.42.9", mac as string)))).toStartWith(
      "backend-data: BackendData.VtepMAC",
    );
  }
  expect(reason(lease("10.20.0.0/20", { PublicIP: "172.17.42.9", BackendType: "vxlan" }))).toStartWith(
    "backend-data: BackendData absent",
  );
  expect(reason(lease("10.20.0.0/20", vx("172.17.42.9", "02:00:00:00:00:01", 7)))).toBe(
    "backend-data: BackendData.VNI 7 differs from this cluster's VNI 1",
  );
});

test("vxlan - BackendData field names match case-insensitively, as Go's encoding/json does", () => {
  expect(parseVxlanData({ vni: 1, vtepmac: "02:00:00:00:00:0A" })).toEqual({
    vni: 1,
    vtepMac: "02:00:00:00:00:0a",
  });
  expect(parseVxlanData({ VtepMAC: "02:00:00:00:00:0a" })).toEqual({
    vni: undefined,
    vtepMac: "02:00:00:00:00:0a",
  });
  expect(parseVxlanData({ VNI: "1", VtepMAC: "02:00:00:00:00:0a" })).toBe(
    'BackendData.VNI "1" is not a whole number',
  );
});

test("vxlan - DirectRouting: a peer on the external interface's network gets the host-gw route, others VXLAN", async () => {
  const { b } = await backend({ directRouting: true });
  const near = b.peer(lease("10.20.0.0/20", vx("172.17.42.42", "02:00:00:00:00:01")), ctx);
  expect(near).toEqual({
    kind: "entries",
    entries: {
      routes: [{ dst: "10.20.0.0/20", gateway: "172.17.42.42", oif: 2, protocol: 77, table: 254 }],
      neighs: [],
      fdb: [],
    },
  });
  const far = b.peer(lease("10.30.0.0/20", vx("172.17.43.41", "02:00:00:00:00:02")), ctx);
  expect(far.kind === "entries" && far.entries.routes[0]?.onlink).toBe(true);
  expect(far.kind === "entries" && far.entries.fdb[0]?.dst).toBe("172.17.43.41");
});

test("vxlan - MTU is the external MTU (or Backend.MTU) minus 50, and the lease carries VNI and the device MAC", async () => {
  const { b, links } = await backend({ vni: 100 });
  expect(b.mtu()).toBe(1450);
  expect(links.byName("flannel.100")?.mtu).toBe(1450);
  const mac = links.byName("flannel.100")?.mac ?? "";
  expect(
    encodeLeaseValue({ publicIP: "172.17.42.41", backendType: b.type, backendData: b.backendData() }),
  ).toBe(
    `{"PublicIP":"172.17.42.41","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":100,"VtepMAC":"${mac}"}}`,
  );
  expect((await backend({ mtu: 9000 })).b.mtu()).toBe(8950);
});

test("vxlan - a table of leases: one event changes one peer's entries; a MAC taken over by another lease survives the first one's removal", async () => {
  const { b } = await backend();
  const a = lease("10.20.0.0/20", vx("172.17.42.42", "02:00:00:00:00:01"));
  const table = new PeerTable((l, c) => b.peer(l, c), ctx, [a]);
  expect([...table.fdb.keys()]).toEqual(["02:00:00:00:00:01"]);
  const moved = lease("10.20.0.0/20", vx("172.17.42.43", "02:00:00:00:00:02"));
  const changes = table.update(a.key, moved);
  expect([...changes.fdb.entries()]).toEqual([
    ["02:00:00:00:00:01", undefined],
    ["02:00:00:00:00:02", { index: 3, mac: "02:00:00:00:00:02", dst: "172.17.42.43" }],
  ]);
  expect([...changes.neighs.values()].map((n) => n?.mac)).toEqual(["02:00:00:00:00:02"]);
  // A second lease that (wrongly) publishes the same MAC takes the FDB entry over ...
  const clone = lease("10.21.0.0/20", vx("172.17.42.44", "02:00:00:00:00:02"));
  table.update(clone.key, clone);
  expect(table.fdb.get("02:00:00:00:00:02")?.dst).toBe("172.17.42.44");
  // ... and removing the first lease leaves it to the second.
  table.update(a.key, undefined);
  expect(table.fdb.get("02:00:00:00:00:02")?.dst).toBe("172.17.42.44");
  expect([...table.routes.keys()]).toEqual(["10.21.0.0/20"]);
});
