import { describe, expect, test } from "bun:test";
import { WeftErrorCode } from "../../../src/errors.ts";
import {
  blockSize,
  cidrContains,
  cidrContainsCidr,
  cidrEquals,
  cidrsOverlap,
  firstHost,
  formatCidr,
  formatIpv4,
  isIpv4,
  isNetworkAddress,
  lastAddress,
  maskIpv4,
  networkOf,
  nextSubnet,
  parseCidr,
  parseIpv4,
  prefixMask,
  tryParseCidr,
  tryParseIpv4,
} from "../../../src/net/ipv4.ts";
import { thrown } from "../helpers.ts";

const cidr = (text: string) => parseCidr(text);

describe("ipv4", () => {
  test("ipv4 - parses dotted quads to unsigned 32-bit numbers", () => {
    expect(parseIpv4("0.0.0.0")).toBe(0);
    expect(parseIpv4("10.0.0.1")).toBe(0x0a000001);
    expect(parseIpv4("192.168.1.254")).toBe(0xc0a801fe);
    expect(parseIpv4("255.255.255.255")).toBe(0xffffffff);
  });

  test("ipv4 - formats unsigned numbers back to dotted quads, including the top bit", () => {
    expect(formatIpv4(0xffffffff)).toBe("255.255.255.255");
    expect(formatIpv4(0x80000001)).toBe("128.0.0.1");
    expect(formatIpv4(parseIpv4("10.5.72.1"))).toBe("10.5.72.1");
  });

  test.each([
    ["1.2.3", "found 3 part(s)"],
    ["1.2.3.4.5", "found 5 part(s)"],
    ["256.1.1.1", "256 is greater than 255"],
    ["010.1.1.1", '"010" has a leading zero'],
    ["1..2.3", "empty part"],
    ["1.2.3.x", '"x" is not a decimal number'],
    ["-1.2.3.4", '"-1" is not a decimal number'],
    [" 1.2.3.4", "is not a decimal number"],
    ["", "found 1 part(s)"],
    ["::1", "found 1 part(s)"],
  ])("ipv4 - rejects %p with a reason", (text, reason) => {
    const result = tryParseIpv4(text);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toContain(reason);
    expect(isIpv4(text)).toBe(false);
    const err = thrown(() => parseIpv4(text));
    expect(err.code).toBe(WeftErrorCode.AddressInvalid);
    expect(err.message).toContain(`"${text}"`);
  });

  test("ipv4 - zero alone is not a leading zero", () => {
    expect(parseIpv4("10.0.0.0")).toBe(0x0a000000);
  });

  test("ipv4 - prefix masks and block sizes at the edges", () => {
    expect(prefixMask(0)).toBe(0);
    expect(prefixMask(1)).toBe(0x80000000);
    expect(prefixMask(24)).toBe(0xffffff00);
    expect(prefixMask(32)).toBe(0xffffffff);
    expect(blockSize(0)).toBe(2 ** 32);
    expect(blockSize(24)).toBe(256);
    expect(blockSize(32)).toBe(1);
    expect(maskIpv4(parseIpv4("10.5.72.9"), 24)).toBe(parseIpv4("10.5.72.0"));
  });

  test("ipv4 - parses and formats CIDRs", () => {
    expect(cidr("10.5.0.0/16")).toEqual({ ip: 0x0a050000, prefixLen: 16 });
    expect(cidr("0.0.0.0/0")).toEqual({ ip: 0, prefixLen: 0 });
    expect(cidr("10.5.72.1/32")).toEqual({ ip: 0x0a054801, prefixLen: 32 });
    expect(formatCidr(cidr("10.5.0.0/16"))).toBe("10.5.0.0/16");
  });

  test("ipv4 - a network with host bits set is an error naming the network address", () => {
    const result = tryParseCidr("10.5.1.0/16");
    expect(result).toEqual({ ok: false, reason: "host bits are set (the network is 10.5.0.0/16)" });
    expect(() => parseCidr("10.5.1.0/16")).toThrow('invalid IPv4 CIDR "10.5.1.0/16": host bits are set');
  });

  test("ipv4 - host bits are cleared or kept on request", () => {
    expect(parseCidr("10.5.72.1/24", "clear")).toEqual(cidr("10.5.72.0/24"));
    expect(parseCidr("10.5.72.1/24", "keep")).toEqual({ ip: parseIpv4("10.5.72.1"), prefixLen: 24 });
  });

  test.each([
    ["10.5.0.0", "found no /"],
    ["10.5.0.0/33", "prefix length 33 is out of range 0..32"],
    ["10.5.0.0/", 'prefix length "" is not a decimal number'],
    ["10.5.0.0/016", "leading zero"],
    ["10.5.0.0/16/1", 'prefix length "16/1"'],
    ["10.5.0/16", "found 3 part(s)"],
  ])("ipv4 - rejects CIDR %p", (text, reason) => {
    const result = tryParseCidr(text);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toContain(reason);
  });

  test("ipv4 - contains, contains-cidr and overlaps", () => {
    const net = cidr("10.5.0.0/16");
    expect(cidrContains(net, parseIpv4("10.5.255.255"))).toBe(true);
    expect(cidrContains(net, parseIpv4("10.6.0.0"))).toBe(false);
    expect(cidrContains(cidr("0.0.0.0/0"), parseIpv4("255.1.2.3"))).toBe(true);
    expect(cidrContainsCidr(net, cidr("10.5.3.0/24"))).toBe(true);
    expect(cidrContainsCidr(cidr("10.5.3.0/24"), net)).toBe(false);
    expect(cidrsOverlap(net, cidr("10.5.3.0/24"))).toBe(true);
    expect(cidrsOverlap(cidr("10.5.3.0/24"), net)).toBe(true);
    expect(cidrsOverlap(cidr("10.5.3.0/24"), cidr("10.5.4.0/24"))).toBe(false);
    expect(cidrsOverlap(cidr("128.0.0.0/1"), cidr("200.1.0.0/16"))).toBe(true);
    expect(cidrEquals(cidr("10.5.3.0/24"), cidr("10.5.3.0/24"))).toBe(true);
    expect(cidrEquals(cidr("10.5.3.0/24"), cidr("10.5.3.0/25"))).toBe(false);
  });

  test("ipv4 - network, first host, last address", () => {
    const address = parseCidr("10.5.72.9/24", "keep");
    expect(isNetworkAddress(address)).toBe(false);
    expect(networkOf(address)).toEqual(cidr("10.5.72.0/24"));
    expect(formatIpv4(firstHost(address))).toBe("10.5.72.1");
    expect(formatIpv4(lastAddress(address))).toBe("10.5.72.255");
    expect(formatIpv4(lastAddress(cidr("255.255.255.0/24")))).toBe("255.255.255.255");
  });

  test("ipv4 - next subnet steps by the block size and stops at the top", () => {
    expect(nextSubnet(cidr("10.5.1.0/24"))).toEqual(cidr("10.5.2.0/24"));
    expect(nextSubnet(cidr("10.5.255.0/24"))).toEqual(cidr("10.6.0.0/24"));
    expect(nextSubnet(cidr("10.5.0.252/30"))).toEqual(cidr("10.5.1.0/30"));
    expect(nextSubnet(cidr("255.255.255.0/24"))).toBeUndefined();
    expect(nextSubnet(cidr("0.0.0.0/0"))).toBeUndefined();
  });
});

test("ipv4 - tryParseIpv4 agrees with a strict dotted-quad reading on 20,000 generated strings", () => {
  const strict = /^(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})$/;
  const alphabet = "0123456789..x -";
  let seed = 42;
  const random = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  for (let i = 0; i < 20_000; i++) {
    const text =
      i % 2 === 0
        ? Array.from({ length: 4 }, () => String(random(300)).padStart(1 + random(2), "0")).join(".")
        : Array.from({ length: 1 + random(16) }, () => alphabet[random(alphabet.length)]).join("");
    const m = strict.exec(text);
    const octets = m?.slice(1).map(Number);
    const want = octets?.every((o) => o <= 255) === true;
    const got = tryParseIpv4(text);
    expect({ text, ok: got.ok }).toEqual({ text, ok: want });
    if (got.ok && octets !== undefined) {
      expect(got.value).toBe(
        ((octets[0] ?? 0) * 2 ** 24 +
          (octets[1] ?? 0) * 65536 +
          (octets[2] ?? 0) * 256 +
          (octets[3] ?? 0)) >>>
          0,
      );
    }
  }
});
