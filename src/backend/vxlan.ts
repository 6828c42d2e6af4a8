/**
 * The vxlan backend, as flanneld v0.28.9 runs it: one device `flannel.<VNI>` (src/backend/vxlan-device.ts)
 * and, per peer lease with `"BackendType":"vxlan"`, three entries (flanneld's order):
 *
 *   ip neigh replace <peer subnet>.0 lladdr <VtepMAC> dev flannel.<VNI> nud permanent
 *   bridge fdb replace <VtepMAC> dev flannel.<VNI> dst <peer PublicIP> self permanent
 *   ip route replace <peer subnet> via <peer subnet>.0 dev flannel.<VNI> onlink proto weft
 *
 * With DirectRouting, a peer whose PublicIP is on a network directly connected to the external
 * interface gets the host-gw route instead (`<peer subnet> via <PublicIP> dev <ext>`). The lease
 * publishes `{"VNI":<VNI>,"VtepMAC":"<device MAC>"}`; FLANNEL_MTU is the device MTU.
 */

import type { VxlanBackendConfig } from "../config/backend-config.ts";
import { jsonField, type Lease } from "../lease/lease.ts";
import { formatIpv4, type Ipv4Cidr } from "../net/ipv4.ts";
import { formatMac, parseMac } from "../netlink/address.ts";
import { AF, NUD } from "../netlink/constants.ts";
import type { Route } from "../netlink/types.ts";
import {
  type Backend,
  type DeviceState,
  type ExternalInterface,
  ownOrOverlap,
  type PeerContext,
  type PeerOutcome,
} from "./backend.ts";
import { directRoute } from "./host-gw.ts";
import { removeVxlanDevices, VxlanDevice, type VxlanDeviceHandle, vxlanDeviceName } from "./vxlan-device.ts";

/** Bytes VXLAN adds to each packet over IPv4 (outer IP 20 + UDP 8 + VXLAN 8 + inner Ethernet 14). */
export const VXLAN_OVERHEAD = 50;

/** A peer's vxlan BackendData, validated. */
export interface VxlanPeerData {
  readonly vni: number | undefined;
  readonly vtepMac: string;
}

/** Parses `{"VNI":1,"VtepMAC":"…"}`; a string says what is wrong with it. */
export function parseVxlanData(data: unknown): VxlanPeerData | string {
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    return `BackendData ${JSON.stringify(data) ?? "absent"} is not an object like {"VNI":1,"VtepMAC":"…"}`;
  }
  const record = data as Record<string, unknown>;
  const mac = jsonField(record, "VtepMAC");
  const bytes = typeof mac === "string" ? parseMac(mac) : undefined;
  if (bytes === undefined || bytes.length !== 6 || bytes.every((b) => b === 0) || (bytes[0] ?? 0) & 1) {
    return `BackendData.VtepMAC ${JSON.stringify(mac) ?? "absent"} is not a unicast MAC address`;
  }
  const vni = jsonField(record, "VNI");
  if (vni !== undefined && (typeof vni !== "number" || !Number.isInteger(vni))) {
    return `BackendData.VNI ${JSON.stringify(vni)} is not a whole number`;
  }
  return { vni: vni as number | undefined, vtepMac: formatMac(bytes) };
}

export interface VxlanBackendOptions {
  readonly config: VxlanBackendConfig;
  readonly ext: ExternalInterface;
  /** The address encapsulated packets leave from (the external interface's address). */
  readonly local: string;
  readonly network: Ipv4Cidr;
  readonly handle: VxlanDeviceHandle;
}

export class VxlanBackend implements Backend {
  readonly type = "vxlan" as const;
  readonly config: VxlanBackendConfig;
  readonly #o: VxlanBackendOptions;
  readonly #device: VxlanDevice;
  #ext: ExternalInterface;

  constructor(options: VxlanBackendOptions) {
    this.#o = options;
    this.#ext = options.ext;
    this.config = options.config;
    this.#device = new VxlanDevice(options.handle, {
      name: vxlanDeviceName(options.config.vni),
      vni: options.config.vni,
      port: options.config.port,
      local: options.local,
      link: options.ext.index,
      learning: options.config.learning,
      gbp: options.config.gbp,
      mtu: this.mtu(),
      network: options.network,
    });
  }

  /** The device name, `flannel.<VNI>`. */
  get deviceName(): string {
    return this.#device.name;
  }

  ensureDevice(ownSubnet: Ipv4Cidr | undefined, options: { dryRun?: boolean } = {}): Promise<DeviceState> {
    return this.#device.ensure(ownSubnet, options);
  }

  /** flanneld's field order: `{"VNI":1,"VtepMAC":"…"}`. */
  backendData(): { VNI: number; VtepMAC: string } {
    return { VNI: this.config.vni, VtepMAC: this.#device.mac ?? "" };
  }

  /** (Backend.MTU or the external interface's MTU) − 50, as flanneld: also the device's MTU. */
  mtu(): number {
    return (this.config.mtu ?? this.#ext.mtu) - VXLAN_OVERHEAD;
  }

  /** The device follows the interface: `dev <ext>`, `local <address>` and the MTU derived from it. */
  setExternal(ext: ExternalInterface, local: string): void {
    this.#ext = ext;
    this.#device.retarget({ link: ext.index, local, mtu: this.mtu() });
  }

  deviceIndex(): number | undefined {
    return this.#device.index;
  }

  peer(lease: Lease, ctx: PeerContext): PeerOutcome {
    const own = ownOrOverlap(lease, ctx);
    if (own !== undefined) return own;
    if (lease.backendType !== "vxlan") {
      const detail = `backend type "${lease.backendType}" is not vxlan`;
      return { kind: "skipped", skipped: { lease, reason: "backend", detail } };
    }
    const data = parseVxlanData(lease.backendData);
    if (typeof data === "string")
      return { kind: "skipped", skipped: { lease, reason: "backend-data", detail: data } };
    if (data.vni !== undefined && data.vni !== this.config.vni) {
      const detail = `BackendData.VNI ${data.vni} differs from this cluster's VNI ${this.config.vni}`;
      return { kind: "skipped", skipped: { lease, reason: "backend-data", detail } };
    }
    if (this.config.directRouting) {
      const direct = directRoute(lease, ctx);
      if (direct.kind === "entries") return direct;
    }
    const index = this.#device.index;
    if (index === undefined) {
      const detail = `${this.deviceName} does not exist yet`;
      return { kind: "skipped", skipped: { lease, reason: "unreachable", detail } };
    }
    const gateway = formatIpv4(lease.subnet.ip);
    const route: Route = {
      dst: lease.subnetText,
      gateway,
      oif: index,
      onlink: true,
      protocol: ctx.protocol,
      table: 254,
    };
    return {
      kind: "entries",
      entries: {
        neighs: [{ index, family: AF.INET, ip: gateway, mac: data.vtepMac, state: NUD.PERMANENT }],
        fdb: [{ index, mac: data.vtepMac, dst: lease.publicIP }],
        routes: [route],
      },
    };
  }

  /** Devices of other VNIs (`flannel.<n>`, n ≠ ours): left by an earlier config of this cluster. */
  async removeForeign(): Promise<readonly string[]> {
    const ours = this.deviceName;
    const others = {
      linkList: async () => {
        const all = await this.#o.handle.linkList();
        return { ...all, items: all.items.filter((l) => l.name !== ours) };
      },
      linkDelete: (index: number) => this.#o.handle.linkDelete(index),
    };
    return removeVxlanDevices(others);
  }
}
