/**
 * The VXLAN device `flannel.<VNI>`: created, checked and repaired as flanneld v0.28.9 sets it up —
 * `ip link add flannel.<VNI> type vxlan id <VNI> local <PublicIP> dev <ext> dstport <Port> nolearning`,
 * MTU = (Backend.MTU or the external MTU) − 50, address `<own subnet>.0/32`, up.
 *
 * Ownership: the device is recognised by its name alone (`flannel.<VNI>` of kind vxlan), as flanneld
 * recognises it, so a device flanneld made is taken over in place (its MAC kept) when its settings
 * match, and re-created (with the same MAC, so peers' entries stay valid) when they do not. The MAC is
 * remembered for the life of the agent: a device deleted under it comes back with the MAC the lease
 * already publishes.
 */

import type { Ipv4Cidr } from "../net/ipv4.ts";
import { cidrContains, formatIpv4, parseIpv4 } from "../net/ipv4.ts";
import type { NetlinkHandle } from "../netlink/netlink.ts";
import type { Link, VxlanInfo } from "../netlink/types.ts";
import type { DeviceState } from "./backend.ts";

export type VxlanDeviceHandle = Pick<
  NetlinkHandle,
  | "linkList"
  | "linkByName"
  | "linkAddVxlan"
  | "linkSetUp"
  | "linkSetMtu"
  | "linkDelete"
  | "addrList"
  | "addrReplace"
  | "addrDelete"
>;

/** The kernel's VXLAN port when none is given (Linux's historical default; IANA's is 4789). */
export const KERNEL_VXLAN_PORT = 8472;
const AF_INET = 2;
/** The device index a dry run uses for a device it would create (no real interface has index 0). */
export const PLANNED_INDEX = 0;

export interface VxlanDeviceSpec {
  readonly name: string;
  readonly vni: number;
  /** UDP port; 0 means the kernel default (8472). */
  readonly port: number;
  /** Source address of encapsulated packets: this host's PublicIP on the external interface. */
  readonly local: string;
  /** External interface index. */
  readonly link: number;
  readonly learning: boolean;
  readonly gbp: boolean;
  readonly mtu: number;
  /** The cluster network: other addresses inside it are removed from the device (flanneld does too). */
  readonly network: Ipv4Cidr;
}

/** The device name flanneld uses for a VNI. */
export function vxlanDeviceName(vni: number): string {
  return `flannel.${vni}`;
}

/** Why an existing link cannot be used as the device, or undefined when it can. */
export function incompatibility(link: Link, spec: VxlanDeviceSpec): string | undefined {
  if (link.kind !== "vxlan" || link.vxlan === undefined) return `it is a ${link.kind ?? "device"}, not vxlan`;
  const have: VxlanInfo = link.vxlan;
  const want = (what: string, a: unknown, b: unknown) => (a === b ? undefined : `${what} ${a} ≠ ${b}`);
  return (
    want("id", have.id, spec.vni) ??
    want("local", have.local, spec.local) ??
    want("dev", have.link, spec.link) ??
    want("dstport", have.port ?? KERNEL_VXLAN_PORT, spec.port === 0 ? KERNEL_VXLAN_PORT : spec.port) ??
    want("learning", have.learning ?? true, spec.learning) ??
    want("gbp", have.gbp ?? false, spec.gbp)
  );
}

export class VxlanDevice {
  readonly #handle: VxlanDeviceHandle;
  #spec: VxlanDeviceSpec;
  #mac: string | undefined;
  #index: number | undefined;

  constructor(handle: VxlanDeviceHandle, spec: VxlanDeviceSpec) {
    this.#handle = handle;
    this.#spec = spec;
  }

  get name(): string {
    return this.#spec.name;
  }

  /** The device's MAC (the VTEP MAC peers address), once `ensure()` ran. */
  get mac(): string | undefined {
    return this.#mac;
  }

  get index(): number | undefined {
    return this.#index;
  }

  /**
   * The external interface changed: the next `ensure()` finds the device incompatible (`dev`, `local`)
   * and re-creates it on the new link with the MAC it had, or just sets the new MTU.
   */
  retarget(changes: Pick<VxlanDeviceSpec, "link" | "local" | "mtu">): void {
    this.#spec = { ...this.#spec, ...changes };
  }

  /**
   * Makes the device exist with the spec's settings, MTU and up state, and — given the own subnet —
   * with the address `<subnet>.0/32` and no other address inside the network. Changes only what
   * differs; reports each change.
   */
  async ensure(ownSubnet: Ipv4Cidr | undefined, options: { dryRun?: boolean } = {}): Promise<DeviceState> {
    const spec = this.#spec;
    const actions: string[] = [];
    let link = await this.#handle.linkByName(spec.name);
    if (options.dryRun === true) return this.#planned(link, ownSubnet);
    if (link !== undefined) {
      const why = incompatibility(link, spec);
      if (why !== undefined) {
        await this.#handle.linkDelete(link.index);
        actions.push(`deleted ${spec.name} (${why})`);
        if (link.kind === "vxlan" && this.#mac === undefined) this.#mac = link.mac;
        link = undefined;
      }
    }
    if (link !== undefined && this.#index === undefined) {
      actions.push(`took over the existing ${spec.name} (MAC ${link.mac ?? "?"})`);
    }
    if (link === undefined) {
      link = await this.#handle.linkAddVxlan({
        name: spec.name,
        id: spec.vni,
        local: spec.local,
        link: spec.link,
        ...(spec.port === 0 ? {} : { port: spec.port }),
        learning: spec.learning,
        gbp: spec.gbp,
        mtu: spec.mtu,
        ...(this.#mac === undefined ? {} : { mac: this.#mac }),
      });
      actions.push(`created ${spec.name} (vxlan id ${spec.vni}, MTU ${spec.mtu}, MAC ${link.mac ?? "?"})`);
    }
    if (link.mtu !== spec.mtu) {
      await this.#handle.linkSetMtu(link.index, spec.mtu);
      actions.push(`set ${spec.name} MTU ${link.mtu} → ${spec.mtu}`);
    }
    if (ownSubnet !== undefined) actions.push(...(await this.#ensureAddress(link.index, ownSubnet)));
    if (!link.up) {
      await this.#handle.linkSetUp(link.index);
      actions.push(`set ${spec.name} up`);
    }
    const changed = this.#index !== link.index || this.#mac !== link.mac;
    this.#index = link.index;
    this.#mac = link.mac;
    return { index: link.index, changed, actions };
  }

  /** What `ensure()` would do, changing nothing; a usable existing device lends its index and MAC. */
  async #planned(link: Link | undefined, ownSubnet: Ipv4Cidr | undefined): Promise<DeviceState> {
    const spec = this.#spec;
    const why = link === undefined ? "absent" : incompatibility(link, spec);
    if (link === undefined || why !== undefined) {
      // Index 0 is never a real interface: the plan's entries name the device that would be created.
      this.#index = PLANNED_INDEX;
      return {
        index: PLANNED_INDEX,
        changed: true,
        actions: [`create ${spec.name} (${why}; vxlan id ${spec.vni}, MTU ${spec.mtu})`],
      };
    }
    const actions: string[] = [];
    if (link.mtu !== spec.mtu) actions.push(`set ${spec.name} MTU ${link.mtu} → ${spec.mtu}`);
    if (!link.up) actions.push(`set ${spec.name} up`);
    if (ownSubnet !== undefined) {
      const address = formatIpv4(ownSubnet.ip);
      const addrs = (await this.#handle.addrList({ index: link.index, family: AF_INET })).items;
      if (!addrs.some((a) => a.index === link.index && a.address === address && a.prefixLen === 32))
        actions.push(`add ${address}/32 to ${spec.name}`);
    }
    this.#index = link.index;
    this.#mac = link.mac;
    return { index: link.index, changed: true, actions };
  }

  async #ensureAddress(index: number, ownSubnet: Ipv4Cidr): Promise<string[]> {
    const actions: string[] = [];
    const address = formatIpv4(ownSubnet.ip);
    const addrs = (await this.#handle.addrList({ index, family: AF_INET })).items;
    let present = false;
    for (const a of addrs) {
      if (a.index !== index || a.family !== AF_INET) continue;
      if (a.address === address && a.prefixLen === 32) {
        present = true;
        continue;
      }
      if (cidrContains(this.#spec.network, parseIpv4(a.address))) {
        await this.#handle.addrDelete(a);
        actions.push(`removed ${a.address}/${a.prefixLen} from ${this.#spec.name}`);
      }
    }
    if (!present) {
      await this.#handle.addrReplace({ index, family: AF_INET, address, prefixLen: 32 });
      actions.push(`added ${address}/32 to ${this.#spec.name}`);
    }
    return actions;
  }
}

/** Deletes every `flannel.<n>` vxlan device (what a switch to host-gw must remove); returns their names. */
export async function removeVxlanDevices(handle: Pick<VxlanDeviceHandle, "linkList" | "linkDelete">) {
  const removed: string[] = [];
  for (const link of (await handle.linkList()).items) {
    if (link.kind !== "vxlan" || !/^flannel\.\d+$/.test(link.name)) continue;
    await handle.linkDelete(link.index);
    removed.push(link.name);
  }
  return removed;
}
