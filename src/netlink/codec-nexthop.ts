/**
 * RTM_NEWNEXTHOP / RTM_DELNEXTHOP / RTM_GETNEXTHOP: struct nhmsg plus NHA_* attributes (kernel ≥ 5.3).
 * Requests are laid out as iproute2 6.1 lays out `ip nexthop replace id <id> via <gw> dev <if> proto
 * <p> [onlink]` (NHA_ID, NHA_GATEWAY, NHA_OIF) and `ip nexthop del id <id>` (NHA_ID only).
 */
import { formatIp, parseIp } from "./address.ts";
import type { MessageWriter, RawMessage, Reader } from "./codec.ts";
import { AF, NHA, NLM_F, RTM, RTNH_F, RTPROT, SIZE } from "./constants.ts";
import { NetlinkError } from "./errors.ts";
import type { Nexthop } from "./types.ts";

const EINVAL = 22;

/** `ip nexthop` text for a nexthop, used in error messages: "id 5 via 10.5.4.0 dev #7 proto 77 onlink". */
export function formatNexthop(nh: Nexthop): string {
  const parts = ["id", String(nh.id)];
  if (nh.gateway !== undefined) parts.push("via", nh.gateway);
  if (nh.oif !== undefined) parts.push("dev", `#${nh.oif}`);
  if (nh.protocol !== undefined) parts.push("proto", String(nh.protocol));
  if (nh.onlink === true) parts.push("onlink");
  return parts.join(" ");
}

function checkId(nh: Nexthop, verb: string): void {
  if (!Number.isInteger(nh.id) || nh.id <= 0 || nh.id > 0xffff_ffff) {
    throw new NetlinkError(`ip nexthop ${verb} ${formatNexthop(nh)}`, EINVAL, {
      hint: `nexthop id ${nh.id} is not an integer in 1..4294967295`,
    });
  }
}

/** Appends `ip nexthop replace`: a nexthop with a gateway and a device. Invalid text throws EINVAL. */
export function encodeNexthop(w: MessageWriter, flags: number, seq: number, nh: Nexthop): void {
  checkId(nh, "replace");
  const gateway = nh.gateway === undefined ? undefined : parseIp(nh.gateway);
  if (gateway === undefined || nh.oif === undefined) {
    throw new NetlinkError(`ip nexthop replace ${formatNexthop(nh)}`, EINVAL, {
      hint: nh.oif === undefined ? "a nexthop needs a device" : `gateway "${nh.gateway}" is not an address`,
    });
  }
  w.begin(RTM.NEWNEXTHOP, NLM_F.REQUEST | flags, seq)
    .u8(gateway.length === 16 ? AF.INET6 : AF.INET)
    .u8(0) // nh_scope
    .u8(nh.protocol ?? RTPROT.BOOT)
    .u8(0) // resvd
    .u32(nh.onlink === true ? RTNH_F.ONLINK : 0);
  w.attrU32(NHA.ID, nh.id);
  w.attr(NHA.GATEWAY, gateway);
  w.attrU32(NHA.OIF, nh.oif);
  w.end();
}

/** Appends `ip nexthop del id <id>`. */
export function encodeNexthopDelete(w: MessageWriter, seq: number, nh: Nexthop): void {
  checkId(nh, "del");
  w.begin(RTM.DELNEXTHOP, NLM_F.REQUEST | NLM_F.ACK, seq)
    .u8(AF.UNSPEC)
    .u8(0)
    .u8(0)
    .u8(0)
    .u32(0);
  w.attrU32(NHA.ID, nh.id);
  w.end();
}

/** Appends `ip nexthop show`: RTM_GETNEXTHOP with NLM_F_DUMP for every family. */
export function encodeNexthopDump(w: MessageWriter, seq: number): void {
  w.begin(RTM.GETNEXTHOP, NLM_F.REQUEST | NLM_F.DUMP, seq)
    .u8(AF.UNSPEC)
    .u8(0)
    .u8(0)
    .u8(0)
    .u32(0);
  w.end();
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** Decodes an RTM_NEWNEXTHOP / RTM_DELNEXTHOP message (dump part or notification). */
export function decodeNexthop(r: Reader, m: RawMessage): Nexthop {
  const nh: Mutable<Nexthop> = { id: 0, protocol: r.u8(m.offset + 2) };
  if ((r.u32(m.offset + 4) & RTNH_F.ONLINK) !== 0) nh.onlink = true;
  r.attrs(m.offset + SIZE.NHMSG, m.end, (type, offset, length) => {
    switch (type) {
      case NHA.ID:
        nh.id = r.u32(offset);
        break;
      case NHA.GATEWAY:
        nh.gateway = formatIp(r.data, offset, length);
        break;
      case NHA.OIF:
        nh.oif = r.u32(offset);
        break;
      case NHA.GROUP:
        nh.group = true;
        break;
      case NHA.BLACKHOLE:
        nh.blackhole = true;
        break;
    }
  });
  return nh;
}
