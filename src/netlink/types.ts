/**
 * Kernel objects as the netlink layer reads and writes them, with iproute2's vocabulary. Addresses are
 * text ("10.5.1.0/24", "172.17.42.2", "0a:0b:0c:0d:0e:0f"); numbers are the kernel's (RTPROT_*,
 * RT_SCOPE_*, RTN_*, NUD_*, NTF_*; see constants.ts).
 */

/**
 * A route, as `ip route` shows it: `<dst> via <gateway> dev <oif> proto <protocol> metric <priority>`.
 * When writing, omitted fields take iproute2's defaults: table main (254); protocol boot (3) on add and
 * "any" on delete; scope universe with a gateway, link without; type unicast on add, "any" on delete.
 */
export interface Route {
  /** Destination prefix, "10.5.1.0/24"; "0.0.0.0/0" is the default route. The family follows from it. */
  readonly dst: string;
  readonly gateway?: string | undefined;
  /** Output interface index (`dev`). */
  readonly oif?: number | undefined;
  /** Routing table (RT_TABLE_MAIN = 254 when omitted). */
  readonly table?: number | undefined;
  /** Route protocol (`proto`): weft marks its own routes with RTPROT_WEFT. */
  readonly protocol?: number | undefined;
  readonly scope?: number | undefined;
  /** Route type (RTN_UNICAST = 1, RTN_BLACKHOLE = 6…). */
  readonly type?: number | undefined;
  /** `onlink`: the gateway is reachable on `oif` even though no prefix says so (VXLAN routes). */
  readonly onlink?: boolean | undefined;
  /** `metric`. */
  readonly priority?: number | undefined;
  /** Preferred source address (`src`); read only. */
  readonly prefsrc?: string | undefined;
  /**
   * The nexthop object the route goes through (`nhid`), instead of an inline gateway and device. When
   * reading, the kernel also reports the nexthop's gateway and device (nexthop_compat_mode 1).
   */
  readonly nhid?: number | undefined;
}

/**
 * A nexthop object (kernel ≥ 5.3), as `ip nexthop` shows it: `id <id> via <gateway> dev <oif> proto
 * <protocol> [onlink]`. Routes refer to it by id (`ip route … nhid <id>`); changing its gateway moves
 * every route that uses it, and deleting it deletes them.
 */
export interface Nexthop {
  /** Non-zero. */
  readonly id: number;
  readonly gateway?: string | undefined;
  readonly oif?: number | undefined;
  /** `proto`: weft marks its own nexthops with RTPROT_WEFT, as its routes. */
  readonly protocol?: number | undefined;
  /** `onlink`: the gateway is reachable on `oif` even though no prefix says so (VXLAN). */
  readonly onlink?: boolean | undefined;
  /** A group of other nexthops (read only; weft writes none). */
  readonly group?: boolean | undefined;
  /** A blackhole nexthop (read only). */
  readonly blackhole?: boolean | undefined;
}

/** A network interface, as `ip link` shows it. */
export interface Link {
  readonly index: number;
  readonly name: string;
  readonly mtu: number;
  /** Administratively up (IFF_UP). */
  readonly up: boolean;
  /** Raw ifi_flags (IFF_*), for LOWER_UP and friends. */
  readonly flags: number;
  /** Link-layer address, lower-case hex with colons. */
  readonly mac?: string | undefined;
  /** IFLA_INFO_KIND: "veth", "bridge", "vxlan"…; absent for physical devices and loopback. */
  readonly kind?: string | undefined;
  /** Index of the master device (bridge, bond). */
  readonly master?: number | undefined;
  /** Index of the lower device (`eth0@if7`: the veth peer or a vlan's parent); may be in another namespace. */
  readonly parent?: number | undefined;
  /** VXLAN settings, for `kind === "vxlan"`. */
  readonly vxlan?: VxlanInfo | undefined;
}

/** The VXLAN attributes weft sets and checks (`ip -d link show flannel.1`). */
export interface VxlanInfo {
  /** VNI (`id`). */
  readonly id: number;
  /** Source address of encapsulated packets (`local`). */
  readonly local?: string | undefined;
  /** Underlay interface index (`dev`). */
  readonly link?: number | undefined;
  /** UDP destination port (`dstport`); the kernel default is 8472 on Linux. */
  readonly port?: number | undefined;
  readonly learning?: boolean | undefined;
  /** Group Based Policy extension (`gbp`). */
  readonly gbp?: boolean | undefined;
}

/** Parameters of `ip link add <name> type vxlan …`. */
export interface VxlanLinkSpec extends VxlanInfo {
  readonly name: string;
  readonly mtu?: number | undefined;
  /** Link-layer address to set; the kernel picks a random one when omitted. */
  readonly mac?: string | undefined;
}

/** An interface address, as `ip addr` shows it. */
export interface Addr {
  readonly index: number;
  readonly family: number;
  /** The local address (IFA_LOCAL, or IFA_ADDRESS when there is no IFA_LOCAL). */
  readonly address: string;
  readonly prefixLen: number;
  readonly scope?: number | undefined;
  /** IFA_LABEL ("eth0", "eth0:1"); IPv4 only. */
  readonly label?: string | undefined;
  /**
   * IFA_F_* flags as `ip addr` shows them (read only): the IFA_FLAGS attribute, or the 8-bit ifa_flags of
   * the header when the kernel sends no IFA_FLAGS. 0x01 secondary (IPv4) / temporary (IPv6), 0x20
   * deprecated, 0x80 permanent (valid_lft forever); see `IFA_F`.
   */
  readonly flags?: number | undefined;
  /** Seconds of `valid_lft` left (IFA_CACHEINFO); `ADDR_LIFETIME_FOREVER` for forever. Read only. */
  readonly validLifetime?: number | undefined;
  /** Seconds of `preferred_lft` left (IFA_CACHEINFO); 0 once deprecated. Read only. */
  readonly preferredLifetime?: number | undefined;
}

/** Address flags (IFA_F_*, linux/if_addr.h) that weft reads. */
export const IFA_F = {
  /** IPv4: not the first address of its prefix on the link (`secondary`). Same bit as TEMPORARY. */
  SECONDARY: 0x01,
  /** IPv6: a privacy (temporary) address. Same bit as SECONDARY. */
  TEMPORARY: 0x01,
  /** The preferred lifetime ran out (`deprecated`). */
  DEPRECATED: 0x20,
  /** The valid lifetime is forever: set by hand, not by DHCP/SLAAC (`permanent` in iproute2's terms). */
  PERMANENT: 0x80,
} as const;

/** The lifetime value meaning "forever" (INFINITY_LIFE_TIME). */
export const ADDR_LIFETIME_FOREVER = 0xffff_ffff;

/**
 * A neighbour entry: an ARP/NDP entry (`ip neigh`, family AF_INET/AF_INET6) or a bridge forwarding
 * entry (`bridge fdb`, family AF_BRIDGE, where `ip` is the VXLAN remote and `mac` the key).
 */
export interface Neigh {
  /** Interface index (`dev`). */
  readonly index: number;
  readonly family: number;
  /** NDA_DST: the neighbour's IP (ARP) or the VXLAN remote VTEP (FDB). */
  readonly ip?: string | undefined;
  /** NDA_LLADDR (`lladdr` / the FDB key). */
  readonly mac?: string | undefined;
  /** NUD_* state; NUD_PERMANENT (0x80) for entries weft writes. */
  readonly state: number;
  /** NTF_* flags; NTF_SELF (0x02) for FDB entries on the VXLAN device itself. */
  readonly flags?: number | undefined;
  /** NDA_MASTER (bridge FDB entries). */
  readonly master?: number | undefined;
}
