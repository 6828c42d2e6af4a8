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
import { createFirewall, type Firewall, modeFromConfig } from "../firewall/firewall.ts";
import type { FirewallSpec } from "../firewall/rules.ts";
import { formatCidr, type Ipv4Cidr } from "../net/ipv4.ts";
import { type NetlinkHandle, RTPROT_WEFT } from "../netlink/netlink.ts";
import { KernelTables } from "../reconcile/kernel-tables.ts";
import type { ExternalChoice } from "./ext-iface.ts";

export interface WiringInput {
  readonly config: NetworkConfig;
  readonly external: ExternalChoice;
  readonly netlink: NetlinkHandle;
  readonly ipMasq: boolean;
  readonly forwardRules: boolean;
  /** `--ip-masq-fully-random-disable`. */
  readonly fullyRandomDisable: boolean;
}

export interface Wiring {
  readonly backend: Backend;
  readonly firewall: Firewall;
  readonly tables: KernelTables;
  /** The firewall rules for an own subnet (the network itself before a lease is held). */
  firewallSpec(subnet: Ipv4Cidr | undefined): FirewallSpec;
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
  input: Pick<WiringInput, "config" | "external" | "netlink">,
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
  const firewall = createFirewall({
    mode: modeFromConfig(input.config.enableNFTables),
    spec: firewallSpec(undefined),
    // --ip-masq-fully-random-disable: MASQUERADE without --random-fully; otherwise detected.
    ...(input.fullyRandomDisable ? { randomFully: false } : {}),
  });
  const tables = new KernelTables(input.netlink, {
    protocol: RTPROT_WEFT,
    network: input.config.network,
    deviceIndex: () => backend.deviceIndex(),
  });
  return { backend, firewall, tables, firewallSpec };
}
