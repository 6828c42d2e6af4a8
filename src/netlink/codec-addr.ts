/**
 * RTM_NEWADDR / RTM_DELADDR / RTM_GETADDR: struct ifaddrmsg plus IFA_* attributes, laid out as
 * iproute2 6.1 sends `ip addr replace <address>/<len> dev <if>` (IFA_LOCAL, then IFA_ADDRESS).
 */
import { formatIp, parseIp } from "./address.ts";
import type { MessageWriter, RawMessage, Reader } from "./codec.ts";
import { AF, IFA, NLM_F, RTM, SIZE } from "./constants.ts";
import { NetlinkError } from "./errors.ts";
import type { Addr } from "./types.ts";

const EINVAL = 22;

/** Appends `ip addr replace|del <address>/<prefixLen> dev #<index>` (type RTM_NEWADDR or RTM_DELADDR). */
export function encodeAddr(w: MessageWriter, type: number, flags: number, seq: number, addr: Addr): void {
  const address = parseIp(addr.address);
  const max = address === undefined ? 0 : address.length * 8;
  if (address === undefined || addr.prefixLen < 0 || addr.prefixLen > max) {
    const verb = type === RTM.DELADDR ? "del" : "replace";
    throw new NetlinkError(`ip addr ${verb} ${addr.address}/${addr.prefixLen} dev #${addr.index}`, EINVAL, {
      hint: "the address or prefix length is invalid",
    });
  }
  w.begin(type, NLM_F.REQUEST | flags, seq)
    .u8(address.length === 16 ? AF.INET6 : AF.INET)
    .u8(addr.prefixLen)
    .u8(0) // ifa_flags
    .u8(addr.scope ?? 0)
    .u32(addr.index);
  w.attr(IFA.LOCAL, address);
  w.attr(IFA.ADDRESS, address);
  w.end();
}

/** `ip addr show` for one family (AF_UNSPEC: all). */
export function encodeAddrDump(w: MessageWriter, seq: number, family: number = AF.UNSPEC): void {
  w.begin(RTM.GETADDR, NLM_F.REQUEST | NLM_F.DUMP, seq)
    .u8(family)
    .u8(0)
    .u8(0)
    .u8(0)
    .u32(0);
  w.end();
}

/** IFA_CACHEINFO: struct ifa_cacheinfo { u32 ifa_prefered; u32 ifa_valid; u32 cstamp; u32 tstamp }. */
const IFA_CACHEINFO = 6;

/**
 * Decodes an RTM_NEWADDR / RTM_DELADDR message. `flags` is IFA_FLAGS (32 bits) when present, else the
 * header's 8-bit ifa_flags when not zero; the lifetimes come from IFA_CACHEINFO when present.
 */
export function decodeAddr(r: Reader, m: RawMessage): Addr {
  const family = r.u8(m.offset);
  const prefixLen = r.u8(m.offset + 1);
  const headerFlags = r.u8(m.offset + 2);
  const scope = r.u8(m.offset + 3);
  const index = r.u32(m.offset + 4);
  let local: string | undefined;
  let address = "";
  let label: string | undefined;
  let flags: number | undefined;
  let lifetimes: { preferredLifetime: number; validLifetime: number } | undefined;
  r.attrs(m.offset + SIZE.IFADDRMSG, m.end, (type, offset, length) => {
    if (type === IFA.LOCAL) local = formatIp(r.data, offset, length);
    else if (type === IFA.ADDRESS) address = formatIp(r.data, offset, length);
    else if (type === IFA.LABEL) label = r.string(offset, length);
    else if (type === IFA.FLAGS && length >= 4) flags = r.u32(offset);
    else if (type === IFA_CACHEINFO && length >= 8) {
      lifetimes = { preferredLifetime: r.u32(offset), validLifetime: r.u32(offset + 4) };
    }
  });
  if (flags === undefined && headerFlags !== 0) flags = headerFlags;
  return {
    index,
    family,
    address: local ?? address,
    prefixLen,
    scope,
    ...(label === undefined ? {} : { label }),
    ...(flags === undefined ? {} : { flags }),
    ...lifetimes,
  };
}
