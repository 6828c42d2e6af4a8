/**
 * The host-gw backend, pure: for every peer lease whose PublicIP sits on a network directly connected
 * to the external interface, one route `<peer subnet> via <peer PublicIP> dev <ext> proto weft`
 * (flanneld: `ip route add … via … dev …`). A peer that is not directly reachable gets no route — a
 * gateway the kernel cannot resolve on the link would only be a broken route — and is reported instead.
 * host-gw owns no device; switched on after vxlan, it removes the `flannel.<VNI>` devices vxlan left.
 */

import type { HostGwBackendConfig } from "../config/backend-config.ts";
import type { Lease } from "../lease/lease.ts";
import { cidrContains, type Ipv4Cidr, parseIpv4 } from "../net/ipv4.ts";
import type { Route } from "../netlink/types.ts";
import {
  type Backend,
  type DeviceState,
  type ExternalInterface,
  ownOrOverlap,
  type PeerContext,
  type PeerOutcome,
  routeOnly,
} from "./backend.ts";
import { PeerTable } from "./peer-table.ts";
import { removeVxlanDevices, type VxlanDeviceHandle } from "./vxlan-device.ts";

export type { ExternalInterface, SkippedPeer } from "./backend.ts";

/**
 * The direct route to a peer's subnet via its PublicIP on the external interface, or why there is
 * none. Shared by host-gw and by vxlan's DirectRouting.
 */
export function directRoute(lease: Lease, ctx: PeerContext): PeerOutcome {
  const gateway = parseIpv4(lease.publicIP);
  const { addresses, name } = ctx.ext;
  if (addresses.some((a) => a.ip === gateway) || !addresses.some((net) => cidrContains(net, gateway))) {
    const detail = `PublicIP ${lease.publicIP} is not on a network directly connected to ${name}`;
    return { kind: "skipped", skipped: { lease, reason: "unreachable", detail } };
  }
  const route: Route = {
    dst: lease.subnetText,
    gateway: lease.publicIP,
    oif: ctx.ext.index,
    protocol: ctx.protocol,
    table: 254,
  };
  return routeOnly(route);
}

/** What one lease asks of a host-gw host. */
export function hostGwPeer(lease: Lease, ctx: PeerContext): PeerOutcome {
  const own = ownOrOverlap(lease, ctx);
  if (own !== undefined) return own;
  if (lease.backendType !== "host-gw") {
    const detail = `backend type "${lease.backendType}" is not host-gw`;
    return { kind: "skipped", skipped: { lease, reason: "backend", detail } };
  }
  return directRoute(lease, ctx);
}

export class HostGwBackend implements Backend {
  readonly type = "host-gw" as const;
  readonly config: HostGwBackendConfig = { type: "host-gw" };
  readonly deviceName = undefined;
  #ext: ExternalInterface;
  readonly #links: VxlanDeviceHandle | undefined;

  /** `links`: the netlink handle used to remove vxlan devices left by a switch; none in `weft plan`. */
  constructor(ext: ExternalInterface, links?: VxlanDeviceHandle) {
    this.#ext = ext;
    this.#links = links;
  }

  async ensureDevice(): Promise<DeviceState> {
    return { changed: false, actions: [] };
  }

  backendData(): undefined {
    return undefined;
  }

  mtu(): number {
    return this.#ext.mtu;
  }

  peer(lease: Lease, ctx: PeerContext): PeerOutcome {
    return hostGwPeer(lease, ctx);
  }

  deviceIndex(): undefined {
    return undefined;
  }

  /** host-gw keeps only the MTU of the interface; routes take theirs from the PeerContext. */
  setExternal(ext: ExternalInterface): void {
    this.#ext = ext;
  }

  removeForeign(): Promise<readonly string[]> {
    return this.#links === undefined ? Promise.resolve([]) : removeVxlanDevices(this.#links);
  }
}

export interface HostGwInput {
  readonly leases: Iterable<Lease>;
  readonly ownSubnet: Ipv4Cidr;
  readonly ext: ExternalInterface;
  readonly protocol: number;
}

/** The desired routes and skipped peers of a set of leases (tests and one-shot callers). */
export function hostGwRoutes(input: HostGwInput) {
  const table = new PeerTable(hostGwPeer, input, input.leases);
  return { routes: table.routes, skipped: [...table.skipped.values()] };
}
