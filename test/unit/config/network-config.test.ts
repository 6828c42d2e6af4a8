import { describe, expect, test } from "bun:test";
import { defaultSubnetLen, parseNetworkConfig } from "../../../src/config/network-config.ts";
import { WeftErrorCode } from "../../../src/errors.ts";
import { formatIpv4, parseCidr, parseIpv4 } from "../../../src/net/ipv4.ts";
import { thrown } from "../helpers.ts";

const VXLAN = '"Backend": {"Type": "vxlan"}';
const parse = (json: string) => parseNetworkConfig(json);
const cfg = (fields: string, backend = VXLAN) => parse(`{${fields}${fields === "" ? "" : ", "}${backend}}`);
/** The CONFIG_INVALID message for a config, checking code, field and value. */
function rejection(json: string, field?: string): string {
  const err = thrown(() => parse(json));
  expect(err.code).toBe(WeftErrorCode.ConfigInvalid);
  if (field !== undefined) expect(err.field).toBe(field);
  expect(err.message).toStartWith("network config: ");
  expect(err.message).not.toContain("\n");
  return err.message;
}

describe("network config", () => {
  test("network config - defaults for a /16 network: /24 subnets, skip the first, end at the last", () => {
    const { config, warnings } = cfg('"Network": "10.5.0.0/16"');
    expect(config.network).toEqual(parseCidr("10.5.0.0/16"));
    expect(config.subnetLen).toBe(24);
    expect(formatIpv4(config.subnetMin)).toBe("10.5.1.0");
    expect(formatIpv4(config.subnetMax)).toBe("10.5.255.0");
    expect(config.enableIPv4).toBe(true);
    expect(config.enableIPv6).toBe(false);
    expect(config.enableNFTables).toBe(false);
    expect(warnings).toEqual([]);
  });

  test("network config - defaults for a /20 network", () => {
    const { config } = cfg('"Network": "10.5.16.0/20"');
    expect(config.subnetLen).toBe(24);
    expect(formatIpv4(config.subnetMin)).toBe("10.5.17.0");
    expect(formatIpv4(config.subnetMax)).toBe("10.5.31.0");
  });

  test("network config - defaults for a /24 network: four /26 subnets", () => {
    const { config } = cfg('"Network": "192.168.7.0/24"');
    expect(config.subnetLen).toBe(26);
    expect(formatIpv4(config.subnetMin)).toBe("192.168.7.64");
    expect(formatIpv4(config.subnetMax)).toBe("192.168.7.192");
  });

  test("network config - default SubnetLen switches at /22 and allows /28", () => {
    expect(defaultSubnetLen(parseCidr("10.0.0.0/22"))).toBe(24);
    expect(defaultSubnetLen(parseCidr("10.0.0.0/23"))).toBe(25);
    expect(defaultSubnetLen(parseCidr("10.0.0.0/8"))).toBe(24);
    const { config } = cfg('"Network": "10.0.0.0/28"');
    expect(config.subnetLen).toBe(30);
    expect(formatIpv4(config.subnetMin)).toBe("10.0.0.4");
    expect(formatIpv4(config.subnetMax)).toBe("10.0.0.12");
  });

  test("network config - SubnetLen 0 means the default, as in flanneld", () => {
    expect(cfg('"Network": "10.5.0.0/16", "SubnetLen": 0').config.subnetLen).toBe(24);
  });

  test("network config - explicit SubnetLen, SubnetMin and SubnetMax are used", () => {
    const { config } = cfg(
      '"Network": "10.5.0.0/16", "SubnetLen": 20, "SubnetMin": "10.5.16.0", "SubnetMax": "10.5.64.0"',
    );
    expect(config.subnetLen).toBe(20);
    expect(formatIpv4(config.subnetMin)).toBe("10.5.16.0");
    expect(formatIpv4(config.subnetMax)).toBe("10.5.64.0");
  });

  test("network config - SubnetMin 0.0.0.0 counts as unset, as in flanneld", () => {
    expect(formatIpv4(cfg('"Network": "10.5.0.0/16", "SubnetMin": "0.0.0.0"').config.subnetMin)).toBe(
      "10.5.1.0",
    );
  });

  test("network config - field names match case-insensitively like Go encoding/json", () => {
    const { config, warnings } = parse(
      '{"network": "10.5.0.0/16", "subnetlen": 25, "SUBNETMIN": "10.5.2.0", "enablenftables": true, "backend": {"type": "host-gw"}}',
    );
    expect(config.network).toEqual(parseCidr("10.5.0.0/16"));
    expect(config.subnetLen).toBe(25);
    expect(config.subnetMin).toBe(parseIpv4("10.5.2.0"));
    expect(config.enableNFTables).toBe(true);
    expect(config.backend).toEqual({ type: "host-gw" });
    expect(warnings).toEqual([]);
  });

  test("network config - vxlan options match case-insensitively and get flanneld's defaults", () => {
    expect(cfg('"Network": "10.5.0.0/16"').config.backend).toEqual({
      type: "vxlan",
      vni: 1,
      port: 0,
      gbp: false,
      learning: false,
      directRouting: false,
      mtu: undefined,
    });
    const { config } = parse(
      '{"Network": "10.5.0.0/16", "Backend": {"type": "vxlan", "vni": 42, "port": 4789, "gbp": true, "directrouting": true, "learning": true, "mtu": 1400}}',
    );
    expect(config.backend).toEqual({
      type: "vxlan",
      vni: 42,
      port: 4789,
      gbp: true,
      learning: true,
      directRouting: true,
      mtu: 1400,
    });
  });

  test("network config - unknown fields are warnings, with a suggestion for a near miss", () => {
    const { config, warnings } = parse(
      '{"Network": "10.5.0.0/16", "Netwrk": "x", "Colour": 1, "Backend": {"Type": "vxlan", "VNl": 3}}',
    );
    expect(config.network).toEqual(parseCidr("10.5.0.0/16"));
    expect(warnings).toContain('network config: unknown field "Netwrk" is ignored (did you mean "Network"?)');
    expect(warnings).toContain('network config: unknown field "Colour" is ignored');
    expect(warnings).toContain(
      'network config: Backend: unknown field "VNl" is ignored (did you mean "VNI"?)',
    );
  });

  test("network config - a field given twice: the last wins, with a warning", () => {
    const { config, warnings } = parse(`{"network": "10.1.0.0/16", "Network": "10.2.0.0/16", ${VXLAN}}`);
    expect(config.network).toEqual(parseCidr("10.2.0.0/16"));
    expect(warnings).toEqual([
      'network config: field Network is given twice (as "network" and "Network"); the last one wins',
    ]);
  });

  test("network config - null leaves a field at its default", () => {
    expect(cfg('"Network": "10.5.0.0/16", "SubnetLen": null').config.subnetLen).toBe(24);
  });

  test("network config - a Network with host bits set is accepted like flanneld, with a warning", () => {
    const { config, warnings } = cfg('"Network": "10.5.1.0/16"');
    expect(config.network).toEqual(parseCidr("10.5.0.0/16"));
    expect(warnings[0]).toContain('Network "10.5.1.0/16" has host bits set; using 10.5.0.0/16');
  });

  test("network config - host-gw ignores vxlan options with a warning", () => {
    const { config, warnings } = parse(
      '{"Network": "10.5.0.0/16", "Backend": {"Type": "host-gw", "VNI": 2}}',
    );
    expect(config.backend).toEqual({ type: "host-gw" });
    expect(warnings).toEqual([
      "network config: Backend.VNI is a vxlan option and ignored by the host-gw backend",
    ]);
  });

  test("network config - EnableNFTables is read", () => {
    expect(cfg('"Network": "10.5.0.0/16", "EnableNFTables": true').config.enableNFTables).toBe(true);
  });

  test("network config - the flannel documentation example parses", () => {
    const { config } = parse(
      `{
      "Network": "10.0.0.0/8",
      "SubnetLen": 20,
      "SubnetMin": "10.10.0.0",
      "SubnetMax": "10.99.0.0",
      "Backend": {
        "Type": "udp",
        "Port": 7890
      }
    }`.replace('"udp"', '"vxlan"'),
    );
    expect(config.subnetLen).toBe(20);
    expect(formatIpv4(config.subnetMin)).toBe("10.10.0.0");
    expect(formatIpv4(config.subnetMax)).toBe("10.99.0.0");
    expect(config.backend.type === "vxlan" && config.backend.port).toBe(7890);
  });
});

describe("network config validation", () => {
  test("network config - invalid JSON names line and column", () => {
    const message = rejection('{\n  "Network": "10.5.0.0/16",\n  "Backend": {"Type": "vxlan",}\n}');
    expect(message).toBe(
      'network config: invalid JSON at line 3, column 31: unexpected character "}", expected a quoted field name',
    );
  });

  test("network config - empty text and non-objects are refused", () => {
    expect(rejection("")).toContain("invalid JSON at line 1, column 1");
    expect(rejection("[]")).toContain("expected a JSON object");
    expect(rejection('"10.5.0.0/16"')).toContain("expected a JSON object");
  });

  test.each([
    [
      '"Network": 42',
      "Network",
      'network config: Network 42 is invalid: must be a CIDR string like "10.5.0.0/16"',
    ],
    [
      '"Network": "10.5.0.0/16", "SubnetLen": "24"',
      "SubnetLen",
      'network config: SubnetLen "24" is invalid: must be a whole number',
    ],
    [
      '"Network": "10.5.0.0/16", "SubnetLen": 24.5',
      "SubnetLen",
      "network config: SubnetLen 24.5 is invalid: must be a whole number",
    ],
    [
      '"Network": "10.5.0.0/16", "SubnetLen": -1',
      "SubnetLen",
      "network config: SubnetLen -1 is invalid: must not be negative",
    ],
    [
      '"Network": "10.5.0.0/16", "SubnetMin": 5',
      "SubnetMin",
      "network config: SubnetMin 5 is invalid: must be an IPv4 address string",
    ],
    [
      '"Network": "10.5.0.0/16", "EnableIPv4": "yes"',
      "EnableIPv4",
      'network config: EnableIPv4 "yes" is invalid: must be true or false',
    ],
    [
      '"Network": "10.5.0.0/16", "EnableNFTables": 1',
      "EnableNFTables",
      "network config: EnableNFTables 1 is invalid: must be true or false",
    ],
  ])("network config - type error %p names field and value", (fields, field, message) => {
    expect(rejection(`{${fields}, ${VXLAN}}`, field)).toStartWith(message);
  });

  test("network config - a missing Network says to define it", () => {
    expect(rejection(`{${VXLAN}}`, "Network")).toBe(
      'network config: Network is missing: please define a correct Network parameter in the flannel config, e.g. "Network": "10.5.0.0/16"',
    );
  });

  test.each([
    ["10.5.0.0/33", "prefix length 33 is out of range 0..32"],
    ["10.5.0/16", "found 3 part(s)"],
    ["10.5.0.0", "found no /"],
    ["fd00::/64", "IPv6 networks go in IPv6Network"],
    ["", "found no /"],
  ])("network config - Network %p is refused with the reason", (network, reason) => {
    const message = rejection(`{"Network": ${JSON.stringify(network)}, ${VXLAN}}`, "Network");
    expect(message).toStartWith(`network config: Network ${JSON.stringify(network)} is invalid: `);
    expect(message).toContain(reason);
  });

  test("network config - 0.0.0.0/0 is refused like flanneld's empty Network", () => {
    expect(rejection(`{"Network": "0.0.0.0/0", ${VXLAN}}`, "Network")).toContain("must not be 0.0.0.0/0");
  });

  test("network config - a network smaller than /28 is refused", () => {
    expect(rejection(`{"Network": "10.5.0.0/29", ${VXLAN}}`, "Network")).toBe(
      'network config: Network "10.5.0.0/29" is invalid: network is too small: the minimum useful prefix is /28 (four subnets of four addresses)',
    );
  });

  test.each([
    [33, "/18"],
    [31, "/18"],
    [17, "/18"],
    [16, "/18"],
  ])("network config - SubnetLen %p in a /16 is refused naming the allowed range", (len, shortest) => {
    expect(rejection(`{"Network": "10.5.0.0/16", "SubnetLen": ${len}, ${VXLAN}}`, "SubnetLen")).toStartWith(
      `network config: SubnetLen ${len} is invalid: must be between ${shortest} and /30`,
    );
  });

  test("network config - SubnetLen at the edges of the range is accepted", () => {
    expect(cfg('"Network": "10.5.0.0/16", "SubnetLen": 18').config.subnetLen).toBe(18);
    expect(cfg('"Network": "10.5.0.0/16", "SubnetLen": 30').config.subnetLen).toBe(30);
  });

  test.each([
    [
      '"SubnetMin": "10.6.1.0"',
      "SubnetMin",
      'network config: SubnetMin "10.6.1.0" is invalid: must lie inside the Network 10.5.0.0/16',
    ],
    [
      '"SubnetMax": "10.4.1.0"',
      "SubnetMax",
      'network config: SubnetMax "10.4.1.0" is invalid: must lie inside the Network 10.5.0.0/16',
    ],
    [
      '"SubnetMin": "10.5.1.7"',
      "SubnetMin",
      'network config: SubnetMin "10.5.1.7" is invalid: must be on a /24 boundary (SubnetLen), e.g. 10.5.1.0',
    ],
    [
      '"SubnetMax": "10.5.9.128"',
      "SubnetMax",
      'network config: SubnetMax "10.5.9.128" is invalid: must be on a /24 boundary (SubnetLen), e.g. 10.5.9.0',
    ],
    [
      '"SubnetMin": "10.5.1"',
      "SubnetMin",
      'network config: SubnetMin "10.5.1" is invalid: must be an IPv4 address like "10.5.1.0"',
    ],
    [
      '"SubnetMin": "10.5.1.0/24"',
      "SubnetMin",
      'network config: SubnetMin "10.5.1.0/24" is invalid: must be an IPv4 address',
    ],
    [
      '"SubnetMin": "10.5.9.0", "SubnetMax": "10.5.3.0"',
      "SubnetMin",
      'network config: SubnetMin "10.5.9.0" is invalid: must not be greater than SubnetMax 10.5.3.0',
    ],
    [
      '"SubnetMax": "10.5.0.0"',
      "SubnetMax",
      'network config: SubnetMax "10.5.0.0" is invalid: must not be less than SubnetMin 10.5.1.0',
    ],
  ])("network config - %p is refused naming field, value and rule", (fields, field, message) => {
    expect(rejection(`{"Network": "10.5.0.0/16", ${fields}, ${VXLAN}}`, field)).toStartWith(message);
  });

  test("network config - Backend.Type is lower-cased as flanneld does, with a warning", () => {
    for (const [type, want] of [
      ["Host-GW", "host-gw"],
      ["VXLAN", "vxlan"],
    ] as const) {
      const { config, warnings } = parseNetworkConfig(
        `{"Network": "10.5.0.0/16", "Backend": {"Type": "${type}"}}`,
      );
      expect(config.backend.type).toBe(want);
      expect(warnings).toContain(`network config: Backend.Type "${type}" is read as "${want}"`);
    }
  });

  test("network config - a missing Backend is refused with what to set", () => {
    const message = rejection('{"Network": "10.5.0.0/16"}', "Backend");
    expect(message).toContain("Backend is missing");
    expect(message).toContain("udp");
    expect(message).toContain(`e.g. "Backend": {"Type": "vxlan"}`);
    expect(message).toContain(`{"Type": "host-gw"}`);
  });

  test.each([
    [
      '"Backend": {"Type": "udp"}',
      "Backend.Type",
      'network config: Backend.Type "udp" is invalid: weft does not implement the udp backend (a user-space tunnel); use "vxlan": the same overlay, done in the kernel',
    ],
    [
      '"Backend": {"Type": "wireguard"}',
      "Backend.Type",
      'network config: Backend.Type "wireguard" is invalid: weft does not implement the wireguard backend',
    ],
    [
      '"Backend": {"Type": "carrier-pigeon"}',
      "Backend.Type",
      'network config: Backend.Type "carrier-pigeon" is invalid: unknown backend type; weft supports "host-gw" and "vxlan"',
    ],
    ['"Backend": {"Type": 1}', "Backend.Type", "network config: Backend.Type 1 is invalid: must be a string"],
    ['"Backend": {}', "Backend.Type", "network config: Backend.Type is missing"],
    ['"Backend": "vxlan"', "Backend", 'network config: Backend "vxlan" is invalid: must be an object'],
    [
      '"Backend": {"Type": "vxlan", "VNI": 16777216}',
      "Backend.VNI",
      "network config: Backend.VNI 16777216 is invalid: must be between 0 and 16777215",
    ],
    [
      '"Backend": {"Type": "vxlan", "VNI": -1}',
      "Backend.VNI",
      "network config: Backend.VNI -1 is invalid: must be between 0 and 16777215",
    ],
    [
      '"Backend": {"Type": "vxlan", "vni": "1"}',
      "Backend.VNI",
      'network config: Backend.VNI "1" is invalid: must be a whole number',
    ],
    [
      '"Backend": {"Type": "vxlan", "Port": 65536}',
      "Backend.Port",
      "network config: Backend.Port 65536 is invalid: must be between 0 and 65535",
    ],
    [
      '"Backend": {"Type": "vxlan", "MTU": 67}',
      "Backend.MTU",
      "network config: Backend.MTU 67 is invalid: must be between 68 and 65535",
    ],
    [
      '"Backend": {"Type": "vxlan", "MTU": 65536}',
      "Backend.MTU",
      "network config: Backend.MTU 65536 is invalid: must be between 68 and 65535",
    ],
    [
      '"Backend": {"Type": "vxlan", "DirectRouting": "true"}',
      "Backend.DirectRouting",
      'network config: Backend.DirectRouting "true" is invalid: must be true or false',
    ],
  ])("network config - backend %p is refused naming field, value and rule", (backend, field, message) => {
    expect(rejection(`{"Network": "10.5.0.0/16", ${backend}}`, field)).toStartWith(message);
  });

  test("network config - VNI, Port and MTU edges are accepted", () => {
    const { config } = parse(
      '{"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan", "VNI": 16777215, "Port": 65535, "MTU": 68}}',
    );
    expect(config.backend).toMatchObject({ vni: 16777215, port: 65535, mtu: 68 });
    expect(
      parse('{"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan", "VNI": 0}}').config.backend,
    ).toMatchObject({ vni: 0 });
  });

  test("network config - EnableIPv6 is refused as not supported yet", () => {
    const message = rejection(
      `{"Network": "10.5.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:42::/56", ${VXLAN}}`,
      "EnableIPv6",
    );
    expect(message).toContain(
      "EnableIPv6 true is invalid: IPv6 and dual-stack are not supported by weft yet",
    );
  });

  test("network config - IPv6 fields are type-checked even when IPv6 is off", () => {
    expect(
      rejection(`{"Network": "10.5.0.0/16", "IPv6Network": "fd00::", ${VXLAN}}`, "IPv6Network"),
    ).toContain('IPv6Network "fd00::" is invalid');
    expect(
      rejection(`{"Network": "10.5.0.0/16", "IPv6Network": "10.0.0.0/8", ${VXLAN}}`, "IPv6Network"),
    ).toContain("must be an IPv6 CIDR");
    expect(
      rejection(`{"Network": "10.5.0.0/16", "IPv6SubnetMin": "x", ${VXLAN}}`, "IPv6SubnetMin"),
    ).toContain('IPv6SubnetMin "x" is invalid');
    expect(
      rejection(`{"Network": "10.5.0.0/16", "IPv6SubnetLen": 129, ${VXLAN}}`, "IPv6SubnetLen"),
    ).toContain("IPv6SubnetLen 129 is invalid");
    const { config } = parse(
      `{"Network": "10.5.0.0/16", "IPv6Network": "fd00:42::/56", "ipv6subnetlen": 64, ${VXLAN}}`,
    );
    expect(config.enableIPv6).toBe(false);
  });

  test("network config - disabling IPv4 is refused", () => {
    expect(rejection(`{"Network": "10.5.0.0/16", "EnableIPv4": false, ${VXLAN}}`, "EnableIPv4")).toContain(
      "at least one of EnableIPv4 and EnableIPv6 must be true",
    );
    expect(
      rejection(
        `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::/56", ${VXLAN}}`,
        "EnableIPv4",
      ),
    ).toContain("IPv6-only networks are not supported");
  });
});
