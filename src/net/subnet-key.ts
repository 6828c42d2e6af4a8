/**
 * flannel's lease key codec (`MakeSubnetKey` / `ParseSubnetKey` in flannel's pkg/subnet/subnet.go):
 * `<prefix>/subnets/10.5.52.0-24`, and the dual-stack form `10.5.52.0-24&fd00::-64`.
 *
 * The IPv4 part is parsed strictly (a network address, prefix 0..32). weft is IPv4-only, so the IPv6
 * part is validated (an IPv6 address in flannel's lower-case form, prefix 0..128) and kept as the
 * exact text, so keys written by a dual-stack flanneld round-trip byte for byte.
 */

import { isIPv6 } from "node:net";
import { WeftError, WeftErrorCode } from "../errors.ts";
import { formatIpv4, type Ipv4Cidr, type ParseResult, tryParseCidr } from "./ipv4.ts";

/** A decoded lease key. */
export interface SubnetKey {
  /** The leased IPv4 subnet (always a network address). */
  readonly ipv4: Ipv4Cidr;
  /** The IPv6 part exactly as in the key (`fd00::-64`), when the key is dual-stack. */
  readonly ipv6?: string | undefined;
}

const KEY = /^(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})-(\d{1,2})(?:&([0-9a-f:]+)-(\d{1,3}))?$/;
const EXPECTED = "expected <a.b.c.d>-<len> or <a.b.c.d>-<len>&<ipv6>-<len6>";

/**
 * Decode a lease key without throwing. Accepts the bare last segment (`10.5.52.0-24`) or a full store
 * key (`/coreos.com/network/subnets/10.5.52.0-24`); only the text after the last `/` is decoded.
 */
export function tryParseSubnetKey(key: string): ParseResult<SubnetKey> {
  const name = key.slice(key.lastIndexOf("/") + 1);
  const match = KEY.exec(name);
  if (match === null) return { ok: false, reason: EXPECTED };
  const [, address = "", length = "", ipv6Address, ipv6Length] = match;
  const ipv4 = tryParseCidr(`${address}/${length}`, "reject");
  if (!ipv4.ok) return { ok: false, reason: `IPv4 part: ${ipv4.reason}` };
  if (ipv6Address === undefined || ipv6Length === undefined) return { ok: true, value: { ipv4: ipv4.value } };
  if (!isIPv6(ipv6Address))
    return { ok: false, reason: `IPv6 part: "${ipv6Address}" is not an IPv6 address` };
  if (Number(ipv6Length) > 128 || (ipv6Length.length > 1 && ipv6Length.startsWith("0"))) {
    return { ok: false, reason: `IPv6 part: prefix length "${ipv6Length}" is not in 0..128` };
  }
  return { ok: true, value: { ipv4: ipv4.value, ipv6: `${ipv6Address}-${ipv6Length}` } };
}

/** Decode a lease key; throws `WeftError` LEASE_INVALID naming the key and what is wrong. */
export function parseSubnetKey(key: string): SubnetKey {
  const result = tryParseSubnetKey(key);
  if (result.ok) return result.value;
  throw new WeftError(WeftErrorCode.LeaseInvalid, `invalid subnet lease key "${key}": ${result.reason}`, {
    value: key,
  });
}

/** Encode the last segment of a lease key: `10.5.52.0-24` or `10.5.52.0-24&fd00::-64`. */
export function formatSubnetKey(key: SubnetKey): string {
  const ipv4 = `${formatIpv4(key.ipv4.ip)}-${key.ipv4.prefixLen}`;
  return key.ipv6 === undefined ? ipv4 : `${ipv4}&${key.ipv6}`;
}
