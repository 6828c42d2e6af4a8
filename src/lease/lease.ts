/**
 * Subnet leases as flanneld v0.28 stores them: key `<prefix>/subnets/<a.b.c.d>-<len>`, value
 * `{"PublicIP":"…","PublicIPv6":null,"BackendType":"host-gw"|"vxlan","BackendData":…}`.
 *
 * Values come from a shared store that other agents (and people with etcdctl) write, so parsing is
 * defensive: anything malformed is rejected with a reason and never reaches the kernel.
 */

import type { KeyValue, Revision } from "../../stores/store.ts";
import { omitValue, overLimit } from "../../stores/values.ts";
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
export type LeaseRejection =
  | "key"
  | "size"
  | "json"
  | "public-ip"
  | "outside-network"
  | "default-route"
  | "subnet-len"
  | "overlap";

/**
 * Lease values longer than this are rejected unread. flanneld's are under 200 bytes (vxlan with
 * BackendData); 4 KiB leaves room for any backend's data and keeps one hostile value from costing
 * more than a few kilobytes per key.
 */
export const MAX_LEASE_VALUE_BYTES = 4096;

/**
 * What a lease must agree with to be used; the same everywhere a lease is read (the watcher, the
 * subnet manager, `weft plan`, `weft doctor`), so they all accept and reject the same keys.
 */
export interface LeaseRules {
  readonly network: Ipv4Cidr;
  /**
   * The config's SubnetLen: flanneld and weft only ever write leases of this length, so a lease of
   * another length (one covering many hosts' subnets, or a piece of one) is rejected. Undefined
   * checks no length (`weft doctor` without a valid config).
   */
  readonly subnetLen: number | undefined;
  /** `<prefix>/subnets/`: a lease key is this and exactly one more segment. */
  readonly subnets: string;
}

/** The rules of a network config and store prefix (`/coreos.com/network`). */
export function leaseRules(
  config: { readonly network: Ipv4Cidr; readonly subnetLen: number },
  prefix: string,
): LeaseRules {
  return { network: config.network, subnetLen: config.subnetLen, subnets: subnetsPrefix(prefix) };
}

/**
 * True when an entry's value is too long to be a lease: read with `LEASE_READ` the store left it
 * out (`omittedBytes`); otherwise it is measured here, before it is parsed or kept.
 */
export function oversized(kv: KeyValue): boolean {
  return kv.omittedBytes !== undefined || overLimit(kv.value, MAX_LEASE_VALUE_BYTES);
}

/**
 * How leases are read (`list`, and `watch` with it): values over the limit stay in the store, so an
 * agent started next to 200 values of 1 MiB never holds them.
 */
export const LEASE_READ = { maxValueBytes: MAX_LEASE_VALUE_BYTES } as const;

/** The entry as it may be kept: one whose value is over the limit keeps only its key and revision. */
export function withoutLargeValue(kv: KeyValue): KeyValue {
  if (!oversized(kv)) return kv;
  if (kv.omittedBytes !== undefined) return kv;
  releaseLargeValues();
  return omitValue(kv, Buffer.byteLength(kv.value));
}

let releasePending = false;

/**
 * Asks for a garbage collection soon after oversized values were dropped (at most one per second).
 * Without it a list of 200 values of 1 MiB (an agent started next to them) stays in the process's
 * RSS until the collector happens to run, which an agent that allocates little may not do for hours.
 */
export function releaseLargeValues(): void {
  if (releasePending) return;
  releasePending = true;
  setTimeout(() => {
    Bun.gc(true);
    setTimeout(() => {
      releasePending = false;
    }, 1_000).unref();
  }, 100).unref();
}

/** The rejection of an oversized value, without reading it. */
export function oversizedRejection(kv: KeyValue): LeaseParse {
  return {
    ok: false,
    rule: "size",
    reason: `value is ${kv.omittedBytes ?? Buffer.byteLength(kv.value)} bytes, over the ${MAX_LEASE_VALUE_BYTES}-byte limit for a lease`,
  };
}

export type LeaseParse =
  | { readonly ok: true; readonly lease: Lease }
  | { readonly ok: false; readonly rule: LeaseRejection; readonly reason: string };

/** At most 200 characters of `text`, for a rejection reason (keys and values may be of any length). */
function short(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}… (${text.length} characters)` : text;
}

/** A JSON value for a rejection reason: a string quoted and cut, anything else by its type. */
function describe(value: unknown): string {
  if (typeof value === "string") return short(JSON.stringify(value));
  if (value === undefined) return "(absent)";
  if (value === null) return "null";
  return Array.isArray(value) ? "(a list)" : typeof value === "object" ? "(an object)" : `(${String(value)})`;
}

/** Finds a field the way Go's encoding/json does: exact name first, then case-insensitively. */
export function jsonField(object: Record<string, unknown>, name: string): unknown {
  if (name in object) return object[name];
  const lower = name.toLowerCase();
  for (const [k, v] of Object.entries(object)) if (k.toLowerCase() === lower) return v;
  return undefined;
}

/** A key under `<prefix>/subnets/` that can hold a lease, or why it cannot (whatever its value). */
export type LeaseKeyParse =
  | { readonly ok: true; readonly subnet: Ipv4Cidr; readonly subnetText: string }
  | {
      readonly ok: false;
      readonly rule: "key" | "default-route" | "outside-network" | "subnet-len";
      readonly reason: string;
    };

/**
 * The key rules of `parseLease`: `<prefix>/subnets/<a.b.c.d>-<SubnetLen>` (one segment, no nesting),
 * a subnet inside the network. A key rejected here never holds a lease, whatever value it gets.
 */
export function parseLeaseKey(fullKey: string, rules: LeaseRules): LeaseKeyParse {
  const { network, subnetLen } = rules;
  const name = fullKey.startsWith(rules.subnets) ? fullKey.slice(rules.subnets.length) : undefined;
  if (name === undefined || name.includes("/")) {
    const reason = `key ${short(fullKey)} is not ${rules.subnets}<a.b.c.d>-<len>: a lease key has no further path segments`;
    return { ok: false, rule: "key", reason };
  }
  const key = tryParseSubnetKey(name);
  if (!key.ok) return { ok: false, rule: "key", reason: `key ${short(fullKey)}: ${key.reason}` };
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
  if (subnetLen !== undefined && subnet.prefixLen !== subnetLen) {
    return {
      ok: false,
      rule: "subnet-len",
      reason: `subnet ${subnetText} is not a /${subnetLen} (the config's SubnetLen): only leases of that length are routed`,
    };
  }
  return { ok: true, subnet, subnetText };
}

/**
 * Decodes and validates one store entry under `<prefix>/subnets/` against the cluster's rules: the
 * key passes `parseLeaseKey`, the value is at most 4 KiB of JSON with an IPv4 PublicIP.
 */
export function parseLease(kv: KeyValue, rules: LeaseRules): LeaseParse {
  if (oversized(kv)) return oversizedRejection(kv);
  const key = parseLeaseKey(kv.key, rules);
  if (!key.ok) return key;
  const { subnet, subnetText } = key;
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
  const publicIP = jsonField(attrs, "PublicIP");
  if (typeof publicIP !== "string" || !tryParseIpv4(publicIP).ok || publicIP === "0.0.0.0") {
    return {
      ok: false,
      rule: "public-ip",
      reason: `PublicIP ${describe(publicIP)} is not an IPv4 address`,
    };
  }
  const backendType = jsonField(attrs, "BackendType");
  const backendData = jsonField(attrs, "BackendData");
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
