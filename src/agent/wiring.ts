/**
 * One wiring of backend, firewall and kernel tables for a host, shared by the agent and by
 * `weft plan` / `--dry-run`, so a plan is the real run's own diff: same backend choice, same firewall
 * spec (with `--ip-masq-fully-random-disable`), same tables.
 */
import type { Backend } from "../backend/backend.ts";
import { HostGwBackend } from "../backend/host-gw.ts";
import { VxlanBackend } from "../backend/vxlan.ts";
import type { AgentFlags } from "../config/flags.ts";
import type { NetworkConfig } from "../config/network-config.ts";
import { createFirewall, type Firewall, modeFromConfig, removeOtherMode } from "../firewall/firewall.ts";
import { flanneldPids, removeFlannelLeftovers } from "../firewall/flannel-leftovers.ts";
import { type FirewallSpec, Owned } from "../firewall/rules.ts";
import { type CommandRunner, spawnRunner } from "../firewall/runner.ts";
import { formatCidr, type Ipv4Cidr } from "../net/ipv4.ts";
import { type NetlinkHandle, RTPROT_WEFT } from "../netlink/netlink.ts";
import { KernelTables } from "../reconcile/kernel-tables.ts";
import type { NexthopMode } from "../reconcile/route-table.ts";
import type { ExternalChoice } from "./ext-iface.ts";

export interface WiringInput {
  readonly config: NetworkConfig;
  readonly external: ExternalChoice;
  readonly netlink: NetlinkHandle;
  readonly ipMasq: boolean;
  readonly forwardRules: boolean;
  /** `--ip-masq-fully-random-disable`. */
  readonly fullyRandomDisable: boolean;
  /** How iptables/nft are run; the real tools when omitted (unit tests inject a fake). */
  readonly run?: CommandRunner | undefined;
  /** How peer routes are programmed (`detectNexthops`); inline gateways when omitted. */
  readonly nexthops?: NexthopMode | undefined;
}

/** What `takeOver()` did: the leftovers it removed, or the flanneld processes that kept it from it. */
export interface TakeOver {
  readonly removed: readonly string[];
  readonly flanneld: readonly number[];
}

export interface Wiring {
  readonly backend: Backend;
  readonly firewall: Firewall;
  readonly tables: KernelTables;
  /** The firewall rules for an own subnet (the network itself before a lease is held). */
  firewallSpec(subnet: Ipv4Cidr | undefined): FirewallSpec;
  /**
   * Removes what the other firewall mode and flanneld left, once weft's own rules are in: `table ip
   * weft` after `EnableNFTables` was switched off, and flanneld's FLANNEL-* chains and nftables
   * tables unless a flanneld runs in this network namespace.
   */
  takeOver(): Promise<TakeOver>;
}

export function createBackend(
  input: Omit<WiringInput, "ipMasq" | "forwardRules" | "fullyRandomDisable">,
): Backend {
  const { config, external, netlink } = input;
  const backend = config.backend;
  switch (backend.type) {
    case "host-gw":
      return new HostGwBackend(external.ext, netlink);
    case "vxlan":
      return new VxlanBackend({
        config: backend,
        ext: external.ext,
        local: external.ifaceIP,
        network: config.network,
        handle: netlink,
      });
  }
}

/** The wiring for the agent's flags (`weft` and `weft plan` take the same ones). */
export function wireFromFlags(
  flags: Pick<AgentFlags, "ipMasq" | "iptablesForwardRules" | "ipMasqFullyRandomDisable">,
  input: Pick<WiringInput, "config" | "external" | "netlink" | "nexthops">,
): Wiring {
  return wire({
    ...input,
    ipMasq: flags.ipMasq,
    forwardRules: flags.iptablesForwardRules,
    fullyRandomDisable: flags.ipMasqFullyRandomDisable,
  });
}

export function wire(input: WiringInput): Wiring {
  const backend = createBackend(input);
  const firewallSpec = (subnet: Ipv4Cidr | undefined): FirewallSpec => ({
    network: formatCidr(input.config.network),
    subnet: formatCidr(subnet ?? input.config.network),
    ipMasq: input.ipMasq,
    forwardRules: input.forwardRules,
  });
  const run = input.run ?? spawnRunner();
  const firewall = createFirewall({
    mode: modeFromConfig(input.config.enableNFTables),
    spec: firewallSpec(undefined),
    run,
    // --ip-masq-fully-random-disable: MASQUERADE without --random-fully; otherwise detected.
    ...(input.fullyRandomDisable ? { randomFully: false } : {}),
  });
  const tables = new KernelTables(input.netlink, {
    protocol: RTPROT_WEFT,
    network: input.config.network,
    deviceIndex: () => backend.deviceIndex(),
    nexthops: input.nexthops,
  });
  const takeOver = async (): Promise<TakeOver> => {
    const removed: string[] = [];
    if (await removeOtherMode(firewall.mode, run))
      removed.push(`nftables: table ip ${Owned.nftTable} (EnableNFTables is off)`);
    const flanneld = flanneldPids();
    if (flanneld.length === 0) removed.push(...(await removeFlannelLeftovers(run)));
    return { removed, flanneld };
  };
  return { backend, firewall, tables, firewallSpec, takeOver };
}
