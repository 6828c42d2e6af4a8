/**
 * `weft plan [flags]` (and `weft --dry-run`): what the agent would do on this host, changing nothing —
 * no lease is written, no route, rule or file is touched. It reads the network config and the leases,
 * works out this host's subnet the way the agent would, and prints the route diff against the kernel,
 * the firewall transaction and the subnet.env it would write.
 */

import { chooseExternal } from "../agent/ext-iface.ts";
import { hostGwRoutes } from "../backend/host-gw.ts";
import type { AgentFlags } from "../config/flags.ts";
import { parseNetworkConfig } from "../config/network-config.ts";
import { WeftError, WeftErrorCode } from "../errors.ts";
import { createFirewall, modeFromConfig } from "../firewall/firewall.ts";
import { checkSysctls } from "../firewall/sysctl.ts";
import { parseLease, subnetsPrefix } from "../lease/lease.ts";
import { formatCidr, type Ipv4Cidr } from "../net/ipv4.ts";
import { Netlink, RTPROT_WEFT } from "../netlink/netlink.ts";
import type { Route } from "../netlink/types.ts";
import { RouteTable } from "../reconcile/route-table.ts";
import { allocateSubnet, cryptoRandomInt } from "../subnet/allocate.ts";
import { leaseViews } from "../subnet/manager.ts";
import { readSubnetEnv, renderSubnetEnv } from "../subnet/subnet-env.ts";
import { configKey, storeFromFlags } from "./store-from-flags.ts";

function describeRoute(r: Route): string {
  return `${r.dst}${r.gateway === undefined ? "" : ` via ${r.gateway}`} proto ${r.protocol ?? "boot"}`;
}

export async function runPlan(flags: AgentFlags, write: (line: string) => void): Promise<number> {
  const store = storeFromFlags(flags);
  const netlink = Netlink.open();
  try {
    const key = configKey(flags.etcdPrefix);
    const stored = await store.get(key);
    if (stored === undefined) {
      throw new WeftError(
        WeftErrorCode.ConfigInvalid,
        `no network config at ${key}: write one with weft config set`,
        {
          field: "config",
        },
      );
    }
    const { config } = parseNetworkConfig(stored.value);
    const external = await chooseExternal(netlink, flags);
    const { entries } = await store.list(subnetsPrefix(flags.etcdPrefix));
    const previous = await readSubnetEnv(flags.subnetFile);
    const views = leaseViews(entries, config).map((v) => v.view);
    const choice = allocateSubnet({
      config,
      leases: views,
      publicIp: external.publicIP,
      previousSubnet: previous?.subnet,
      randomInt: cryptoRandomInt,
    });
    const own: Ipv4Cidr = choice.subnet;
    write(
      `store ${flags.store} ${flags.storeEndpoints.join(",")}, prefix ${flags.etcdPrefix}, ${entries.length} lease keys`,
    );
    write(`interface ${external.ext.name}, PublicIP ${external.publicIP}`);
    write(
      `lease: ${choice.rule === "reuse-own-lease" ? "keep" : "would acquire"} ${formatCidr(own)} (${choice.rule})`,
    );
    const leases = entries.flatMap((kv) => {
      const parsed = parseLease(kv, config.network);
      return parsed.ok ? [parsed.lease] : [];
    });
    const state = hostGwRoutes({ leases, ownSubnet: own, ext: external.ext, protocol: RTPROT_WEFT });
    const table = new RouteTable(netlink, { protocol: RTPROT_WEFT });
    table.setDesired(state.routes);
    table.allowSweep();
    const delta = await table.plan();
    write(
      `routes: ${state.routes.size} desired, ${delta.upserts.length} to add or replace, ${delta.deletes.length} to delete`,
    );
    for (const [, r] of delta.deletes) write(`  - ${describeRoute(r)}`);
    for (const [, r] of delta.upserts) write(`  + ${describeRoute(r)} dev ${external.ext.name}`);
    for (const s of state.skipped)
      write(`  ! no route for ${s.lease.subnetText} (${s.lease.publicIP}): ${s.detail}`);
    const firewall = createFirewall({
      mode: modeFromConfig(config.enableNFTables),
      spec: {
        network: formatCidr(config.network),
        subnet: formatCidr(own),
        ipMasq: flags.ipMasq,
        forwardRules: flags.iptablesForwardRules,
      },
    });
    const fw = await firewall.plan();
    write(`firewall (${fw.mode}): ${fw.inSync ? "in place" : `${fw.lines.length} changes`}`);
    for (const line of fw.lines) write(`  ${line}`);
    for (const f of [...fw.findings, ...(await checkSysctls(external.ext.name))]) write(`  ! ${f.message}`);
    write(`${flags.subnetFile} would read:`);
    const env = renderSubnetEnv({
      network: config.network,
      subnet: own,
      mtu: external.ext.mtu,
      ipMasq: flags.ipMasq,
    });
    for (const line of env.trimEnd().split("\n")) write(`  ${line}`);
    return 0;
  } finally {
    await store.close();
    await netlink.close();
  }
}
