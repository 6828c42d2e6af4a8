/**
 * Pure IPv4 arithmetic on unsigned 32-bit numbers: dotted quads, CIDRs, containment, overlap and the
 * "next subnet" step the subnet allocator walks with. No I/O.
 *
 * Parsing is strict on purpose: `1.2.3`, `256.1.1.1`, `010.1.1.1` (octal or decimal? Go's net.ParseIP
 * refuses it too) and, where a network is required, `10.5.1.0/16` (host bits set) are all errors whose
 * reason names the offending part.
 */

import { WeftError, WeftErrorCode } from "../errors.ts";

/** An IPv4 address as an unsigned 32-bit number (`10.0.0.1` → 0x0a000001). */
export type Ipv4 = number;

/** An IPv4 network or interface address with its prefix length. */
export interface Ipv4Cidr {
  /** The address, unsigned 32-bit. For a network, host bits are zero. */
  readonly ip: Ipv4;
  /** 0..32. */
  readonly prefixLen: number;
}

/** The outcome of a non-throwing parse: the value, or a one-line reason for a person. */
export type ParseResult<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly reason: string };

/**
 * What a CIDR parse does with host bits (`10.5.72.1/24`):
 * - `reject`: a network is required; host bits are an error naming the network address.
 * - `clear`: keep only the network (Go's `net.ParseCIDR` second result).
 * - `keep`: an interface address; the address is returned as written.
 */
export type HostBits = "reject" | "clear" | "keep";

const DECIMAL = /^[0-9]+$/;

function ok<T>(value: T): ParseResult<T> {
  return { ok: true, value };
}

function fail<T>(reason: string): ParseResult<T> {
  return { ok: false, reason };
}

/**
 * A well-formed dotted quad read one character at a time, or undefined for anything else (the caller
 * then finds out what is wrong). Every lease key and PublicIP goes through here: 20,000 leases at start.
 */
function quickIpv4(text: string): Ipv4 | undefined {
  let value = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || dots === 3) return undefined;
      value = value * 256 + octet;
      octet = 0;
      digits = 0;
      dots += 1;
    } else if (c >= 48 && c <= 57) {
      if (digits === 1 && octet === 0) return undefined; // a leading zero
      octet = octet * 10 + (c - 48);
      digits += 1;
      if (octet > 255) return undefined;
    } else {
      return undefined;
    }
  }
  return dots === 3 && digits > 0 ? value * 256 + octet : undefined;
}

/** Parse a dotted quad without throwing. */
export function tryParseIpv4(text: string): ParseResult<Ipv4> {
  const quick = quickIpv4(text);
  if (quick !== undefined) return ok(quick);
  const parts = text.split(".");
  if (parts.length !== 4) {
    return fail(`expected four dot-separated numbers 0..255, found ${parts.length} part(s)`);
  }
  let value = 0;
  for (const part of parts) {
    if (part === "") return fail("an empty part between dots");
    if (!DECIMAL.test(part)) return fail(`"${part}" is not a decimal number`);
    if (part.length > 1 && part.startsWith("0")) {
      return fail(`"${part}" has a leading zero (octal or decimal is ambiguous)`);
    }
    const octet = Number(part);
    if (octet > 255) return fail(`${part} is greater than 255`);
    value = value * 256 + octet;
  }
  return ok(value);
}

/** Parse a dotted quad; throws `WeftError` ADDRESS_INVALID naming the text and the reason. */
export function parseIpv4(text: string): Ipv4 {
  const result = tryParseIpv4(text);
  if (result.ok) return result.value;
  throw new WeftError(WeftErrorCode.AddressInvalid, `invalid IPv4 address "${text}": ${result.reason}`, {
    value: text,
  });
}

/** True when `text` is a strict dotted quad. */
export function isIpv4(text: string): boolean {
  return tryParseIpv4(text).ok;
}

/** `0x0a000001` → `10.0.0.1`. */
export function formatIpv4(ip: Ipv4): string {
  return `${(ip >>> 24) & 255}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;
}

/** The netmask of a prefix length as an unsigned number (`24` → `0xffffff00`; `0` → `0`). */
export function prefixMask(prefixLen: number): number {
  return prefixLen === 0 ? 0 : (0xffffffff << (32 - prefixLen)) >>> 0;
}

/** How many addresses a prefix length spans (`24` → 256, `0` → 2^32). */
export function blockSize(prefixLen: number): number {
  return 2 ** (32 - prefixLen);
}

/** The address with its host bits cleared. */
export function maskIpv4(ip: Ipv4, prefixLen: number): Ipv4 {
  return (ip & prefixMask(prefixLen)) >>> 0;
}

/** Parse `a.b.c.d/len` without throwing; see `HostBits` for what happens to host bits. */
export function tryParseCidr(text: string, hostBits: HostBits = "reject"): ParseResult<Ipv4Cidr> {
  const slash = text.indexOf("/");
  if (slash < 0) return fail("expected <a.b.c.d>/<prefix length>, found no /");
  const address = text.slice(0, slash);
  const length = text.slice(slash + 1);
  if (!DECIMAL.test(length)) return fail(`prefix length "${length}" is not a decimal number`);
  if (length.length > 1 && length.startsWith("0"))
    return fail(`prefix length "${length}" has a leading zero`);
  const prefixLen = Number(length);
  if (prefixLen > 32) return fail(`prefix length ${prefixLen} is out of range 0..32`);
  const ip = tryParseIpv4(address);
  if (!ip.ok) return fail(`address "${address}": ${ip.reason}`);
  const network = maskIpv4(ip.value, prefixLen);
  if (hostBits === "keep") return ok({ ip: ip.value, prefixLen });
  if (hostBits === "reject" && network !== ip.value) {
    return fail(`host bits are set (the network is ${formatIpv4(network)}/${prefixLen})`);
  }
  return ok({ ip: network, prefixLen });
}

/** Parse `a.b.c.d/len`; throws `WeftError` ADDRESS_INVALID naming the text and the reason. */
export function parseCidr(text: string, hostBits: HostBits = "reject"): Ipv4Cidr {
  const result = tryParseCidr(text, hostBits);
  if (result.ok) return result.value;
  throw new WeftError(WeftErrorCode.AddressInvalid, `invalid IPv4 CIDR "${text}": ${result.reason}`, {
    value: text,
  });
}

/** `{ip: 0x0a050000, prefixLen: 16}` → `10.5.0.0/16`. */
export function formatCidr(cidr: Ipv4Cidr): string {
  return `${formatIpv4(cidr.ip)}/${cidr.prefixLen}`;
}

/** The network the CIDR lies in (host bits cleared). */
export function networkOf(cidr: Ipv4Cidr): Ipv4Cidr {
  return { ip: maskIpv4(cidr.ip, cidr.prefixLen), prefixLen: cidr.prefixLen };
}

/** True when the CIDR has no host bits set. */
export function isNetworkAddress(cidr: Ipv4Cidr): boolean {
  return maskIpv4(cidr.ip, cidr.prefixLen) === cidr.ip;
}

/** The first host address: the network address plus one, as flanneld writes it to subnet.env. */
export function firstHost(cidr: Ipv4Cidr): Ipv4 {
  return (maskIpv4(cidr.ip, cidr.prefixLen) + 1) >>> 0;
}

/** The last address of the CIDR (its broadcast address). */
export function lastAddress(cidr: Ipv4Cidr): Ipv4 {
  return maskIpv4(cidr.ip, cidr.prefixLen) + blockSize(cidr.prefixLen) - 1;
}

/** True when `ip` lies inside `cidr`. */
export function cidrContains(cidr: Ipv4Cidr, ip: Ipv4): boolean {
  const mask = prefixMask(cidr.prefixLen);
  return (cidr.ip & mask) >>> 0 === (ip & mask) >>> 0;
}

/** True when every address of `inner` lies inside `outer`. */
export function cidrContainsCidr(outer: Ipv4Cidr, inner: Ipv4Cidr): boolean {
  return outer.prefixLen <= inner.prefixLen && cidrContains(outer, inner.ip);
}

/** True when the two CIDRs share at least one address. */
export function cidrsOverlap(a: Ipv4Cidr, b: Ipv4Cidr): boolean {
  const mask = prefixMask(Math.min(a.prefixLen, b.prefixLen));
  return (a.ip & mask) >>> 0 === (b.ip & mask) >>> 0;
}

/** True when both CIDRs have the same address and prefix length. */
export function cidrEquals(a: Ipv4Cidr, b: Ipv4Cidr): boolean {
  return a.ip === b.ip && a.prefixLen === b.prefixLen;
}

/**
 * The subnet of the same size right after this one (`10.5.1.0/24` → `10.5.2.0/24`), or `undefined`
 * when it would pass 255.255.255.255.
 */
export function nextSubnet(cidr: Ipv4Cidr): Ipv4Cidr | undefined {
  const next = maskIpv4(cidr.ip, cidr.prefixLen) + blockSize(cidr.prefixLen);
  return next > 0xffffffff ? undefined : { ip: next, prefixLen: cidr.prefixLen };
}
