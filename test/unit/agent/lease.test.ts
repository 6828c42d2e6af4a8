import { expect, test } from "bun:test";
import { encodeLeaseValue, leaseKey, parseLease } from "../../../src/lease/lease.ts";
import { parseCidr } from "../../../src/net/ipv4.ts";

const network = parseCidr("10.5.0.0/16");
const kv = (key: string, value: string) => ({ key, value, revision: 7n, expires: true });

test("lease - flanneld's host-gw value round-trips byte for byte", () => {
  const value = encodeLeaseValue({ publicIP: "10.0.0.5", backendType: "host-gw" });
  expect(value).toBe('{"PublicIP":"10.0.0.5","PublicIPv6":null,"BackendType":"host-gw"}');
  const parsed = parseLease(kv("/coreos.com/network/subnets/10.5.52.0-24", value), network);
  expect(parsed.ok && parsed.lease.subnetText).toBe("10.5.52.0/24");
  expect(parsed.ok && parsed.lease.publicIP).toBe("10.0.0.5");
});

test("lease - vxlan BackendData is kept and field names match case-insensitively", () => {
  const parsed = parseLease(
    kv(
      "/p/subnets/10.5.1.0-24",
      '{"publicip":"10.0.0.6","backendtype":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}',
    ),
    network,
  );
  expect(parsed.ok).toBe(true);
  if (parsed.ok) {
    expect(parsed.lease.backendType).toBe("vxlan");
    expect(parsed.lease.backendData).toEqual({ VNI: 1, VtepMAC: "c6:d2:32:6f:8f:44" });
  }
});

test("lease - garbage is rejected with the rule that failed", () => {
  const cases: [string, string, string][] = [
    ["/p/subnets/10.5.1.0-24", "{not json", "json"],
    ["/p/subnets/10.5.1.0-24", "[1,2]", "json"],
    ["/p/subnets/10.5.1.0-24", '{"PublicIP":"10.0.0.256"}', "public-ip"],
    ["/p/subnets/10.5.1.0-24", '{"PublicIP":42}', "public-ip"],
    ["/p/subnets/10.6.1.0-24", '{"PublicIP":"10.0.0.1"}', "outside-network"],
    ["/p/subnets/0.0.0.0-0", '{"PublicIP":"10.0.0.1"}', "default-route"],
    ["/p/subnets/10.5.1.1-24", '{"PublicIP":"10.0.0.1"}', "key"],
    ["/p/subnets/hello", '{"PublicIP":"10.0.0.1"}', "key"],
  ];
  for (const [key, value, rule] of cases) {
    const parsed = parseLease(kv(key, value), network);
    expect({ key, value, rule: parsed.ok ? "accepted" : parsed.rule }).toEqual({ key, value, rule });
  }
});

test("lease - keys are <prefix>/subnets/<a.b.c.d>-<len> with one slash", () => {
  expect(leaseKey("/coreos.com/network/", parseCidr("10.5.52.0/24"))).toBe(
    "/coreos.com/network/subnets/10.5.52.0-24",
  );
  expect(leaseKey("/cluster.hostgw/network", parseCidr("192.168.0.64/26"))).toBe(
    "/cluster.hostgw/network/subnets/192.168.0.64-26",
  );
});

test("lease - an unpublishable PublicIP is refused before it reaches the store", () => {
  expect(() => encodeLeaseValue({ publicIP: "eth0", backendType: "host-gw" })).toThrow(/PublicIP "eth0"/);
});
