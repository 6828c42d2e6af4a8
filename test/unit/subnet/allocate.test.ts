import { describe, expect, test } from "bun:test";
import { WeftErrorCode } from "../../../src/errors.ts";
import { formatCidr, formatIpv4, parseCidr, parseIpv4 } from "../../../src/net/ipv4.ts";
import {
  type AllocateInput,
  allocateSubnet,
  cryptoRandomInt,
  FREE_SUBNET_CANDIDATES,
  fitsConfig,
  freeSubnets,
  type LeaseView,
  type SubnetRange,
} from "../../../src/subnet/allocate.ts";
import { thrown } from "../helpers.ts";

/** 10.5.0.0/16 with flanneld's defaults: /24 subnets from 10.5.1.0 to 10.5.255.0. */
const CONFIG: SubnetRange = {
  subnetLen: 24,
  subnetMin: parseIpv4("10.5.1.0"),
  subnetMax: parseIpv4("10.5.255.0"),
};
const lease = (subnet: string, publicIp: string, expires = true): LeaseView => ({
  subnet: parseCidr(subnet),
  publicIp,
  expires,
});
const first = () => 0;
const input = (overrides: Partial<AllocateInput> = {}): AllocateInput => ({
  config: CONFIG,
  leases: [],
  publicIp: "192.168.0.10",
  randomInt: first,
  ...overrides,
});

describe("allocate", () => {
  test("allocate - reuses the lease that carries our PublicIP", () => {
    const leases = [lease("10.5.1.0/24", "192.168.0.11"), lease("10.5.7.0/24", "192.168.0.10")];
    const result = allocateSubnet(input({ leases, previousSubnet: parseCidr("10.5.9.0/24") }));
    expect(result.rule).toBe("reuse-own-lease");
    expect(formatCidr(result.subnet)).toBe("10.5.7.0/24");
    expect(result.reusedLease).toBe(leases[1]);
    expect(result.incompatibleOwnLeases).toEqual([]);
  });

  test("allocate - our PublicIP matches numerically, not by text", () => {
    const result = allocateSubnet(
      input({ leases: [lease("10.5.7.0/24", "192.168.0.10")], publicIp: "192.168.0.10" }),
    );
    expect(result.rule).toBe("reuse-own-lease");
  });

  test("allocate - a reused reservation is reported as not expiring", () => {
    const result = allocateSubnet(input({ leases: [lease("10.5.7.0/24", "192.168.0.10", false)] }));
    expect(result.reusedLease?.expires).toBe(false);
  });

  test("allocate - an own lease that does not fit the config is reported and not reused", () => {
    const leases = [
      lease("10.5.0.0/24", "192.168.0.10"),
      lease("10.5.4.0/25", "192.168.0.10"),
      lease("10.6.1.0/24", "192.168.0.10"),
    ];
    const result = allocateSubnet(input({ leases }));
    expect(result.rule).toBe("allocate-free");
    expect(result.incompatibleOwnLeases.map((l) => formatCidr(l.subnet))).toEqual([
      "10.5.0.0/24",
      "10.5.4.0/25",
      "10.6.1.0/24",
    ]);
    expect(result.notes).toHaveLength(3);
  });

  test("allocate - the first fitting own lease wins over a later one and over an unfit earlier one", () => {
    const leases = [
      lease("10.6.0.0/24", "192.168.0.10"),
      lease("10.5.3.0/24", "192.168.0.10"),
      lease("10.5.4.0/24", "192.168.0.10"),
    ];
    const result = allocateSubnet(input({ leases }));
    expect(formatCidr(result.subnet)).toBe("10.5.3.0/24");
    expect(result.incompatibleOwnLeases).toHaveLength(1);
  });

  test("allocate - reuses the previous subnet from subnet.env when no lease holds it", () => {
    const result = allocateSubnet(
      input({ leases: [lease("10.5.1.0/24", "192.168.0.11")], previousSubnet: parseCidr("10.5.42.0/24") }),
    );
    expect(result.rule).toBe("previous-subnet");
    expect(formatCidr(result.subnet)).toBe("10.5.42.0/24");
  });

  test("allocate - the previous subnet is not reused when another node holds it", () => {
    const result = allocateSubnet(
      input({ leases: [lease("10.5.42.0/24", "192.168.0.11")], previousSubnet: parseCidr("10.5.42.0/24") }),
    );
    expect(result.rule).toBe("allocate-free");
    expect(formatCidr(result.subnet)).toBe("10.5.1.0/24");
    expect(result.notes[0]).toContain(
      "previous subnet 10.5.42.0/24 from subnet.env is taken by the lease 10.5.42.0/24 of 192.168.0.11",
    );
  });

  test("allocate - the previous subnet is not reused when a wider lease overlaps it", () => {
    const result = allocateSubnet(
      input({
        leases: [lease("10.5.40.0/21", "192.168.0.11", false)],
        previousSubnet: parseCidr("10.5.42.0/24"),
      }),
    );
    expect(result.rule).toBe("allocate-free");
  });

  test("allocate - the previous subnet is not reused when it does not fit the config", () => {
    for (const previous of ["10.5.0.0/24", "10.6.3.0/24", "10.5.3.0/25"]) {
      const result = allocateSubnet(input({ previousSubnet: parseCidr(previous) }));
      expect(result.rule).toBe("allocate-free");
      expect(result.notes[0]).toContain("does not fit the network config");
    }
  });

  test("allocate - a free subnet is the lowest free one when the random source says 0", () => {
    const leases = [lease("10.5.1.0/24", "a"), lease("10.5.2.0/24", "b"), lease("10.5.4.0/24", "c")];
    const result = allocateSubnet(input({ leases }));
    expect(result.rule).toBe("allocate-free");
    expect(formatCidr(result.subnet)).toBe("10.5.3.0/24");
    expect(result.candidates).toBe(FREE_SUBNET_CANDIDATES);
  });

  test("allocate - the random pick is among the first 100 free subnets only", () => {
    const asked: number[] = [];
    const last = (n: number) => {
      asked.push(n);
      return n - 1;
    };
    const result = allocateSubnet(input({ leases: [lease("10.5.1.0/24", "a")], randomInt: last }));
    expect(asked).toEqual([100]);
    // free: 10.5.2.0 … 10.5.101.0; the 100th is 10.5.101.0
    expect(formatCidr(result.subnet)).toBe("10.5.101.0/24");
  });

  test("allocate - a real random source stays within the first 100 free subnets", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 300; i++) {
      const result = allocateSubnet(input({ randomInt: cryptoRandomInt }));
      const third = Number(formatIpv4(result.subnet.ip).split(".")[2]);
      expect(third).toBeGreaterThanOrEqual(1);
      expect(third).toBeLessThanOrEqual(100);
      seen.add(formatCidr(result.subnet));
    }
    expect(seen.size).toBeGreaterThan(50);
  });

  test("allocate - fewer than 100 free subnets: the count is what is free", () => {
    const config: SubnetRange = {
      subnetLen: 26,
      subnetMin: parseIpv4("192.168.7.64"),
      subnetMax: parseIpv4("192.168.7.192"),
    };
    const result = allocateSubnet(
      input({ config, leases: [lease("192.168.7.128/26", "a")], randomInt: (n) => n - 1 }),
    );
    expect(result.candidates).toBe(2);
    expect(formatCidr(result.subnet)).toBe("192.168.7.192/26");
  });

  test("allocate - out-of-range random values are clamped", () => {
    expect(formatCidr(allocateSubnet(input({ randomInt: () => 1000 })).subnet)).toBe("10.5.100.0/24");
    expect(formatCidr(allocateSubnet(input({ randomInt: () => -5 })).subnet)).toBe("10.5.1.0/24");
    expect(formatCidr(allocateSubnet(input({ randomInt: () => Number.NaN })).subnet)).toBe("10.5.1.0/24");
  });

  test("allocate - leases of other lengths block every subnet they overlap", () => {
    const leases = [lease("10.5.0.0/22", "r", false), lease("10.5.4.128/25", "x"), lease("10.5.5.7/32", "y")];
    expect(freeSubnets(CONFIG, leases, 3).map(formatIpv4)).toEqual(["10.5.6.0", "10.5.7.0", "10.5.8.0"]);
  });

  test("allocate - a lease covering the whole range exhausts it", () => {
    const err = thrown(() => allocateSubnet(input({ leases: [lease("10.5.0.0/16", "r", false)] })));
    expect(err.code).toBe(WeftErrorCode.SubnetExhausted);
  });

  test("allocate - nothing free is SUBNET_EXHAUSTED naming the range", () => {
    const config: SubnetRange = {
      subnetLen: 24,
      subnetMin: parseIpv4("10.5.1.0"),
      subnetMax: parseIpv4("10.5.3.0"),
    };
    const leases = [lease("10.5.1.0/24", "a"), lease("10.5.2.0/24", "b"), lease("10.5.3.0/24", "c")];
    const err = thrown(() =>
      allocateSubnet(input({ config, leases, previousSubnet: parseCidr("10.5.2.0/24") })),
    );
    expect(err.code).toBe(WeftErrorCode.SubnetExhausted);
    expect(err.message).toContain("out of subnets");
    expect(err.message).toContain("10.5.1.0 .. 10.5.3.0");
    expect(err.message).toContain("/24");
    expect(err.message).toContain("3 leases");
  });

  test("allocate - fitsConfig checks length, alignment and range", () => {
    expect(fitsConfig(CONFIG, parseCidr("10.5.1.0/24"))).toBe(true);
    expect(fitsConfig(CONFIG, parseCidr("10.5.255.0/24"))).toBe(true);
    expect(fitsConfig(CONFIG, parseCidr("10.5.0.0/24"))).toBe(false);
    expect(fitsConfig(CONFIG, parseCidr("10.5.1.0/25"))).toBe(false);
    expect(fitsConfig(CONFIG, parseCidr("10.5.1.1/24", "keep"))).toBe(false);
    expect(fitsConfig(CONFIG, parseCidr("10.6.0.0/24"))).toBe(false);
  });

  test("allocate - 10,000 leases: reuse, previous-subnet check and scan past all of them complete", () => {
    // 10.0.0.0/8 in /24s: 65,535 subnets; the first 10,000 are leased, so the scan passes all of them.
    const config: SubnetRange = {
      subnetLen: 24,
      subnetMin: parseIpv4("10.0.1.0"),
      subnetMax: parseIpv4("10.255.255.0"),
    };
    const leases: LeaseView[] = [];
    for (let i = 1; i <= 10_000; i++) {
      const ip = parseIpv4("10.0.0.0") + i * 256;
      leases.push({ subnet: { ip, prefixLen: 24 }, publicIp: `172.16.${i >> 8}.${i & 255}`, expires: true });
    }
    const free = allocateSubnet({
      config,
      leases,
      publicIp: "172.31.0.1",
      randomInt: first,
      previousSubnet: leases[5_000]?.subnet,
    });
    expect(free.rule).toBe("allocate-free");
    expect(formatCidr(free.subnet)).toBe(
      formatCidr({ ip: parseIpv4("10.0.0.0") + 10_001 * 256, prefixLen: 24 }),
    );
    expect(free.candidates).toBe(100);

    const reused = allocateSubnet({ config, leases, publicIp: "172.16.39.16", randomInt: first });
    expect(reused.rule).toBe("reuse-own-lease");
    expect(formatCidr(reused.subnet)).toBe(
      formatCidr({ ip: parseIpv4("10.0.0.0") + 10_000 * 256, prefixLen: 24 }),
    );
  });
});
