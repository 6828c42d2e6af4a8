/**
 * The kernel interface of weft: routes, links, addresses and neighbours over one persistent
 * NETLINK_ROUTE socket, with methods named after the iproute2 commands they equal (vishvananda/netlink
 * style). Writes go out in batches of many messages per send and report per-object failures in the
 * result instead of throwing one by one; dumps are one request each, filtered in user space.
 *
 * Ownership: weft marks every route it writes with protocol RTPROT_WEFT, so a restarted agent finds
 * its routes with `routeList({ protocol: RTPROT_WEFT })` and never touches anyone else's.
 */
import { Channel, type ChannelOptions, type ListResult } from "./channel.ts";
import { decodeAddr, encodeAddr, encodeAddrDump } from "./codec-addr.ts";
import {
  decodeLink,
  encodeLinkDelete,
  encodeLinkDump,
  encodeLinkGet,
  encodeLinkSet,
  encodeVxlanAdd,
} from "./codec-link.ts";
import { decodeNeigh, encodeNeigh, encodeNeighDump, formatNeigh } from "./codec-neigh.ts";
import {
  decodeNexthop,
  encodeNexthop,
  encodeNexthopDelete,
  encodeNexthopDump,
  formatNexthop,
} from "./codec-nexthop.ts";
import { decodeRoute, encodeRoute, encodeRouteDump, formatRoute } from "./codec-route.ts";
import { AF, NLM_F, NTF, NUD, RT_TABLE, RTM } from "./constants.ts";
import { NetlinkError } from "./errors.ts";
import { NetlinkSocket } from "./socket.ts";
import { Errno, type Transport } from "./transport.ts";
import type { Addr, Link, Neigh, Nexthop, Route, VxlanLinkSpec } from "./types.ts";

export type { ListResult } from "./channel.ts";

/**
 * weft's route protocol number (`proto 77`), its ownership marker. 77 is unassigned in linux/rtnetlink.h
 * and in iproute2's /etc/iproute2/rt_protos (kernel 2, boot 3, static 4, zebra 11, bird 12, … babel 42,
 * openr 99, bgp 186 … eigrp 192; rt_protos.d is empty here), and differs from flanneld's (boot: its
 * routes carry vishvananda/netlink's default) and Calico felix's (80). `ip route show proto 77` lists
 * weft's routes; a file `/etc/iproute2/rt_protos.d/weft.conf` with `77 weft` would make it print "weft".
 */
export const RTPROT_WEFT = 77;

/** One object a batch could not apply. */
export interface Failure {
  /** Positive errno (EEXIST 17, ESRCH 3, ENETUNREACH 101…). */
  readonly errno: number;
  /** Symbolic errno name. */
  readonly errnoName: string;
  /** What failed, why, and the kernel's own text when it gave one. */
  readonly message: string;
}

export interface RouteFailure extends Failure {
  readonly route: Route;
}

export interface NeighFailure extends Failure {
  readonly neigh: Neigh;
}

export interface NexthopFailure extends Failure {
  readonly nexthop: Nexthop;
}

/** The outcome of a batched write: how many objects the kernel acked, and each one it refused. */
export interface BatchResult<F extends Failure = RouteFailure> {
  readonly applied: number;
  readonly failures: readonly F[];
}

export interface RouteFilter {
  /** Table to list; RT_TABLE_MAIN (254) when omitted, RT_TABLE_UNSPEC (0) for all tables. */
  readonly table?: number;
  readonly protocol?: number;
  readonly oif?: number;
  /** AF_INET (default) or AF_INET6. */
  readonly family?: number;
}

export interface AddrFilter {
  readonly index?: number;
  /** AF_INET, AF_INET6, or AF_UNSPEC (default) for both. */
  readonly family?: number;
}

export interface NeighFilter {
  readonly index?: number;
}

/** A VXLAN forwarding entry: frames for `mac` on device `index` are sent to the VTEP `dst`. */
export interface FdbEntry {
  readonly index: number;
  readonly mac: string;
  readonly dst: string;
}

/** The kernel as the reconciler sees it; `Netlink` talks to the real one, test fakes keep it in memory. */
export interface NetlinkHandle {
  routeList(filter?: RouteFilter): Promise<ListResult<Route>>;
  routeReplace(routes: readonly Route[]): Promise<BatchResult>;
  routeDelete(routes: readonly Route[]): Promise<BatchResult>;
  linkList(): Promise<ListResult<Link>>;
  linkByName(name: string): Promise<Link | undefined>;
  linkAddVxlan(spec: VxlanLinkSpec): Promise<Link>;
  linkSetUp(index: number): Promise<void>;
  linkSetMtu(index: number, mtu: number): Promise<void>;
  linkDelete(index: number): Promise<void>;
  addrList(filter?: AddrFilter): Promise<ListResult<Addr>>;
  addrReplace(addr: Addr): Promise<void>;
  addrDelete(addr: Addr): Promise<void>;
  neighList(filter?: NeighFilter): Promise<ListResult<Neigh>>;
  neighReplace(neighs: readonly Neigh[]): Promise<BatchResult<NeighFailure>>;
  neighDelete(neighs: readonly Neigh[]): Promise<BatchResult<NeighFailure>>;
  fdbList(filter?: NeighFilter): Promise<ListResult<Neigh>>;
  fdbReplace(entries: readonly FdbEntry[]): Promise<BatchResult<NeighFailure>>;
  fdbDelete(entries: readonly FdbEntry[]): Promise<BatchResult<NeighFailure>>;
  /** Rejects with EOPNOTSUPP (or EINVAL) on kernels without nexthop objects (before 5.3). */
  nexthopList(): Promise<ListResult<Nexthop>>;
  nexthopReplace(nexthops: readonly Nexthop[]): Promise<BatchResult<NexthopFailure>>;
  nexthopDelete(nexthops: readonly Nexthop[]): Promise<BatchResult<NexthopFailure>>;
  close(): Promise<void>;
}

const REPLACE = NLM_F.ACK | NLM_F.CREATE | NLM_F.REPLACE;

function failure(error: NetlinkError): Failure {
  return { errno: error.errno, errnoName: error.errnoName, message: error.message };
}

function fdbNeigh(entry: FdbEntry): Neigh {
  return {
    index: entry.index,
    family: AF.BRIDGE,
    mac: entry.mac,
    ip: entry.dst,
    state: NUD.PERMANENT | NUD.NOARP,
    flags: NTF.SELF,
  };
}

/** rtnetlink through bun:ffi: one persistent request socket, batched writes, typed errors. */
export class Netlink implements NetlinkHandle {
  readonly #channel: Channel;

  /** Wraps a transport; `Netlink.open()` is the usual way in. */
  constructor(transport: Transport, options: ChannelOptions = {}) {
    this.#channel = new Channel(transport, options);
  }

  /** Opens the request socket (8 MiB receive buffer for acks when CAP_NET_ADMIN allows, extended acks). */
  static open(options: ChannelOptions = {}): Netlink {
    const socket = NetlinkSocket.open({
      receiveBufferBytes: 4 * 1024 * 1024,
      sendBufferBytes: 1024 * 1024,
      extendedAck: true,
    });
    return new Netlink(socket, options);
  }

  /**
   * The request socket's port id: monitor events whose `sender` equals it were caused by this handle,
   * so a reconciler can tell its own writes from drift.
   */
  get portId(): number {
    return this.#channel.portId;
  }

  /** Messages per send. */
  get batchSize(): number {
    return this.#channel.batchSize;
  }

  /** `ip route show table main [proto N] [dev X]`: one RTM_GETROUTE dump, filtered here. */
  routeList(filter: RouteFilter = {}): Promise<ListResult<Route>> {
    const table = filter.table ?? RT_TABLE.MAIN;
    return this.#channel.dump(
      "ip route show",
      (w, seq) => encodeRouteDump(w, seq, filter.family ?? AF.INET),
      (r, m) => {
        if (m.type !== RTM.NEWROUTE) return undefined;
        const route = decodeRoute(r, m);
        if (table !== RT_TABLE.UNSPEC && route.table !== table) return undefined;
        if (filter.protocol !== undefined && route.protocol !== filter.protocol) return undefined;
        if (filter.oif !== undefined && route.oif !== filter.oif) return undefined;
        return route;
      },
    );
  }

  /** `ip route replace <dst> via <gw> dev <oif> proto <p> …` for every route, batched. */
  async routeReplace(routes: readonly Route[]): Promise<BatchResult> {
    const out = await this.#channel.batch(
      routes,
      (w, seq, route) => encodeRoute(w, RTM.NEWROUTE, REPLACE, seq, route),
      (route) => `ip route replace ${formatRoute(route)}`,
    );
    return {
      applied: out.applied,
      failures: out.failures.map((f) => ({ route: f.item, ...failure(f.error) })),
    };
  }

  /**
   * `ip route del <dst> [via <gw>] [dev <oif>] [proto <p>]` for every route, batched. Fields given must
   * match: with `protocol: RTPROT_WEFT` a route of another owner is left alone (ESRCH).
   */
  async routeDelete(routes: readonly Route[]): Promise<BatchResult> {
    const out = await this.#channel.batch(
      routes,
      (w, seq, route) => encodeRoute(w, RTM.DELROUTE, NLM_F.ACK, seq, route),
      (route) => `ip route del ${formatRoute(route)}`,
    );
    return {
      applied: out.applied,
      failures: out.failures.map((f) => ({ route: f.item, ...failure(f.error) })),
    };
  }

  /** `ip link show`. */
  linkList(): Promise<ListResult<Link>> {
    return this.#channel.dump("ip link show", encodeLinkDump, (r, m) =>
      m.type === RTM.NEWLINK ? decodeLink(r, m) : undefined,
    );
  }

  /** `ip link show dev <name>`; `undefined` when there is no such link. */
  linkByName(name: string): Promise<Link | undefined> {
    return this.#channel.get(
      `ip link show dev ${name}`,
      (w, seq) => encodeLinkGet(w, seq, name),
      decodeLink,
      Errno.ENODEV,
    );
  }

  /** `ip link add <name> type vxlan id <id> local <ip> dev <link> dstport <port> nolearning`; EEXIST if taken. */
  async linkAddVxlan(spec: VxlanLinkSpec): Promise<Link> {
    const operation = `ip link add ${spec.name} type vxlan id ${spec.id}`;
    await this.#channel.request(operation, (w, seq) => encodeVxlanAdd(w, seq, spec));
    const link = await this.linkByName(spec.name);
    if (link === undefined) throw new NetlinkError(operation, Errno.ENODEV, { hint: "created, then gone" });
    return link;
  }

  /** `ip link set dev #<index> up`. */
  linkSetUp(index: number): Promise<void> {
    return this.#channel.request(`ip link set dev #${index} up`, (w, seq) =>
      encodeLinkSet(w, seq, index, { up: true }),
    );
  }

  /** `ip link set dev #<index> mtu <mtu>`. */
  linkSetMtu(index: number, mtu: number): Promise<void> {
    return this.#channel.request(`ip link set dev #${index} mtu ${mtu}`, (w, seq) =>
      encodeLinkSet(w, seq, index, { mtu }),
    );
  }

  /** `ip link del dev #<index>`. */
  linkDelete(index: number): Promise<void> {
    return this.#channel.request(`ip link del dev #${index}`, (w, seq) => encodeLinkDelete(w, seq, index));
  }

  /** `ip addr show [dev #<index>]`. */
  addrList(filter: AddrFilter = {}): Promise<ListResult<Addr>> {
    return this.#channel.dump(
      "ip addr show",
      (w, seq) => encodeAddrDump(w, seq, filter.family ?? AF.UNSPEC),
      (r, m) => {
        if (m.type !== RTM.NEWADDR) return undefined;
        const addr = decodeAddr(r, m);
        return filter.index === undefined || addr.index === filter.index ? addr : undefined;
      },
    );
  }

  /** `ip addr replace <address>/<prefixLen> dev #<index>`. */
  addrReplace(addr: Addr): Promise<void> {
    return this.#channel.request(
      `ip addr replace ${addr.address}/${addr.prefixLen} dev #${addr.index}`,
      (w, seq) => encodeAddr(w, RTM.NEWADDR, REPLACE, seq, addr),
    );
  }

  /** `ip addr del <address>/<prefixLen> dev #<index>`. */
  addrDelete(addr: Addr): Promise<void> {
    return this.#channel.request(
      `ip addr del ${addr.address}/${addr.prefixLen} dev #${addr.index}`,
      (w, seq) => encodeAddr(w, RTM.DELADDR, NLM_F.ACK, seq, addr),
    );
  }

  /** `ip neigh show [dev #<index>]` (IPv4 ARP entries). */
  neighList(filter: NeighFilter = {}): Promise<ListResult<Neigh>> {
    return this.#neighDump("ip neigh show", AF.INET, filter);
  }

  /** `ip neigh replace <ip> lladdr <mac> dev #<index> nud <state>` for every entry, batched. */
  neighReplace(neighs: readonly Neigh[]): Promise<BatchResult<NeighFailure>> {
    return this.#neighBatch(neighs, RTM.NEWNEIGH, REPLACE, "replace");
  }

  /** `ip neigh del <ip> dev #<index>` (or `bridge fdb del` for AF_BRIDGE entries), batched. */
  neighDelete(neighs: readonly Neigh[]): Promise<BatchResult<NeighFailure>> {
    return this.#neighBatch(neighs, RTM.DELNEIGH, NLM_F.ACK, "del");
  }

  /** `bridge fdb show [dev #<index>]`. */
  fdbList(filter: NeighFilter = {}): Promise<ListResult<Neigh>> {
    return this.#neighDump("bridge fdb show", AF.BRIDGE, filter);
  }

  /** `bridge fdb replace <mac> dev #<index> dst <dst> self permanent` for every entry, batched. */
  fdbReplace(entries: readonly FdbEntry[]): Promise<BatchResult<NeighFailure>> {
    return this.neighReplace(entries.map(fdbNeigh));
  }

  /** `bridge fdb del <mac> dev #<index> dst <dst> self`, batched. */
  fdbDelete(entries: readonly FdbEntry[]): Promise<BatchResult<NeighFailure>> {
    return this.neighDelete(entries.map(fdbNeigh));
  }

  /** `ip nexthop show`: one RTM_GETNEXTHOP dump (groups and blackholes included, marked as such). */
  nexthopList(): Promise<ListResult<Nexthop>> {
    return this.#channel.dump("ip nexthop show", encodeNexthopDump, (r, m) =>
      m.type === RTM.NEWNEXTHOP ? decodeNexthop(r, m) : undefined,
    );
  }

  /** `ip nexthop replace id <id> via <gw> dev <oif> proto <p> [onlink]` for every nexthop, batched. */
  async nexthopReplace(nexthops: readonly Nexthop[]): Promise<BatchResult<NexthopFailure>> {
    const out = await this.#channel.batch(
      nexthops,
      (w, seq, nh) => encodeNexthop(w, REPLACE, seq, nh),
      (nh) => `ip nexthop replace ${formatNexthop(nh)}`,
    );
    return {
      applied: out.applied,
      failures: out.failures.map((f) => ({ nexthop: f.item, ...failure(f.error) })),
    };
  }

  /** `ip nexthop del id <id>` for every nexthop, batched; the kernel deletes the routes using it too. */
  async nexthopDelete(nexthops: readonly Nexthop[]): Promise<BatchResult<NexthopFailure>> {
    const out = await this.#channel.batch(
      nexthops,
      (w, seq, nh) => encodeNexthopDelete(w, seq, nh),
      (nh) => `ip nexthop del id ${nh.id}`,
    );
    return {
      applied: out.applied,
      failures: out.failures.map((f) => ({ nexthop: f.item, ...failure(f.error) })),
    };
  }

  /** Closes the socket after the operation in progress; later calls reject with EBADF. */
  close(): Promise<void> {
    return this.#channel.close();
  }

  #neighDump(operation: string, family: number, filter: NeighFilter): Promise<ListResult<Neigh>> {
    return this.#channel.dump(
      operation,
      (w, seq) => encodeNeighDump(w, seq, family),
      (r, m) => {
        if (m.type !== RTM.NEWNEIGH) return undefined;
        const neigh = decodeNeigh(r, m);
        return filter.index === undefined || neigh.index === filter.index ? neigh : undefined;
      },
    );
  }

  async #neighBatch(
    neighs: readonly Neigh[],
    type: number,
    flags: number,
    verb: string,
  ): Promise<BatchResult<NeighFailure>> {
    const out = await this.#channel.batch(
      neighs,
      (w, seq, neigh) => encodeNeigh(w, type, flags, seq, neigh),
      (neigh) => formatNeigh(neigh).replace(/^(ip neigh|bridge fdb)/, `$1 ${verb}`),
    );
    return {
      applied: out.applied,
      failures: out.failures.map((f) => ({ neigh: f.item, ...failure(f.error) })),
    };
  }
}
