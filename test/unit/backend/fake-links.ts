// An in-memory kernel for the vxlan device code: links with vxlan attributes and IPv4 addresses.

import type { VxlanDeviceHandle } from "../../../src/backend/vxlan-device.ts";
import type { BatchResult } from "../../../src/netlink/netlink.ts";
import type { Addr, Link, VxlanLinkSpec } from "../../../src/netlink/types.ts";

export class FakeLinks implements VxlanDeviceHandle {
  readonly links = new Map<number, Link>();
  readonly addrs: Addr[] = [];
  readonly calls: string[] = [];
  #next = 3;
  #macs = 0;

  byName(name: string): Link | undefined {
    return [...this.links.values()].find((l) => l.name === name);
  }
  async linkList() {
    return { items: [...this.links.values()], interrupted: false };
  }
  async linkByName(name: string) {
    return this.byName(name);
  }
  async linkAddVxlan(spec: VxlanLinkSpec): Promise<Link> {
    this.calls.push(`add ${spec.name}`);
    this.#macs += 1;
    const link: Link = {
      index: this.#next++,
      name: spec.name,
      mtu: spec.mtu ?? 1500,
      up: false,
      flags: 0,
      mac: spec.mac ?? `0a:00:00:00:00:${this.#macs.toString(16).padStart(2, "0")}`,
      kind: "vxlan",
      vxlan: {
        id: spec.id,
        local: spec.local,
        link: spec.link,
        port: spec.port ?? 8472,
        learning: spec.learning ?? true,
        gbp: spec.gbp ?? false,
      },
    };
    this.links.set(link.index, link);
    return link;
  }
  async linkSetUp(index: number) {
    this.calls.push(`up #${index}`);
    const link = this.links.get(index);
    if (link !== undefined) this.links.set(index, { ...link, up: true });
  }
  async linkSetMtu(index: number, mtu: number) {
    this.calls.push(`mtu #${index} ${mtu}`);
    const link = this.links.get(index);
    if (link !== undefined) this.links.set(index, { ...link, mtu });
  }
  async linkDelete(index: number) {
    this.calls.push(`del #${index}`);
    this.links.delete(index);
    for (let i = this.addrs.length - 1; i >= 0; i--)
      if (this.addrs[i]?.index === index) this.addrs.splice(i, 1);
  }
  async addrList(filter: { index?: number } = {}) {
    return {
      items: this.addrs.filter((a) => filter.index === undefined || a.index === filter.index),
      interrupted: false,
    };
  }
  async addrReplace(addr: Addr) {
    this.calls.push(`addr add ${addr.address}/${addr.prefixLen}`);
    this.addrs.push(addr);
  }
  async addrDelete(addr: Addr) {
    this.calls.push(`addr del ${addr.address}/${addr.prefixLen}`);
    const i = this.addrs.findIndex((a) => a.index === addr.index && a.address === addr.address);
    if (i >= 0) this.addrs.splice(i, 1);
  }
}

export type { BatchResult };
