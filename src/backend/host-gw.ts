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

/** Where the routes go: this host's subnet and link, and the marker its routes carry. */
export type HostGwContext = Omit<HostGwInput, "leases">;

/** What one lease asks for: a route, nothing (our own lease), or nothing with a reason. */
export type PeerRoute =
  | { readonly kind: "route"; readonly route: Route }
  | { readonly kind: "own" }
  | { readonly kind: "skipped"; readonly skipped: SkippedPeer };

export function peerRoute(lease: Lease, ctx: HostGwContext): PeerRoute {
  if (cidrsOverlap(lease.subnet, ctx.ownSubnet)) {
    // Our own lease, or one that claims (part of) our subnet: never route our subnet elsewhere.
    if (lease.subnet.ip === ctx.ownSubnet.ip && lease.subnet.prefixLen === ctx.ownSubnet.prefixLen) {
      return { kind: "own" };
    }
    const detail = `overlaps own subnet ${formatCidr(ctx.ownSubnet)}`;
    return { kind: "skipped", skipped: { lease, reason: "overlaps-own", detail } };
  }
  if (lease.backendType !== "host-gw") {
    const detail = `backend type "${lease.backendType}" is not host-gw`;
    return { kind: "skipped", skipped: { lease, reason: "backend", detail } };
  }
  const gateway = parseIpv4(lease.publicIP);
  const { addresses, name } = ctx.ext;
  if (addresses.some((a) => a.ip === gateway) || !addresses.some((net) => cidrContains(net, gateway))) {
    const detail = `PublicIP ${lease.publicIP} is not on a network directly connected to ${name}`;
    return { kind: "skipped", skipped: { lease, reason: "unreachable", detail } };
  }
  const route = {
    dst: lease.subnetText,
    gateway: lease.publicIP,
    oif: ctx.ext.index,
    protocol: ctx.protocol,
    table: 254,
  };
  return { kind: "route", route };
}

/**
 * The desired routes for a set of leases, kept up to date one lease at a time: a store event costs
 * one `update()`, not a pass over every lease.
 */
export class HostGwTable {
  readonly #ctx: HostGwContext;
  readonly #routes = new Map<string, Route>();
  readonly #skipped = new Map<string, SkippedPeer>();
  /** The route destination each lease key contributes. */
  readonly #dstByKey = new Map<string, string>();

  constructor(ctx: HostGwContext, leases: Iterable<Lease> = []) {
    this.#ctx = ctx;
    for (const lease of leases) this.update(lease.key, lease);
  }

  /** Desired routes keyed by destination (`10.5.1.0/24`). */
  get routes(): ReadonlyMap<string, Route> {
    return this.#routes;
  }

  /** Peers that get no route, keyed by lease key. */
  get skipped(): ReadonlyMap<string, SkippedPeer> {
    return this.#skipped;
  }

  /**
   * Sets what lease `key` asks for (`undefined`: the lease is gone). Returns the destinations whose
   * desired route changed, with the new route or undefined when it is no longer wanted.
   */
  update(key: string, lease: Lease | undefined): Map<string, Route | undefined> {
    const changed = new Map<string, Route | undefined>();
    const oldDst = this.#dstByKey.get(key);
    if (oldDst !== undefined) {
      this.#routes.delete(oldDst);
      this.#dstByKey.delete(key);
      changed.set(oldDst, undefined);
    }
    this.#skipped.delete(key);
    const wanted = lease === undefined ? undefined : peerRoute(lease, this.#ctx);
    if (wanted?.kind === "route") {
      this.#routes.set(wanted.route.dst, wanted.route);
      this.#dstByKey.set(key, wanted.route.dst);
      changed.set(wanted.route.dst, wanted.route);
    } else if (wanted?.kind === "skipped") {
      this.#skipped.set(key, wanted.skipped);
    }
    return changed;
  }
}

export function hostGwRoutes(input: HostGwInput): HostGwState {
  const table = new HostGwTable(input, input.leases);
  return { routes: table.routes, skipped: [...table.skipped.values()] };
}
