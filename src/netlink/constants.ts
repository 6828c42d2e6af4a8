/**
 * rtnetlink constants from linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/if_addr.h,
 * linux/neighbour.h and linux/socket.h, grouped as `as const` objects under their C prefixes.
 */

/** Address families (AF_*). */
export const AF = { UNSPEC: 0, INET: 2, BRIDGE: 7, INET6: 10 } as const;

/** Control message types (NLMSG_*). */
export const NLMSG = { NOOP: 1, ERROR: 2, DONE: 3, OVERRUN: 4 } as const;

/** nlmsghdr flags (NLM_F_*). Several share values; the message type says which meaning applies. */
export const NLM_F = {
  REQUEST: 0x1,
  MULTI: 0x2,
  ACK: 0x4,
  ECHO: 0x8,
  DUMP_INTR: 0x10,
  DUMP_FILTERED: 0x20,
  // GET requests
  ROOT: 0x100,
  MATCH: 0x200,
  DUMP: 0x300,
  // NEW requests
  REPLACE: 0x100,
  EXCL: 0x200,
  CREATE: 0x400,
  APPEND: 0x800,
  // NLMSG_ERROR replies
  CAPPED: 0x100,
  ACK_TLVS: 0x200,
} as const;

/** rtnetlink message types (RTM_*). */
export const RTM = {
  NEWLINK: 16,
  DELLINK: 17,
  GETLINK: 18,
  NEWADDR: 20,
  DELADDR: 21,
  GETADDR: 22,
  NEWROUTE: 24,
  DELROUTE: 25,
  GETROUTE: 26,
  NEWNEIGH: 28,
  DELNEIGH: 29,
  GETNEIGH: 30,
  NEWNEXTHOP: 104,
  DELNEXTHOP: 105,
  GETNEXTHOP: 106,
} as const;

/** Route attributes (RTA_*). */
export const RTA = {
  DST: 1,
  SRC: 2,
  IIF: 3,
  OIF: 4,
  GATEWAY: 5,
  PRIORITY: 6,
  PREFSRC: 7,
  METRICS: 8,
  MULTIPATH: 9,
  TABLE: 15,
  /** The nexthop object a route uses (`nhid`, kernel ≥ 5.3). */
  NH_ID: 30,
} as const;

/** Nexthop object attributes (NHA_*, linux/nexthop.h). */
export const NHA = { ID: 1, GROUP: 2, GROUP_TYPE: 3, BLACKHOLE: 4, OIF: 5, GATEWAY: 6, FDB: 11 } as const;

/** Route types (RTN_*). */
export const RTN = {
  UNSPEC: 0,
  UNICAST: 1,
  LOCAL: 2,
  BROADCAST: 3,
  ANYCAST: 4,
  MULTICAST: 5,
  BLACKHOLE: 6,
  UNREACHABLE: 7,
  PROHIBIT: 8,
  THROW: 9,
} as const;

/** Route scopes (RT_SCOPE_*). */
export const RT_SCOPE = { UNIVERSE: 0, SITE: 200, LINK: 253, HOST: 254, NOWHERE: 255 } as const;

/** Routing tables (RT_TABLE_*). `UNSPEC` in a filter means every table, as `ip route show table all`. */
export const RT_TABLE = { UNSPEC: 0, DEFAULT: 253, MAIN: 254, LOCAL: 255 } as const;

/** Route protocols (RTPROT_*) that the kernel and iproute2 assign. */
export const RTPROT = { UNSPEC: 0, REDIRECT: 1, KERNEL: 2, BOOT: 3, STATIC: 4 } as const;

/** rtm_flags / rtnh_flags (RTNH_F_*). */
export const RTNH_F = { DEAD: 1, PERVASIVE: 2, ONLINK: 4 } as const;

/** Link attributes (IFLA_*). */
export const IFLA = {
  ADDRESS: 1,
  BROADCAST: 2,
  IFNAME: 3,
  MTU: 4,
  LINK: 5,
  MASTER: 10,
  OPERSTATE: 16,
  LINKINFO: 18,
  EXT_MASK: 29,
} as const;

/** Nested in IFLA_LINKINFO (IFLA_INFO_*). */
export const IFLA_INFO = { KIND: 1, DATA: 2 } as const;

/** Nested in IFLA_INFO_DATA of a vxlan link (IFLA_VXLAN_*). */
export const IFLA_VXLAN = {
  ID: 1,
  GROUP: 2,
  LINK: 3,
  LOCAL: 4,
  TTL: 5,
  TOS: 6,
  LEARNING: 7,
  AGEING: 8,
  PORT: 15,
  UDP_CSUM: 18,
  GBP: 23,
} as const;

/** ifi_flags (IFF_*). */
export const IFF = { UP: 0x1, BROADCAST: 0x2, LOOPBACK: 0x8, RUNNING: 0x40, LOWER_UP: 0x10000 } as const;

/** IFLA_EXT_MASK values (RTEXT_FILTER_*). */
export const RTEXT_FILTER = { VF: 1, SKIP_STATS: 8 } as const;

/** Address attributes (IFA_*). */
export const IFA = { ADDRESS: 1, LOCAL: 2, LABEL: 3, BROADCAST: 4, FLAGS: 8 } as const;

/** Neighbour attributes (NDA_*). */
export const NDA = { DST: 1, LLADDR: 2, VLAN: 5, PORT: 6, VNI: 7, IFINDEX: 8, MASTER: 9 } as const;

/** Neighbour states (NUD_*). */
export const NUD = {
  INCOMPLETE: 0x01,
  REACHABLE: 0x02,
  STALE: 0x04,
  DELAY: 0x08,
  PROBE: 0x10,
  FAILED: 0x20,
  NOARP: 0x40,
  PERMANENT: 0x80,
} as const;

/** Neighbour flags (NTF_*). */
export const NTF = {
  USE: 0x01,
  SELF: 0x02,
  MASTER: 0x04,
  PROXY: 0x08,
  EXT_LEARNED: 0x10,
  ROUTER: 0x80,
} as const;

/** rtnetlink multicast groups (RTNLGRP_*), joined with NETLINK_ADD_MEMBERSHIP. */
export const RTNLGRP = {
  LINK: 1,
  NEIGH: 3,
  IPV4_IFADDR: 5,
  IPV4_ROUTE: 7,
  IPV6_IFADDR: 9,
  IPV6_ROUTE: 11,
  NEXTHOP: 32,
} as const;

/** Extended-ack attributes of an NLMSG_ERROR (NLMSGERR_ATTR_*). */
export const NLMSGERR_ATTR = { MSG: 1, OFFS: 2 } as const;

/** Header sizes in bytes. */
export const SIZE = {
  NLMSGHDR: 16,
  RTMSG: 12,
  IFINFOMSG: 16,
  IFADDRMSG: 8,
  NDMSG: 12,
  NHMSG: 8,
  NLATTR: 4,
} as const;
