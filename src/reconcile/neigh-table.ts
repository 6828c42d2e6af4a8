/**
 * The permanent ARP entries and VXLAN FDB entries weft keeps on its vxlan device.
 *
 * Why: flanneld writes these once per lease event and never looks again, so an `ip neigh flush` or a
 * `bridge fdb del` strands a peer until the next restart (flannel #1070, #1759). Here they are
 * reconciled like routes (`OwnedTable`): repaired from netlink events, swept when no lease asks for
 * them, nothing swept before the first full store list.
 *
 * Ownership (neighbours and FDB entries carry no protocol marker weft could set on every kernel):
 * - ARP: a permanent entry on the device `flannel.<VNI>` (which is weft's, see vxlan-device.ts) whose
 *   address lies inside the cluster network. Entries for other addresses, and the kernel's own
 *   non-permanent entries, are never touched.
 * - FDB: a permanent `self` entry on that device for a unicast MAC. The all-zeros MAC (the default
 *   destination an operator adds for flooding) and multicast MACs are never touched.
 */
import type { Ipv4Cidr } from "../net/ipv4.ts";
import { cidrContains, parseIpv4 } from "../net/ipv4.ts";
import { AF, NTF, NUD } from "../netlink/constants.ts";
import type { FdbEntry, NetlinkHandle } from "../netlink/netlink.ts";
import type { Neigh } from "../netlink/types.ts";
import { kindFailures, type OwnedKind } from "./owned-table.ts";

export type NeighHandle = Pick<
  NetlinkHandle,
  "neighList" | "neighReplace" | "neighDelete" | "fdbList" | "fdbReplace" | "fdbDelete"
>;

const ENOENT = 2;

/** Is this ARP entry weft's? (permanent, on the device, address inside the network) */
export function ownedNeigh(n: Neigh, index: number, network: Ipv4Cidr): boolean {
  if (n.index !== index || n.family !== AF.INET || (n.state & NUD.PERMANENT) === 0 || n.ip === undefined)
    return false;
  try {
    return cidrContains(network, parseIpv4(n.ip));
  } catch {
    return false;
  }
}

/** Is this FDB entry weft's? (permanent, `self`, on the device, unicast non-zero MAC, with a dst) */
export function ownedFdb(n: Neigh, index: number): boolean {
  if (n.index !== index || n.family !== AF.BRIDGE || n.mac === undefined || n.ip === undefined) return false;
  if ((n.state & NUD.PERMANENT) === 0 || ((n.flags ?? 0) & NTF.SELF) === 0) return false;
  const first = Number.parseInt(n.mac.slice(0, 2), 16);
  return n.mac !== "00:00:00:00:00:00" && (first & 1) === 0;
}

/** An FDB entry as the kernel reports it (a Neigh of family AF_BRIDGE) in the shape weft writes. */
export function fdbFromNeigh(n: Neigh): FdbEntry {
  return { index: n.index, mac: n.mac ?? "", dst: n.ip ?? "" };
}

/** ARP entries on one device as an `OwnedKind`, keyed by IP. */
export function neighKind(
  handle: NeighHandle,
  index: () => number | undefined,
  network: Ipv4Cidr,
): OwnedKind<Neigh> {
  return {
    async list() {
      const device = index();
      if (device === undefined) return [];
      const { items } = await handle.neighList({ index: device });
      return items.filter((n) => ownedNeigh(n, device, network));
    },
    replace: async (items) => kindFailures((await handle.neighReplace(items)).failures, (f) => f.neigh),
    remove: async (items) => kindFailures((await handle.neighDelete(items)).failures, (f) => f.neigh),
    key: (n) => n.ip ?? "",
    equal: (a, b) => a.index === b.index && a.ip === b.ip && a.mac === b.mac,
    goneErrnos: [ENOENT],
  };
}

/** FDB entries on one device as an `OwnedKind`, keyed by MAC. */
export function fdbKind(handle: NeighHandle, index: () => number | undefined): OwnedKind<FdbEntry> {
  const failures = (out: Awaited<ReturnType<NeighHandle["fdbReplace"]>>) =>
    kindFailures(out.failures, (f) => fdbFromNeigh(f.neigh));
  return {
    async list() {
      const device = index();
      if (device === undefined) return [];
      const { items } = await handle.fdbList({ index: device });
      return items.filter((n) => ownedFdb(n, device)).map(fdbFromNeigh);
    },
    replace: async (items) => failures(await handle.fdbReplace(items)),
    remove: async (items) => failures(await handle.fdbDelete(items)),
    key: (f) => f.mac,
    equal: (a, b) => a.index === b.index && a.mac === b.mac && a.dst === b.dst,
    goneErrnos: [ENOENT],
  };
}
