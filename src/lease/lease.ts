/**
 * Subnet leases as flanneld v0.28 stores them: key `<prefix>/subnets/<a.b.c.d>-<len>`, value
 * `{"PublicIP":"…","PublicIPv6":null,"BackendType":"host-gw"|"vxlan","BackendData":…}`.
 *
 * Values come from a shared store that other agents (and people with etcdctl) write, so parsing is
 * defensive: anything malformed is rejected with a reason and never reaches the kernel.
 */

import type { KeyValue, Revision } from "../../stores/store.ts";
import { WeftError, WeftErrorCode } from "../errors.ts";
import { cidrContainsCidr, formatCidr, type Ipv4Cidr, tryParseIpv4 } from "../net/ipv4.ts";
import { formatSubnetKey, tryParseSubnetKey } from "../net/subnet-key.ts";

/** The attributes flanneld stores in a lease value (`lease.LeaseAttrs`). */
export interface LeaseAttrs {
  readonly publicIP: string;
  readonly backendType: string;
  /** Backend specific data (vxlan: `{"VNI":1,"VtepMAC":"…"}`), as parsed JSON. */
  readonly backendData?: unknown;
}

/** A valid lease as read from the store. */
export interface Lease extends LeaseAttrs {
  /** The full store key. */
  readonly key: string;
  readonly subnet: Ipv4Cidr;
  /** `10.5.52.0/24`. */
  readonly subnetText: string;
  readonly revision: Revision;
  /** False for reservations (keys without TTL). */
  readonly expires: boolean;
  /** The value exactly as stored. */
  readonly value: string;
}

/** Why a lease was rejected; used as the metric label, so the set is closed. */
export type LeaseRejection = "key" | "json" | "public-ip" | "outside-network" | "default-route" | "overlap";

export type LeaseParse =
  | { readonly ok: true; readonly lease: Lease }
  | { readonly ok: false; readonly rule: LeaseRejection; readonly reason: string };

/** Finds a field the way Go's encoding/json does: exact name first, then case-insensitively. */
function field(object: Record<string, unknown>, name: string): unknown {
  if (name in object) return object[name];
  const lower = name.toLowerCase();
  for (const [k, v] of Object.entries(object)) if (k.toLowerCase() === lower) return v;
  return undefined;
}

/** Decodes and validates one store entry under `<prefix>/subnets/` against the cluster network. */
export function parseLease(kv: KeyValue, network: Ipv4Cidr): LeaseParse {
  const key = tryParseSubnetKey(kv.key);
  if (!key.ok) return { ok: false, rule: "key", reason: `key ${kv.key}: ${key.reason}` };
  const subnet = key.value.ipv4;
  const subnetText = formatCidr(subnet);
  if (subnet.prefixLen === 0) {
    return {
      ok: false,
      rule: "default-route",
      reason: `subnet ${subnetText} would replace the default route`,
    };
  }
  if (!cidrContainsCidr(network, subnet)) {
    return {
      ok: false,
      rule: "outside-network",
      reason: `subnet ${subnetText} is outside the network ${formatCidr(network)}`,
    };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(kv.value);
  } catch (err) {
    return { ok: false, rule: "json", reason: `value is not JSON (${(err as Error).message})` };
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    return { ok: false, rule: "json", reason: "value is not a JSON object" };
  }
  const attrs = parsed as Record<string, unknown>;
  const publicIP = field(attrs, "PublicIP");
  if (typeof publicIP !== "string" || !tryParseIpv4(publicIP).ok || publicIP === "0.0.0.0") {
    return {
      ok: false,
      rule: "public-ip",
      reason: `PublicIP ${JSON.stringify(publicIP)} is not an IPv4 address`,
    };
  }
  const backendType = field(attrs, "BackendType");
  const backendData = field(attrs, "BackendData");
  return {
    ok: true,
    lease: {
      key: kv.key,
      subnet,
      subnetText,
      publicIP,
      backendType: typeof backendType === "string" ? backendType : "",
      ...(backendData === undefined || backendData === null ? {} : { backendData }),
      revision: kv.revision,
      expires: kv.expires,
      value: kv.value,
    },
  };
}

/** The store key of a subnet lease: `<prefix>/subnets/10.5.52.0-24`. */
export function leaseKey(prefix: string, subnet: Ipv4Cidr): string {
  return `${subnetsPrefix(prefix)}${formatSubnetKey({ ipv4: subnet })}`;
}

/** `<prefix>/subnets/`, with exactly one slash between the parts. */
export function subnetsPrefix(prefix: string): string {
  return `${prefix.replace(/\/+$/, "")}/subnets/`;
}

/** The lease value exactly as flanneld marshals `LeaseAttrs` (field order, `null` PublicIPv6). */
export function encodeLeaseValue(attrs: LeaseAttrs): string {
  if (!tryParseIpv4(attrs.publicIP).ok) {
    throw new WeftError(
      WeftErrorCode.LeaseInvalid,
      `cannot publish PublicIP "${attrs.publicIP}": not an IPv4 address`,
      {
        field: "PublicIP",
        value: attrs.publicIP,
      },
    );
  }
  const data = attrs.backendData === undefined ? "" : `,"BackendData":${JSON.stringify(attrs.backendData)}`;
  return `{"PublicIP":${JSON.stringify(attrs.publicIP)},"PublicIPv6":null,"BackendType":${JSON.stringify(attrs.backendType)}${data}}`;
}
