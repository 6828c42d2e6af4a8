/**
 * RTM_NEWROUTE / RTM_DELROUTE / RTM_GETROUTE: struct rtmsg plus RTA_* attributes. Requests are laid
 * out byte for byte as iproute2 6.1 lays out `ip route replace|del <dst> via <gw> dev <if> …`
 * (RTA_DST, RTA_GATEWAY, RTA_TABLE, RTA_PRIORITY, RTA_OIF, RTA_NH_ID), so a capture of either reads the
 * same. A route through a nexthop object (`nhid`) carries RTA_NH_ID instead of a gateway and device.
 */
import { formatIp, parseIpInto, parsePrefixInto } from "./address.ts";
import type { MessageWriter, RawMessage, Reader } from "./codec.ts";
import { AF, NLM_F, RT_SCOPE, RT_TABLE, RTA, RTM, RTN, RTNH_F, RTPROT, SIZE } from "./constants.ts";
import { NetlinkError } from "./errors.ts";
import type { Route } from "./types.ts";

const EINVAL = 22;

/** `ip route` text for a route, used in error messages: "10.5.1.0/24 via 172.17.42.2 dev #3 proto 77". */
export function formatRoute(route: Route): string {
  const parts = [route.dst];
  if (route.nhid !== undefined) parts.push("nhid", String(route.nhid));
  if (route.gateway !== undefined) parts.push("via", route.gateway);
  if (route.oif !== undefined) parts.push("dev", `#${route.oif}`);
  if (route.table !== undefined && route.table !== RT_TABLE.MAIN) parts.push("table", String(route.table));
  if (route.protocol !== undefined) parts.push("proto", String(route.protocol));
  if (route.priority !== undefined) parts.push("metric", String(route.priority));
  if (route.onlink === true) parts.push("onlink");
  return parts.join(" ");
}

function invalid(isDelete: boolean, route: Route, what: string): NetlinkError {
  return new NetlinkError(`ip route ${isDelete ? "del" : "replace"} ${formatRoute(route)}`, EINVAL, {
    hint: what,
  });
}

/** Parse targets reused for every route (never handed to C). */
const dstBytes = new Uint8Array(16);
const gatewayScratch = new Uint8Array(16);

/**
 * Appends one route request. `type` is RTM_NEWROUTE or RTM_DELROUTE; `flags` adds to NLM_F_REQUEST
 * (e.g. NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE for `ip route replace`). Invalid text in the route
 * throws NetlinkError EINVAL before anything is written.
 */
export function encodeRoute(w: MessageWriter, type: number, flags: number, seq: number, route: Route): void {
  const isDelete = type === RTM.DELROUTE;
  const dst = parsePrefixInto(route.dst, dstBytes);
  if (dst === undefined)
    throw invalid(isDelete, route, `destination "${route.dst}" is not an address/prefix`);
  const family = dst.bytes === 16 ? AF.INET6 : AF.INET;
  let gatewayBytes = 0;
  // Through a nexthop the gateway and device are the nexthop's; the kernel refuses both together
  // (EINVAL "Nexthop specification and nexthop id are mutually exclusive"), so a route read back from
  // a dump, which carries both, is written and deleted by its id alone.
  const viaNexthop = route.nhid !== undefined;
  if (route.gateway !== undefined && !viaNexthop) {
    gatewayBytes = parseIpInto(route.gateway, 0, route.gateway.length, gatewayScratch);
    if (gatewayBytes !== dst.bytes) {
      throw invalid(
        isDelete,
        route,
        `gateway "${route.gateway}" is not an address of the destination's family`,
      );
    }
  }
  const table = route.table ?? RT_TABLE.MAIN;
  const routeType = route.type ?? (isDelete ? RTN.UNSPEC : RTN.UNICAST);
  let scope = route.scope;
  if (scope === undefined) {
    if (isDelete) scope = RT_SCOPE.NOWHERE;
    else if (routeType === RTN.LOCAL) scope = RT_SCOPE.HOST;
    else if (gatewayBytes === 0 && route.nhid === undefined && routeType === RTN.UNICAST)
      scope = RT_SCOPE.LINK;
    else scope = RT_SCOPE.UNIVERSE;
  }
  w.begin(type, NLM_F.REQUEST | flags, seq)
    .u8(family)
    .u8(dst.length)
    .u8(0) // rtm_src_len
    .u8(0) // rtm_tos
    .u8(table < 256 ? table : RT_TABLE.UNSPEC)
    .u8(route.protocol ?? (isDelete ? RTPROT.UNSPEC : RTPROT.BOOT))
    .u8(scope)
    .u8(routeType)
    .u32(route.onlink === true && !viaNexthop ? RTNH_F.ONLINK : 0);
  if (dst.length > 0) w.attr(RTA.DST, dstBytes, dst.bytes);
  if (gatewayBytes > 0) w.attr(RTA.GATEWAY, gatewayScratch, gatewayBytes);
  if (table >= 256) w.attrU32(RTA.TABLE, table);
  if (route.priority !== undefined) w.attrU32(RTA.PRIORITY, route.priority);
  if (route.oif !== undefined && !viaNexthop) w.attrU32(RTA.OIF, route.oif);
  if (route.nhid !== undefined) w.attrU32(RTA.NH_ID, route.nhid);
  w.end();
}

/** Appends `ip route show` for one family: RTM_GETROUTE with NLM_F_DUMP and an otherwise empty rtmsg. */
export function encodeRouteDump(w: MessageWriter, seq: number, family: number = AF.INET): void {
  w.begin(RTM.GETROUTE, NLM_F.REQUEST | NLM_F.DUMP, seq)
    .u8(family)
    .u8(0)
    .u8(0)
    .u8(0)
    .u8(0)
    .u8(0)
    .u8(0)
    .u8(0)
    .u32(0);
  w.end();
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * Decodes an RTM_NEWROUTE / RTM_DELROUTE message (dump part or multicast notification). Written as
 * one flat loop: a 10,000-route dump decodes here, so it avoids a closure and spreads per route.
 */
export function decodeRoute(r: Reader, m: RawMessage): Route {
  const family = r.u8(m.offset);
  const route: Mutable<Route> = {
    dst: "",
    table: r.u8(m.offset + 4),
    protocol: r.u8(m.offset + 5),
    scope: r.u8(m.offset + 6),
    type: r.u8(m.offset + 7),
  };
  if ((r.u32(m.offset + 8) & RTNH_F.ONLINK) !== 0) route.onlink = true;
  let dst = family === AF.INET6 ? "::" : "0.0.0.0";
  let offset = m.offset + SIZE.RTMSG;
  while (offset + SIZE.NLATTR <= m.end) {
    const length = r.u16(offset);
    if (length < SIZE.NLATTR || offset + length > m.end) break;
    const payload = offset + SIZE.NLATTR;
    const size = length - SIZE.NLATTR;
    switch (r.u16(offset + 2) & 0x3fff) {
      case RTA.DST:
        dst = formatIp(r.data, payload, size);
        break;
      case RTA.GATEWAY:
        route.gateway = formatIp(r.data, payload, size);
        break;
      case RTA.OIF:
        route.oif = r.u32(payload);
        break;
      case RTA.PRIORITY:
        route.priority = r.u32(payload);
        break;
      case RTA.PREFSRC:
        route.prefsrc = formatIp(r.data, payload, size);
        break;
      case RTA.TABLE:
        route.table = r.u32(payload);
        break;
      case RTA.NH_ID:
        route.nhid = r.u32(payload);
        break;
    }
    offset += (length + 3) & ~3;
  }
  route.dst = `${dst}/${r.u8(m.offset + 1)}`;
  return route;
}
