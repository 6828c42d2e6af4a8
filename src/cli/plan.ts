/**
 * `weft plan [flags]` (and `weft --dry-run`): what the agent would do on this host, changing nothing —
 * no lease is written, no route, rule or file is touched. It reads the network config and the leases,
 * works out this host's subnet the way the agent would, and prints the route diff against the kernel,
 * the firewall transaction and the subnet.env it would write.
 */

import { chooseExternal } from "../agent/ext-iface.ts";
import { wireFromFlags } from "../agent/wiring.ts";
import { PeerTable } from "../backend/peer-table.ts";
import type { AgentFlags } from "../config/flags.ts";
import { parseNetworkConfig } from "../config/network-config.ts";
import { WeftError, WeftErrorCode } from "../errors.ts";
import { checkSysctls } from "../firewall/sysctl.ts";
import { LEASE_READ, leaseRules, parseLease, subnetsPrefix } from "../lease/lease.ts";
import { withoutOverlaps } from "../lease/watcher.ts";
import { formatCidr, type Ipv4Cidr } from "../net/ipv4.ts";
import { Netlink, RTPROT_WEFT } from "../netlink/netlink.ts";
import type { Nexthop, Route } from "../netlink/types.ts";
import { detectNexthops } from "../reconcile/route-table.ts";
import { allocateSubnet, cryptoRandomInt } from "../subnet/allocate.ts";
import { leaseViews } from "../subnet/manager.ts";
import { readSubnetEnv, renderSubnetEnv } from "../subnet/subnet-env.ts";
import { printable } from "./printable.ts";
import { configKey, storeFromFlags } from "./store-from-flags.ts";

/**
 * A route as `ip route show` prints it. A route through a nexthop is printed with the gateway and
 * device of the route it stands for (`inline`), as the kernel reports it.
 */
function describeRoute(r: Route, names: ReadonlyMap<number, string>, inline?: Route): string {
  const shown = inline ?? r;
  const nhid = r.nhid === undefined ? "" : ` nhid ${r.nhid}`;
  const via = shown.gateway === undefined ? "" : ` via ${shown.gateway}`;
  const dev = names.get(shown.oif ?? -1) ?? `#${shown.oif ?? "?"}`;
  return `${r.dst}${nhid}${via} dev ${dev} proto ${r.protocol ?? "boot"}${shown.onlink === true ? " onlink" : ""}`;
}

/** A nexthop as `ip nexthop show` prints it. */
function describeNexthop(nh: Nexthop, names: ReadonlyMap<number, string>): string {
  const dev = names.get(nh.oif ?? -1) ?? `#${nh.oif ?? "?"}`;
  return `id ${nh.id} via ${nh.gateway} dev ${dev} scope link proto ${nh.protocol ?? "boot"}${nh.onlink === true ? " onlink" : ""}`;
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
    const { entries } = await store.list(subnetsPrefix(flags.etcdPrefix), LEASE_READ);
    const previous = await readSubnetEnv(flags.subnetFile);
    const views = leaseViews(entries, config, flags.etcdPrefix).map((v) => v.view);
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
    const rules = leaseRules(config, flags.etcdPrefix);
    const leases = withoutOverlaps(
      entries.flatMap((kv) => {
        const parsed = parseLease(kv, rules);
        if (!parsed.ok) write(printable(`  ! ignoring ${kv.key}: ${parsed.reason}`));
        return parsed.ok ? [parsed.lease] : [];
      }),
      (lease, winner) =>
        write(`  ! ignoring ${lease.key}: subnet ${lease.subnetText} overlaps ${winner.key}`),
    ).values();
    // The agent's own wiring: same backend, firewall spec and tables, so this is the run's diff.
    const nexthops = await detectNexthops(netlink, flags.routeNexthops);
    const { backend, firewall, tables, firewallSpec } = wireFromFlags(flags, {
      config,
      external,
      netlink,
      nexthops: nexthops.mode,
    });
    const device = await backend.ensureDevice(own, { dryRun: true });
    write(`backend ${backend.type}, MTU ${backend.mtu()}`);
    for (const action of device.actions) write(`  would ${action}`);
    const names = new Map((await netlink.linkList()).items.map((l) => [l.index, l.name] as const));
    if (backend.deviceName !== undefined && device.index !== undefined && !names.has(device.index))
      names.set(device.index, backend.deviceName);
    const ctx = { ownSubnet: own, ext: external.ext, protocol: RTPROT_WEFT };
    const peers = new PeerTable((l, c) => backend.peer(l, c), ctx, leases);
    tables.setDesired(peers);
    tables.allowSweep();
    const delta = await tables.plan();
    if (tables.routes.usesNexthops) {
      const { nexthops: nh } = delta;
      write(
        `nexthops: ${tables.size.nexthops} desired, ${nh.upserts.length} to add or replace, ${nh.deletes.length} to delete`,
      );
      for (const [, n] of nh.deletes) write(`  - ${describeNexthop(n, names)}`);
      for (const [, n] of nh.upserts) write(`  + ${describeNexthop(n, names)}`);
    } else if (nexthops.reason !== undefined) {
      write(`  (routes use inline gateways: the kernel has no nexthop objects: ${nexthops.reason})`);
    }
    write(
      `routes: ${peers.routes.size} desired, ${delta.routes.upserts.length} to add or replace, ${delta.routes.deletes.length} to delete`,
    );
    for (const [, r] of delta.routes.deletes) write(`  - ${describeRoute(r, names)}`);
    for (const [dst, r] of delta.routes.upserts)
      write(`  + ${describeRoute(r, names, peers.routes.get(dst))}`);
    if (backend.type === "vxlan") {
      const { neighs, fdb } = delta;
      write(
        `neighbours: ${peers.neighs.size} desired, ${neighs.upserts.length} to add or replace, ${neighs.deletes.length} to delete`,
      );
      for (const [, n] of neighs.deletes) write(`  - ${n.ip} lladdr ${n.mac}`);
      for (const [, n] of neighs.upserts) write(`  + ${n.ip} lladdr ${n.mac}`);
      write(
        `fdb: ${peers.fdb.size} desired, ${fdb.upserts.length} to add or replace, ${fdb.deletes.length} to delete`,
      );
      for (const [, f] of fdb.deletes) write(`  - ${f.mac} dst ${f.dst}`);
      for (const [, f] of fdb.upserts) write(`  + ${f.mac} dst ${f.dst}`);
    }
    for (const s of peers.skipped.values())
      write(`  ! no route for ${s.lease.subnetText} (${s.lease.publicIP}): ${s.detail}`);
    firewall.setSpec(firewallSpec(own));
    const fw = await firewall.plan();
    write(`firewall (${fw.mode}): ${fw.inSync ? "in place" : `${fw.lines.length} changes`}`);
    for (const line of fw.lines) write(`  ${line}`);
    for (const f of [...fw.findings, ...(await checkSysctls(external.ext.name))]) write(`  ! ${f.message}`);
    write(`${flags.subnetFile} would read:`);
    const env = renderSubnetEnv({
      network: config.network,
      subnet: own,
      mtu: backend.mtu(),
      ipMasq: flags.ipMasq,
    });
    for (const line of env.trimEnd().split("\n")) write(`  ${line}`);
    return 0;
  } finally {
    await store.close();
    await netlink.close();
  }
}
