/**
 * Multicast notifications (RTNLGRP_*) decoded into typed events. Pure: the monitor hands in what it
 * read from the socket, which may be several datagrams back to back; a message cut short (a read that
 * ended mid-datagram) is reported as `truncated`, so the consumer resynchronises instead of trusting
 * a partial picture.
 */
import { type RawMessage, Reader } from "./codec.ts";
import { decodeAddr } from "./codec-addr.ts";
import { decodeLink } from "./codec-link.ts";
import { decodeNeigh } from "./codec-neigh.ts";
import { decodeNexthop } from "./codec-nexthop.ts";
import { decodeRoute } from "./codec-route.ts";
import { RTM, SIZE } from "./constants.ts";
import type { Addr, Link, Neigh, Nexthop, Route } from "./types.ts";

/** Whether the object appeared/changed (RTM_NEW*) or went away (RTM_DEL*). */
export type EventAction = "new" | "del";

/**
 * One kernel change. `sender` is the netlink port id of the socket whose request caused it (0 when the
 * kernel acted on its own, e.g. a link going down), so an agent can tell its own writes from drift.
 */
export type NetlinkEvent =
  | { readonly type: "route"; readonly action: EventAction; readonly route: Route; readonly sender: number }
  | { readonly type: "link"; readonly action: EventAction; readonly link: Link; readonly sender: number }
  | { readonly type: "addr"; readonly action: EventAction; readonly addr: Addr; readonly sender: number }
  | { readonly type: "neigh"; readonly action: EventAction; readonly neigh: Neigh; readonly sender: number }
  | {
      readonly type: "nexthop";
      readonly action: EventAction;
      readonly nexthop: Nexthop;
      readonly sender: number;
    }
  /**
   * Events were lost: the socket overran (ENOBUFS), a read was cut short, or reading failed. The
   * consumer must re-list what it cares about; nothing else says what changed in between.
   */
  | { readonly type: "resync"; readonly reason: "overrun" | "truncated" | "error"; readonly detail: string };

export interface DecodeOptions {
  /** Route events are kept only for these tables; `undefined` keeps every table. */
  readonly tables?: ReadonlySet<number> | undefined;
  /**
   * Messages caused by this netlink port (a request socket's own writes echoed back) are dropped
   * before they are decoded: at start an agent writes 40,000 nexthops and routes for 20,000 peers.
   */
  readonly skipSender?: number | undefined;
}

export interface DecodedEvents {
  readonly events: NetlinkEvent[];
  /** True when the bytes ended inside a message: at least one event was lost. */
  readonly truncated: boolean;
}

function decodeOne(r: Reader, m: RawMessage, options: DecodeOptions): NetlinkEvent | undefined {
  const sender = m.pid;
  switch (m.type) {
    case RTM.NEWROUTE:
    case RTM.DELROUTE: {
      const route = decodeRoute(r, m);
      if (options.tables !== undefined && !options.tables.has(route.table ?? 0)) return undefined;
      return { type: "route", action: m.type === RTM.NEWROUTE ? "new" : "del", route, sender };
    }
    case RTM.NEWLINK:
    case RTM.DELLINK:
      return { type: "link", action: m.type === RTM.NEWLINK ? "new" : "del", link: decodeLink(r, m), sender };
    case RTM.NEWADDR:
    case RTM.DELADDR:
      return { type: "addr", action: m.type === RTM.NEWADDR ? "new" : "del", addr: decodeAddr(r, m), sender };
    case RTM.NEWNEIGH:
    case RTM.DELNEIGH:
      return {
        type: "neigh",
        action: m.type === RTM.NEWNEIGH ? "new" : "del",
        neigh: decodeNeigh(r, m),
        sender,
      };
    case RTM.NEWNEXTHOP:
    case RTM.DELNEXTHOP:
      return {
        type: "nexthop",
        action: m.type === RTM.NEWNEXTHOP ? "new" : "del",
        nexthop: decodeNexthop(r, m),
        sender,
      };
    default:
      return undefined;
  }
}

/** Decodes every complete message in `bytes` (one or more datagrams read back to back). */
export function decodeEvents(bytes: Uint8Array, options: DecodeOptions = {}): DecodedEvents {
  const r = new Reader(bytes);
  const events: NetlinkEvent[] = [];
  let offset = 0;
  while (offset + SIZE.NLMSGHDR <= bytes.length) {
    const length = r.u32(offset);
    if (length < SIZE.NLMSGHDR || offset + length > bytes.length) return { events, truncated: true };
    const message: RawMessage = {
      type: r.u16(offset + 4),
      flags: r.u16(offset + 6),
      seq: r.u32(offset + 8),
      pid: r.u32(offset + 12),
      offset: offset + SIZE.NLMSGHDR,
      end: offset + length,
    };
    if (options.skipSender === undefined || message.pid !== options.skipSender) {
      const event = decodeOne(r, message, options);
      if (event !== undefined) events.push(event);
    }
    offset += (length + 3) & ~3;
  }
  return { events, truncated: offset < bytes.length };
}
