import { expect, test } from "bun:test";
import {
  encodeLeaseValue,
  type LeaseRules,
  leaseKey,
  parseLease,
  withoutLargeValue,
} from "../../../src/lease/lease.ts";
import { parseCidr } from "../../../src/net/ipv4.ts";

const network: LeaseRules = { network: parseCidr("10.5.0.0/16"), subnetLen: 24, subnets: "/p/subnets/" };
const kv = (key: string, value: string) => ({ key, value, revision: 7n, expires: true });

test("lease - flanneld's host-gw value round-trips byte for byte", () => {
  const value = encodeLeaseValue({ publicIP: "10.0.0.5", backendType: "host-gw" });
  expect(value).toBe('{"PublicIP":"10.0.0.5","PublicIPv6":null,"BackendType":"host-gw"}');
  const parsed = parseLease(kv("/coreos.com/network/subnets/10.5.52.0-24", value), {
    ...network,
    subnets: "/coreos.com/network/subnets/",
  });
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
    // Only leases of the config's SubnetLen, directly under <prefix>/subnets/, are routed.
    ["/p/subnets/10.5.0.0-16", '{"PublicIP":"10.0.0.1"}', "subnet-len"],
    ["/p/subnets/10.5.0.0-23", '{"PublicIP":"10.0.0.1"}', "subnet-len"],
    ["/p/subnets/10.5.1.128-25", '{"PublicIP":"10.0.0.1"}', "subnet-len"],
    ["/p/subnets/0/10.5.3.0-24", '{"PublicIP":"10.0.0.1"}', "key"],
    ["/p/subnets//10.5.3.0-24", '{"PublicIP":"10.0.0.1"}', "key"],
    ["/q/subnets/10.5.3.0-24", '{"PublicIP":"10.0.0.1"}', "key"],
    ["/p/subnets/10.5.3.0-24", `{"PublicIP":"10.0.0.1","BackendData":"${"x".repeat(4096)}"}`, "size"],
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

test("lease - a value over 4 KiB is rejected before it is parsed, and kept only as key and revision", () => {
  const huge = `{"PublicIP":"10.0.0.1","BackendType":"host-gw","Pad":"${"é".repeat(2100)}"}`;
  // 2,100 UTF-16 units but over 4,096 UTF-8 bytes: the limit is in bytes.
  expect(huge.length).toBeLessThan(4096);
  const parsed = parseLease(kv("/p/subnets/10.5.3.0-24", huge), network);
  expect(parsed.ok ? "accepted" : parsed.rule).toBe("size");
  expect(parsed.ok ? "" : parsed.reason).toContain("over the 4096-byte limit");
  const kept = withoutLargeValue(kv("/p/subnets/10.5.3.0-24", huge));
  expect(kept).toEqual({
    key: "/p/subnets/10.5.3.0-24",
    value: "",
    revision: 7n,
    expires: true,
    omittedBytes: Buffer.byteLength(huge),
  });
  // Left out by the store (a read with LEASE_READ): the same rejection, with the store's count.
  const omitted = { ...kv("/p/subnets/10.5.3.0-24", ""), omittedBytes: 1 << 20 };
  const fromStore = parseLease(omitted, network);
  expect(fromStore.ok ? "accepted" : fromStore.reason).toBe(
    "value is 1048576 bytes, over the 4096-byte limit for a lease",
  );
  expect(withoutLargeValue(omitted)).toBe(omitted);
  const small = kv("/p/subnets/10.5.3.0-24", '{"PublicIP":"10.0.0.1"}');
  expect(withoutLargeValue(small)).toBe(small);
  // Exactly 4,096 bytes is still a lease.
  const edge = `{"PublicIP":"10.0.0.1","Pad":"${"x".repeat(4096 - 32)}"}`;
  expect(Buffer.byteLength(edge)).toBe(4096);
  expect(parseLease(kv("/p/subnets/10.5.3.0-24", edge), network).ok).toBe(true);
});
