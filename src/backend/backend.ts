/**
 * The backend contract: how one flannel backend turns leases into kernel state.
 *
 * Why: the agent is the hub every lease event returns to; a backend must not live inside it. A backend
 * is pure where it can be (`peer()`: one lease in, the routes, ARP and FDB entries it asks for out)
 * and owns only the kernel objects that belong to it alone (the vxlan device). The agent's tables
 * (src/reconcile/) program whatever `peer()` returns and sweep what no lease asks for, so adding a
 * backend (ipip, wireguard) is one new file that implements this interface.
 */

import type { BackendConfig, BackendType } from "../config/backend-config.ts";
import type { Lease } from "../lease/lease.ts";
import { cidrsOverlap, formatCidr, type Ipv4Cidr, networkOf } from "../net/ipv4.ts";
import type { FdbEntry } from "../netlink/netlink.ts";
import type { Neigh, Route } from "../netlink/types.ts";

/** The host's external interface: where peers' public IPs are reached. */
export interface ExternalInterface {
  readonly index: number;
  readonly name: string;
  readonly mtu: number;
  /** The interface's addresses with their prefix lengths: the directly connected networks. */
  readonly addresses: readonly Ipv4Cidr[];
}

/** What a backend needs to know to compute one peer's entries. */
export interface PeerContext {
  /** This host's own subnet (its lease). */
  readonly ownSubnet: Ipv4Cidr;
  readonly ext: ExternalInterface;
  /** The route protocol that marks weft's routes. */
  readonly protocol: number;
}

/** The kernel entries one peer lease asks for. */
export interface PeerEntries {
  readonly routes: readonly Route[];
  /** Permanent ARP entries (vxlan: `<peer subnet>.0 lladdr <VtepMAC>`). */
  readonly neighs: readonly Neigh[];
  /** VXLAN forwarding entries (`<VtepMAC> dst <peer PublicIP>`). */
  readonly fdb: readonly FdbEntry[];
}

/** Why a peer gets no entries; used as a log field and metric reason, so the set is closed. */
export type SkipReason = "unreachable" | "backend" | "overlaps-own" | "overlaps-link" | "backend-data";

export interface SkippedPeer {
  readonly lease: Lease;
  readonly reason: SkipReason;
  readonly detail: string;
}

/** What one lease asks for: entries, nothing (our own lease), or nothing with a reason. */
export type PeerOutcome =
  | { readonly kind: "entries"; readonly entries: PeerEntries }
  | { readonly kind: "own" }
  | { readonly kind: "skipped"; readonly skipped: SkippedPeer };

/** Outcome of `Backend.ensureDevice()`. */
export interface DeviceState {
  /** The device's interface index, when the backend has one. */
  readonly index?: number | undefined;
  /** True when the device was (re)created or changed in a way that changes what `peer()` returns. */
  readonly changed: boolean;
  /** What was done, for the log (`created flannel.1`, `set flannel.1 up`); empty when nothing. */
  readonly actions: readonly string[];
}

export interface Backend {
  readonly type: BackendType;
  readonly config: BackendConfig;
  /**
   * Creates or repairs the kernel objects this backend owns (vxlan: the device, its MTU, up state and,
   * once `ownSubnet` is known, its address). Idempotent; called at start before the lease is
   * published (the VTEP MAC goes into the lease) and again whenever the netlink monitor reports a
   * change to links or addresses. With `dryRun` it changes nothing and lists what it would do
   * (`weft plan`).
   */
  ensureDevice(ownSubnet: Ipv4Cidr | undefined, options?: { dryRun?: boolean }): Promise<DeviceState>;
  /** The BackendData of this host's lease (vxlan: `{"VNI":1,"VtepMAC":"…"}`); undefined for host-gw. */
  backendData(): unknown;
  /** The MTU containers must use (FLANNEL_MTU in subnet.env). */
  mtu(): number;
  /** What one lease asks for. Pure: the same lease and context give the same entries. */
  peer(lease: Lease, ctx: PeerContext): PeerOutcome;
  /** The name of the device this backend owns (`flannel.1`), if any. */
  readonly deviceName: string | undefined;
  /** The interface index whose ARP and FDB entries this backend owns, if any. */
  deviceIndex(): number | undefined;
  /**
   * Removes what other backends left on this host (a switch vxlan → host-gw deletes `flannel.<VNI>`
   * devices). Routes need nothing here: every weft route carries weft's marker and is swept by the
   * route table once no lease asks for it. Returns what was removed, for the log.
   */
  removeForeign(): Promise<readonly string[]>;
  /**
   * The external interface changed under the running agent (re-created with a new index,
   * re-addressed, a new MTU): what the backend derives from it follows. Memory only; the next
   * `ensureDevice()` makes the kernel match (vxlan: re-creates the device on the new link/local).
   */
  setExternal(ext: ExternalInterface, local: string): void;
}

/**
 * Our own lease, or one that claims (part of) our subnet: never route our own subnet elsewhere. Nor a
 * network of the external interface: a route to it would replace the kernel's connected route (a
 * `route replace` of the same destination) or shadow part of it, cutting this host off from its peers.
 */
export function ownOrOverlap(lease: Lease, ctx: PeerContext): PeerOutcome | undefined {
  const own = ctx.ownSubnet;
  const link = ctx.ext.addresses.find((a) => cidrsOverlap(lease.subnet, a));
  if (!cidrsOverlap(lease.subnet, own)) {
    if (link === undefined) return undefined;
    const detail = `overlaps ${formatCidr(networkOf(link))}, a network of ${ctx.ext.name}: its route would replace or shadow the connected route`;
    return { kind: "skipped", skipped: { lease, reason: "overlaps-link", detail } };
  }
  if (lease.subnet.ip === own.ip && lease.subnet.prefixLen === own.prefixLen) return { kind: "own" };
  const detail = `overlaps own subnet ${formatCidr(own)}`;
  return { kind: "skipped", skipped: { lease, reason: "overlaps-own", detail } };
}

/** One route, no ARP or FDB entries. */
export function routeOnly(route: Route): PeerOutcome {
  return { kind: "entries", entries: { routes: [route], neighs: [], fdb: [] } };
}
