import { expect, test } from "bun:test";
import { removeVxlanDevices, VxlanDevice, type VxlanDeviceSpec } from "../../../src/backend/vxlan-device.ts";
import { parseCidr } from "../../../src/net/ipv4.ts";
import { FakeLinks } from "./fake-links.ts";

const spec: VxlanDeviceSpec = {
  name: "flannel.1",
  vni: 1,
  port: 0,
  local: "172.17.42.41",
  link: 2,
  learning: false,
  gbp: false,
  mtu: 1450,
  network: parseCidr("10.5.0.0/16"),
};
const own = parseCidr("10.5.7.0/24");

test("vxlan device - created absent, then left alone: a second ensure changes nothing", async () => {
  const links = new FakeLinks();
  const device = new VxlanDevice(links, spec);
  const first = await device.ensure(own);
  expect(first.changed).toBe(true);
  expect(links.calls).toEqual(["add flannel.1", "addr add 10.5.7.0/32", "up #3"]);
  expect(links.byName("flannel.1")).toMatchObject({
    mtu: 1450,
    up: true,
    vxlan: { id: 1, port: 8472, learning: false },
  });
  links.calls.length = 0;
  expect(await device.ensure(own)).toEqual({ index: 3, changed: false, actions: [] });
  expect(links.calls).toEqual([]);
});

test("vxlan device - a compatible device (flanneld's) is taken over with its MAC; MTU, state and stray addresses are fixed", async () => {
  const links = new FakeLinks();
  const theirs = await links.linkAddVxlan({
    name: "flannel.1",
    id: 1,
    local: "172.17.42.41",
    link: 2,
    learning: false,
    mtu: 1400,
    mac: "56:2c:0a:b4:6e:0e",
  });
  await links.addrReplace({ index: theirs.index, family: 2, address: "10.5.9.0", prefixLen: 32 });
  await links.addrReplace({ index: theirs.index, family: 2, address: "192.0.2.1", prefixLen: 32 });
  links.calls.length = 0;
  const device = new VxlanDevice(links, spec);
  const state = await device.ensure(own);
  expect(state.actions).toEqual([
    "took over the existing flannel.1 (MAC 56:2c:0a:b4:6e:0e)",
    "set flannel.1 MTU 1400 → 1450",
    "removed 10.5.9.0/32 from flannel.1",
    "added 10.5.7.0/32 to flannel.1",
    "set flannel.1 up",
  ]);
  expect(device.mac).toBe("56:2c:0a:b4:6e:0e");
  expect(links.addrs.map((a) => a.address).sort()).toEqual(["10.5.7.0", "192.0.2.1"]);
});

test("vxlan device - an incompatible device is re-created with the same MAC; a deleted one comes back with it too", async () => {
  const links = new FakeLinks();
  await links.linkAddVxlan({
    name: "flannel.1",
    id: 1,
    local: "172.17.42.99",
    link: 2,
    mac: "56:2c:0a:b4:6e:0e",
  });
  const device = new VxlanDevice(links, spec);
  const state = await device.ensure(undefined);
  expect(state.actions[0]).toBe("deleted flannel.1 (local 172.17.42.99 ≠ 172.17.42.41)");
  expect(links.byName("flannel.1")?.mac).toBe("56:2c:0a:b4:6e:0e");
  const index = links.byName("flannel.1")?.index ?? 0;
  await links.linkDelete(index);
  const again = await device.ensure(own);
  expect(again.changed).toBe(true);
  expect(links.byName("flannel.1")?.mac).toBe("56:2c:0a:b4:6e:0e");
  expect(links.byName("flannel.1")?.index).not.toBe(index);
});

test("vxlan device - a dry run reports what it would do and changes nothing", async () => {
  const links = new FakeLinks();
  const device = new VxlanDevice(links, spec);
  expect((await device.ensure(own, { dryRun: true })).actions).toEqual([
    "create flannel.1 (absent; vxlan id 1, MTU 1450)",
  ]);
  expect(links.calls).toEqual([]);
  expect(links.links.size).toBe(0);
});

test("vxlan device - switching to host-gw removes every flannel.<n> vxlan device and nothing else", async () => {
  const links = new FakeLinks();
  await links.linkAddVxlan({ name: "flannel.1", id: 1 });
  await links.linkAddVxlan({ name: "flannel.100", id: 100 });
  await links.linkAddVxlan({ name: "vxlan0", id: 5 });
  expect(await removeVxlanDevices(links)).toEqual(["flannel.1", "flannel.100"]);
  expect([...links.links.values()].map((l) => l.name)).toEqual(["vxlan0"]);
});
