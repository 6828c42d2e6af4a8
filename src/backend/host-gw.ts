/**
 * The host-gw backend, pure: leases in, desired routes out. For every peer lease whose PublicIP sits
 * on a network directly connected to the external interface, one route
 * `<peer subnet> via <peer PublicIP> dev <ext> proto weft` (flanneld: `ip route add … via … dev …`).
 * A peer that is not directly reachable gets no route — a gateway the kernel cannot resolve on the
 * link would only be a broken route — and is reported instead.
 */

import type { Lease } from "../lease/lease.ts";
import { cidrContains, cidrsOverlap, formatCidr, type Ipv4Cidr, parseIpv4 } from "../net/ipv4.ts";
import type { Route } from "../netlink/types.ts";

export interface ExternalInterface {
  readonly index: number;
  readonly name: string;
  readonly mtu: number;
  /** The interface's addresses with their prefix lengths: the directly connected networks. */
  readonly addresses: readonly Ipv4Cidr[];
}

export interface HostGwInput {
  readonly leases: Iterable<Lease>;
  /** This host's own subnet (its lease). */
  readonly ownSubnet: Ipv4Cidr;
  readonly ext: ExternalInterface;
  /** The route protocol that marks weft's routes. */
  readonly protocol: number;
}

export interface SkippedPeer {
  readonly lease: Lease;
  readonly reason: "unreachable" | "backend" | "overlaps-own";
  readonly detail: string;
}

export interface HostGwState {
  /** Desired routes keyed by destination (`10.5.1.0/24`). */
  readonly routes: ReadonlyMap<string, Route>;
  readonly skipped: readonly SkippedPeer[];
}

export function hostGwRoutes(input: HostGwInput): HostGwState {
  const routes = new Map<string, Route>();
  const skipped: SkippedPeer[] = [];
  const connected = input.ext.addresses.map((a) => ({ ip: a.ip, prefixLen: a.prefixLen }));
  const own = input.ext.addresses.map((a) => a.ip);
  for (const lease of input.leases) {
    if (cidrsOverlap(lease.subnet, input.ownSubnet)) {
      // Our own lease, or one that claims (part of) our subnet: never route our subnet elsewhere.
      if (lease.subnet.ip !== input.ownSubnet.ip || lease.subnet.prefixLen !== input.ownSubnet.prefixLen) {
        skipped.push({
          lease,
          reason: "overlaps-own",
          detail: `overlaps own subnet ${formatCidr(input.ownSubnet)}`,
        });
      }
      continue;
    }
    if (lease.backendType !== "host-gw") {
      skipped.push({
        lease,
        reason: "backend",
        detail: `backend type "${lease.backendType}" is not host-gw`,
      });
      continue;
    }
    const gateway = parseIpv4(lease.publicIP);
    if (own.includes(gateway) || !connected.some((net) => cidrContains(net, gateway))) {
      skipped.push({
        lease,
        reason: "unreachable",
        detail: `PublicIP ${lease.publicIP} is not on a network directly connected to ${input.ext.name}`,
      });
      continue;
    }
    routes.set(lease.subnetText, {
      dst: lease.subnetText,
      gateway: lease.publicIP,
      oif: input.ext.index,
      protocol: input.protocol,
      table: 254,
    });
  }
  return { routes, skipped };
}
