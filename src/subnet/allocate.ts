/**
 * flanneld's choice of this node's subnet (`tryAcquireLease` / `allocateSubnet` in flannel's
 * pkg/subnet/etcd/local_manager.go), as a pure function of the config, the current leases, this node's
 * public IP, the subnet from the previous subnet.env and an injected random source:
 * 1. reuse a lease whose PublicIP is ours and that fits the config (a reservation stays a reservation);
 * 2. else the previous subnet from subnet.env, when no lease overlaps it and it fits the config;
 * 3. else scan from SubnetMin up, collect at most 100 free subnets and pick one at random.
 *
 * Where weft is stricter than flanneld: rule 2 refuses a subnet that any lease *overlaps* (flanneld only
 * checks for an identical key), and every own-IP lease that does not fit is reported (flanneld only
 * looks at the first one). The scan costs O(leases + 100), not O(leases × subnets): exact leases go into
 * a Set of network addresses, wider leases (reservations of several subnets) into sorted intervals.
 */

import { randomInt } from "node:crypto";
import { WeftError, WeftErrorCode } from "../errors.ts";
import {
  blockSize,
  cidrsOverlap,
  formatCidr,
  formatIpv4,
  type Ipv4,
  type Ipv4Cidr,
  maskIpv4,
  tryParseIpv4,
} from "../net/ipv4.ts";

/** How many free subnets flanneld collects before it picks one at random. */
export const FREE_SUBNET_CANDIDATES = 100;

/** What the allocator needs to know about one existing lease. */
export interface LeaseView {
  readonly subnet: Ipv4Cidr;
  /** The lease's `PublicIP` as stored. */
  readonly publicIp: string;
  /** False for a reservation (a key without TTL). */
  readonly expires: boolean;
}

/** The part of the network config the allocator uses. */
export interface SubnetRange {
  readonly subnetLen: number;
  readonly subnetMin: Ipv4;
  readonly subnetMax: Ipv4;
}

export interface AllocateInput {
  readonly config: SubnetRange;
  /** Every live lease under `<prefix>/subnets`, in store (key) order. */
  readonly leases: readonly LeaseView[];
  /** This node's public IPv4. */
  readonly publicIp: string;
  /** The subnet of `FLANNEL_SUBNET` in the previous subnet.env (its network), if any. */
  readonly previousSubnet?: Ipv4Cidr | undefined;
  /** An integer in [0, exclusiveMax); `cryptoRandomInt` in production, a fake in tests. */
  readonly randomInt: (exclusiveMax: number) => number;
}

/** Which of the three rules chose the subnet. */
export type AllocationRule = "reuse-own-lease" | "previous-subnet" | "allocate-free";

export interface Allocation {
  readonly rule: AllocationRule;
  readonly subnet: Ipv4Cidr;
  /** The reused lease (rule `reuse-own-lease`); renew it without TTL when it `expires` is false. */
  readonly reusedLease?: LeaseView | undefined;
  /** How many free subnets were collected (rule `allocate-free`), at most 100. */
  readonly candidates?: number | undefined;
  /** Leases with our PublicIP that do not fit the config; flanneld deletes them. */
  readonly incompatibleOwnLeases: readonly LeaseView[];
  /** Why earlier rules did not apply, one line each, for the log. */
  readonly notes: readonly string[];
}

/** True when `subnet` has the config's SubnetLen, is a network address and lies in SubnetMin..SubnetMax. */
export function fitsConfig(config: SubnetRange, subnet: Ipv4Cidr): boolean {
  return (
    subnet.prefixLen === config.subnetLen &&
    maskIpv4(subnet.ip, subnet.prefixLen) === subnet.ip &&
    subnet.ip >= config.subnetMin &&
    subnet.ip <= config.subnetMax
  );
}

/** A uniformly random integer in [0, exclusiveMax) from the system CSPRNG. */
export function cryptoRandomInt(exclusiveMax: number): number {
  return randomInt(exclusiveMax);
}

/** Choose this node's subnet; throws `WeftError` SUBNET_EXHAUSTED when nothing is free. */
export function allocateSubnet(input: AllocateInput): Allocation {
  const { config, leases } = input;
  const notes: string[] = [];
  const ours = tryParseIpv4(input.publicIp);
  const own = ours.ok ? leases.filter((lease) => sameIp(lease.publicIp, ours.value)) : [];
  const reusable = own.find((lease) => fitsConfig(config, lease.subnet));
  const incompatibleOwnLeases = own.filter((lease) => !fitsConfig(config, lease.subnet));
  for (const lease of incompatibleOwnLeases) {
    notes.push(
      `lease ${formatCidr(lease.subnet)} has our PublicIP ${input.publicIp} but does not fit the config`,
    );
  }
  if (reusable !== undefined) {
    return {
      rule: "reuse-own-lease",
      subnet: reusable.subnet,
      reusedLease: reusable,
      incompatibleOwnLeases,
      notes,
    };
  }

  const previous = input.previousSubnet;
  if (previous !== undefined) {
    const holder = leases.find((lease) => cidrsOverlap(lease.subnet, previous));
    if (holder !== undefined) {
      notes.push(
        `previous subnet ${formatCidr(previous)} from subnet.env is taken by the lease ${formatCidr(holder.subnet)} of ${holder.publicIp}`,
      );
    } else if (!fitsConfig(config, previous)) {
      notes.push(`previous subnet ${formatCidr(previous)} from subnet.env does not fit the network config`);
    } else {
      return { rule: "previous-subnet", subnet: previous, incompatibleOwnLeases, notes };
    }
  }

  const free = freeSubnets(config, leases, FREE_SUBNET_CANDIDATES);
  if (free.length === 0) {
    const range = `${formatIpv4(config.subnetMin)} .. ${formatIpv4(config.subnetMax)}`;
    throw new WeftError(
      WeftErrorCode.SubnetExhausted,
      `out of subnets: every /${config.subnetLen} in SubnetMin..SubnetMax (${range}) is leased or reserved (${leases.length} leases); widen Network or SubnetMin/SubnetMax in the network config, or delete stale leases`,
      { value: range },
    );
  }
  const drawn = Math.floor(input.randomInt(free.length));
  const index = Number.isFinite(drawn) ? Math.min(free.length - 1, Math.max(0, drawn)) : 0;
  const ip = free[index] ?? free[0] ?? config.subnetMin;
  return {
    rule: "allocate-free",
    subnet: { ip, prefixLen: config.subnetLen },
    candidates: free.length,
    incompatibleOwnLeases,
    notes,
  };
}

function sameIp(text: string, ip: Ipv4): boolean {
  const parsed = tryParseIpv4(text);
  return parsed.ok && parsed.value === ip;
}

/**
 * Up to `limit` network addresses of free subnets, ascending from SubnetMin, skipping every subnet that
 * overlaps a lease of any prefix length.
 */
export function freeSubnets(config: SubnetRange, leases: readonly LeaseView[], limit: number): Ipv4[] {
  const step = blockSize(config.subnetLen);
  const taken = new Set<Ipv4>();
  const wide: { start: number; end: number }[] = [];
  for (const { subnet } of leases) {
    if (subnet.prefixLen >= config.subnetLen) {
      taken.add(maskIpv4(subnet.ip, config.subnetLen));
    } else {
      const start = maskIpv4(subnet.ip, subnet.prefixLen);
      wide.push({ start, end: start + blockSize(subnet.prefixLen) });
    }
  }
  wide.sort((a, b) => a.start - b.start);

  const free: Ipv4[] = [];
  let next = 0;
  let ip = config.subnetMin;
  while (ip <= config.subnetMax && free.length < limit) {
    while (next < wide.length && (wide[next]?.end ?? 0) <= ip) next++;
    const block = wide[next];
    if (block !== undefined && block.start <= ip) {
      ip = block.end;
      continue;
    }
    if (!taken.has(ip)) free.push(ip);
    ip += step;
  }
  return free;
}
