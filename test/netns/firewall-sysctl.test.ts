/**
 * The read-only sysctl check against a real namespace: /proc/sys is read through
 * `ip netns exec <ns> cat …`, because the test process itself sees the runner's own namespace.
 */
import { afterEach, expect, test } from "bun:test";
import { FindingCode } from "../../src/firewall/findings.ts";
import { checkSysctls, type SysctlReader } from "../../src/firewall/sysctl.ts";
import { Netns, uniqueName } from "../../src/netns/netns.ts";
import { describeNetns, netnsUsable } from "../harness/netns.ts";

const usable = netnsUsable;
if (!usable)
  console.warn("firewall sysctl netns tests skipped: they need root and `ip netns` (network namespaces)");

function reader(ns: Netns): SysctlReader {
  return async (path) => (await ns.exec(["cat", path])).stdout;
}

describeNetns("firewall sysctl in a namespace", () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    await Promise.all(cleanup.splice(0).map((f) => f()));
  });

  async function namespace(): Promise<Netns> {
    const ns = await Netns.create(uniqueName("wfs"));
    cleanup.push(() => ns.remove());
    return ns;
  }

  test("firewall - sysctl check reports ip_forward=0 in a fresh namespace and nothing after setting it to 1", async () => {
    const ns = await namespace();
    await ns.sysctl("net.ipv4.conf.all.rp_filter=0");
    await ns.sysctl("net.ipv4.conf.lo.rp_filter=0");
    const before = await checkSysctls("lo", reader(ns));
    expect(before.map((f) => [f.code, f.value])).toEqual([[FindingCode.IpForwardDisabled, "0"]]);
    await ns.sysctl("net.ipv4.ip_forward=1");
    expect(await checkSysctls("lo", reader(ns))).toEqual([]);
  });

  test("firewall - sysctl check reports strict rp_filter and an unknown interface", async () => {
    const ns = await namespace();
    await ns.sysctl("net.ipv4.ip_forward=1");
    await ns.sysctl("net.ipv4.conf.all.rp_filter=1");
    const findings = await checkSysctls("nosuch0", reader(ns));
    expect(findings.map((f) => [f.code, f.subject])).toEqual([
      [FindingCode.SysctlUnreadable, "net.ipv4.conf.nosuch0.rp_filter"],
      [FindingCode.RpFilterStrict, "net.ipv4.conf.all.rp_filter"],
    ]);
  });
});
