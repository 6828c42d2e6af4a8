/**
 * RTM_NEWLINK / RTM_DELLINK / RTM_GETLINK: struct ifinfomsg plus IFLA_* attributes, including the
 * nested IFLA_LINKINFO { IFLA_INFO_KIND, IFLA_INFO_DATA { IFLA_VXLAN_* } } of a VXLAN device. Requests
 * follow iproute2 6.1's layout of `ip link add … type vxlan …`, `ip link set … up|mtu`.
 */
import { formatIp, formatMac, parseIp, parseMac } from "./address.ts";
import type { MessageWriter, RawMessage, Reader } from "./codec.ts";
import { AF, IFF, IFLA, IFLA_INFO, IFLA_VXLAN, NLM_F, RTEXT_FILTER, RTM, SIZE } from "./constants.ts";
import { NetlinkError } from "./errors.ts";
import type { Link, VxlanInfo, VxlanLinkSpec } from "./types.ts";

const EINVAL = 22;
const IFLA_VXLAN_LOCAL6 = 17;
/** What iproute2 asks for: no per-VF data, no statistics (they are most of a link dump's bytes). */
const EXT_MASK = RTEXT_FILTER.VF | RTEXT_FILTER.SKIP_STATS;

function ifinfomsg(w: MessageWriter, index: number, flags: number, change: number): void {
  w.u8(AF.UNSPEC).u8(0).u16(0).i32(index).u32(flags).u32(change);
}

/** `ip link show`: RTM_GETLINK dump of every link. */
export function encodeLinkDump(w: MessageWriter, seq: number): void {
  w.begin(RTM.GETLINK, NLM_F.REQUEST | NLM_F.DUMP, seq);
  ifinfomsg(w, 0, 0, 0);
  w.attrU32(IFLA.EXT_MASK, EXT_MASK);
  w.end();
}

/** `ip link show dev <name>`: RTM_GETLINK for one name; the kernel answers one RTM_NEWLINK or ENODEV. */
export function encodeLinkGet(w: MessageWriter, seq: number, name: string): void {
  w.begin(RTM.GETLINK, NLM_F.REQUEST, seq);
  ifinfomsg(w, 0, 0, 0);
  w.attrU32(IFLA.EXT_MASK, EXT_MASK);
  w.attrString(IFLA.IFNAME, name);
  w.end();
}

/** `ip link set dev #<index> [up|down] [mtu <n>]`. */
export function encodeLinkSet(
  w: MessageWriter,
  seq: number,
  index: number,
  change: { readonly up?: boolean; readonly mtu?: number },
): void {
  w.begin(RTM.NEWLINK, NLM_F.REQUEST | NLM_F.ACK, seq);
  ifinfomsg(w, index, change.up === true ? IFF.UP : 0, change.up === undefined ? 0 : IFF.UP);
  if (change.mtu !== undefined) w.attrU32(IFLA.MTU, change.mtu);
  w.end();
}

/** `ip link del dev #<index>`. */
export function encodeLinkDelete(w: MessageWriter, seq: number, index: number): void {
  w.begin(RTM.DELLINK, NLM_F.REQUEST | NLM_F.ACK, seq);
  ifinfomsg(w, index, 0, 0);
  w.end();
}

/**
 * `ip link add <name> [mtu N] [address MAC] type vxlan id <id> [local IP] [dev #link] [dstport P]
 * [nolearning] [gbp]` with NLM_F_CREATE | NLM_F_EXCL: fails with EEXIST if the name is taken.
 */
export function encodeVxlanAdd(w: MessageWriter, seq: number, spec: VxlanLinkSpec): void {
  const local = spec.local === undefined ? undefined : parseIp(spec.local);
  const operation = `ip link add ${spec.name} type vxlan id ${spec.id}`;
  if (spec.local !== undefined && local === undefined) {
    throw new NetlinkError(operation, EINVAL, { hint: `local "${spec.local}" is not an IP address` });
  }
  const mac = spec.mac === undefined ? undefined : parseMac(spec.mac);
  if (spec.mac !== undefined && mac === undefined) {
    throw new NetlinkError(operation, EINVAL, { hint: `address "${spec.mac}" is not a MAC address` });
  }
  w.begin(RTM.NEWLINK, NLM_F.REQUEST | NLM_F.ACK | NLM_F.CREATE | NLM_F.EXCL, seq);
  ifinfomsg(w, 0, 0, 0);
  if (spec.mtu !== undefined) w.attrU32(IFLA.MTU, spec.mtu);
  if (mac !== undefined) w.attr(IFLA.ADDRESS, mac);
  w.attrString(IFLA.IFNAME, spec.name);
  const info = w.nest(IFLA.LINKINFO);
  w.attrString(IFLA_INFO.KIND, "vxlan", false);
  const data = w.nest(IFLA_INFO.DATA);
  if (spec.link !== undefined) w.attrU32(IFLA_VXLAN.LINK, spec.link);
  w.attrU32(IFLA_VXLAN.ID, spec.id);
  if (local !== undefined) w.attr(local.length === 16 ? IFLA_VXLAN_LOCAL6 : IFLA_VXLAN.LOCAL, local);
  if (spec.learning !== undefined) w.attrU8(IFLA_VXLAN.LEARNING, spec.learning ? 1 : 0);
  if (spec.port !== undefined) w.attrU16(IFLA_VXLAN.PORT, spec.port, true);
  if (spec.gbp === true) w.attrFlag(IFLA_VXLAN.GBP);
  w.nestEnd(data);
  w.nestEnd(info);
  w.end();
}

function decodeVxlan(r: Reader, start: number, end: number): VxlanInfo {
  let id = 0;
  let local: string | undefined;
  let link: number | undefined;
  let port: number | undefined;
  let learning: boolean | undefined;
  let gbp = false;
  r.attrs(start, end, (type, offset, length) => {
    if (type === IFLA_VXLAN.ID) id = r.u32(offset);
    else if (type === IFLA_VXLAN.LOCAL || type === IFLA_VXLAN_LOCAL6)
      local = formatIp(r.data, offset, length);
    else if (type === IFLA_VXLAN.LINK) link = r.u32(offset);
    else if (type === IFLA_VXLAN.PORT) port = r.u16be(offset);
    else if (type === IFLA_VXLAN.LEARNING) learning = r.u8(offset) !== 0;
    else if (type === IFLA_VXLAN.GBP) gbp = true;
  });
  return {
    id,
    ...(local === undefined ? {} : { local }),
    ...(link === undefined ? {} : { link }),
    ...(port === undefined ? {} : { port }),
    ...(learning === undefined ? {} : { learning }),
    gbp,
  };
}

/** Decodes an RTM_NEWLINK / RTM_DELLINK message. */
export function decodeLink(r: Reader, m: RawMessage): Link {
  const index = r.i32(m.offset + 4);
  const flags = r.u32(m.offset + 8);
  let name = "";
  let mtu = 0;
  let mac: string | undefined;
  let kind: string | undefined;
  let master: number | undefined;
  let parent: number | undefined;
  let vxlan: VxlanInfo | undefined;
  r.attrs(m.offset + SIZE.IFINFOMSG, m.end, (type, offset, length) => {
    switch (type) {
      case IFLA.IFNAME:
        name = r.string(offset, length);
        break;
      case IFLA.MTU:
        mtu = r.u32(offset);
        break;
      case IFLA.ADDRESS:
        mac = formatMac(r.data, offset, length);
        break;
      case IFLA.MASTER:
        master = r.u32(offset);
        break;
      case IFLA.LINK:
        parent = r.u32(offset);
        break;
      case IFLA.LINKINFO:
        r.attrs(offset, offset + length, (infoType, infoOffset, infoLength) => {
          if (infoType === IFLA_INFO.KIND) kind = r.string(infoOffset, infoLength);
          else if (infoType === IFLA_INFO.DATA && kind === "vxlan") {
            vxlan = decodeVxlan(r, infoOffset, infoOffset + infoLength);
          }
        });
        break;
    }
  });
  return {
    index,
    name,
    mtu,
    up: (flags & IFF.UP) !== 0,
    flags,
    ...(mac === undefined ? {} : { mac }),
    ...(kind === undefined ? {} : { kind }),
    ...(master === undefined ? {} : { master }),
    ...(parent === undefined ? {} : { parent }),
    ...(vxlan === undefined ? {} : { vxlan }),
  };
}
