/**
 * Chooses the external interface and the PublicIP the way flanneld v0.28.9 does (main.go, and
 * `LookupExtIface` in pkg/ipmatch with its helpers in pkg/ip), IPv4 only:
 *
 * - No `--iface`, `--iface-regex` or `--iface-can-reach`: the interface owning `--public-ip` when that is
 *   given (and nothing else: flanneld stops when no interface owns it), else the default route's.
 * - Otherwise each `--iface` in order, then each `--iface-regex`, then `--iface-can-reach`; the first hit
 *   wins and a miss goes on to the next (`misses` says why each missed). No default-route fallback.
 * - `--iface=<IP>`: the interface holding that address, and the address itself is the interface IP.
 *   `--iface=<name>`: that interface. `--iface-regex`: first the addresses of every interface (kernel
 *   order), then the names; an address match makes that address the interface IP.
 * - Otherwise the interface IP is the first of the interface's usable addresses in flanneld's order
 *   (`usableAddresses`). The PublicIP is `--public-ip`, else the interface IP.
 */

import { isIP } from "node:net";
import type { ExternalInterface } from "../backend/backend.ts";
import { goRegExp } from "../config/go-flags.ts";
import { WeftError, WeftErrorCode } from "../errors.ts";
import { cidrContains, type Ipv4, parseCidr, tryParseIpv4 } from "../net/ipv4.ts";
import { RT_SCOPE, RT_TABLE, RTN } from "../netlink/constants.ts";
import type { NetlinkHandle } from "../netlink/netlink.ts";
import { type Addr, IFA_F, type Link, type Route } from "../netlink/types.ts";

export interface ExternalChoice {
  readonly ext: ExternalInterface;
  /** The address this host publishes in its lease (`PublicIP`). */
  readonly publicIP: string;
  /** The interface address flanneld would use (`IfaceAddr`); host-gw needs it equal to `publicIP`. */
  readonly ifaceIP: string;
  /** What found the interface, for the startup log: `--iface=eth0`, `the default route`… */
  readonly matched?: string | undefined;
  /** Each interface flag tried before the match and why it missed (flanneld logs these at info). */
  readonly misses?: readonly string[] | undefined;
}

/** The flags that choose the interface (a subset of `AgentFlags`). */
export interface ExternalFlags {
  readonly iface: readonly string[];
  readonly ifaceRegex: readonly string[];
  readonly ifaceCanReach?: string | undefined;
  readonly publicIp: string | undefined;
}

export type ExtIfaceNetlink = Pick<NetlinkHandle, "linkList" | "addrList" | "routeList">;

const AF_INET = 2;

/** A found interface (with the address the flag chose, if any), or why a flag missed. */
type Lookup = { readonly link: Link; readonly ifaceIP: string | undefined } | { readonly miss: string };
/** A hit with its interface address settled. */
type Found = { readonly link: Link; readonly ifaceIP: string } | { readonly miss: string };

function invalid(message: string, field: string, value: unknown): WeftError {
  return new WeftError(WeftErrorCode.FlagInvalid, message, { field, value });
}

/** Go's `net.IP.IsLinkLocalUnicast` for IPv4: 169.254.0.0/16. */
function isLinkLocal(ip: Ipv4): boolean {
  return ip >>> 16 === 0xa9fe;
}

/** Go's `net.IP.IsGlobalUnicast` for IPv4: not 0.0.0.0, 127/8, 224/4, 255.255.255.255 or link-local. */
function isGlobalUnicast(ip: Ipv4): boolean {
  return ip !== 0 && ip >>> 24 !== 127 && ip >>> 28 !== 0xe && ip !== 0xffff_ffff && !isLinkLocal(ip);
}

function ipOf(addr: Addr): Ipv4 | undefined {
  const parsed = tryParseIpv4(addr.address);
  return parsed.ok ? parsed.value : undefined;
}

function has(addr: Addr, flag: number): boolean {
  return ((addr.flags ?? 0) & flag) !== 0;
}

/**
 * flanneld's `compareAddrs` (pkg/ip/iface.go): global before link-local, permanent before not, not
 * temporary before temporary. For IPv4 the "temporary" bit is IFA_F_SECONDARY, so a primary address
 * goes before a secondary one; anything else keeps the kernel's order.
 */
export function compareAddrs(a: Addr, b: Addr): number {
  const ipA = ipOf(a) ?? 0;
  const ipB = ipOf(b) ?? 0;
  if (isGlobalUnicast(ipA) && isLinkLocal(ipB)) return -1;
  if (isLinkLocal(ipA) && isGlobalUnicast(ipB)) return 1;
  const permanent = Number(has(b, IFA_F.PERMANENT)) - Number(has(a, IFA_F.PERMANENT));
  if (permanent !== 0) return permanent;
  return Number(has(a, IFA_F.TEMPORARY)) - Number(has(b, IFA_F.TEMPORARY));
}

/**
 * One link's IPv4 addresses as flanneld's `GetInterfaceIP4Addrs` returns them: sorted by
 * `compareAddrs`, then only global or link-local unicast ones that are not deprecated. The sort is Go's
 * `slices.SortFunc` step for step as long as it sorts by insertion (up to 12 addresses), so even ties
 * and the comparator's blind spots (127/8, multicast) land where flanneld puts them.
 */
export function usableAddresses(addrs: readonly Addr[]): Addr[] {
  const sorted = [...addrs];
  for (let i = 1; i < sorted.length; i++) {
    for (let j = i; j > 0; j--) {
      const here = sorted[j] as Addr;
      const before = sorted[j - 1] as Addr;
      if (compareAddrs(here, before) >= 0) break;
      sorted[j] = before;
      sorted[j - 1] = here;
    }
  }
  return sorted.filter((addr) => {
    const ip = ipOf(addr);
    return ip !== undefined && (isGlobalUnicast(ip) || isLinkLocal(ip)) && !has(addr, IFA_F.DEPRECATED);
  });
}

/** The IPv4 text of `text` when it is an IPv4 address, also in `::ffff:a.b.c.d` form (as Go parses). */
function asIpv4(text: string): string | undefined {
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(text)?.[1] ?? text;
  return tryParseIpv4(v4).ok ? v4 : undefined;
}

/** What the kernel told us, read once per choice. */
class Host {
  private constructor(
    readonly links: readonly Link[],
    private readonly addrs: readonly Addr[],
    private readonly netlink: ExtIfaceNetlink,
  ) {}

  static async read(netlink: ExtIfaceNetlink): Promise<Host> {
    const links = (await netlink.linkList()).items;
    const addrs = (await netlink.addrList({ family: AF_INET })).items.filter((a) => a.family === AF_INET);
    return new Host(links, addrs, netlink);
  }

  addrsOf(link: Link): Addr[] {
    return this.addrs.filter((a) => a.index === link.index);
  }

  usable(link: Link): Addr[] {
    return usableAddresses(this.addrsOf(link));
  }

  async mainRoutes(): Promise<readonly Route[]> {
    return (await this.netlink.routeList({ table: RT_TABLE.MAIN })).items;
  }

  describe(): string {
    return this.links
      .map(
        (l) =>
          `${l.name} [${
            this.usable(l)
              .map((a) => a.address)
              .join(" ") || "no IPv4"
          }]`,
      )
      .join(", ");
  }

  /** flanneld's `GetInterfaceByIP`: the first link holding the address, whatever its flags. */
  byAddress(ip: string): Lookup {
    const link = this.links.find((l) => this.addrsOf(l).some((a) => a.address === ip));
    return link === undefined ? { miss: `no interface has the address ${ip}` } : { link, ifaceIP: ip };
  }

  /** One `--iface` value: an address, else an interface name. */
  byIface(want: string): Lookup {
    const ip = asIpv4(want);
    if (ip !== undefined) return this.byAddress(ip);
    if (isIP(want) === 6) return { miss: `${want} is an IPv6 address; weft chooses by IPv4 only` };
    const link = this.links.find((l) => l.name === want);
    return link === undefined ? { miss: `no interface is named ${want}` } : { link, ifaceIP: undefined };
  }

  /** One `--iface-regex`: every interface's usable addresses first, then the names. */
  byRegex(pattern: string): Lookup {
    const re = goRegExp(pattern);
    for (const link of this.links) {
      const hit = this.usable(link).find((a) => re.test(a.address));
      if (hit !== undefined) return { link, ifaceIP: hit.address };
    }
    const link = this.links.find((l) => re.test(l.name));
    return link === undefined
      ? { miss: "matches no interface name or usable IPv4 address" }
      : { link, ifaceIP: undefined };
  }

  /**
   * `--iface-can-reach`: the interface and source address of the route to `target`, as `ip route get`
   * answers for the main table: the longest prefix, then the lowest metric; its `src`, else the first
   * primary address of the device in scope (on the gateway's prefix when there is one), as the kernel
   * picks. Policy rules (`ip rule`) and other tables are not consulted.
   */
  async byRoute(target: string): Promise<Lookup> {
    const ip = tryParseIpv4(target);
    if (!ip.ok) return { miss: `${target} is not an IPv4 address` };
    if (this.addrs.some((a) => a.address === target)) {
      return {
        miss: `${target} is this host's own address (ip route get answers dev lo); use --iface=${target}`,
      };
    }
    let best: { route: Route; prefixLen: number } | undefined;
    for (const route of await this.mainRoutes()) {
      const dst = parseCidr(route.dst, "keep");
      if (!cidrContains(dst, ip.value)) continue;
      const better =
        best === undefined ||
        dst.prefixLen > best.prefixLen ||
        (dst.prefixLen === best.prefixLen && (route.priority ?? 0) < (best.route.priority ?? 0));
      if (better) best = { route, prefixLen: dst.prefixLen };
    }
    if (best === undefined) return { miss: `no route to ${target}` };
    const { route } = best;
    if ((route.type ?? RTN.UNICAST) !== RTN.UNICAST) return { miss: `the route to ${target} is not unicast` };
    const link = this.links.find((l) => l.index === route.oif);
    if (link === undefined) return { miss: `the route to ${target} (${route.dst}) names no single device` };
    return { link, ifaceIP: route.prefsrc ?? this.sourceFor(link, route) };
  }

  /** The kernel's `inet_select_addr`: first primary address in scope, preferring the gateway's prefix. */
  private sourceFor(link: Link, route: Route): string | undefined {
    const gateway = route.gateway === undefined ? undefined : tryParseIpv4(route.gateway);
    let first: string | undefined;
    for (const addr of this.addrsOf(link)) {
      if (has(addr, IFA_F.SECONDARY) || (addr.scope ?? 0) > (route.scope ?? RT_SCOPE.UNIVERSE)) continue;
      const own = parseCidr(`${addr.address}/${addr.prefixLen}`, "keep");
      if (gateway === undefined || (gateway.ok && cidrContains(own, gateway.value))) return addr.address;
      first ??= addr.address;
    }
    return first;
  }

  /** flanneld's `GetDefaultGatewayInterface`: the first default route of the main table. */
  async byDefaultRoute(): Promise<Lookup> {
    const route = (await this.mainRoutes()).find((r) => r.dst === "0.0.0.0/0");
    if (route === undefined) return { miss: "there is no default route" };
    const link = this.links.find((l) => l.index === route.oif);
    if (link === undefined) return { miss: "the default route names no single device" };
    return { link, ifaceIP: undefined };
  }

  /** Completes a hit: the interface IP (flanneld's first usable address unless the flag chose one). */
  finish(found: Lookup): Found {
    if ("miss" in found) return found;
    if (found.link.mtu === 0) return { miss: `interface ${found.link.name} reports MTU 0` };
    const ifaceIP = found.ifaceIP ?? this.usable(found.link)[0]?.address;
    if (ifaceIP === undefined) {
      return {
        miss: `interface ${found.link.name} has no usable IPv4 address (global or link-local, not deprecated)`,
      };
    }
    return { link: found.link, ifaceIP };
  }
}

/** The choice for a hit that `Host.finish` completed. */
function choice(
  host: Host,
  link: Link,
  ifaceIP: string,
  flags: ExternalFlags,
  matched: string,
  misses: readonly string[],
): ExternalChoice {
  return {
    ext: {
      index: link.index,
      name: link.name,
      mtu: link.mtu,
      addresses: host.addrsOf(link).map((a) => parseCidr(`${a.address}/${a.prefixLen}`, "keep")),
    },
    publicIP: flags.publicIp ?? ifaceIP,
    ifaceIP,
    matched,
    misses,
  };
}

export async function chooseExternal(
  netlink: ExtIfaceNetlink,
  flags: ExternalFlags,
): Promise<ExternalChoice> {
  const host = await Host.read(netlink);
  const canReach = flags.ifaceCanReach ?? "";

  if (flags.iface.length === 0 && flags.ifaceRegex.length === 0 && canReach === "") {
    if (flags.publicIp !== undefined) {
      const found = host.finish(host.byAddress(flags.publicIp));
      if (!("miss" in found))
        return choice(host, found.link, found.ifaceIP, flags, `--public-ip=${flags.publicIp}`, []);
      throw invalid(
        `--public-ip=${flags.publicIp}: ${found.miss}; with no --iface the interface is the one that owns the public IP, and flanneld stops here too: behind NAT add --iface=<name or IP>; interfaces here: ${host.describe()}`,
        "--public-ip",
        flags.publicIp,
      );
    }
    const found = host.finish(await host.byDefaultRoute());
    if (!("miss" in found)) return choice(host, found.link, found.ifaceIP, flags, "the default route", []);
    throw invalid(
      `no external interface: ${found.miss}; pass --iface=<name or IP>, --iface-regex or --iface-can-reach; interfaces here: ${host.describe()}`,
      "--iface",
      "",
    );
  }

  const attempts: [string, () => Lookup | Promise<Lookup>][] = [
    ...flags.iface.map((v): [string, () => Lookup] => [`--iface=${v}`, () => host.byIface(v)]),
    ...flags.ifaceRegex.map((v): [string, () => Lookup] => [`--iface-regex=${v}`, () => host.byRegex(v)]),
  ];
  if (canReach !== "") attempts.push([`--iface-can-reach=${canReach}`, () => host.byRoute(canReach)]);
  const misses: string[] = [];
  for (const [flag, lookup] of attempts) {
    const found = host.finish(await lookup());
    if (!("miss" in found)) return choice(host, found.link, found.ifaceIP, flags, flag, misses);
    misses.push(`${flag}: ${found.miss}`);
  }
  throw invalid(
    `no interface matches ${misses.join("; ")}; interfaces here: ${host.describe()}`,
    "--iface",
    attempts.map(([flag]) => flag).join(" "),
  );
}
