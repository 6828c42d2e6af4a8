// What the agent unit tests share: the external interface, a firewall that only records, and a
// wiring that never runs iptables or nft (these tests run in the machine's own namespace, so the
// agent's take-over of leftover rules must not read or change its rules).
import type { Wiring } from "../../../src/agent/wiring.ts";
import { wire } from "../../../src/agent/wiring.ts";
import type { NetworkConfig } from "../../../src/config/network-config.ts";
import type { Firewall } from "../../../src/firewall/firewall.ts";
import { parseCidr } from "../../../src/net/ipv4.ts";
import type { NetlinkHandle } from "../../../src/netlink/netlink.ts";

export const EXTERNAL = {
  ext: { index: 2, name: "eth0", mtu: 1500, addresses: [parseCidr("192.0.2.1/24", "keep")] },
  publicIP: "192.0.2.1",
  ifaceIP: "192.0.2.1",
};

/** A firewall that applies nothing; `onSpec` sees each own subnet it is given. */
export function fakeFirewall(onSpec: (subnet: string) => void = () => undefined): Firewall {
  const done = { changed: false, lines: [], findings: [] };
  return {
    mode: "iptables",
    setSpec: (spec: { subnet: string }) => onSpec(spec.subnet),
    apply: async () => done,
    ensure: async () => done,
  } as unknown as Firewall;
}

/** The agent's wiring over `netlink` with `firewall`, host-gw on EXTERNAL; no command is ever run. */
export function unitWiring(config: NetworkConfig, netlink: NetlinkHandle, firewall = fakeFirewall()): Wiring {
  const run = async () => ({ code: 1, stdout: "", stderr: "not in a test namespace" });
  const wired = wire({
    config,
    external: EXTERNAL,
    netlink,
    ipMasq: false,
    forwardRules: true,
    fullyRandomDisable: false,
    run,
  });
  return { ...wired, firewall };
}

/** Waits for `check`, polling every 5 ms; the bound only ends a broken run, it is no speed requirement. */
export async function until(what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(5);
  }
}
