/**
 * Read-only checks of the kernel settings routing depends on. weft never writes a sysctl: forwarding
 * and reverse-path filtering are host policy (and docker, systemd-networkd or the distribution may own
 * them). Problems come back as findings for the agent to log and export.
 *
 * - `net.ipv4.ip_forward` must be 1, or nothing is routed between pods and the network.
 * - `net.ipv4.conf.{all,<iface>}.rp_filter`: the kernel uses max(all, iface). 1 (strict) drops packets
 *   whose source is not routed back out of the interface they came in on; with host-gw routes over one
 *   interface that holds, but asymmetric setups (several uplinks, DirectRouting fallbacks) break, so it
 *   is a warning. 0 (off) and 2 (loose) are fine.
 */
import { type Finding, FindingCode, Severity } from "./findings.ts";

/** Reads one file under /proc/sys; injected so tests can read inside a namespace. */
export type SysctlReader = (path: string) => Promise<string>;

/** Reads /proc/sys of the namespace this process runs in. */
export const procReader: SysctlReader = (path) => Bun.file(path).text();

/** `net.ipv4.ip_forward` → `/proc/sys/net/ipv4/ip_forward`. */
export function sysctlPath(name: string): string {
  return `/proc/sys/${name.replace(/\./g, "/")}`;
}

/** The sysctl names checked for `iface`. Interface names with dots keep them (`eth0.100`). */
export function checkedSysctls(iface: string | undefined): string[] {
  const names = ["net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter"];
  if (iface !== undefined) names.push(`net.ipv4.conf.${iface}.rp_filter`);
  return names;
}

async function read(reader: SysctlReader, name: string, path: string): Promise<string | Finding> {
  try {
    return (await reader(path)).trim();
  } catch (err) {
    return {
      code: FindingCode.SysctlUnreadable,
      severity: Severity.Warning,
      subject: name,
      message: `cannot read ${path}: ${err instanceof Error ? err.message : String(err)}`,
    };
  }
}

/** Checks ip_forward and rp_filter (for `iface` when given); returns one finding per problem. */
export async function checkSysctls(iface?: string, reader: SysctlReader = procReader): Promise<Finding[]> {
  const findings: Finding[] = [];
  const forward = await read(reader, "net.ipv4.ip_forward", sysctlPath("net.ipv4.ip_forward"));
  if (typeof forward !== "string") findings.push(forward);
  else if (forward !== "1") {
    findings.push({
      code: FindingCode.IpForwardDisabled,
      severity: Severity.Error,
      subject: "net.ipv4.ip_forward",
      value: forward,
      message: `net.ipv4.ip_forward is ${forward}, so this host routes no pod traffic; set it to 1 (sysctl -w net.ipv4.ip_forward=1 and persist it in /etc/sysctl.d/)`,
    });
  }

  const all = await read(reader, "net.ipv4.conf.all.rp_filter", sysctlPath("net.ipv4.conf.all.rp_filter"));
  if (typeof all !== "string") findings.push(all);
  let effective = typeof all === "string" ? Number(all) : 0;
  let subject = "net.ipv4.conf.all.rp_filter";
  if (iface !== undefined) {
    // Build the path by hand: the interface name may contain dots, which sysctlPath would turn into slashes.
    const name = `net.ipv4.conf.${iface}.rp_filter`;
    const value = await read(reader, name, `/proc/sys/net/ipv4/conf/${iface}/rp_filter`);
    if (typeof value !== "string") findings.push(value);
    else if (Number(value) > effective) {
      effective = Number(value);
      subject = name;
    }
  }
  if (effective === 1) {
    findings.push({
      code: FindingCode.RpFilterStrict,
      severity: Severity.Warning,
      subject,
      value: "1",
      message: `${subject} is 1 (strict reverse-path filtering; the kernel uses the larger of "all" and the interface), which drops packets arriving on an interface other than the one their source is routed through; use 2 (loose) or 0 if peers are reached over more than one path`,
    });
  }
  return findings;
}
