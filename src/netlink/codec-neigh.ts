/**
 * RTM_NEWNEIGH / RTM_DELNEIGH / RTM_GETNEIGH: struct ndmsg plus NDA_* attributes. One codec serves
 * ARP entries (`ip neigh replace <ip> lladdr <mac> dev <if> nud permanent`: NDA_DST, NDA_LLADDR) and
 * VXLAN FDB entries (`bridge fdb replace <mac> dev <if> dst <ip> self permanent`: family AF_BRIDGE,
 * NDA_LLADDR, NDA_DST), in the attribute order iproute2 6.1 uses for each.
 */
import { formatIp, formatMac, parseIp, parseMac } from "./address.ts";
import type { MessageWriter, RawMessage, Reader } from "./codec.ts";
import { AF, NDA, NLM_F, RTM, SIZE } from "./constants.ts";
import { NetlinkError } from "./errors.ts";
import type { Neigh } from "./types.ts";

const EINVAL = 22;

/** `ip neigh …` or `bridge fdb …` text for a neighbour, used in error messages. */
export function formatNeigh(neigh: Neigh): string {
  if (neigh.family === AF.BRIDGE) {
    return `bridge fdb ${neigh.mac ?? "?"} dev #${neigh.index}${neigh.ip === undefined ? "" : ` dst ${neigh.ip}`}`;
  }
  return `ip neigh ${neigh.ip ?? "?"}${neigh.mac === undefined ? "" : ` lladdr ${neigh.mac}`} dev #${neigh.index}`;
}

/** Appends a neighbour request (type RTM_NEWNEIGH or RTM_DELNEIGH). Invalid text throws EINVAL. */
export function encodeNeigh(w: MessageWriter, type: number, flags: number, seq: number, neigh: Neigh): void {
  const ip = neigh.ip === undefined ? undefined : parseIp(neigh.ip);
  const mac = neigh.mac === undefined ? undefined : parseMac(neigh.mac);
  const bridge = neigh.family === AF.BRIDGE;
  const problem =
    neigh.ip !== undefined && ip === undefined
      ? `"${neigh.ip}" is not an IP address`
      : neigh.mac !== undefined && mac === undefined
        ? `"${neigh.mac}" is not a MAC address`
        : bridge && mac === undefined
          ? "an FDB entry needs a MAC address"
          : !bridge && ip === undefined
            ? "a neighbour entry needs an IP address"
            : undefined;
  if (problem !== undefined) throw new NetlinkError(formatNeigh(neigh), EINVAL, { hint: problem });
  w.begin(type, NLM_F.REQUEST | flags, seq)
    .u8(neigh.family)
    .u8(0)
    .u16(0)
    .i32(neigh.index)
    .u16(neigh.state)
    .u8(neigh.flags ?? 0)
    .u8(0); // ndm_type
  if (bridge) {
    if (mac !== undefined) w.attr(NDA.LLADDR, mac);
    if (ip !== undefined) w.attr(NDA.DST, ip);
  } else {
    if (ip !== undefined) w.attr(NDA.DST, ip);
    if (mac !== undefined) w.attr(NDA.LLADDR, mac);
  }
  if (neigh.master !== undefined) w.attrU32(NDA.MASTER, neigh.master);
  w.end();
}

/** `ip neigh show` (AF_INET) or `bridge fdb show` (AF_BRIDGE). */
export function encodeNeighDump(w: MessageWriter, seq: number, family: number): void {
  w.begin(RTM.GETNEIGH, NLM_F.REQUEST | NLM_F.DUMP, seq)
    .u8(family)
    .u8(0)
    .u16(0)
    .i32(0)
    .u16(0)
    .u8(0)
    .u8(0);
  w.end();
}

/** Decodes an RTM_NEWNEIGH / RTM_DELNEIGH message. */
export function decodeNeigh(r: Reader, m: RawMessage): Neigh {
  const family = r.u8(m.offset);
  const index = r.i32(m.offset + 4);
  const state = r.u16(m.offset + 8);
  const flags = r.u8(m.offset + 10);
  let ip: string | undefined;
  let mac: string | undefined;
  let master: number | undefined;
  r.attrs(m.offset + SIZE.NDMSG, m.end, (type, offset, length) => {
    if (type === NDA.DST) ip = formatIp(r.data, offset, length);
    else if (type === NDA.LLADDR) mac = formatMac(r.data, offset, length);
    else if (type === NDA.MASTER) master = r.u32(offset);
  });
  return {
    index,
    family,
    ...(ip === undefined ? {} : { ip }),
    ...(mac === undefined ? {} : { mac }),
    state,
    flags,
    ...(master === undefined ? {} : { master }),
  };
}
