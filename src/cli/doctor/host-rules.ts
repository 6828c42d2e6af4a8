/**
 * `weft doctor`'s rules about this host's kernel and processes: pure functions from what was read
 * (sysctls, an `iptables-save` dump, nftables chains and tables, MTUs, neighbour thresholds, processes)
 * to findings. The reading is in `host-facts.ts`.
 */
import { type Finding, FindingCode } from "../../firewall/findings.ts";
import { isJumpTo, type SavedRuleset } from "../../firewall/iptables-text.ts";
import type { NftChainInfo } from "../../firewall/nftables-text.ts";
import { Owned } from "../../firewall/rules.ts";
import { Check, combine, type DoctorFinding, fail, ok, warn } from "./finding.ts";

const PERSIST = "and persist it in /etc/sysctl.d/";

/** ip_forward and rp_filter from the findings of `firewall/sysctl.ts` `checkSysctls(iface)`. */
export function sysctlRules(findings: readonly Finding[], iface: string | undefined): DoctorFinding[] {
  const about = (prefix: string) => findings.filter((f) => f.subject.startsWith(prefix));
  const forward = about("net.ipv4.ip_forward").map((f) =>
    f.code === FindingCode.IpForwardDisabled
      ? fail(
          Check.IpForward,
          `net.ipv4.ip_forward is ${f.value ?? "?"}: this host forwards no pod traffic`,
          `sysctl -w net.ipv4.ip_forward=1 ${PERSIST}`,
        )
      : warn(Check.IpForward, f.message, "check that /proc/sys is mounted"),
  );
  const rp = about("net.ipv4.conf.").map((f) =>
    f.code === FindingCode.RpFilterStrict
      ? warn(
          Check.RpFilter,
          `${f.subject} is 1 (strict; the kernel uses the larger of "all" and ${iface ?? "the interface"}): packets that arrive on another interface than the one their source is routed through are dropped`,
          `sysctl -w ${f.subject}=2 (loose) ${PERSIST}`,
        )
      : warn(Check.RpFilter, f.message, "check that the interface exists and /proc/sys is mounted"),
  );
  const where = iface === undefined ? "all" : `all and ${iface}`;
  return [
    combine(Check.IpForward, forward) ?? ok(Check.IpForward, "net.ipv4.ip_forward is 1"),
    combine(Check.RpFilter, rp) ?? ok(Check.RpFilter, `rp_filter on ${where} is 0 (off) or 2 (loose)`),
  ];
}

/** Forward-hook base chains that drop by policy and are neither weft's nor iptables' own FORWARD. */
export function foreignForwardDrops(chains: readonly NftChainInfo[]): NftChainInfo[] {
  return chains.filter(
    (c) =>
      c.hook === "forward" &&
      c.policy === "drop" &&
      !(c.family === "ip" && c.table === Owned.nftTable) &&
      !(c.table === "filter" && c.name === "FORWARD"),
  );
}

export interface ForwardInput {
  /** The `iptables-save` dump, or why it could not be read. */
  readonly saved: SavedRuleset | { readonly error: string };
  /** The cluster Network, when the config was read. */
  readonly network: string | undefined;
  /** `nft -j list chains`, when nft is installed. */
  readonly nftChains: readonly NftChainInfo[] | undefined;
}

/** FORWARD policy DROP without weft's accept rules, and nftables chains that drop what weft accepts. */
export function forwardRule(input: ForwardInput): DoctorFinding {
  const parts: DoctorFinding[] = [];
  const network = input.network ?? "<Network>";
  if ("error" in input.saved) {
    parts.push(
      warn(
        Check.ForwardPolicy,
        `cannot read the iptables rules: ${input.saved.error}`,
        "install iptables (iptables-save) or run as root",
      ),
    );
  } else {
    const filter = input.saved.get("filter");
    const policy = filter?.chains.get("FORWARD") ?? "ACCEPT";
    const jump = (filter?.rules.get("FORWARD") ?? []).some((r) => isJumpTo(r, Owned.forwardChain));
    const accepts = (filter?.rules.get(Owned.forwardChain) ?? []).some(
      (r) => (input.network === undefined || r.includes(`-s ${input.network}`)) && r.includes("-j ACCEPT"),
    );
    if (policy !== "DROP") parts.push(ok(Check.ForwardPolicy, `iptables FORWARD policy is ${policy}`));
    else if (jump && accepts)
      parts.push(
        ok(Check.ForwardPolicy, `iptables FORWARD policy is DROP; ${Owned.forwardChain} accepts ${network}`),
      );
    else {
      parts.push(
        fail(
          Check.ForwardPolicy,
          `iptables FORWARD policy is DROP and weft's ${Owned.forwardChain} accept rules are ${jump ? "incomplete" : "missing"}: traffic of ${network} routed through this host is dropped`,
          `run weft with --iptables-forward-rules=true (the default; it adds them within --iptables-resync seconds), or accept it yourself: iptables -I FORWARD -s ${network} -j ACCEPT; iptables -I FORWARD -d ${network} -j ACCEPT`,
        ),
      );
    }
  }
  for (const c of foreignForwardDrops(input.nftChains ?? [])) {
    parts.push(
      warn(
        Check.ForwardPolicy,
        `nftables chain ${c.family} ${c.table} ${c.name} drops forwarded packets by policy; weft's accept in its own table does not override it`,
        `accept the Network in that chain: nft insert rule ${c.family} ${c.table} ${c.name} ip saddr ${network} accept; nft insert rule ${c.family} ${c.table} ${c.name} ip daddr ${network} accept`,
      ),
    );
  }
  return combine(Check.ForwardPolicy, parts) ?? ok(Check.ForwardPolicy, "nothing drops forwarded traffic");
}

export interface MtuInput {
  /** `FLANNEL_MTU` of subnet.env; undefined when the file or the value is missing. */
  readonly flannelMtu: number | undefined;
  readonly subnetFile: string;
  /** docker0's MTU when docker0 exists. */
  readonly docker0Mtu: number | undefined;
  readonly backend: "host-gw" | "vxlan" | undefined;
  /** `flannel.<VNI>` and its MTU when it exists (vxlan). */
  readonly device: { readonly name: string; readonly mtu: number } | undefined;
  readonly ext: { readonly name: string; readonly mtu: number } | undefined;
}

/** subnet.env's FLANNEL_MTU against docker0, the backend device and the external interface. */
export function mtuRule(input: MtuInput): DoctorFinding | undefined {
  const mtu = input.flannelMtu;
  if (mtu === undefined) return undefined;
  const parts: DoctorFinding[] = [];
  const restart = `then restart docker so containers take FLANNEL_MTU (weft mk-docker-opts sets DOCKER_OPT_MTU)`;
  if (input.docker0Mtu !== undefined) {
    parts.push(
      input.docker0Mtu > mtu
        ? fail(
            Check.Mtu,
            `docker0's MTU is ${input.docker0Mtu}, larger than FLANNEL_MTU=${mtu} in ${input.subnetFile}: containers send packets the network cannot carry, so large transfers hang`,
            `start docker with --mtu=${mtu} (DOCKER_OPT_MTU from weft mk-docker-opts), or ip link set docker0 mtu ${mtu} and restart the containers`,
          )
        : ok(Check.Mtu, `docker0 MTU ${input.docker0Mtu} ≤ FLANNEL_MTU ${mtu}`),
    );
  }
  if (input.device !== undefined) {
    parts.push(
      input.device.mtu === mtu
        ? ok(Check.Mtu, `${input.device.name} MTU ${input.device.mtu} = FLANNEL_MTU`)
        : fail(
            Check.Mtu,
            `${input.device.name}'s MTU is ${input.device.mtu} but FLANNEL_MTU is ${mtu}: containers and the VXLAN device disagree`,
            `restart weft (it sets the device MTU and rewrites ${input.subnetFile}), ${restart}`,
          ),
    );
  }
  if (input.ext !== undefined && input.backend !== undefined) {
    const overhead = input.backend === "vxlan" ? 50 : 0;
    const limit = input.ext.mtu - overhead;
    const what =
      overhead === 0
        ? `${input.ext.name}'s MTU ${input.ext.mtu}`
        : `${input.ext.name}'s MTU ${input.ext.mtu} − 50 (VXLAN header)`;
    parts.push(
      mtu > limit
        ? fail(
            Check.Mtu,
            `FLANNEL_MTU=${mtu} is larger than ${what} = ${limit}: ${input.backend} packets of full size cannot leave this host`,
            `set Backend.MTU in the network config to the path MTU (weft config set), restart weft, ${restart}`,
          )
        : ok(Check.Mtu, `FLANNEL_MTU ${mtu} fits ${what}`),
    );
  }
  return (
    combine(Check.Mtu, parts) ??
    ok(Check.Mtu, `FLANNEL_MTU ${mtu}; no docker0 and no backend device to compare`)
  );
}

export interface GcThresh {
  readonly thresh1: number;
  readonly thresh2: number;
  readonly thresh3: number;
}

/** Thresholds with room for `peers` neighbour entries: gc_thresh3 ≥ 4 × peers (at least 1024). */
export function suggestedGcThresh(peers: number): GcThresh {
  let thresh3 = 1024;
  while (thresh3 < peers * 4) thresh3 *= 2;
  return { thresh1: thresh3 / 4, thresh2: thresh3 / 2, thresh3 };
}

/**
 * Every peer on the interface's segment needs a learned ARP entry for its PublicIP on the interface:
 * the route's gateway (host-gw), or where the VXLAN packets go (vxlan). Those count against
 * gc_thresh1/2/3. Above gc_thresh2 the kernel garbage-collects entries within 5 s; at gc_thresh3 it
 * refuses new ones ("neighbour table overflow", ENOBUFS) and peers go unreachable. Measured on kernel
 * 6.18 in a namespace: 1,022 learned entries went in, the next failed with ENOBUFS, while 3,000 permanent
 * entries on a vxlan device (weft's per-peer ARP entries on flannel.<VNI>) went in next to them: permanent
 * entries are exempt from these limits since Linux 4.19. The count used is every peer, an upper bound.
 */
export function gcThreshRule(
  thresh: GcThresh | { readonly error: string },
  peers: number | undefined,
): DoctorFinding | undefined {
  if ("error" in thresh) {
    return warn(
      Check.GcThresh,
      `cannot read the neighbour table thresholds: ${thresh.error}`,
      "run as root with iproute2 installed",
    );
  }
  if (peers === undefined) return undefined;
  const s = suggestedGcThresh(peers);
  const fix = `sysctl -w net.ipv4.neigh.default.gc_thresh1=${s.thresh1} net.ipv4.neigh.default.gc_thresh2=${s.thresh2} net.ipv4.neigh.default.gc_thresh3=${s.thresh3} ${PERSIST}`;
  const seen = `net.ipv4.neigh.default.gc_thresh1/2/3 are ${thresh.thresh1}/${thresh.thresh2}/${thresh.thresh3}`;
  if (peers >= thresh.thresh3) {
    return fail(
      Check.GcThresh,
      `${peers} peers need ${peers} neighbour entries but ${seen}: the kernel refuses entries above gc_thresh3 ("neighbour table overflow") and peers become unreachable`,
      fix,
    );
  }
  if (peers >= thresh.thresh2) {
    return warn(
      Check.GcThresh,
      `${peers} peers need ${peers} neighbour entries, above gc_thresh2 (${seen}): the kernel garbage-collects neighbour entries aggressively`,
      fix,
    );
  }
  return ok(Check.GcThresh, `${seen}: room for ${peers} peer${peers === 1 ? "" : "s"}`);
}

/** A flanneld chain or table found in the kernel. */
export interface FlannelObject {
  /** `iptables filter FLANNEL-FWD`, `nftables ip flannel-ipv4`. */
  readonly what: string;
  /** The commands that remove it, in order (jumps first). */
  readonly remove: readonly string[];
}

/** flanneld's FLANNEL-* chains (with the commands deleting their jumps) and flannel-ipv4/6 tables. */
export function flannelObjects(
  saved: SavedRuleset | undefined,
  nftTables: readonly { readonly family: string; readonly name: string }[],
): FlannelObject[] {
  const out: FlannelObject[] = [];
  for (const [table, content] of saved ?? []) {
    for (const chain of content.chains.keys()) {
      if (!chain.startsWith("FLANNEL-")) continue;
      const jumps: string[] = [];
      for (const [from, rules] of content.rules) {
        for (const body of rules)
          if (isJumpTo(body, chain)) jumps.push(`iptables -t ${table} -D ${from} ${body}`);
      }
      out.push({
        what: `iptables ${table} ${chain}`,
        remove: [...jumps, `iptables -t ${table} -F ${chain}`, `iptables -t ${table} -X ${chain}`],
      });
    }
  }
  for (const t of nftTables) {
    if (/^flannel-ipv[46]$/.test(t.name)) {
      out.push({
        what: `nftables ${t.family} ${t.name}`,
        remove: [`nft delete table ${t.family} ${t.name}`],
      });
    }
  }
  return out;
}

/** Leftover flanneld chains: its masquerade rule keeps rewriting sources even when weft runs without --ip-masq. */
export function leftoverRule(objects: readonly FlannelObject[], flanneldRunning: boolean): DoctorFinding {
  if (objects.length === 0)
    return ok(Check.FlannelLeftovers, "no FLANNEL-* chains and no flannel-ipv4/6 nftables tables");
  const list = objects.map((o) => o.what).join(", ");
  const commands = objects.flatMap((o) => o.remove).join("; ");
  return warn(
    Check.FlannelLeftovers,
    flanneldRunning
      ? `flanneld's rules are in place (${list}); they stay after flanneld stops`
      : `flanneld's rules are left over (${list}): they still apply, masquerade included, although flanneld is not running`,
    flanneldRunning
      ? `stop flanneld first (second-agent), then remove them: ${commands}`
      : `remove them: ${commands}`,
  );
}

export interface ProcessInfo {
  readonly pid: number;
  readonly comm: string;
}

/** A flanneld running in this network namespace fights weft over routes, lease and subnet.env. */
export function secondAgentRule(flanneld: readonly ProcessInfo[]): DoctorFinding {
  if (flanneld.length === 0) return ok(Check.SecondAgent, "no flanneld process in this network namespace");
  const pids = flanneld.map((p) => p.pid).join(", ");
  return fail(
    Check.SecondAgent,
    `flanneld is running (pid ${pids}): it and weft fight over the same routes, lease and subnet.env`,
    `stop and disable it: systemctl disable --now flanneld (or kill ${pids}) and let weft alone manage this host`,
  );
}
