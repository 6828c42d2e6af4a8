// The external interface and PublicIP as flanneld v0.28.9 picks them (pkg/ipmatch LookupExtIface, pkg/ip
// GetInterfaceIP4Addrs/compareAddrs, main.go's order of --iface, --iface-regex, --iface-can-reach), on a
// fake kernel whose address list is in the kernel's order, not flanneld's.
import { describe, expect, test } from "bun:test";
import {
  chooseExternal,
  type ExternalFlags,
  type ExtIfaceNetlink,
  usableAddresses,
} from "../../../src/agent/ext-iface.ts";
import { WeftError, WeftErrorCode } from "../../../src/errors.ts";
import { type Addr, IFA_F, type Link, type Route } from "../../../src/netlink/types.ts";

const PERMANENT = IFA_F.PERMANENT;
const link = (index: number, name: string, mtu = 1500): Link => ({ index, name, mtu, up: true, flags: 0 });
const addr = (index: number, cidr: string, flags: number, scope = 0): Addr => {
  const [address = "", len = "32"] = cidr.split("/");
  return { index, family: address.includes(":") ? 10 : 2, address, prefixLen: Number(len), scope, flags };
};

const LINKS = [link(1, "lo", 65536), link(2, "eth0"), link(3, "eth1"), link(4, "docker0")];
/** eth0 in the kernel's order: link-local first, then a DHCP address, a deprecated one, a static one, a VIP. */
const ETH0 = [
  addr(2, "169.254.7.7/16", PERMANENT),
  addr(2, "10.20.0.5/24", 0),
  addr(2, "10.40.0.1/24", PERMANENT | IFA_F.DEPRECATED),
  addr(2, "192.168.50.10/24", PERMANENT),
  addr(2, "10.20.0.100/24", PERMANENT | IFA_F.SECONDARY),
];
const ADDRS = [
  addr(1, "127.0.0.1/8", PERMANENT, 254),
  ...ETH0,
  addr(3, "172.16.5.5/24", PERMANENT),
  addr(2, "fe80::1/64", PERMANENT),
];
const ROUTES: Route[] = [
  { dst: "0.0.0.0/0", gateway: "10.20.0.1", oif: 2, table: 254, scope: 0, type: 1 },
  { dst: "10.20.0.0/24", oif: 2, table: 254, scope: 253, type: 1, prefsrc: "10.20.0.5" },
  { dst: "192.168.50.0/24", oif: 2, table: 254, scope: 253, type: 1, prefsrc: "192.168.50.10" },
  { dst: "172.16.5.0/24", oif: 3, table: 254, scope: 253, type: 1, prefsrc: "172.16.5.5" },
  { dst: "10.99.0.0/16", gateway: "172.16.5.1", oif: 3, table: 254, scope: 0, type: 1 },
  { dst: "10.99.7.0/24", gateway: "172.16.5.2", oif: 3, table: 254, scope: 0, type: 1, priority: 20 },
  { dst: "10.99.7.0/24", gateway: "10.20.0.1", oif: 2, table: 254, scope: 0, type: 1, priority: 10 },
  { dst: "10.66.0.0/16", table: 254, scope: 0, type: 7 },
  { dst: "8.8.8.8/32", oif: 3, table: 100, scope: 0, type: 1 },
];

function kernel(
  links: readonly Link[] = LINKS,
  addrs: readonly Addr[] = ADDRS,
  routes: readonly Route[] = ROUTES,
): ExtIfaceNetlink {
  return {
    linkList: async () => ({ items: [...links], interrupted: false }),
    addrList: async (filter = {}) => ({
      items: addrs.filter((a) => filter.family === undefined || a.family === filter.family),
      interrupted: false,
    }),
    routeList: async (filter = {}) => ({
      items: routes.filter((r) => filter.table === 0 || (r.table ?? 254) === (filter.table ?? 254)),
      interrupted: false,
    }),
  };
}

const flags = (over: Partial<ExternalFlags> = {}): ExternalFlags => ({
  iface: [],
  ifaceRegex: [],
  publicIp: undefined,
  ...over,
});

async function pick(over: Partial<ExternalFlags>, netlink = kernel()) {
  const choice = await chooseExternal(netlink, flags(over));
  return {
    name: choice.ext.name,
    ifaceIP: choice.ifaceIP,
    publicIP: choice.publicIP,
    matched: choice.matched,
  };
}

async function refusal(over: Partial<ExternalFlags>, netlink = kernel()): Promise<WeftError> {
  const err = await chooseExternal(netlink, flags(over)).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(WeftError);
  expect((err as WeftError).code).toBe(WeftErrorCode.FlagInvalid);
  expect((err as WeftError).message).not.toContain("\n");
  return err as WeftError;
}

describe("ext-iface address order", () => {
  test("ext-iface - global before link-local, permanent before dynamic, primary before secondary, deprecated skipped", () => {
    expect(usableAddresses(ETH0).map((a) => a.address)).toEqual([
      "192.168.50.10",
      "10.20.0.100",
      "10.20.0.5",
      "169.254.7.7",
    ]);
  });

  test("ext-iface - ties keep the kernel's order; loopback, multicast and broadcast are never usable", () => {
    const list = [
      addr(2, "10.1.0.2/24", PERMANENT),
      addr(2, "127.0.0.2/8", PERMANENT),
      addr(2, "10.1.0.1/24", PERMANENT),
      addr(2, "224.0.0.9/32", PERMANENT),
      addr(2, "255.255.255.255/32", PERMANENT),
    ];
    expect(usableAddresses(list).map((a) => a.address)).toEqual(["10.1.0.2", "10.1.0.1"]);
  });

  test("ext-iface - without flags from the kernel every address counts as dynamic, in kernel order", () => {
    const list = [addr(2, "10.1.0.2/24", 0), addr(2, "10.1.0.1/24", 0)].map(({ flags: _, ...a }) => a);
    expect(usableAddresses(list).map((a) => a.address)).toEqual(["10.1.0.2", "10.1.0.1"]);
  });
});

describe("ext-iface choice", () => {
  test("ext-iface - no flags: the default route's interface and its first address in flanneld's order", async () => {
    expect(await pick({})).toEqual({
      name: "eth0",
      ifaceIP: "192.168.50.10",
      publicIP: "192.168.50.10",
      matched: "the default route",
    });
  });

  test("ext-iface - --iface=<IP> makes that address the interface address and the PublicIP", async () => {
    expect(await pick({ iface: ["10.20.0.100"] })).toMatchObject({
      name: "eth0",
      ifaceIP: "10.20.0.100",
      publicIP: "10.20.0.100",
    });
    // flanneld finds the interface by any of its addresses, deprecated or not, in Go's ::ffff: form too.
    expect((await pick({ iface: ["10.40.0.1"] })).ifaceIP).toBe("10.40.0.1");
    expect(await pick({ iface: ["::ffff:172.16.5.5"] })).toMatchObject({
      name: "eth1",
      ifaceIP: "172.16.5.5",
    });
  });

  test("ext-iface - --iface=<name> with --public-ip: the interface's first address, the given PublicIP", async () => {
    const choice = await chooseExternal(kernel(), flags({ iface: ["eth0"], publicIp: "203.0.113.9" }));
    expect(choice.ifaceIP).toBe("192.168.50.10");
    expect(choice.publicIP).toBe("203.0.113.9");
    expect(choice.ext.addresses).toHaveLength(ETH0.length);
  });

  test("ext-iface - --iface values are tried in order; a miss, or an interface without a usable address, goes on", async () => {
    const onlyDeprecated = [addr(4, "10.50.0.1/24", PERMANENT | IFA_F.DEPRECATED), ...ADDRS];
    const choice = await chooseExternal(
      kernel(LINKS, onlyDeprecated),
      flags({ iface: ["eth9", "docker0", "10.0.0.99", "eth1", "eth0"] }),
    );
    expect(choice.ext.name).toBe("eth1");
    expect(choice.matched).toBe("--iface=eth1");
    expect(choice.misses).toEqual([
      "--iface=eth9: no interface is named eth9",
      "--iface=docker0: interface docker0 has no usable IPv4 address (global or link-local, not deprecated)",
      "--iface=10.0.0.99: no interface has the address 10.0.0.99",
    ]);
  });

  test("ext-iface - --iface-regex is tried after every --iface misses", async () => {
    expect(await pick({ iface: ["eth9"], ifaceRegex: ["^eth1$"] })).toMatchObject({
      name: "eth1",
      ifaceIP: "172.16.5.5",
      matched: "--iface-regex=^eth1$",
    });
  });

  test("ext-iface - --iface-regex matches every interface's addresses before any name; the matching address is used", async () => {
    // "eth0" is a name hit, but eth1's address matches first; on eth0 the VIP matches before the DHCP address.
    expect(await pick({ ifaceRegex: ["^eth0$|^172\\."] })).toMatchObject({
      name: "eth1",
      ifaceIP: "172.16.5.5",
    });
    expect(await pick({ ifaceRegex: ["^10\\.20\\."] })).toMatchObject({
      name: "eth0",
      ifaceIP: "10.20.0.100",
    });
    expect(await pick({ ifaceRegex: ["(?i)^ETH0$"] })).toMatchObject({
      name: "eth0",
      ifaceIP: "192.168.50.10",
    });
  });

  test("ext-iface - a regex naming an interface without a usable address misses, as loopback does", async () => {
    const err = await refusal({ ifaceRegex: ["^lo$"] });
    expect(err.message).toStartWith(
      "no interface matches --iface-regex=^lo$: interface lo has no usable IPv4 address",
    );
    expect(err.message).toContain(
      "interfaces here: lo [no IPv4], eth0 [192.168.50.10 10.20.0.100 10.20.0.5 169.254.7.7]",
    );
  });

  test("ext-iface - --public-ip alone selects the interface that owns the address", async () => {
    expect(await pick({ publicIp: "172.16.5.5" })).toEqual({
      name: "eth1",
      ifaceIP: "172.16.5.5",
      publicIP: "172.16.5.5",
      matched: "--public-ip=172.16.5.5",
    });
  });

  test("ext-iface - --public-ip alone that no interface owns is refused, saying to add --iface", async () => {
    const err = await refusal({ publicIp: "203.0.113.9" });
    expect(err.field).toBe("--public-ip");
    expect(err.message).toStartWith("--public-ip=203.0.113.9: no interface has the address 203.0.113.9;");
    expect(err.message).toContain("add --iface=<name or IP>");
  });

  test("ext-iface - --iface-can-reach: the route's device and its src", async () => {
    expect(await pick({ ifaceCanReach: "10.20.0.77" })).toMatchObject({ name: "eth0", ifaceIP: "10.20.0.5" });
    // No src on the route: the device's first primary address on the gateway's prefix.
    expect(await pick({ ifaceCanReach: "10.99.3.4" })).toMatchObject({ name: "eth1", ifaceIP: "172.16.5.5" });
    expect(await pick({ ifaceCanReach: "8.8.8.8" })).toMatchObject({ name: "eth0", ifaceIP: "10.20.0.5" });
    // Same prefix twice: the lower metric wins.
    expect(await pick({ ifaceCanReach: "10.99.7.1" })).toMatchObject({ name: "eth0", ifaceIP: "10.20.0.5" });
  });

  test("ext-iface - --iface-can-reach is tried after --iface and --iface-regex, and can miss too", async () => {
    expect(await pick({ iface: ["eth9"], ifaceRegex: ["^wl"], ifaceCanReach: "172.16.5.9" })).toMatchObject({
      name: "eth1",
      matched: "--iface-can-reach=172.16.5.9",
    });
    const err = await refusal({ ifaceCanReach: "10.66.1.1" });
    expect(err.message).toStartWith(
      "no interface matches --iface-can-reach=10.66.1.1: the route to 10.66.1.1 is not unicast",
    );
    const own = await refusal({ ifaceCanReach: "172.16.5.5" });
    expect(own.message).toContain("is this host's own address");
    const none = await refusal({ ifaceCanReach: "10.1.1.1" }, kernel(LINKS, ADDRS, ROUTES.slice(1)));
    expect(none.message).toStartWith("no interface matches --iface-can-reach=10.1.1.1: no route to 10.1.1.1");
  });

  test("ext-iface - when interface flags are given there is no default-route fallback", async () => {
    const err = await refusal({ iface: ["eth9", "10.0.0.1"], ifaceRegex: ["^wl"] });
    expect(err.message).toStartWith(
      "no interface matches --iface=eth9: no interface is named eth9; --iface=10.0.0.1: no interface has the address 10.0.0.1; --iface-regex=^wl: matches no interface name or usable IPv4 address; interfaces here:",
    );
    expect(err.value).toBe("--iface=eth9 --iface=10.0.0.1 --iface-regex=^wl");
  });

  test("ext-iface - no default route and no flags is refused naming the flags to use", async () => {
    const err = await refusal({}, kernel(LINKS, ADDRS, ROUTES.slice(1)));
    expect(err.message).toStartWith(
      "no external interface: there is no default route; pass --iface=<name or IP>",
    );
  });
});
