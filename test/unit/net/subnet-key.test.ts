import { describe, expect, test } from "bun:test";
import { WeftErrorCode } from "../../../src/errors.ts";
import { parseCidr } from "../../../src/net/ipv4.ts";
import { formatSubnetKey, parseSubnetKey, tryParseSubnetKey } from "../../../src/net/subnet-key.ts";
import { thrown } from "../helpers.ts";

describe("subnet key", () => {
  test("subnet key - decodes flannel's IPv4 lease key", () => {
    expect(parseSubnetKey("10.5.52.0-24")).toEqual({ ipv4: parseCidr("10.5.52.0/24") });
  });

  test("subnet key - decodes the last segment of a full store key", () => {
    expect(parseSubnetKey("/coreos.com/network/subnets/10.5.52.0-24")).toEqual({
      ipv4: parseCidr("10.5.52.0/24"),
    });
  });

  test("subnet key - keeps the IPv6 part of a dual-stack key as written", () => {
    const key = parseSubnetKey("10.5.52.0-24&fd00::-64");
    expect(key).toEqual({ ipv4: parseCidr("10.5.52.0/24"), ipv6: "fd00::-64" });
    expect(parseSubnetKey("10.244.1.0-24&2001:cafe:42:1::-64").ipv6).toBe("2001:cafe:42:1::-64");
  });

  test.each(["10.5.52.0-24", "10.5.52.0-24&fd00::-64", "0.0.0.0-0", "192.168.255.252-30"])(
    "subnet key - %p round-trips byte for byte",
    (text) => {
      expect(formatSubnetKey(parseSubnetKey(text))).toBe(text);
    },
  );

  test.each([
    ["10.5.52.0/24", "expected <a.b.c.d>-<len>"],
    ["10.5.52-24", "expected"],
    ["10.5.52.0-", "expected"],
    ["10.5.52.0-24&", "expected"],
    ["10.5.52.0-24&fd00::", "expected"],
    ["10.5.52.0-24&FD00::-64", "expected"],
    ["x10.5.52.0-24", "expected"],
    ["10.5.52.0-24 ", "expected"],
    ["256.5.52.0-24", "256 is greater than 255"],
    ["10.5.52.0-33", "out of range 0..32"],
    ["10.5.52.1-24", "host bits are set"],
    ["010.5.52.0-24", "leading zero"],
    ["10.5.52.0-24&fd00:::1-64", "is not an IPv6 address"],
    ["10.5.52.0-24&fd00::-129", "not in 0..128"],
    ["", "expected"],
  ])("subnet key - rejects %p", (key, reason) => {
    const result = tryParseSubnetKey(key);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toContain(reason);
    const err = thrown(() => parseSubnetKey(key));
    expect(err.code).toBe(WeftErrorCode.LeaseInvalid);
    expect(err.message).toContain(`"${key}"`);
  });
});
