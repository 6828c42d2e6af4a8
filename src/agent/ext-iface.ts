/**
 * Chooses the external interface the way flanneld does: the first `--iface` that matches a link name
 * or one of its addresses, else the first `--iface-regex` match (name or address), else the interface
 * of the default route. The public IP is `--public-ip` or the interface's first IPv4 address.
 */

import type { ExternalInterface } from "../backend/host-gw.ts";
import { WeftError, WeftErrorCode } from "../errors.ts";
import { parseCidr } from "../net/ipv4.ts";
import type { NetlinkHandle } from "../netlink/netlink.ts";
import type { Addr, Link } from "../netlink/types.ts";

export interface ExternalChoice {
  readonly ext: ExternalInterface;
  /** The address this host publishes in its lease (`PublicIP`). */
  readonly publicIP: string;
  /** The interface's own first IPv4 address. */
  readonly ifaceIP: string;
}

const AF_INET = 2;

function invalid(message: string, field: string, value: unknown): WeftError {
  return new WeftError(WeftErrorCode.FlagInvalid, message, { field, value });
}

export async function chooseExternal(
  netlink: Pick<NetlinkHandle, "linkList" | "addrList" | "routeList">,
  flags: {
    readonly iface: readonly string[];
    readonly ifaceRegex: readonly string[];
    readonly publicIp: string | undefined;
  },
): Promise<ExternalChoice> {
  const links = (await netlink.linkList()).items;
  const addrs = (await netlink.addrList({ family: AF_INET })).items.filter((a) => a.family === AF_INET);
  const addrsOf = (link: Link) => addrs.filter((a) => a.index === link.index);
  const matches = (link: Link, test: (text: string) => boolean) =>
    test(link.name) || addrsOf(link).some((a) => test(a.address));

  let link: Link | undefined;
  for (const want of flags.iface) {
    link = links.find((l) => matches(l, (text) => text === want));
    if (link !== undefined) break;
  }
  if (link === undefined && flags.iface.length === 0) {
    for (const pattern of flags.ifaceRegex) {
      const re = new RegExp(pattern);
      link = links.find((l) => l.name !== "lo" && matches(l, (text) => re.test(text)));
      if (link !== undefined) break;
    }
  }
  if (link === undefined && flags.iface.length === 0 && flags.ifaceRegex.length === 0) {
    const routes = (await netlink.routeList({ table: 254 })).items;
    const index = routes.find((r) => r.dst === "0.0.0.0/0")?.oif;
    link = links.find((l) => l.index === index);
    if (link === undefined) {
      throw invalid(
        "no default route to take the external interface from: pass --iface=<name or IP> (or --iface-regex)",
        "--iface",
        "",
      );
    }
  }
  if (link === undefined) {
    const asked = [
      ...flags.iface.map((i) => `--iface=${i}`),
      ...flags.ifaceRegex.map((r) => `--iface-regex=${r}`),
    ];
    throw invalid(
      `no interface matches ${asked.join(" ")}; interfaces here: ${links.map((l) => l.name).join(", ")}`,
      "--iface",
      asked.join(" "),
    );
  }
  const own: Addr[] = addrsOf(link);
  const first = own[0];
  if (first === undefined) {
    throw invalid(`interface ${link.name} has no IPv4 address`, "--iface", link.name);
  }
  return {
    ext: {
      index: link.index,
      name: link.name,
      mtu: link.mtu,
      addresses: own.map((a) => parseCidr(`${a.address}/${a.prefixLen}`, "keep")),
    },
    publicIP: flags.publicIp ?? first.address,
    ifaceIP: first.address,
  };
}
